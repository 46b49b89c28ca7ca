"""`--step` (plugins/step.py) as an operator uses it: a rollback drill in a pseudo-terminal, the prompts answered.

Each drill is `python -m pytest -m rollback --env-file=... --step` started on the slave side of a pty (stdin,
stdout and stderr a real terminal, as pytest sees one), its own Lab and evidence directory (tests/conftest.py's
DrillRunner); the test reads the prompts from the master side and types the answers, then reads the journal.
The Lab is kept (--keep-lab) so that what the public address serves afterwards can be checked; the `drill`
fixture stops it by its PIDs.
"""

from __future__ import annotations

import getpass
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from plugins.journal import read_events, verify_bundle
from tests.conftest import ROOT, Drill, DrillRunner

pytestmark = [pytest.mark.lab, pytest.mark.drill]

pty = pytest.importorskip("pty", reason="--step is tested through a POSIX pseudo-terminal")

STEP_PROMPT = re.compile(
    r"Proceed with (?P<phase>[A-Z0-9-]+) on (?P<env>\S+)\? \[y\]es / \[s\]kip / \[a\]bort"
)
FAILURE_PROMPT = re.compile(
    r"(?P<phase>[A-Z0-9-]+) failed: (?P<why>.*)\. \[r\]etry / roll \[b\]ack now / \[a\]bort"
)
# The rows that need no browser: the drills that do not test the browser rows leave them out to stay short.
NO_BROWSER = "rollback and not dr_e2e and not dr_axe"

Answer = Callable[[str, str], str]  # (kind "step" | "failure", phase) -> what the operator types


class StepDrill(Drill):
    prompts: list[tuple[str, str]]


def run_in_pty(
    cmd: list[str], answer: Answer, *, timeout_s: float = 240.0
) -> tuple[int, str, list[tuple[str, str]]]:
    """Run cmd on a pseudo-terminal; answer every prompt it shows; (exit code, what it printed, the prompts)."""
    master, slave = pty.openpty()
    env = {**os.environ, "PY_COLORS": "0", "COLUMNS": "160"}
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        close_fds=True,
    )
    os.close(slave)
    output, scanned, prompts = "", 0, []
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if time.monotonic() > deadline:
                raise AssertionError(f"the drill did not end within {timeout_s:g} s:\n{output[-3000:]}")
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed its side of the terminal
                break
            if not data:
                break
            output += data.decode("utf-8", errors="replace").replace("\r\n", "\n")
            for pattern, kind in ((STEP_PROMPT, "step"), (FAILURE_PROMPT, "failure")):
                for m in pattern.finditer(output, scanned):
                    prompts.append((kind, m["phase"]))
                    os.write(master, (answer(kind, m["phase"]) + "\n").encode())
                    scanned = max(scanned, m.end())
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        os.close(master)
    return code, output, prompts


def step_drill(runner: DrillRunner, answer: Answer, *args: str, marker: str = "rollback",
               edit_env: Callable[[str], str] = lambda text: text) -> StepDrill:  # fmt: skip
    env_file = runner.tmp_path / "Lab.toml"
    text = (ROOT / "environments" / "Lab.toml").read_text(encoding="utf-8")
    env_file.write_text(edit_env(text.replace('dir = ".lab"', f'dir = "{runner.lab_dir.as_posix()}"')))
    cmd = [sys.executable, "-m", "pytest", "-m", marker, f"--env-file={env_file}", f"--evidence-dir={runner.reports}",
           "--keep-lab", "-p", "no:cacheprovider", "-rs", "--step", *args]  # fmt: skip
    before = runner.bundles()
    code, output, prompts = run_in_pty(cmd, answer)
    (bundle,) = runner.bundles() - before
    drill = StepDrill(code, output, bundle, read_events(bundle / "evidence.jsonl"), runner.lab_dir)
    drill.prompts = prompts
    return drill


def approvals(d: Drill, prompt: str = "step") -> list[dict[str, Any]]:
    return [e for e in d.kinds("approval") if e["data"].get("prompt") == prompt]


def reason(d: Drill, phase: str) -> str:
    (end,) = [e for e in d.kinds("phase.end") if e["phase"] == phase]
    return str(end["data"]["reason"])


def test_yes_to_every_phase_runs_the_drill_with_one_approval_per_phase(drill: DrillRunner) -> None:
    """Answering yes at every prompt is the green drill, and the journal holds one approval per phase, by the
    OS user (no --approved-by), each before its phase started; the prompt said what the phase would do."""
    d = step_drill(drill, lambda kind, phase: "y")
    assert d.returncode == 0, d.output[-4000:]
    started = [e["phase"] for e in d.kinds("phase.start")]
    assert [p for kind, p in d.prompts] == started
    asked = approvals(d)
    assert [e["phase"] for e in asked] == started
    assert {e["data"]["answer"] for e in asked} == {"yes"}
    assert {e["data"]["approver"] for e in asked} == {getpass.getuser()}
    start_seq = {e["phase"]: e["seq"] for e in d.kinds("phase.start")}
    late = [e["phase"] for e in asked if e["seq"] > start_seq[e["phase"]]]
    assert not late, f"approved only after the phase started: {late}"
    assert set(d.phase_outcomes().values()) == {"passed"}
    assert d.served_version() == "1.0.0"
    # What RB-3 would do in this run, with the Lab's real package and address, was on the screen before it ran.
    rb3 = d.output[d.output.index("In this run, RB-3") : d.output.index("Proceed with RB-3")]
    assert "MCMS_Setup_1.0.0.zip (version 1.0.0)" in rb3
    assert re.search(r"http://127\.0\.0\.1:\d+/health to answer 200 on 1\.0\.0", rb3), rb3
    assert "Skip: RB-3 is required" in rb3
    assert verify_bundle(d.bundle).ok


def test_skip_at_a_required_row_blocks_the_rest_and_the_gate_says_so(drill: DrillRunner) -> None:
    """Skipping DR-SMOKE (a required row in the Lab) is journalled; the row does not pass silently: the gate
    closes with the operator's skip, every later phase but the recording one is blocked, the run fails."""
    d = step_drill(drill, lambda kind, phase: "s" if phase == "DR-SMOKE" else "y", marker=NO_BROWSER)
    assert d.returncode == 1, d.output[-4000:]
    (skip,) = [e for e in approvals(d) if e["data"]["answer"] == "skip"]
    assert skip["phase"] == "DR-SMOKE"
    assert "skipped by the operator at the step prompt" in skip["data"]["for"]
    outcomes = d.phase_outcomes()
    assert outcomes["DR-SMOKE"] == "failed"
    assert "required check DR-SMOKE was skipped: skipped by the operator at the step prompt" in reason(
        d, "DR-SMOKE"
    )
    assert (outcomes["DR-ZAP"], outcomes["RB-4"], outcomes["RB-5"]) == ("blocked", "blocked", "passed")
    assert "blocked by DR-SMOKE: required check DR-SMOKE was skipped: skipped by the operator" in d.output
    assert [p for _, p in d.prompts] == ["PRE", "RB-1", "RB-2", "RB-3", "DR-SMOKE", "RB-5"]
    assert d.run_end()["blocked_by"] == "DR-SMOKE"
    assert d.served_version() == "1.0.0", "RB-3 brought 1.0.0 back: nothing to restore"


def test_skip_at_a_row_not_required_lets_the_run_go_on(drill: DrillRunner) -> None:
    """With [matrix] required = ["DR-SMOKE"], skipping DR-ZAP skips its tests with the operator's reason and
    the flow goes on to announce the redeploy."""
    d = step_drill(
        drill, lambda kind, phase: "skip" if phase == "DR-ZAP" else "yes", marker=NO_BROWSER,
        edit_env=lambda text: text + '\n[matrix]\nrequired = ["DR-SMOKE"]\n',
    )  # fmt: skip
    assert d.returncode == 0, d.output[-4000:]
    outcomes = d.phase_outcomes()
    assert (outcomes["DR-ZAP"], outcomes["RB-4"]) == ("skipped", "passed")
    assert "Skip: DR-ZAP is not required" in d.output
    assert re.search(r"SKIPPED \[2\] .*: skipped by the operator at the step prompt", d.output), d.output[
        -3000:
    ]
    assert not [e for e in d.kinds("finding") if e["phase"] == "DR-ZAP"]


def test_abort_at_rb3_restores_the_site_and_the_journal_says_so(drill: DrillRunner) -> None:
    """RB-2 stopped the site; aborting at RB-3's prompt stops the run there, and the rollback policy
    (on-failure) restores the release that was serving before: 1.1.0 serves again."""
    d = step_drill(drill, lambda kind, phase: "a" if phase == "RB-3" else "y", marker=NO_BROWSER)
    assert d.returncode == 1, d.output[-4000:]
    assert [p for _, p in d.prompts] == ["PRE", "RB-1", "RB-2", "RB-3"]
    (abort,) = [e for e in approvals(d) if e["data"]["answer"] == "abort"]
    assert abort["phase"] == "RB-3"
    assert reason(d, "RB-3") == "aborted by the operator at RB-3"
    outcomes = d.phase_outcomes()
    assert (outcomes["RB-3"], outcomes["DR-SMOKE"], outcomes["RB-4"], outcomes["RB-5"]) == (
        "failed", "blocked", "blocked", "passed",
    )  # fmt: skip
    deployed = [d.events[i]["data"]["detail"].get("version") for i in d.actions("deploy")]
    assert deployed == ["1.1.0"], f"only the restore deploys after the abort at RB-3: {deployed}"
    (restore,) = [e["data"] for e in d.kinds("rollback") if e["data"].get("node") == "active"]
    assert restore["result"] == "succeeded", restore
    assert "aborted by the operator at RB-3" in restore["reason"]
    assert d.served_version() == "1.1.0"


def test_guided_failure_retry_reruns_the_failed_test_then_abort_stops(drill: DrillRunner) -> None:
    """A failed phase asks retry / roll back now / abort. Retry runs the failed test again for real (the package
    is verified a second time); abort then stops: nothing was stopped, 1.1.0 still serves."""
    answers = iter(["r", "a"])
    d = step_drill(
        drill, lambda kind, phase: next(answers) if kind == "failure" else "y", "--lab-fault", "bad-package-hash",
        marker=NO_BROWSER,
    )  # fmt: skip
    assert d.returncode == 1, d.output[-4000:]
    assert [(k, p) for k, p in d.prompts if k == "failure"] == [("failure", "PRE"), ("failure", "PRE")]
    guided = approvals(d, "failure")
    assert [(e["data"]["answer"], e["data"]["attempt"]) for e in guided] == [("retry", 1), ("abort", 2)]
    assert "SHA-256" in guided[0]["data"]["why"] or "sha256" in guided[0]["data"]["why"].lower()
    verified = [e["data"] for e in d.kinds("action") if e["data"]["name"] == "verify_package"]
    failed_checks = [v for v in verified if v["result"] == "failed"]
    assert len(failed_checks) == 2, "the retry ran the failed test again"
    assert d.phase_outcomes()["PRE"] == "failed"
    notes = [e["data"]["message"] for e in d.kinds("note")]
    assert any(n.startswith("PRE: the operator retries test_packages_present_and_verified") for n in notes), (
        notes
    )
    assert any(n.startswith("aborted by the operator at PRE after it failed: ") for n in notes), notes
    assert not d.actions("stop_site")
    assert d.served_version() == "1.1.0"


def test_guided_failure_roll_back_now_restores_at_once(drill: DrillRunner) -> None:
    """The previous stable package is corrupted after PRE verified it (the test does it while RB-3's prompt
    waits): RB-3's check right before use fails, the operator answers roll back now, and the restore runs at
    once, before the recording phase starts, exactly once: 1.1.0 serves again."""

    def answer(kind: str, phase: str) -> str:
        if kind == "step" and phase == "RB-3":
            package = drill.lab_dir / "artifacts" / "offline" / "MCMS_Setup_1.0.0.zip"
            with package.open("ab") as fh:
                fh.write(b"tampered after PRE")
        return "b" if kind == "failure" else "y"

    d = step_drill(drill, answer, marker=NO_BROWSER)
    assert d.returncode == 1, d.output[-4000:]
    assert ("failure", "RB-3") in d.prompts
    (guided,) = approvals(d, "failure")
    assert (guided["phase"], guided["data"]["answer"]) == ("RB-3", "roll back")
    restores = d.index(lambda e: e["kind"] == "rollback" and e["data"].get("node") == "active")
    assert len(restores) == 1, "the restore ran once: the fixture's finalizer had nothing left to undo"
    (at,) = restores
    assert d.events[at]["data"]["result"] == "succeeded", d.events[at]
    (rb5,) = d.index(lambda e: e["kind"] == "phase.start" and e["phase"] == "RB-5")
    assert at < rb5, "roll back now restores at once, before the run goes on"
    notes = [e["data"]["message"] for e in d.kinds("note")]
    assert any(n.startswith("rolled back by the operator at RB-3 after it failed: ") for n in notes), notes
    assert re.search(r"rollback \S+ -> 1\.1\.0: succeeded", d.output), "the operator saw the restore at once"
    assert d.served_version() == "1.1.0"


def test_bluegreen_prompts_name_the_idle_slot_and_the_switch(drill: DrillRunner) -> None:
    """In a Blue/Green release the prompts say what PRE found: BG-1 goes to the idle slot green at its own
    address while blue keeps serving, BG-4 switches the public address to green; yes to all releases 1.1.0."""
    d = step_drill(drill, lambda kind, phase: "y", marker="bluegreen and not dr_e2e and not dr_axe")
    assert d.returncode == 0, d.output[-4000:]
    started = [e["phase"] for e in d.kinds("phase.start")]
    assert [e["phase"] for e in approvals(d)] == started
    assert "BG-4" in started
    bg1 = d.output[d.output.index("In this run, BG-1") : d.output.index("Proceed with BG-1")]
    assert re.search(
        r"the idle slot green at http://127\.0\.0\.1:\d+; the live slot blue keeps serving", bg1
    ), bg1
    assert "package MCMS_Setup_1.1.0.zip (version 1.1.0)" in bg1
    bg4 = d.output[d.output.index("In this run, BG-4") : d.output.index("Proceed with BG-4")]
    assert re.search(r"switches http://127\.0\.0\.1:\d+ to green", bg4), bg4
    assert "a breach sends traffic back to blue at once" in bg4
    assert d.served_version() == "1.1.0"


def test_bluegreen_failure_after_the_switch_is_back_on_blue_before_the_question(drill: DrillRunner) -> None:
    """green degrades after the switch: the monitor sends traffic back to blue at once, before the operator is
    asked anything; roll back now then says so and rolls back nothing twice."""
    d = step_drill(
        drill, lambda kind, phase: "b" if kind == "failure" else "y", "--lab-fault", "green-degrades-after-switch",
        marker="bluegreen and not dr_e2e and not dr_axe",
    )  # fmt: skip
    assert d.returncode == 1, d.output[-4000:]
    assert ("failure", "BG-4") in d.prompts
    (guided,) = approvals(d, "failure")
    back = d.index(lambda e: e["kind"] == "rollback" and e["data"].get("to_slot") == "blue" and "result" in e["data"]
                   and e["data"]["result"] == "succeeded")  # fmt: skip
    assert len(back) == 1, [e["data"] for e in d.kinds("rollback")]
    assert d.events[back[0]]["seq"] < guided["seq"], "traffic went back before the operator was asked"
    assert "Nothing to roll back now: traffic is back on blue already" in d.output
    assert d.served_version() == "1.0.0"


def test_step_without_a_terminal_is_a_usage_error(drill: DrillRunner, tmp_path: Path) -> None:
    """stdin a pipe (CI, a scheduled task): exit 4 naming --step, before the Lab or any evidence exists."""
    env_file = tmp_path / "Lab.toml"
    text = (ROOT / "environments" / "Lab.toml").read_text(encoding="utf-8")
    env_file.write_text(text.replace('dir = ".lab"', f'dir = "{drill.lab_dir.as_posix()}"'))
    cmd = [sys.executable, "-m", "pytest", "-m", "rollback", f"--env-file={env_file}",
           f"--evidence-dir={drill.reports}", "-p", "no:cacheprovider", "--step"]  # fmt: skip
    proc = subprocess.run(
        cmd, cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, output
    assert "--step: needs a terminal to ask the operator before each phase, and stdin is not one" in output
    assert "Traceback" not in output
    assert not drill.reports.exists(), "no evidence: nothing may be touched"
    assert not drill.lab_dir.exists(), "no Lab: nothing may be touched"


def test_step_under_xdist_is_a_usage_error(drill: DrillRunner, tmp_path: Path) -> None:
    """-n with --step: exit 4 naming both, even on a terminal."""
    env_file = tmp_path / "Lab.toml"
    text = (ROOT / "environments" / "Lab.toml").read_text(encoding="utf-8")
    env_file.write_text(text.replace('dir = ".lab"', f'dir = "{drill.lab_dir.as_posix()}"'))
    cmd = [sys.executable, "-m", "pytest", "-m", "dr_smoke", f"--env-file={env_file}",
           f"--evidence-dir={drill.reports}", "-p", "no:cacheprovider", "-n", "2", "--step"]  # fmt: skip
    code, output, prompts = run_in_pty(cmd, lambda kind, phase: "y", timeout_s=60)
    assert code == pytest.ExitCode.USAGE_ERROR, output
    assert "--step: the operator approves each phase at the terminal" in output
    assert "cannot run under -n 2" in output
    assert prompts == []
    assert not drill.reports.exists()
    assert not drill.lab_dir.exists()
