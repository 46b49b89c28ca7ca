"""The browser rows (DR-AXE, DR-E2E) with a real Chromium against the real embedded Lab.

- drivers: the browser session (found without downloads, quit with its profile removed, also on failure, a
  clear "tool missing" error), the axe runner and the baseline, the portal page objects, the external
  regression command (pass, fail with JUnit, timeout that kills the process tree);
- runbook: whole drills and matrix runs in a pytest subprocess, as an operator runs them (the a11y-regression
  fault, the baseline accepting and expiring findings, the regression command, "not configured" and "tool
  missing" failing the gate, a malformed baseline stopping the run before it starts).

One Lab serves the driver tests: it starts on 1.1.0 (clean) and carries the a11y-regression fault in its
1.0.0 package (the one a rollback drill deploys), so redeploying 1.0.0 brings the regression in.
"""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from drivers.axe import (
    ACCEPTED,
    BELOW,
    EXPIRED,
    FAILS,
    AxeFinding,
    AxeRunner,
    BaselineError,
    gate_message,
    judge,
    load_baseline,
    page_slug,
    parse_baseline,
    unused_entries,
)
from drivers.base import DriverError
from drivers.browser import BrowserSession, BrowserUnavailable, browser_session, find_chrome, parse_window
from drivers.config import Axe, Browser
from drivers.e2e import LoginPage, Portal, read_junit, run_command, wait_until
from drivers.probe import Prober
from lab import Lab
from plugins.journal import read_events, verify_bundle
from tests import lab_checks

ROOT = Path(__file__).resolve().parents[1]
LAB_PAGES = ["/", "/login", "/dashboard", "/items", "/items/new", "/swagger/index.html"]
FAULT_RULES = {"image-alt", "label", "color-contrast"}
FAULT_PAGES = {"/", "/dashboard"}


# --- shared: one Lab, one browser --------------------------------------------------------------------
@pytest.fixture(scope="module")
def portal_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """Serves 1.1.0 (clean); its 1.0.0 package carries the a11y-regression release fault."""
    lab = Lab(tmp_path_factory.mktemp("browser-lab"), faults=["a11y-regression"])
    lab.start()
    yield lab
    lab.stop()


def serve(lab: Lab, version: str) -> str:
    """Make the Lab's node serve `version` (stop, deploy, start, as RB-2/RB-3 do); return its URL."""
    node = lab.node("blue")
    if node.deployed_version() != version:
        node.stop()
        node.deploy(lab.package(version))
        node.start()
    return lab.public_url


@pytest.fixture(scope="module")
def chromium() -> Iterator[BrowserSession]:
    # Confined to the Lab's host as the runbook confines it: the Lab's pages must need nothing else.
    with browser_session(Browser(), allowed_hosts=["127.0.0.1"]) as session:
        yield session


def log_in(session: BrowserSession, base: str) -> None:
    Portal(session, base).sign_in("operator", "operator-lab")


def scan(session: BrowserSession, base: str, page: str) -> list[AxeFinding]:
    nav = session.open(base + page)
    assert nav.status == 200, nav
    assert not LoginPage.is_shown(session.driver) or page == "/login", f"{page} asks for a login"
    return AxeRunner(Axe().tags).scan(session.driver, page).findings


# --- the browser session -----------------------------------------------------------------------------
def run_step_that_fails(session: BrowserSession) -> None:
    with session:
        assert Path(session.info["profile_dir"]).is_dir()
        raise RuntimeError("a step failed")


def test_browser_is_quit_and_its_profile_removed_also_on_failure() -> None:
    session = browser_session(Browser())
    start = session.start()
    profile = Path(start.detail["profile_dir"])
    assert profile.is_dir()
    assert start.result == "started"
    assert start.detail["browser_version"]
    assert start.duration_s > 0
    driver_process = session.driver.service.process  # type: ignore[attr-defined]
    quit_ = session.quit()
    assert quit_.result == "quit"
    assert quit_.detail["profile_removed"] is True
    assert not profile.exists()
    assert driver_process.poll() is not None, "chromedriver still running after quit"
    assert session.quit().result == "not running"  # twice is harmless: it runs in finalizers

    failing = browser_session(Browser())
    with pytest.raises(RuntimeError, match="a step failed"):
        run_step_that_fails(failing)
    assert "profile_dir" in failing.info
    profile = Path(failing.info["profile_dir"])
    assert not profile.exists()


def test_a_missing_browser_is_tool_missing_and_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(
        BrowserUnavailable, match=r"no Chromium or Chrome found .*apt-get install chromium chromium-driver"
    ):
        find_chrome(Browser(), environ={"PATH": str(tmp_path)})
    session = browser_session(Browser(chrome=str(tmp_path / "chrome.exe")))
    with pytest.raises(BrowserUnavailable, match=r'\[browser\] chrome = ".*chrome.exe": no such file'):
        session.start()
    chrome = tmp_path / "chrome"
    chrome.write_text("a browser binary, as far as the lookup can tell")
    session = browser_session(Browser(), environ={"PATH": "", "RUNBOOK_CHROME": str(chrome)})
    with pytest.raises(BrowserUnavailable, match="no chromedriver found"):
        session.start()
    assert not session.running
    assert "profile_dir" not in session.info  # the profile is made only once both binaries are found


def test_remote_backend_names_the_grid_it_cannot_reach(closed_url: str) -> None:
    with pytest.raises(DriverError, match="expected an http"):
        browser_session(Browser(), "grid.corp:4444")
    session = browser_session(Browser(), f"{closed_url}/wd/hub")
    assert session.backend == "remote"
    with pytest.raises(DriverError, match=rf"on {re.escape(closed_url)}/wd/hub: the browser did not start"):
        session.start()
    assert parse_window("1280x1024") == (1280, 1024)
    with pytest.raises(DriverError, match="WIDTHxHEIGHT"):
        parse_window("wide")


# --- axe and the baseline ----------------------------------------------------------------------------
@pytest.mark.lab
def test_clean_lab_pages_have_no_major_violations(portal_lab: Lab, chromium: BrowserSession) -> None:
    base = serve(portal_lab, "1.1.0")
    log_in(chromium, base)
    for page in LAB_PAGES:
        findings = scan(chromium, base, page)
        failing = [
            j
            for j in judge(findings, Axe().fail_on, parse_baseline("", "none"), date.today())
            if j.fails_gate
        ]
        assert failing == [], gate_message(page, failing, Axe().fail_on)
    assert chromium.blocked == [], "a Lab page asked for something outside the Lab"


@pytest.mark.lab
def test_a11y_regression_names_each_rule_on_each_page(portal_lab: Lab, chromium: BrowserSession) -> None:
    base = serve(portal_lab, "1.0.0")
    log_in(chromium, base)
    found = {page: {f.rule: f for f in scan(chromium, base, page)} for page in ["/", "/login", "/dashboard"]}
    for page in FAULT_PAGES:
        assert set(found[page]) == FAULT_RULES, page
        assert found[page]["image-alt"].impact == "critical"
        assert found[page]["label"].impact == "critical"
        assert found[page]["color-contrast"].impact == "serious"
        assert all(
            f.nodes == 1 and f.help_url.startswith("https://dequeuniversity.com/")
            for f in found[page].values()
        )
    assert found["/login"] == {}
    message = gate_message("/dashboard", judge(found["/dashboard"].values(), ["critical", "serious"],
                                               parse_baseline("", "none"), date.today()), ["critical", "serious"])  # fmt: skip
    assert message is not None
    head = message.splitlines()[0]
    assert head.startswith("/dashboard: 3 accessibility violations")
    assert all(rule in head for rule in FAULT_RULES)


@pytest.mark.lab
def test_axe_script_setting_injects_that_file_and_records_its_version(
    portal_lab: Lab, chromium: BrowserSession, tmp_path: Path
) -> None:
    base = serve(portal_lab, "1.0.0")
    bundled = AxeRunner(["wcag2a"]).script
    newer = tmp_path / "axe.min.js"
    # A stand-in for a newer axe-core: the real one, with the version it reports changed.
    newer.write_text(bundled.read_text(encoding="utf-8").replace('version="4.10.2"', 'version="4.99.0"')
                     .replace("'4.10.2'", "'4.99.0'").replace('"4.10.2"', '"4.99.0"'), encoding="utf-8")  # fmt: skip
    chromium.open(base + "/")
    assert AxeRunner(["wcag2a"]).scan(chromium.driver, "/").engine_version == "4.10.2"
    chromium.open(base + "/")
    result = AxeRunner(["wcag2a"], newer).scan(chromium.driver, "/")
    assert result.engine_version == "4.99.0"
    assert result.script == str(newer)
    assert {"url", "testEngine", "violations", "passes"} <= set(result.result)
    with pytest.raises(DriverError, match="no such file"):
        AxeRunner(["wcag2a"], tmp_path / "missing.js")


def finding(rule: str, page: str, impact: str = "critical") -> AxeFinding:
    return AxeFinding(rule, impact, page, 1, f"{rule} help", f"https://help/{rule}")


def test_baseline_accepts_until_expiry_then_fails_and_reports_unused_entries(tmp_path: Path) -> None:
    path = tmp_path / "axe-baseline.tsv"
    path.write_text(
        "\ufeff# rule\tpage\texpires\treason\n"
        "\n"
        "image-alt\t/\t2026-06-30\tlogo alt text lands in 1.2 (MCMS-101)\n"
        "label\t/dashboard\t2026-06-29\tpromo form removed in 1.2 (MCMS-102)\n"
        "color-contrast\t*\t2026-06-30\tbrand colours (MCMS-103)\n"
        "region\t/items\t2026-06-30\tfixed already\n",
        encoding="utf-8",
    )
    baseline = load_baseline(path)
    findings = [finding("image-alt", "/"), finding("label", "/dashboard"), finding("color-contrast", "/", "serious"),
                finding("label", "/"), finding("link-name", "/", "minor")]  # fmt: skip
    today = date(2026, 6, 30)  # through the expiry date the entry holds; the day after it does not
    verdicts = {
        (j.finding.rule, j.finding.page): j.verdict
        for j in judge(findings, ["critical", "serious"], baseline, today)
    }
    assert verdicts == {("image-alt", "/"): ACCEPTED, ("label", "/dashboard"): EXPIRED, ("color-contrast", "/"): ACCEPTED,
                        ("label", "/"): FAILS, ("link-name", "/"): BELOW}  # fmt: skip
    judgements = judge(findings, ["critical", "serious"], baseline, today)
    message = gate_message(
        "/dashboard", [j for j in judgements if j.finding.page == "/dashboard"], ["critical"]
    )
    assert message is not None
    assert "label (critical, acceptance expired)" in message.splitlines()[0]
    assert f"EXPIRED on 2026-06-29 ({path}:4: promo form removed in 1.2 (MCMS-102))" in message
    assert gate_message("/nothing", [], ["critical"]) is None
    unused = unused_entries(baseline, judgements, ["/", "/dashboard", "/items"])
    assert [(e.rule, e.page, e.line) for e in unused] == [("region", "/items", 6)]
    assert unused_entries(baseline, judgements, ["/", "/dashboard"]) == []  # /items was not scanned
    late = {j.finding.rule: j.verdict for j in judge(findings[:1], ["critical"], baseline, date(2026, 7, 1))}
    assert late == {"image-alt": EXPIRED}


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("image-alt\t/\t2026-06-30", "expected 4 tab-separated fields"),
        ("image-alt /  2026-06-30  spaces, not tabs", "expected 4 tab-separated fields"),
        ("Image Alt\t/\t2026-06-30\treason", "rule: expected an axe-core rule id"),
        ("image-alt\tdashboard\t2026-06-30\treason", 'page: expected a page path starting with "/"'),
        ("image-alt\t/\t30.06.2026\treason", 'expires: expected a date YYYY-MM-DD, got "30.06.2026"'),
        ("image-alt\t/\t2026-02-30\treason", "expires: expected a date YYYY-MM-DD"),
        ("image-alt\t/\t2026-06-30\t", "reason: say why"),
        ("label\t/\t2026-06-30\tagain", "label on / is already accepted on line 2"),
    ],
)
def test_malformed_baseline_line_names_file_and_line(tmp_path: Path, line: str, expected: str) -> None:
    path = tmp_path / "baseline.tsv"
    path.write_text(f"# accepted findings\nlabel\t/\t2026-06-30\tMCMS-1\n{line}\n", encoding="utf-8")
    with pytest.raises(BaselineError) as raised:
        load_baseline(path)
    assert str(raised.value).startswith(f"{path}:3: ")
    assert expected in str(raised.value)


def test_page_slugs_are_file_names_on_windows_too() -> None:
    assert [page_slug(p) for p in ["/", "/items/new", "/swagger/index.html", "/a?b=c", "/con"]] == [
        "index", "items_new", "swagger_index.html", "a_b_c", "page_con"]  # fmt: skip


# --- the portal flow ---------------------------------------------------------------------------------
@pytest.mark.lab
@pytest.mark.parametrize("version", ["1.1.0", "1.0.0"])
def test_portal_flow_passes(portal_lab: Lab, chromium: BrowserSession, version: str) -> None:
    base = serve(portal_lab, version)
    portal = Portal(chromium, base)
    chromium.driver.delete_all_cookies()
    assert portal.sign_in("operator", "operator-lab") == "/dashboard"
    assert portal.signed_in_as() == "operator"
    assert portal.dashboard.served_version == version
    assert portal.dashboard.worker_status == "Healthy"
    name = f"e2e item on {version}"
    portal.new_item.open()
    portal.new_item.create(name)
    row = portal.items.find(name)
    assert row is not None
    assert row.status in ("queued", "processed")
    prober = Prober(["127.0.0.1"])
    api = prober.get("api-items", base + "/api/items").json()
    assert name in [i["name"] for i in api]

    def processed() -> tuple[bool, str]:
        item = next(i for i in prober.get("api-items", base + "/api/items").json() if i["name"] == name)
        return item["status"] == "processed", item["status"]

    wait_until(processed, 20, "worker processes the item")
    portal.dashboard.open()
    assert portal.dashboard.queue_depth == 0
    portal.items.open()
    found = portal.items.find(name)
    assert found is not None
    assert found.status == "processed"
    portal.sign_out()
    assert portal.signed_in_as() is None
    portal.dashboard.open()
    assert LoginPage.is_shown(chromium.driver)


@pytest.mark.lab
def test_wrong_password_is_a_clear_portal_error(portal_lab: Lab, chromium: BrowserSession) -> None:
    base = serve(portal_lab, "1.1.0")
    chromium.driver.delete_all_cookies()
    with pytest.raises(
        DriverError, match="log in as operator refused: The user name or password is not correct"
    ):
        Portal(chromium, base, timeout_s=5).sign_in("operator", "wrong")


# --- the external regression command -----------------------------------------------------------------
REGRESSION = textwrap.dedent(
    """
    import os, pathlib, subprocess, sys, time
    mode, junit = sys.argv[1], pathlib.Path(sys.argv[2])
    print("regression suite against", sys.argv[3] if len(sys.argv) > 3 else "?", os.environ.get("RUNBOOK_BASE_URL"))
    for i in range(100):
        print("line", i)
    sys.stdout.flush()
    cases = '<testcase classname="portal.login" name="test_login" time="0.1"/>'
    if mode == "fail":
        cases += ('<testcase classname="portal.items" name="test_create_item" time="0.2">'
                  '<failure message="item not listed">AssertionError: item not listed</failure></testcase>'
                  '<testcase classname="portal.items" name="test_skip"><skipped/></testcase>')
    if mode in ("pass", "fail"):
        junit.write_text('<?xml version="1.0"?><testsuites><testsuite name="regression">' + cases + '</testsuite></testsuites>')
        sys.exit(0 if mode == "pass" else 1)
    if mode == "hang":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        pathlib.Path(sys.argv[4]).write_text(str(child.pid))
        time.sleep(60)
    """
)


def alive(pid: int) -> bool:
    """True when the process exists and is not a zombie (a container's PID 1 may never reap it)."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return status.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def regression_script(tmp_path: Path) -> Path:
    script = tmp_path / "regression.py"
    script.write_text(REGRESSION, encoding="utf-8")
    return script


def test_regression_command_pass_fail_and_junit(tmp_path: Path, regression_script: Path) -> None:
    junit = tmp_path / "junit.xml"
    passed = run_command([sys.executable, str(regression_script), "pass", str(junit), "http://x"], cwd=tmp_path,
                         timeout_s=30, output_path=tmp_path / "out.txt", tail_lines=5)  # fmt: skip
    assert passed.passed
    assert passed.exit_code == 0
    assert not passed.timed_out
    assert passed.output_tail.splitlines() == [f"line {i}" for i in range(95, 100)]
    assert "regression suite against http://x" in (tmp_path / "out.txt").read_text()
    assert read_junit(junit).describe() == "1 tests, 0 failures, 0 errors, 0 skipped"

    failed = run_command([sys.executable, str(regression_script), "fail", str(junit)], cwd=tmp_path, timeout_s=30,
                         output_path=tmp_path / "out.txt")  # fmt: skip
    assert (failed.passed, failed.exit_code, failed.describe().split(" after")[0]) == (
        False,
        1,
        "exit code 1",
    )
    summary = read_junit(junit)
    assert (summary.tests, summary.failures, summary.errors, summary.skipped) == (3, 1, 0, 1)
    assert [(c.classname, c.name, c.outcome, c.message) for c in summary.failed] == [
        ("portal.items", "test_create_item", "failure", "item not listed")
    ]
    junit.write_text("<html>not junit</html>")
    with pytest.raises(
        DriverError, match=r"junit .*junit.xml: expected <testsuites> or <testsuite>, got <html>"
    ):
        read_junit(junit)


def test_regression_command_timeout_kills_the_process_tree(tmp_path: Path, regression_script: Path) -> None:
    pid_file = tmp_path / "child.pid"
    result = run_command([sys.executable, str(regression_script), "hang", str(tmp_path / "j.xml"), "-", str(pid_file)],
                         cwd=tmp_path, timeout_s=1.5, output_path=tmp_path / "out.txt")  # fmt: skip
    assert result.timed_out
    assert result.exit_code is None
    assert not result.passed
    assert result.describe() == "timed out after 1.5 s (process tree killed)"
    assert result.duration_s < 10
    assert "line 99" in result.output_tail
    if sys.platform.startswith("linux"):
        child = int(pid_file.read_text())
        wait_until(lambda: (not alive(child), alive(child)), 5, "the command's child process is killed too")


def test_missing_regression_program_is_tool_missing(tmp_path: Path) -> None:
    from drivers.e2e import CommandMissing

    with pytest.raises(
        CommandMissing, match=r"\[e2e\] command: no-such-npm not found on PATH \(searched PATH: "
    ):
        run_command(["no-such-npm", "run", "test"], cwd=tmp_path, timeout_s=5, output_path=tmp_path / "o.txt")


# --- whole runs, as an operator runs them ------------------------------------------------------------
@dataclass
class Run:
    returncode: int
    output: str
    bundle: Path | None
    events: list[dict[str, Any]]

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] == kind]

    def actions(self, name: str) -> list[dict[str, Any]]:
        return [e["data"] for e in self.kinds("action") if e["data"]["name"] == name]

    def phase_outcomes(self) -> dict[str, str]:
        return {e["phase"]: e["data"]["outcome"] for e in self.kinds("phase.end")}


def run_runbook(tmp_path: Path, env_text: str, *args: str) -> Run:
    env_file = tmp_path / "env.toml"
    env_file.write_text(env_text, encoding="utf-8")
    reports = tmp_path / "reports"
    cmd = [sys.executable, "-m", "pytest", f"--env-file={env_file}", f"--evidence-dir={reports}",
           "-p", "no:cacheprovider", "-ra", *args]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180, check=False)
    bundles = sorted(reports.iterdir()) if reports.exists() else []
    bundle = bundles[-1] if bundles else None
    events = read_events(bundle / "evidence.jsonl") if bundle else []
    return Run(proc.returncode, proc.stdout + proc.stderr, bundle, events)


def lab_env(tmp_path: Path, extra: str = "") -> str:
    """environments/Lab.toml with its own Lab directory, plus `extra` lines (appended to [axe])."""
    text = (ROOT / "environments" / "Lab.toml").read_text(encoding="utf-8")
    text = text.replace('dir = ".lab"', f"dir = '{(tmp_path / 'lab').as_posix()}'")
    return text.replace("[axe]\n", "[axe]\n" + extra, 1)


@pytest.fixture
def remote(closed_url: str, tmp_path: Path) -> str:
    """A remote environment whose service address is a loopback port proven closed (nothing answers there); its
    dated timeline goes to the test's own folder, never the project's logs/."""
    logs = (tmp_path / "logs").as_posix()
    return (
        f'\nname = "Remote"\nkind = "remote"\n[service]\nbase_url = "{closed_url}"\n'
        f'[paths]\nlog_dirs = ["{logs}"]\ntimeline_dir = "{logs}"\n'
    )


@pytest.mark.lab
@pytest.mark.drill
def test_a11y_regression_drill_fails_dr_axe_naming_each_rule_and_page(drill: Any) -> None:
    d = drill("--lab-fault", "a11y-regression", keep=False)
    assert d.returncode == 1, d.output
    outcomes = d.phase_outcomes()
    assert outcomes["DR-SMOKE"] == outcomes["DR-E2E"] == "passed"
    assert outcomes["DR-AXE"] == "failed"
    later = [p for p in ("DR-ZAP", "RB-4") if p in outcomes]
    assert later
    assert {outcomes[p] for p in later} == {"blocked"}
    assert outcomes["RB-5"] == "passed"
    findings = {
        (e["data"]["id"], e["data"]["page"]) for e in d.kinds("finding") if e["data"]["tool"] == "axe"
    }
    assert findings == {(rule, page) for rule in FAULT_RULES for page in FAULT_PAGES}
    assert all(
        e["phase"] == "DR-AXE" and e["data"]["verdict"] == "fails"
        for e in d.kinds("finding")
        if e["data"]["tool"] == "axe"
    )
    for page in FAULT_PAGES:
        line = next(
            ln for ln in d.output.splitlines() if ln.startswith(f"{page}: 3 accessibility violations")
        )
        assert all(rule in line for rule in FAULT_RULES), line
    assert "blocked by DR-AXE: /: 3 accessibility violations" in d.output
    # The evidence is whole: axe JSON and a screenshot per page, the findings table, the chain and manifest.
    for slug in ("index", "login", "dashboard", "items", "items_new"):
        result = json.loads((d.bundle / "artifacts" / "axe" / f"{slug}.json").read_text(encoding="utf-8"))
        assert result["testEngine"]["version"] == "4.10.2"
        assert result["url"].endswith("/" if slug == "index" else "/" + slug.replace("_", "/"))
        assert (d.bundle / "artifacts" / "screenshots" / f"axe_{slug}.png").read_bytes()[
            :8
        ] == b"\x89PNG\r\n\x1a\n"
    report = (d.bundle / "report.html").read_text(encoding="utf-8")
    assert "Accessibility findings (DR-AXE)" in report
    assert "axe-core 4.10.2 on 5 page(s)" in report
    assert "screenshot /dashboard" in report
    assert verify_bundle(d.bundle).ok
    scans = [e["data"] for e in d.kinds("action") if e["data"]["name"] == "axe.scan"]
    assert {s["detail"]["axe_core"] for s in scans} == {"4.10.2"}
    # One browser for the whole run, quit at the end with its profile removed.
    (start,) = [e["data"] for e in d.kinds("action") if e["data"]["name"] == "browser.start"]
    (quit_,) = [e["data"] for e in d.kinds("action") if e["data"]["name"] == "browser.quit"]
    assert start["result"] == "started"
    assert quit_["detail"]["profile_removed"] is True
    assert not Path(quit_["detail"]["profile_dir"]).exists()


@pytest.mark.lab
@pytest.mark.drill
def test_baseline_in_a_drill_accepts_expires_and_reports_unused(tmp_path: Path) -> None:
    baseline = tmp_path / "axe-baseline.tsv"
    baseline.write_text(
        "# accepted while the 1.2 redesign lands\n"
        "image-alt\t*\t2999-12-31\tlogo alt text in 1.2 (MCMS-101)\n"
        "label\t*\t2999-12-31\tpromo form removed in 1.2 (MCMS-102)\n"
        "color-contrast\t/\t2999-12-31\tbrand colours (MCMS-103)\n"
        "color-contrast\t/dashboard\t2000-01-01\tdashboard colours were due long ago (MCMS-104)\n"
        "region\t/items\t2999-12-31\tfixed in 1.0 already\n",
        encoding="utf-8",
    )
    r = run_runbook(tmp_path, lab_env(tmp_path, f"baseline = '{baseline.as_posix()}'\n"),
                    "-m", "rollback", "--lab-fault", "a11y-regression")  # fmt: skip
    assert r.returncode == 1, r.output
    assert r.phase_outcomes()["DR-AXE"] == "failed"
    failed = [ln.split(" - ")[0] for ln in r.output.splitlines() if ln.startswith("FAILED ")]
    assert failed == ["FAILED runbook_tests/test_dr_axe.py::test_page_has_no_major_violations[/dashboard]"], (
        failed
    )
    assert (
        "/dashboard: 1 accessibility violation with impact critical/serious: color-contrast (serious, acceptance expired)"
        in r.output
    )
    assert f"EXPIRED on 2000-01-01 ({baseline}:5: dashboard colours were due long ago (MCMS-104))" in r.output
    verdicts = {(e["data"]["id"], e["data"]["page"]): e["data"]["verdict"] for e in r.kinds("finding")}
    assert verdicts == {("image-alt", "/"): "accepted", ("label", "/"): "accepted", ("color-contrast", "/"): "accepted",
                        ("image-alt", "/dashboard"): "accepted", ("label", "/dashboard"): "accepted",
                        ("color-contrast", "/dashboard"): "expired"}  # fmt: skip
    warnings = [e["data"]["message"] for e in r.kinds("warning")]
    assert warnings == [
        f"DR-AXE baseline: {baseline}:6: region on /items matched no finding; remove the entry"
    ]
    report = (r.bundle / "report.html").read_text(encoding="utf-8") if r.bundle else ""
    assert "accepted until 2999-12-31" in report
    assert "Baseline entries that matched nothing" in report


def test_malformed_baseline_stops_the_run_before_it_starts(tmp_path: Path, remote: str) -> None:
    baseline = tmp_path / "baseline.tsv"
    baseline.write_text("# ok\nimage-alt\t/\t2999-12-31\tMCMS-1\ncolor-contrast /dashboard 2999-12-31\n")
    r = run_runbook(tmp_path, remote + f"[axe]\nbaseline = '{baseline.as_posix()}'\n", "-m", "dr_axe")
    assert r.returncode == 4, r.output
    assert f"{baseline}:3: expected 4 tab-separated fields" in r.output
    assert r.bundle is None  # nothing ran, nothing was recorded


@pytest.mark.parametrize(("row", "marker"), [("DR-E2E", "dr_e2e"), ("DR-AXE", "dr_axe")])
def test_a_row_not_configured_fails_the_gate(tmp_path: Path, remote: str, row: str, marker: str) -> None:
    r = run_runbook(tmp_path, remote + ("[e2e]\nflows = []\n" if row == "DR-E2E" else ""), "-m", marker)
    assert r.returncode == 1, r.output
    assert f"required check {row} was skipped: {row} not configured: no [" in r.output
    assert r.phase_outcomes() == {row: "failed"}
    assert not [e for e in r.kinds("action") if e["data"]["name"] == "browser.start"], (
        "no browser for nothing"
    )


def test_a_missing_browser_fails_the_gate_as_tool_missing(tmp_path: Path, remote: str) -> None:
    env = (
        remote
        + f"[browser]\nchrome = '{(tmp_path / 'no-chrome').as_posix()}'\n[e2e]\nflows = ['portal']\nusername = 'u'\npassword = 'p'\n"
    )
    r = run_runbook(tmp_path, env, "-m", "dr_e2e")
    assert r.returncode == 1, r.output
    assert "required check DR-E2E was skipped: browser tool missing: [browser] chrome = " in r.output
    assert "apt-get install chromium chromium-driver" in r.output
    assert [a["result"] for a in r.actions("browser.start")] == ["tool missing"]


@pytest.mark.parametrize("mode", ["pass", "fail"])
def test_regression_command_row(
    tmp_path: Path, regression_script: Path, mode: str, remote: str, closed_url: str
) -> None:
    junit = tmp_path / "regression-junit.xml"
    argv = [sys.executable, str(regression_script), mode, str(junit), "{base_url}"]
    # JSON strings are TOML basic strings: the paths survive whatever the platform puts in them.
    env = (
        remote
        + f"[e2e]\ncommand = {json.dumps(argv)}\ncommand_timeout_s = 60\njunit = {json.dumps(str(junit))}\n"
    )
    r = run_runbook(tmp_path, env, "-m", "dr_e2e")
    (action,) = r.actions("e2e.command")
    assert action["detail"]["argv"][-1] == closed_url  # {base_url} is the smoke target
    assert "line 99" in action["detail"]["output_tail"]
    assert r.bundle is not None
    assert "line 0" in (r.bundle / "artifacts" / "e2e" / "command-output.txt").read_text()
    report = (r.bundle / "report.html").read_text(encoding="utf-8")
    assert "Regression command (DR-E2E)" in report
    assert not r.actions("browser.start"), "the command part needs no browser"
    if mode == "pass":
        assert r.returncode == 0, r.output
        assert action["detail"]["exit_code"] == 0
        assert action["detail"]["junit"]["tests"] == 1
        return
    assert r.returncode == 1, r.output
    assert action["detail"]["exit_code"] == 1
    assert action["detail"]["junit"]["failed"][0]["name"] == "test_create_item"
    assert "the command exit code 1" in r.output
    assert (
        "JUnit: 3 tests, 1 failures, 0 errors, 1 skipped: portal.items.test_create_item: item not listed"
        in r.output
    )
    assert "test_create_item" in report
    assert (r.bundle / "artifacts" / "e2e" / "junit.xml").is_file()


@pytest.mark.lab
@pytest.mark.drill
def test_a_failing_portal_step_leaves_a_screenshot_and_the_page_source(tmp_path: Path) -> None:
    env = lab_env(tmp_path).replace('password = "operator-lab"', 'password = "not-the-password"')
    r = run_runbook(tmp_path, env, "-m", "dr_e2e", "-k", "logs_in or dashboard")
    assert r.returncode == 1, r.output
    assert "login: log in as operator refused: The user name or password is not correct." in r.output
    assert r.bundle is not None
    shots = r.bundle / "artifacts" / "screenshots"
    assert (shots / "e2e_test_operator_logs_in.png").read_bytes()[:4] == b"\x89PNG"
    source = (shots / "e2e_test_operator_logs_in.html").read_text(encoding="utf-8")
    assert 'role="alert"' in source
    assert "not-the-password" not in source
    saved = r.actions("browser.screenshot")
    assert [a["detail"]["screenshot"] for a in saved] == [
        "artifacts/screenshots/e2e_test_operator_logs_in.png",
        "artifacts/screenshots/e2e_test_dashboard_shows_served_version_and_worker_status.png",
    ]
    report = (r.bundle / "report.html").read_text(encoding="utf-8")
    assert "screenshot at failure" in report
    assert verify_bundle(r.bundle).ok


def test_selenium_remote_option_runs_the_rows_on_that_grid(tmp_path: Path, remote: str) -> None:
    env = remote + "[e2e]\nflows = ['portal']\nusername = 'u'\npassword = 'p'\n"
    grid = f"{lab_checks.closed_url()}/wd/hub"  # a second closed port: the Grid is not the service
    r = run_runbook(tmp_path, env, "-m", "dr_e2e", "--selenium-remote", grid)
    assert r.returncode == 1, r.output
    (start,) = r.actions("browser.start")
    assert start["result"] == "failed"
    assert f"on {grid}: the browser did not start" in start["detail"]["error"]
    # The operator reads why: the Grid's address refused the connection (the OS's own words).
    refused = f"[Errno {errno.ECONNREFUSED}] {os.strerror(errno.ECONNREFUSED)}"
    assert refused in start["detail"]["error"]
    assert f"{grid}: the browser did not start: " in r.output
    assert refused in r.output
