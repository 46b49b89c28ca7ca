"""PRE's look at the browser tools (`check_browser_tools`): found, of one major version, or the Grid ready.

The local check runs the real Chromium and chromedriver of this machine, and stand-ins (small scripts) for a
driver of another version and for a binary that prints no version; the remote check asks a stand-in Grid (the
loopback HTTP stub, tests/http_stub.py) for its `/status`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from drivers.browser import check_browser_tools, find_chrome
from drivers.config import Browser
from tests.http_stub import Stub, json_reply

posix_only = pytest.mark.skipif(
    sys.platform == "win32", reason="the stand-in binaries are scripts with a #! line"
)


def stand_in(tmp_path: Path, name: str, stdout: str, stderr: str = "") -> Path:
    """An executable that prints like a browser or driver asked for --version."""
    path = tmp_path / name
    path.write_text(
        f"#!{sys.executable}\nimport sys\nsys.stderr.write({stderr!r})\nprint({stdout!r})\n", encoding="utf-8"
    )
    path.chmod(0o755)
    return path


def test_this_machines_browser_and_driver_pass() -> None:
    check = check_browser_tools(Browser())
    assert check.problems == []
    assert check.ok
    assert check.browser == str(find_chrome(Browser()))
    assert check.browser_version.split(".")[0] == check.driver_version.split(".")[0]
    assert check.browser_version.count(".") == 3
    assert check.duration_s > 0
    assert (
        check.describe()
        == f"{check.browser} {check.browser_version} with chromedriver {check.driver_version}"
    )


@posix_only
def test_a_driver_of_another_major_version_is_a_problem_that_says_what_to_install(tmp_path: Path) -> None:
    driver = stand_in(
        tmp_path, "chromedriver", "ChromeDriver 120.0.6099.109 (3419140ab665596f21b385ce136419fde0924272)"
    )
    chrome = stand_in(tmp_path, "chromium", "Chromium 156.0.8078.114 built on Debian GNU/Linux 12 (bookworm)",
                      stderr="/usr/bin/chromium: 9: [: 25276510208: unexpected operator\n")  # fmt: skip
    check = check_browser_tools(Browser(chrome=str(chrome), chromedriver=str(driver)))
    assert (check.browser_version, check.driver_version) == ("156.0.8078.114", "120.0.6099.109")
    (problem,) = check.problems
    assert problem.startswith(
        f"the browser {chrome} is version 156.0.8078.114 but chromedriver {driver} is 120.0.6099.109: "
        "chromedriver drives only its own major version (156 here)"
    )
    assert "sudo apt-get install chromium chromium-driver" in problem
    assert not check.ok


@posix_only
def test_missing_or_silent_binaries_are_problems_in_words(tmp_path: Path) -> None:
    check = check_browser_tools(Browser(chrome=str(tmp_path / "no-chrome")), environ={"PATH": str(tmp_path)})
    missing_chrome, missing_driver = check.problems
    assert missing_chrome.startswith(
        f'[browser] chrome = "{tmp_path / "no-chrome"}": no such file; install Chromium'
    )
    assert missing_driver.startswith(
        "no chromedriver found (looked at [browser] chromedriver, RUNBOOK_CHROMEDRIVER"
    )
    assert "apt-get install chromium chromium-driver" in missing_driver
    silent = stand_in(tmp_path, "chromedriver", "hello")
    (problem,) = check_browser_tools(Browser(chromedriver=str(silent))).problems
    assert problem.startswith(
        f'`{silent} --version` printed "hello", not a version number (exit code 0); install'
    )


@pytest.fixture
def grid(stub: Stub) -> tuple[str, dict[str, Any]]:
    """A stand-in Selenium Grid on loopback: /wd/hub/status answers with the status the test sets."""
    status: dict[str, Any] = {"value": {"ready": True, "message": "Selenium Grid ready."}}
    stub.route_fn("/wd/hub/status", lambda _: json_reply(200, status))
    return f"{stub.url}/wd/hub", status


def test_a_grid_must_answer_ready(grid: tuple[str, dict[str, Any]]) -> None:
    url, status = grid
    check = check_browser_tools(Browser(), url)
    assert (check.backend, check.problems, check.describe()) == ("remote", [], f"Selenium Grid {url}: ready")
    status["value"] = {"ready": False, "message": "Selenium Grid not ready."}
    assert check_browser_tools(Browser(), url).problems == [
        f"Selenium Grid {url} is not ready (it says: Selenium Grid not ready.): no node can take a Chrome "
        "session now; wait for a node with Chrome to register, or start one"
    ]
    wrong = url.removesuffix("/wd/hub")
    (problem,) = check_browser_tools(Browser(), wrong).problems
    assert problem.startswith(
        f"Selenium Grid {wrong}: {wrong}/status answered HTTP 404, so this is not a Grid's address"
    )


def test_a_grid_that_does_not_answer_is_a_problem(closed_url: str) -> None:
    (problem,) = check_browser_tools(Browser(), f"{closed_url}/wd/hub").problems
    assert problem == (
        f"Selenium Grid {closed_url}/wd/hub does not answer ({closed_url}/wd/hub/status: "
        "Connection refused); start the Grid (or its node with Chrome), or correct --selenium-remote / [browser] remote"
    )
    (problem,) = check_browser_tools(Browser(), "grid:4444").problems
    assert problem.startswith(
        "--selenium-remote / [browser] remote: expected an http(s) URL of a Selenium Grid"
    )
