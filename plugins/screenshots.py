"""Screenshots as evidence: a failing portal step (DR-E2E) leaves a screenshot and the page source, in the
bundle (`artifacts/screenshots/`) and in its row of report.html. Observes the browser the `browser` fixture
stashed; never starts one.
"""

import base64
from pathlib import Path
from typing import Any

import pytest

from drivers.axe import (
    page_slug,
)
from drivers.base import plain_error
from drivers.browser import (
    BrowserSession,
)
from plugins.state import RunbookRun, run_key

browser_key = pytest.StashKey[BrowserSession]()


def save_screenshot(runbook: RunbookRun, browser: BrowserSession, name: str) -> tuple[Path, str]:
    """artifacts/screenshots/<name>.png; returns the path and the base64 text pytest-html embeds."""
    png = browser.screenshot_png()
    path = runbook.artifacts / "screenshots" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return path, base64.b64encode(png).decode("ascii")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failing portal step leaves a screenshot and the page source, in the bundle and in the report."""
    report: pytest.TestReport = yield
    if report.failed and report.when in ("setup", "call") and "portal" in getattr(item, "fixturenames", ()):
        session = item.config.stash.get(browser_key, None)
        run = item.config.stash.get(run_key, None)
        if session is not None and session.running and run is not None and run.bundle is not None:
            # pytest-html reads report.extras (its own makereport merges the `extras` fixture into it).
            report.__dict__["extras"] = [
                *getattr(report, "extras", []),
                *_capture_failure(run, session, item.name),
            ]
    return report


def _capture_failure(run: RunbookRun, session: BrowserSession, name: str) -> list[dict[str, Any]]:
    import pytest_html

    slug = "e2e_" + page_slug(name.replace("[", "_").replace("]", ""))
    try:
        png_path, b64 = save_screenshot(run, session, slug)
        source = run.env.redact(session.page_source())
        html_path = png_path.with_suffix(".html")
        html_path.write_text(source, encoding="utf-8")
        url = session.driver.current_url
    except Exception as exc:  # noqa: BLE001 - evidence of a failure must never hide the failure itself
        run.record("note", {"message": f"no screenshot of the failed step {name}: {plain_error(exc)}"})
        return []
    assert run.bundle is not None
    run.record(
        "action",
        {"name": "browser.screenshot", "target": url, "result": "saved after a failed step", "duration_s": 0.0,
         "detail": {"screenshot": png_path.relative_to(run.bundle).as_posix(),
                    "page_source": html_path.relative_to(run.bundle).as_posix()}},
    )  # fmt: skip
    return [
        pytest_html.extras.png(b64, f"screenshot at failure: {url}"),
        pytest_html.extras.text(source, "page source"),
    ]
