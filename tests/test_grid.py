"""DR-AXE and DR-E2E through a real Selenium Grid 4 (standalone, on loopback; tests/grid.py).

- the Grid binds only its own loopback port and offers only this machine's Chromium;
- a remote session without the root-safe flags fails, as root, with a sentence that says what to add;
- DR-AXE through the Grid finds exactly what the local browser finds (the axe result events of both journals:
  rules, impacts, pages, node counts, verdicts), and DR-E2E through the Grid passes;
- stopping the Grid leaves nothing it started (chromedriver, Chromium, its crash handlers), by PID;
- PRE and the browser fixture ask the Grid's /status first (ready, and a Chrome node), preflight refuses bad
  [browser] args and a Grid address with a password, before anything is touched.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from drivers.base import DriverError
from drivers.browser import ROOT_SAFE_ARGS, browser_session, check_browser_tools
from drivers.config import Browser
from tests.conftest import ROOT, Drill, DrillRunner
from tests.grid import Grid, grid_fixture, new_grid  # noqa: F401  (grid: the module's running Grid)
from tests.http_stub import Stub, json_reply
from tests.lab_checks import closed_url

AS_ROOT = sys.platform.startswith("linux") and os.geteuid() == 0
FAULT_RULES = {"image-alt", "label", "color-contrast"}


def with_args(*args: str) -> Any:
    """An edit of Lab.toml that gives [browser] these args."""
    flags = ", ".join(f'"{a}"' for a in args)
    return lambda text: text.replace("[browser]\n", f"[browser]\nargs = [{flags}]\n", 1)


def axe_results(d: Drill) -> dict[str, Any]:
    """What DR-AXE found, from the journal: the findings table (axe.result) and each finding event."""
    (result,) = d.kinds("axe.result")
    rows = sorted(tuple(row) for row in result["data"]["rows"])
    findings = sorted(
        (f["data"]["id"], f["data"]["impact"], f["data"]["page"], f["data"]["nodes"], f["data"]["verdict"])
        for f in d.kinds("finding")
        if f["data"]["tool"] == "axe"
    )
    scans = sorted(
        (a["data"]["detail"]["page"], a["data"]["result"], a["data"]["detail"]["axe_core"])
        for a in d.kinds("action")
        if a["data"]["name"] == "axe.scan"
    )
    return {"rows": rows, "pages": sorted(result["data"]["pages"]), "findings": findings, "scans": scans}


def browser_start(d: Drill) -> dict[str, Any]:
    (start,) = [e["data"] for e in d.kinds("action") if e["data"]["name"] == "browser.start"]
    return dict(start)


# --- the Grid itself ---------------------------------------------------------------------------------
def test_the_grid_listens_only_on_its_own_loopback_port_and_offers_chromium(grid: Grid) -> None:
    java = psutil.Process(grid.proc.pid if grid.proc else 0)
    listening = {(c.laddr.ip, c.laddr.port) for c in java.net_connections() if c.status == psutil.CONN_LISTEN}
    assert listening in ({("::ffff:127.0.0.1", grid.port)}, {("127.0.0.1", grid.port)}), listening
    check = check_browser_tools(Browser(), grid.url)
    assert (check.ok, check.answered, check.describe()) == (True, True, f"Selenium Grid {grid.url}: ready")
    # Its caches and temporary files are its own, never root's home or /tmp.
    assert (grid.root / "home").is_dir()
    assert grid.tmp is not None
    assert grid.tmp.is_dir()


@pytest.mark.skipif(not AS_ROOT, reason="Chromium refuses its sandbox only when it runs as root (Linux)")
def test_a_remote_session_without_the_root_flags_fails_saying_what_to_add(grid: Grid) -> None:
    session = browser_session(
        Browser(), grid.url, allowed_hosts=["127.0.0.1"], source="environments/Stage.toml"
    )
    with pytest.raises(DriverError) as failed:
        session.start()
    message = str(failed.value)
    assert message.startswith(
        f"chrome on {grid.url}: the browser did not start: Could not start a new session."
    )
    assert "Chrome instance exited" in message
    assert (
        "the Grid's node started Chromium and it exited at once, which is what Chromium does when the node runs "
        "it as root without --no-sandbox: add the root-safe flags to [browser] args in environments/Stage.toml "
        '(args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", '
        '"--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]), '
        "or run the node as a user other than root"
    ) in message
    assert "Traceback" not in message
    assert "None" not in message
    # With them, the same Grid starts the same browser.
    with browser_session(Browser(args=list(ROOT_SAFE_ARGS)), grid.url, allowed_hosts=["127.0.0.1"]) as ok:
        assert ok.info["browser_version"]
        assert ok.info["args"] == list(ROOT_SAFE_ARGS)
        assert ok.open("data:text/html,<title>root-safe</title>").title == "root-safe"
        # While a session runs, chromedriver and Chromium listen too: on loopback only.
        listening = {
            c.laddr.ip
            for proc in grid.processes()
            for c in proc.net_connections()
            if c.status == psutil.CONN_LISTEN
        }
        assert listening
        assert all(ipaddress.ip_address(ip.removeprefix("::ffff:")).is_loopback for ip in listening), (
            listening
        )
        # The node's browser profile is in the Grid's own temporary folder.
        assert ok.driver.capabilities["chrome"]["userDataDir"].startswith(f"{grid.tmp}{os.sep}")


@pytest.mark.skipif(not AS_ROOT, reason="Chromium refuses its sandbox only when it runs as root (Linux)")
@pytest.mark.lab
@pytest.mark.drill
def test_a_run_on_a_grid_without_the_root_flags_names_the_file_to_add_them_to(
    grid: Grid, tmp_path: Path
) -> None:
    d = DrillRunner(tmp_path)("--selenium-remote", grid.url, marker="dr_axe", keep=False)
    assert d.returncode == 1, d.output
    assert d.phase_outcomes() == {"DR-AXE": "failed"}
    start = browser_start(d)
    assert start["result"] == "failed"
    assert (
        "Chrome instance exited. Examine ChromeDriver verbose log to determine the cause; the Grid's node "
        "started Chromium and it exited at once"
    ) in start["detail"]["error"]
    assert f"add the root-safe flags to [browser] args in {tmp_path / 'Lab.toml'} (args = [" in d.output
    assert "Traceback" not in d.output


# --- the rows through the Grid -----------------------------------------------------------------------
@pytest.mark.lab
@pytest.mark.drill
def test_dr_axe_through_the_grid_finds_exactly_what_the_local_browser_finds(
    grid: Grid, tmp_path: Path
) -> None:
    fault = ("--lab-fault", "a11y-regression")  # findings to compare, not an empty list against another
    for side in ("local", "grid"):
        (tmp_path / side).mkdir()
    local = DrillRunner(tmp_path / "local")(*fault, marker="dr_axe", keep=False)
    remote = DrillRunner(tmp_path / "grid")(
        *fault,
        "--selenium-remote",
        grid.url,
        marker="dr_axe",
        keep=False,
        edit_env=with_args(*ROOT_SAFE_ARGS),
    )
    assert browser_start(local)["detail"]["backend"] == "local"
    start = browser_start(remote)
    assert (start["result"], start["detail"]["backend"]) == ("started", "remote"), remote.output
    assert start["target"] == f"chrome {start['detail']['browser_version']} on {grid.url}"
    assert start["detail"]["args"] == list(ROOT_SAFE_ARGS)
    found = axe_results(local)
    assert axe_results(remote) == found
    assert {row[0] for row in found["rows"]} == FAULT_RULES
    assert {row[2] for row in found["findings"]} == {"/", "/dashboard"}
    assert found["pages"] == sorted(["/", "/login", "/dashboard", "/items", "/items/new"])
    # The same verdict: DR-AXE fails on the same pages, for the same reasons.
    assert local.returncode == remote.returncode == 1, remote.output
    assert local.phase_outcomes() == remote.phase_outcomes() == {"DR-AXE": "failed"}
    # The same sentences (a phase's end line carries its elapsed time, which differs: left out).
    said = [
        sorted(
            ln
            for ln in d.output.splitlines()
            if "accessibility violations with impact" in ln and not ln.startswith("DR-AXE FAILED in ")
        )
        for d in (local, remote)
    ]
    assert said[0]
    assert said[0] == said[1]
    # Its evidence is whole: a screenshot per page from the Grid's browser, and the quit.
    shots = remote.bundle / "artifacts" / "screenshots"
    assert (shots / "axe_dashboard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (quit_,) = [e["data"] for e in remote.kinds("action") if e["data"]["name"] == "browser.quit"]
    assert quit_["result"] == "quit"


@pytest.mark.lab
@pytest.mark.drill
def test_dr_e2e_through_the_grid_passes(grid: Grid, tmp_path: Path) -> None:
    d = DrillRunner(tmp_path)(
        "--selenium-remote", grid.url, marker="dr_e2e", keep=False, edit_env=with_args(*ROOT_SAFE_ARGS)
    )
    assert d.returncode == 0, d.output
    assert d.phase_outcomes() == {"DR-E2E": "passed"}
    start = browser_start(d)
    assert (start["result"], start["detail"]["backend"]) == ("started", "remote")
    assert start["target"].endswith(f" on {grid.url}")
    steps = [e["data"]["name"] for e in d.kinds("action") if e["data"]["name"].startswith("e2e.")]
    assert steps, "the portal flow's steps are journalled"


# --- nothing left behind -----------------------------------------------------------------------------
def snapshot(procs: list[psutil.Process]) -> list[tuple[int, float, str]]:
    return [(p.pid, p.create_time(), p.name()) for p in procs]


def still_running(pid: int, create_time: float) -> bool:
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - create_time) < 1 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def own_grid(tmp_path: Path) -> Iterator[Grid]:
    g = new_grid(tmp_path / "grid")
    try:
        yield g.start()
    finally:
        g.stop()


def test_stopping_the_grid_leaves_nothing_it_started(own_grid: Grid) -> None:
    # A session left open, as a killed runner leaves it: the Grid's stop must still take its browser along.
    session = browser_session(Browser(args=list(ROOT_SAFE_ARGS)), own_grid.url)
    session.start()
    started = snapshot(own_grid.processes())
    names = {name for _, _, name in started}
    assert {"java", "chromedriver", "chromium"} <= names, names
    left = own_grid.stop()
    assert left == []
    assert [p for p in started if still_running(p[0], p[1])] == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", own_grid.port), timeout=2).close()
    assert session.quit().result == "quit failed"  # the Grid is gone: the quit says so and never raises


# --- PRE, the fixture and preflight ask first --------------------------------------------------------
def test_a_ready_grid_without_a_chrome_node_is_a_problem_in_words(stub: Stub) -> None:
    firefox = {"availability": "UP", "slots": [{"stereotype": {"browserName": "firefox"}}]}
    stub.route_fn("/status", lambda _: json_reply(200, {"value": {"ready": True, "nodes": [firefox]}}))
    (problem,) = check_browser_tools(Browser(), stub.url).problems
    assert problem == (
        f"Selenium Grid {stub.url} is ready but its nodes that are up offer firefox: the browser rows need a node "
        "with Chrome or Chromium (browserName chrome); start one, or point --selenium-remote / [browser] remote "
        "at a Grid that has one"
    )


@pytest.mark.lab
@pytest.mark.drill
def test_pre_fails_on_a_grid_that_is_not_ready_and_nothing_is_stopped(drill: Any, stub: Stub) -> None:
    status = {"value": {"ready": False, "message": "Selenium Grid not ready.", "nodes": []}}
    stub.route_fn("/status", lambda _: json_reply(200, status))
    d = drill("--selenium-remote", stub.url, marker="rollback")
    assert d.returncode == 1, d.output
    outcomes = d.phase_outcomes()
    assert outcomes["PRE"] == "failed"
    assert outcomes["RB-2"] == "blocked"
    assert (
        f"DR-AXE: Selenium Grid {stub.url} is not ready (it says: Selenium Grid not ready.): no node can take a "
        "Chrome session now"
    ) in d.output
    assert "tools missing for required matrix rows; nothing was stopped or deployed" in d.output
    assert d.served_version() == "1.1.0"  # nothing was stopped or deployed


def run_preflight(tmp_path: Path, env_text: str, *args: str) -> subprocess.CompletedProcess[str]:
    env_file = tmp_path / "env.toml"
    env_file.write_text(env_text, encoding="utf-8")
    cmd = [sys.executable, "-m", "pytest", "-m", "dr_axe", f"--env-file={env_file}",
           f"--evidence-dir={tmp_path / 'reports'}", "-p", "no:cacheprovider", *args]  # fmt: skip
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def test_preflight_refuses_bad_browser_args_and_a_grid_address_with_a_password(tmp_path: Path) -> None:
    logs = (tmp_path / "logs").as_posix()
    env = (
        f'name = "Remote"\nkind = "remote"\n[service]\nbase_url = "{closed_url()}"\n'
        f'[paths]\nlog_dirs = ["{logs}"]\ntimeline_dir = "{logs}"\n[axe]\n'
        '[browser]\nargs = ["no-sandbox", "--host-resolver-rules=MAP * 127.0.0.1", "--disable-gpu"]\n'
    )
    r = run_preflight(tmp_path, env, "--selenium-remote", "http://grid:s3cret@127.0.0.1:9/")
    output = r.stdout + r.stderr
    assert r.returncode == 4, output
    src = tmp_path / "env.toml"
    assert (
        f'{src}: [browser] args[0] = "no-sandbox": not a browser flag (give each flag as its own string beginning '
        'with "--", such as "--no-sandbox"); the browser would open anything else as a page'
    ) in output
    assert (
        f'{src}: [browser] args[1] = "--host-resolver-rules=MAP * 127.0.0.1": the runbook sets '
        "--host-resolver-rules itself (the scope block of [scope] allowed_hosts); leave it out of [browser] args"
    ) in output
    assert "args[2]" not in output
    assert (
        f"{src}: --selenium-remote / [browser] remote: give the Grid's address without user:password@ (it is "
        "written to the evidence)"
    ) in output
    assert "s3cret" not in output
    assert not (tmp_path / "reports").exists()  # nothing ran, nothing was recorded
