"""Microsoft Edge as the browser (`[browser] kind = "edge"`, msedgedriver), tested without an Edge: none can run
here. What is tested is what the runbook decides itself: the environment key, where it looks for Edge and
msedgedriver (and that it never takes chromedriver for them, nor lets Selenium Manager look), the capabilities
it builds for an Edge session, the sentences of a missing tool, PRE's version check with stand-in binaries, a
Grid without an Edge node, and a Lab drill whose PRE refuses to start without Edge."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from drivers.base import DriverError
from drivers.browser import (
    MSEDGEDRIVER_DOWNLOAD,
    BrowserUnavailable,
    browser_session,
    check_browser_tools,
    find_chrome,
    find_chromedriver,
)
from drivers.config import Browser, ConfigError, ConfigProblems, load_environment
from tests.http_stub import Stub, json_reply

ROOT = Path(__file__).resolve().parents[1]
EDGE = Browser(kind="edge")
posix_only = pytest.mark.skipif(
    sys.platform == "win32", reason="the stand-in binaries are scripts with a #! line"
)


def stand_in(folder: Path, name: str, stdout: str, *, marker: Path | None = None, code: int = 0) -> Path:
    """An executable that prints like a browser or driver asked for --version; with `marker`, it also writes
    the arguments it was started with there (proof of which binary ran)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    record = f"open({str(marker)!r}, 'a').write(' '.join(sys.argv) + '\\n')\n" if marker else ""
    path.write_text(
        f"#!{sys.executable}\nimport sys\n{record}print({stdout!r})\nsys.exit({code})\n", encoding="utf-8"
    )
    path.chmod(0o755)
    return path


def env_text(browser: str) -> str:
    text = (ROOT / "environments" / "Lab.toml").read_text(encoding="utf-8")
    return text.replace("[browser]\n", f"[browser]\n{browser}\n", 1)


def test_the_environment_file_names_the_kind_of_browser(tmp_path: Path) -> None:
    path = tmp_path / "Lab.toml"
    path.write_text(env_text('kind = "edge"'), encoding="utf-8")
    assert load_environment(path).browser.kind == "edge"
    assert Browser().kind == "chrome"  # the default: Chromium or Chrome, as before
    path.write_text(env_text('kind = "firefox"'), encoding="utf-8")
    with pytest.raises((ConfigError, ConfigProblems)) as raised:
        load_environment(path)
    assert str(raised.value) == f"{path}: [browser] kind: expected one of 'chrome', 'edge', got 'firefox'"


@posix_only
def test_edge_and_msedgedriver_are_found_where_the_operator_put_them(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    # chromedriver and chromium on PATH are never taken for Edge's.
    stand_in(bin_dir, "chromedriver", "ChromeDriver 120.0.6099.109")
    stand_in(bin_dir, "chromium", "Chromium 120.0.6099.109")
    path_only = {"PATH": str(bin_dir)}
    with pytest.raises(BrowserUnavailable) as no_edge:
        find_chrome(EDGE, path_only)
    assert str(no_edge.value).startswith(
        "no Microsoft Edge found (looked at [browser] chrome, RUNBOOK_EDGE, PATH for msedge, microsoft-edge, "
        "microsoft-edge-stable, and Edge's install folders); Edge needs msedgedriver of the same major version"
    )
    with pytest.raises(BrowserUnavailable) as no_driver:
        find_chromedriver(EDGE, path_only)
    words = str(no_driver.value)
    assert words.startswith(
        "no msedgedriver found (looked at [browser] chromedriver, RUNBOOK_MSEDGEDRIVER and PATH); "
    )
    assert f"download that msedgedriver from {MSEDGEDRIVER_DOWNLOAD}" in words
    assert "edge://version" in words
    # On PATH, by each of Edge's names (Windows: msedge; Linux packages: microsoft-edge).
    linux_edge = stand_in(bin_dir, "microsoft-edge", "Microsoft Edge 120.0.2210.91")
    assert find_chrome(EDGE, path_only) == linux_edge
    windows_edge = stand_in(bin_dir, "msedge", "Microsoft Edge 120.0.2210.91")
    assert find_chrome(EDGE, path_only) == windows_edge
    driver = stand_in(bin_dir, "msedgedriver", "Microsoft Edge WebDriver 120.0.2210.91")
    assert find_chromedriver(EDGE, path_only) == driver
    # The environment variables come before PATH, and the environment file before them.
    elsewhere = stand_in(tmp_path / "tools", "msedgedriver", "Microsoft Edge WebDriver 120.0.2210.91")
    by_variable = {**path_only, "RUNBOOK_MSEDGEDRIVER": str(elsewhere), "RUNBOOK_EDGE": str(linux_edge)}
    assert find_chromedriver(EDGE, by_variable) == elsewhere
    assert find_chrome(EDGE, by_variable) == linux_edge
    assert find_chromedriver(Browser(kind="edge", chromedriver=str(driver)), by_variable) == driver
    # RUNBOOK_CHROMEDRIVER is Chrome's: an Edge run does not read it.
    chrome_only = {"PATH": str(tmp_path / "empty"), "RUNBOOK_CHROMEDRIVER": str(elsewhere)}
    with pytest.raises(BrowserUnavailable):
        find_chromedriver(EDGE, chrome_only)
    with pytest.raises(BrowserUnavailable) as gone:
        find_chromedriver(EDGE, {"PATH": "", "RUNBOOK_MSEDGEDRIVER": str(tmp_path / "nowhere")})
    assert str(gone.value).startswith(
        f'RUNBOOK_MSEDGEDRIVER = "{tmp_path / "nowhere"}": no such file; Edge needs'
    )


def test_an_edge_session_asks_for_edge_with_the_runbook_flags_and_its_scope() -> None:
    session = browser_session(
        Browser(kind="edge", args=["--lang=de"], window="1024x768"),
        allowed_hosts=["127.0.0.1", "mcms.example"],
    )
    options = session._options()
    session._add_configured_args(options)
    caps = options.to_capabilities()
    assert caps["browserName"] == "MicrosoftEdge"
    assert "goog:chromeOptions" not in caps
    assert "goog:loggingPrefs" not in caps
    edge = caps["ms:edgeOptions"]
    args = edge["args"]
    assert "--headless=new" in args
    assert "--no-proxy-server" in args
    assert "--window-size=1024,768" in args
    assert args[-1] == "--lang=de"  # [browser] args come after the runbook's own
    (rules,) = [a for a in args if a.startswith("--host-resolver-rules=")]
    assert "MAP * ~NOTFOUND" in rules
    assert "EXCLUDE mcms.example" in rules
    # The performance log that the scope guard reads, under Edge's own prefix.
    assert caps["ms:loggingPrefs"] == {"performance": "ALL"}
    assert edge["perfLoggingPrefs"] == {"enableNetwork": True, "enablePage": False}
    # A Chrome session of the same settings is unchanged.
    chrome = browser_session(Browser(), allowed_hosts=["127.0.0.1"])._options().to_capabilities()
    assert chrome["browserName"] == "chrome"
    assert "goog:chromeOptions" in chrome
    assert "ms:edgeOptions" not in chrome


@posix_only
def test_a_local_edge_starts_the_msedgedriver_it_found_and_never_selenium_manager(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The start goes as far as this machine allows: our msedgedriver stand-in is started with the port Selenium
    gives it (and then exits, so the start fails in words); Selenium Manager, pointed at a stand-in that records
    any call, is never run."""
    ran = tmp_path / "ran.txt"
    manager_ran = tmp_path / "selenium-manager-ran.txt"
    manager = stand_in(tmp_path / "manager", "selenium-manager", "{}", marker=manager_ran)
    monkeypatch.setenv("SE_MANAGER_PATH", str(manager))
    edge = stand_in(tmp_path / "edge", "msedge", "Microsoft Edge 120.0.2210.91")
    driver = stand_in(tmp_path / "edge", "msedgedriver", "", marker=ran, code=1)
    environ = {"PATH": str(tmp_path / "edge"), "RUNBOOK_BROWSER_STATE_DIR": str(tmp_path / "state")}
    session = browser_session(EDGE, environ=environ, allowed_hosts=["127.0.0.1"])
    with pytest.raises(DriverError) as failed:
        session.start()
    assert "the browser did not start: " in str(failed.value)
    (started,) = ran.read_text().splitlines()
    assert started.startswith(f"{driver} ")
    assert " --port=" in started
    assert not manager_ran.exists(), manager_ran.read_text()
    assert session.info["binary"] == str(edge)
    assert session.info["driver"] == str(driver)
    assert session.profile_dir is None  # the failed start removed its profile, as a Chrome's does
    assert not list((tmp_path / "state").glob("*.json"))  # and its orphan record


@posix_only
def test_pre_checks_edge_and_msedgedriver_versions_and_names_the_driver(tmp_path: Path) -> None:
    folder = tmp_path / "bin"
    stand_in(folder, "msedge", "Microsoft Edge 131.0.2903.70")
    driver = stand_in(folder, "msedgedriver", "Microsoft Edge WebDriver 120.0.2210.91 (a1b2c3)")
    environ = {"PATH": str(folder)}
    check = check_browser_tools(EDGE, environ=environ)
    assert (check.browser_version, check.driver_version) == ("131.0.2903.70", "120.0.2210.91")
    (problem,) = check.problems
    assert problem.startswith(
        f"the browser {folder / 'msedge'} is version 131.0.2903.70 but msedgedriver {driver} is 120.0.2210.91: "
        "msedgedriver drives only its own major version (131 here); download the msedgedriver of Edge's "
        f"version from {MSEDGEDRIVER_DOWNLOAD}"
    )
    assert "chromedriver" not in problem.replace("[browser] chromedriver", "")
    stand_in(folder, "msedgedriver", "Microsoft Edge WebDriver 131.0.2903.70 (d4e5f6)")
    ready = check_browser_tools(EDGE, environ=environ)
    assert ready.ok, ready.problems
    assert ready.describe() == f"{folder / 'msedge'} 131.0.2903.70 with msedgedriver 131.0.2903.70"
    missing = check_browser_tools(EDGE, environ={"PATH": str(tmp_path / "empty")})
    no_edge, no_driver = missing.problems
    assert no_edge.startswith("no Microsoft Edge found")
    assert no_driver.startswith("no msedgedriver found")


def test_a_grid_without_an_edge_node_is_a_problem_for_an_edge_run(stub: Stub) -> None:
    nodes: list[dict[str, Any]] = [
        {
            "availability": "UP",
            "slots": [{"stereotype": {"browserName": "chrome", "browserVersion": "120.0"}}],
        }
    ]
    stub.route_fn(
        "/wd/hub/status",
        lambda _: json_reply(200, {"value": {"ready": True, "message": "ok", "nodes": nodes}}),
    )
    url = f"{stub.url}/wd/hub"
    assert check_browser_tools(Browser(), url).ok  # a Chrome run is served
    (problem,) = check_browser_tools(EDGE, url).problems
    assert problem == (
        f"Selenium Grid {url} is ready but its nodes that are up offer chrome: the browser rows need a node "
        "with Microsoft Edge (browserName MicrosoftEdge); start one, or point --selenium-remote / [browser] "
        "remote at a Grid that has one"
    )
    nodes.append(
        {
            "availability": "UP",
            "slots": [{"stereotype": {"browserName": "MicrosoftEdge", "browserVersion": "131"}}],
        }
    )
    edge = check_browser_tools(EDGE, url)
    assert edge.ok, edge.problems
    assert edge.browser_version == "131"


@pytest.mark.lab
@pytest.mark.drill
def test_a_drill_with_edge_and_no_edge_here_stops_at_pre_before_anything_is_touched(drill: Any) -> None:
    if shutil.which("msedge") or shutil.which("microsoft-edge") or shutil.which("msedgedriver"):
        pytest.skip("this machine has Edge or msedgedriver: the drill would not stop at PRE")

    def edge(text: str) -> str:
        assert "[browser]\n" in text
        text = text.replace("[browser]\n", '[browser]\nkind = "edge"\n', 1)
        # The browser rows are required here, so a missing browser fails PRE (a required check never skips).
        if "[matrix]" not in text:
            text += '\n[matrix]\nrequired = ["DR-SMOKE", "DR-AXE"]\n'
        return text

    d = drill(marker="rollback", keep=False, edit_env=edge)
    assert d.returncode != 0, d.output
    assert d.phase_outcomes().get("PRE") == "failed", d.output
    assert "RB-2" not in d.phase_outcomes() or d.phase_outcomes()["RB-2"] == "blocked"
    assert not [e for e in d.kinds("action") if e["data"]["name"] in ("stop_site", "site.stop", "deploy")]
    tool = next(e for e in d.kinds("action") if e["data"]["name"] == "tools.browser")
    problems = tool["data"]["detail"]["problems"]
    assert any(p.startswith("no Microsoft Edge found") for p in problems), problems
    assert any(p.startswith("no msedgedriver found") and MSEDGEDRIVER_DOWNLOAD in p for p in problems), (
        problems
    )
    assert "no msedgedriver found" in d.output
    assert json.dumps(problems)  # plain data in the journal
