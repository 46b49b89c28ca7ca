"""The terminal guides (plugins/progress.py): a line as each phase starts and ends, the monitoring window's live
progress, and the next command after a gate run. Run as an operator runs them: pytest in a subprocess (pytester
projects with the runbook's plugins, and a Blue/Green drill on the Lab), output read as text."""

from __future__ import annotations

import os
import pty
import re
import select
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.lab_checks import closed_url
from tests.runbook_project import make_runbook_project, phase_module

ROOT = Path(__file__).resolve().parents[1]
NO_ENTRY_POINT = (
    "-p",
    "no:mcms_runbook",
    "-p",
    "no:cacheprovider",
)  # the project's plugins come from its conftest


def python_m_pytest(cwd: Path) -> str:
    """How plugins.progress names the interpreter that ran pytest (relative when inside the current folder)."""
    exe = Path(sys.executable)
    return f"{exe.relative_to(cwd) if exe.is_relative_to(cwd) else exe} -m pytest"


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    return make_runbook_project(pytester)


def rollback_phases(p: pytest.Pytester) -> None:
    p.makepyfile(
        test_pre=phase_module("PRE", "rollback"),
        test_rb1=phase_module(
            "RB-1",
            "rollback",
            body="import time\n\ndef test_a():\n    time.sleep(0.3)\n\ndef test_b():\n    print('captured b')\n",
        ),
        test_rb2=phase_module(
            "RB-2",
            "rollback",
            body="def test_a():\n    print('captured a')\n    assert False, 'the site did not stop'\n",
        ),
        test_rb3=phase_module("RB-3", "rollback"),
    )


def elapsed(line: str) -> float:
    found = re.search(r" in (\d+\.\d) s", line)
    assert found, line
    return float(found.group(1))


def test_each_phase_says_when_it_starts_and_how_it_ended(project: pytest.Pytester) -> None:
    rollback_phases(project)
    result = project.runpytest_subprocess("-m", "rollback", "--env", "Remote", *NO_ENTRY_POINT)
    result.assert_outcomes(passed=3, failed=1, skipped=1)
    lines = result.stdout.lines
    ours = [ln.split("  ")[0] for ln in lines if re.match(r"(PRE|RB-\d) ", ln)]
    assert ours == [
        "PRE started: preconditions: packages, webhook, tools, approval, which slot is live",
        ours[1],
        "RB-1 started: announce the rollback before the service is touched",
        ours[3],
        "RB-2 started: stop the site and recycle the App Pool",
        ours[5],
        "RB-3 started: deploy the previous stable version and start it",
        "RB-3 not run: blocked by RB-2 (0.0 s)",
    ]
    assert re.fullmatch(r"PRE passed in \d+\.\d s", ours[1])
    assert re.fullmatch(r"RB-1 passed in \d+\.\d s", ours[3])
    assert elapsed(ours[3]) >= 0.3  # it slept 0.3 s
    assert re.fullmatch(r"RB-2 FAILED in \d+\.\d s: the site did not stop", ours[5])
    # pytest's own lines go on around ours: each file's results on a line of their own, then the summary.
    result.stdout.re_match_lines(
        [r"RB-1 started: .*", r"test_rb1.py \.\. +\[ 60%\]", r"RB-1 passed in .*", r"test_rb2.py F +\[ 80%\]"]
    )
    # The capture of the running test was suspended for our lines only (the start line is written during the
    # setup of a phase's first test): the test's own output stays its own.
    text = result.stdout.str()
    assert "Captured stdout setup" not in text
    assert "captured a" in text[text.index("Captured stdout call") :]


def test_verbose_keeps_each_result_beside_its_test_and_quiet_leaves_the_lines_out(
    project: pytest.Pytester,
) -> None:
    rollback_phases(project)
    verbose = project.runpytest_subprocess("-m", "rollback", "--env", "Remote", "-v", *NO_ENTRY_POINT)
    verbose.stdout.re_match_lines(
        [
            r"RB-1 started: announce the rollback before the service is touched",
            r"test_rb1.py::test_a PASSED +\[ 40%\]",
            r"test_rb1.py::test_b PASSED +\[ 60%\]",
            r"RB-1 passed in \d+\.\d s",
            r"RB-2 started: stop the site and recycle the App Pool",
            r"test_rb2.py::test_a FAILED +\[ 80%\]",
            r"RB-2 FAILED in \d+\.\d s: the site did not stop",
        ]
    )
    quiet = project.runpytest_subprocess("-m", "rollback", "--env", "Remote", "-q", *NO_ENTRY_POINT)
    quiet.assert_outcomes(passed=3, failed=1, skipped=1)
    assert "started:" not in quiet.stdout.str()
    assert not [ln for ln in quiet.stdout.lines if re.match(r"(PRE|RB-\d) (passed|FAILED)", ln)]


def bluegreen_phases(p: pytest.Pytester, bg1: str = "def test_step():\n    pass\n") -> None:
    p.makepyfile(
        test_pre=phase_module("PRE", "rollback", "bluegreen"),
        test_bg1=phase_module("BG-1", "bluegreen", body=bg1),
        test_bg3=phase_module("BG-3", "bluegreen"),
        test_bg4=phase_module("BG-4", "bluegreen", "traffic"),
    )


def protected_env_file(p: pytest.Pytester) -> Path:
    """The project's environment file made protected and requiring approval, in a folder with a space."""
    text = (p.path / "environments" / "Remote.toml").read_text()
    text = "protect = true\n" + text.replace("[approval]\nrequired = false", "[approval]\nrequired = true")
    folder = p.path / "change records"
    folder.mkdir()
    path = folder / "Stage.toml"
    path.write_text(text)
    return path


def next_command(output: str) -> list[str]:
    lines = output.splitlines()
    at = next(n for n, ln in enumerate(lines) if ln.startswith("Next:"))
    return [ln.strip() for ln in lines[at : at + 3]]


def test_a_passed_gate_run_prints_the_exact_switch_command_and_it_runs(project: pytest.Pytester) -> None:
    bluegreen_phases(project)
    env_file = protected_env_file(project)
    gate = project.runpytest_subprocess(
        "-m", "bluegreen and not traffic", f"--env-file={env_file}", "--approved-by", "A. Operator",
        "--confirm-env", "Remote", *NO_ENTRY_POINT,
    )  # fmt: skip
    gate.assert_outcomes(passed=3, deselected=1)
    python = python_m_pytest(project.path)
    switch = (
        f'{python} -m "bluegreen and traffic" "--env-file={env_file}" --approved-by "A. Operator" '
        "--confirm-env Remote"
    )
    assert next_command(gate.stdout.str())[:2] == [
        "Next:     the gate passed: the release waits on the idle slot; switch traffic to it with",
        switch,
    ]
    # The command as printed is the switch run: it selects BG-4 only, and passes preflight as given.
    proc = subprocess.run(
        [*shlex.split(switch), *NO_ENTRY_POINT],
        cwd=project.path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "BG-4 started: switch traffic to the idle slot and monitor" in proc.stdout
    assert "1 passed, 3 deselected" in proc.stdout
    assert "Next:" not in proc.stdout  # a switch that passed leaves nothing to type


def test_a_failed_gate_run_says_how_to_read_why_and_how_to_run_it_again(project: pytest.Pytester) -> None:
    bluegreen_phases(project, bg1="def test_step():\n    assert False, 'the idle slot did not start'\n")
    gate = project.runpytest_subprocess("-m", "bluegreen and not traffic", "--env", "Remote", *NO_ENTRY_POINT)
    gate.assert_outcomes(passed=1, failed=1, skipped=1, deselected=1)
    (bundle,) = [d for d in (project.path / "reports").iterdir() if d.is_dir()]
    opener = f'start "" {bundle / "report.html"}' if os.name == "nt" else f"xdg-open {bundle / 'report.html'}"
    if sys.platform == "darwin":
        opener = f"open {bundle / 'report.html'}"
    assert next_command(gate.stdout.str()) == [
        f"Next:     read what failed in the report: {opener}",
        "once it is fixed, run the gate again:",
        f'{python_m_pytest(project.path)} -m "bluegreen and not traffic" --env Remote',
    ]
    assert "switch traffic" not in gate.stdout.str()


MONITOR_MODULE = """
import pytest
from drivers.monitor import Monitor
from drivers.probe import Prober

pytestmark = [pytest.mark.bluegreen, pytest.mark.traffic, pytest.mark.phase("BG-4")]


def test_monitor(runbook, request):
    # What fixtures/bluegreen.py does, against an address where nothing answers: every probe fails.
    config = request.config
    url = "{url}/health"
    config.hook.pytest_runbook_monitor_started(
        config=config, run=runbook, url=url, probes=9, interval_s=0.05, duration_s=0.4
    )
    monitor = Monitor(
        Prober(["127.0.0.1"], timeout_s=0.2, retries=0), url, duration_s=0.4, interval_s=0.05,
        sla_p95_ms=800, max_error_rate=0.01, alert_after_failures={alert},
        on_sample=lambda s: config.hook.pytest_runbook_monitor_probe(config=config, run=runbook, sample=s),
    )
    result = monitor.run()
    config.hook.pytest_runbook_monitor_ended(config=config, run=runbook, result=result)
"""


def test_failed_probes_are_shown_at_once_and_the_window_ends_with_its_figures(
    project: pytest.Pytester,
) -> None:
    url = closed_url()
    project.makepyfile(test_bg4=MONITOR_MODULE.format(url=url, alert=3))
    result = project.runpytest_subprocess("-m", "bluegreen and traffic", "--env", "Remote", *NO_ENTRY_POINT)
    result.stdout.re_match_lines(
        [
            r"BG-4 started: switch traffic to the idle slot and monitor",
            rf"BG-4 monitoring {url}/health: 9 probes, one every 0.05 s for 0.4 s",
            r"BG-4 monitoring: 1/9 probes, p95 \d+ ms, 1 failed \(probe 1 failed: .+\)",
            r"BG-4 monitoring: 2/9 probes, p95 \d+ ms, 2 failed \(probe 2 failed: .+\)",
            r"BG-4 monitoring: 3/9 probes, p95 \d+ ms, 3 failed \(probe 3 failed: .+\)",
            rf"BG-4 monitoring stopped: 3/9 probes, p95 \d+ ms, 3 failed; breach: 3 consecutive failed checks of "
            rf"{url}/health .*",
            r"test_bg4.py \.",
            r"BG-4 passed in \d+\.\d s",
        ]
    )


def read_pty(cmd: list[str], cwd: Path, timeout_s: float = 60) -> str:
    """Run `cmd` on a pseudo-terminal (as an operator's console) and return everything it wrote."""
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "100", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=cwd, stdin=follower, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    data = os.read(leader, 65536)
                except OSError:  # the follower closed: the run ended
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        os.close(leader)
    return b"".join(chunks).decode("utf-8", "replace")


def test_on_a_terminal_the_progress_line_is_updated_in_place(project: pytest.Pytester) -> None:
    url = closed_url()
    project.makepyfile(test_bg4=MONITOR_MODULE.format(url=url, alert=20))  # no alert: the whole window fails
    output = read_pty(
        [sys.executable, "-m", "pytest", "-m", "bluegreen and traffic", "--env", "Remote", *NO_ENTRY_POINT],
        project.path,
    )
    plain = re.sub(r"\x1b\[[0-9;]*m", "", output)  # colours off
    # Each update rewrites the same line (carriage return, no newline between them).
    updates = re.findall(r"\rBG-4 monitoring: (\d)/9 probes, p95 \d+ ms, (\d) failed *(?=\r)", plain)
    assert [int(done) for done, _ in updates] == list(range(10)), plain  # 0/9 first, then after each probe
    assert all(done == failed for done, failed in updates)  # every probe failed, and the count says so
    assert re.search(r"\rBG-4 monitoring done: 9/9 probes, p95 \d+ ms, 9 failed; breach: error rate", plain)
    assert "BG-4 passed in" in plain


@pytest.mark.lab
@pytest.mark.drill
def test_a_blue_green_drill_guides_the_operator(drill: Any) -> None:
    def short_window(text: str) -> str:
        text = text.replace("duration_s = 10\n", "duration_s = 3\n").replace(
            "interval_s = 1\n", "interval_s = 0.25\n"
        )
        assert "duration_s = 3\n" in text
        assert "interval_s = 0.25\n" in text
        return text

    gate = drill(marker="bluegreen and not traffic", edit_env=short_window)
    assert gate.returncode == 0, gate.output
    starts = [ln for ln in gate.output.splitlines() if " started: " in ln]
    assert starts == [
        "PRE started: preconditions: packages, webhook, tools, approval, which slot is live",
        "BG-1 started: deploy the release to the idle slot",
        "DR-SMOKE started: Health 200, Swagger 200, Kerberos answering",
        "DR-E2E started: main user-flow regression",
        "DR-AXE started: accessibility regression",
        "DR-ZAP started: security scan",
        "BG-3 started: approval, then announce and prepare the switch",
    ]
    env_file, reports = drill.tmp_path / "Lab.toml", drill.reports
    switch = (
        f'{python_m_pytest(ROOT)} -m "bluegreen and traffic" --env-file={env_file} --evidence-dir={reports}'
    )
    assert next_command(gate.output)[:2] == [
        "Next:     the gate passed: the release waits on the idle slot; switch traffic to it with",
        switch,
    ]
    # The switch, as the line says (the drill adds its own -p no:cacheprovider -rs): BG-4's monitoring window.
    proc = subprocess.run(
        [*shlex.split(switch), "-p", "no:cacheprovider"],
        cwd=ROOT, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    window = [ln for ln in lines if ln.startswith("BG-4 monitoring")]
    assert re.fullmatch(r"BG-4 monitoring http://127\.0\.0\.1:\d+/health: 13 probes, one every 0.25 s for 3.0 s",
                        window[0])  # fmt: skip
    assert [re.sub(r"p95 \d+ ms", "p95 N ms", ln) for ln in window[1:]] == [
        *(f"BG-4 monitoring: {n}/13 probes, p95 N ms, 0 failed" for n in (2, 4, 6, 8, 10, 12)),
        "BG-4 monitoring done: 13/13 probes, p95 N ms, 0 failed; within the SLA",
    ]
    at = {ln.split(":")[0]: n for n, ln in enumerate(lines)}
    assert at["BG-4 started"] < lines.index(window[0]) < lines.index(window[-1]) < at["BG-5 started"]
    ended = [ln for ln in lines if re.match(r"BG-[45] passed in \d+\.\d s", ln)]
    assert len(ended) == 2
    assert elapsed(ended[0]) >= 3.0  # BG-4 held the 3 s window


def test_a_parallel_run_prints_the_phase_lines_on_the_controller(project: pytest.Pytester) -> None:
    body = "".join(f"def test_{n}():\n    pass\n\n" for n in range(3))
    project.makepyfile(
        test_smoke=phase_module("DR-SMOKE", "dr_smoke", body=body),
        test_axe=phase_module("DR-AXE", "dr_axe", body=body),
    )
    result = project.runpytest_subprocess(
        "-n", "2", "-m", "dr_smoke or dr_axe", "--env", "Remote", *NO_ENTRY_POINT
    )
    result.assert_outcomes(passed=6)
    ours = [ln for ln in result.stdout.lines if ln.startswith(("DR-SMOKE ", "DR-AXE "))]
    assert [re.sub(r"in \d+\.\d s", "in N s", ln) for ln in ours] == [
        "DR-SMOKE started: Health 200, Swagger 200, Kerberos answering",
        "DR-SMOKE passed in N s",
        "DR-AXE started: accessibility regression",
        "DR-AXE passed in N s",
    ]


class Options:
    """What plugins.progress reads of pytest's options: as the operator gave them."""

    def __init__(self, **given: object) -> None:
        self.given = given

    def getoption(self, name: str, default: object = None) -> object:
        return self.given.get(name, default)


def test_a_lab_gate_that_did_not_keep_its_lab_says_to_run_it_again_with_the_lab_kept(tmp_path: Path) -> None:
    """The switch needs the Lab the gate verified: a gate run without --keep-lab cannot be followed by a switch."""
    from drivers.config import load_environment
    from plugins.progress import next_steps
    from plugins.state import PhaseRecord, RunbookRun, RunOptions

    lab = load_environment(ROOT / "environments" / "Lab.toml")
    run = RunbookRun(lab, RunOptions(tmp_path, env_argument="--env Lab"), ROOT)
    run.flow, run.bundle = "bluegreen", tmp_path / "bundle"
    run.phases = {p: PhaseRecord(p, outcome="passed") for p in ("PRE", "BG-1", "BG-3")}
    run.record("lab", {"urls": {}, "reused": False})
    run.record("run.end", {"outcome": "passed"})
    python = python_m_pytest(Path.cwd())
    config: Any = Options(runbook_env_file=None)
    assert next_steps(run, config) == [
        "Next:     the gate passed, but the Lab stopped with this run and the switch needs the Lab it verified: "
        "run the gate again with the Lab kept, then switch",
        f'          {python} -m "bluegreen and not traffic" --env Lab --keep-lab',
        f'          {python} -m "bluegreen and traffic" --env Lab',
    ]
    run.options.keep_lab = True  # the same gate with its Lab kept: the switch follows at once
    assert next_steps(run, config)[1] == f'          {python} -m "bluegreen and traffic" --env Lab'
    run.record("run.end", {"outcome": "failed"})  # a failed gate with its Lab kept: how to stop it too
    assert next_steps(run, config) == [
        f"Next:     read what failed in the timeline of {tmp_path / 'bundle'}",
        "          once it is fixed, run the gate again:",
        f'          {python} -m "bluegreen and not traffic" --env Lab --keep-lab',
        "          stop the Lab left running: make clean-lab",
    ]
