"""Ctrl-C during a Blue/Green release (issue #11, item 6): real Lab drills in a pytest subprocess, interrupted by
SIGINT sent to that process the way a terminal's Ctrl-C does.

In the monitoring window (BG-4) the runbook handles SIGINT itself (fixtures.rollback.OperatorInterrupt): the
window ends, the rollback policy applies (on-failure: traffic back to the previously live slot, verified), the
journal says "interrupted by the operator", further presses are deferred, and the run ends with exit code 2.
Elsewhere after the switch pytest's KeyboardInterrupt ends the session and the release applies the policy before
run.end is journalled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from drivers.monitor import Monitor, MonitorResult
from drivers.probe import Prober
from lab import Lab
from lab.procs import ProcessRecord
from plugins.journal import read_events
from tests import lab_checks
from tests.conftest import ROOT, DrillRunner
from tests.http_stub import Stub, json_reply

WAIT_S = 90.0  # a Lab release reaches its monitoring window in about 15 s here; bounded well above


class RunningDrill:
    """A drill started with Popen (DrillRunner runs to completion): its journal can be read while it runs."""

    def __init__(
        self, runner: DrillRunner, *args: str, marker: str, keep: bool, edit_env: Callable[[str], str]
    ):
        self.runner = runner
        before = runner.bundles()
        cmd = runner.command(*args, marker=marker, keep=keep, edit_env=edit_env)
        self.log = (runner.tmp_path / "drill.log").open("w+", encoding="utf-8")
        # Its own process group: a hung run is stopped by that group, never by name.
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        self.before = before
        self.bundle: Path | None = None

    def events(self) -> list[dict[str, Any]]:
        if self.bundle is None:
            new = self.runner.bundles() - self.before
            if not new:
                return []
            (self.bundle,) = new
        journal = self.bundle / "evidence.jsonl"
        return read_events(journal, strict=False) if journal.exists() else []

    def wait_for(self, what: str, predicate: Callable[[dict[str, Any]], bool]) -> None:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if any(predicate(e) for e in self.events()):
                return
            if self.proc.poll() is not None:
                pytest.fail(f"the drill ended (exit {self.proc.returncode}) before {what}:\n{self.output()}")
            time.sleep(0.05)
        self.kill()
        pytest.fail(f"no {what} within {WAIT_S:g} s:\n{self.output()}")

    def interrupt(self) -> None:
        os.kill(self.proc.pid, signal.SIGINT)

    def finish(self) -> int:
        try:
            return self.proc.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the interrupted drill did not end within {WAIT_S:g} s:\n{self.output()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(encoding="utf-8")

    def journal(self) -> list[dict[str, Any]]:
        assert self.bundle is not None
        return read_events(self.bundle / "evidence.jsonl", seal=False)


def monitoring_started(event: dict[str, Any]) -> bool:
    return event["kind"] == "note" and event["data"].get("monitoring") == "started"


def lab_pids(lab_dir: Path) -> list[ProcessRecord]:
    """Every process the Lab's state.json names (router, both slots' web and worker, the webhook sink)."""
    state = lab_checks.lab_state(lab_dir)
    records = [r for node in state["nodes"].values() for r in (node.get("processes") or {}).values()]
    router = (state.get("router") or {}).get("process")
    records += [r for r in (router, state.get("sink")) if r]
    return [ProcessRecord.from_json(r) for r in records]


def index_of(events: list[dict[str, Any]], predicate: Callable[[dict[str, Any]], bool]) -> list[int]:
    return [i for i, e in enumerate(events) if predicate(e)]


def verify(bundle: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plugins.evidence", "verify", str(bundle)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def is_interruption(event: dict[str, Any]) -> bool:
    return event["kind"] == "warning" and "interrupted by the operator" in event["data"]["message"]


def is_rollback_succeeded(event: dict[str, Any]) -> bool:
    return event["kind"] == "rollback" and event["data"].get("result") == "succeeded"


@dataclass
class Interrupted:
    """A drill interrupted by Ctrl-C, once it passed the checks every interrupted run must pass (interrupt_drill)."""

    output: str
    events: list[dict[str, Any]]
    interrupted: int  # the journal position of the first "interrupted by the operator" warning
    end: int  # the journal position of run.end (after `interrupted`)
    pids: list[ProcessRecord]  # the Lab's processes when the first Ctrl-C was pressed
    lab_dir: Path

    def index(self, predicate: Callable[[dict[str, Any]], bool]) -> list[int]:
        return index_of(self.events, predicate)

    def kept_lab(self) -> Lab:
        lab = Lab.attach(self.lab_dir)
        assert lab is not None, "the kept Lab is not consistent (a process of it died)"
        return lab


def interrupt_drill(
    runner: DrillRunner,
    *,
    marker: str,
    keep: bool,
    when: tuple[str, Callable[[dict[str, Any]], bool]],
    after_s: float = 0.0,
    again_after_s: tuple[float, ...] = (),
    edit_env: Callable[[str], str] = lambda text: text,
) -> Interrupted:
    """Start a drill; once an event `when` names (what, predicate) is journalled, wait `after_s` and press Ctrl-C,
    then press again after each gap of `again_after_s` while the run lasts. Then what every interrupted run must
    show: exit code 2, the interruption journalled before run.end, a bundle `plugins.evidence verify` accepts.
    A Lab the run kept is stopped by the `drill` fixture that made `runner`."""
    running = RunningDrill(runner, marker=marker, keep=keep, edit_env=edit_env)
    try:
        running.wait_for(*when)
        pids = lab_pids(runner.lab_dir)
        time.sleep(after_s)
        running.interrupt()
        for gap in again_after_s:
            time.sleep(gap)
            if running.proc.poll() is None:
                running.interrupt()
        code = running.finish()
    finally:
        running.kill()
    output = running.output()
    assert code == 2, output
    events = running.journal()
    (end,) = index_of(events, lambda e: e["kind"] == "run.end")
    interrupted = index_of(events, is_interruption)
    assert interrupted, output
    assert interrupted[0] < end, "the interruption must be journalled before run.end"
    checked = verify(running.bundle or Path())
    assert checked.returncode == 0, checked.stdout + checked.stderr
    return Interrupted(output, events, interrupted[0], end, pids, runner.lab_dir)


def assert_rolled_back_to_blue(run: Interrupted) -> None:
    """The evidence of a Ctrl-C in BG-4 under policy on-failure (besides interrupt_drill's): the interruption
    journalled in BG-4, then the rollback to blue (succeeded, verified through the public address), RolledBack
    sent, BG-4 failed, BG-5 blocked, the run failed with exit status 2."""
    events, output = run.events, run.output
    assert events[run.interrupted]["phase"] == "BG-4"
    assert events[run.interrupted]["data"]["interrupted"] is True
    rollbacks = run.index(is_rollback_succeeded)
    assert len(rollbacks) == 1, [e["data"] for e in events if e["kind"] == "rollback"]
    rollback = events[rollbacks[0]]["data"]
    assert run.interrupted < rollbacks[0]
    assert rollback["to_slot"] == "blue"
    assert rollback["from_slot"] == "green"
    assert rollback["to"] == "1.0.0"
    assert "interrupted by the operator" in rollback["reason"]
    assert "serves 1.0.0 from blue" in rollback["detail"]
    switches = [
        e["data"]["target"] for e in events if e["kind"] == "action" and e["data"]["name"] == "switch_traffic"
    ]
    assert switches == ["green", "blue"]
    notified = [(e["data"]["event_type"], e["data"]["delivery"]) for e in events if e["kind"] == "notify"]
    assert ("RolledBack", "delivered") in notified
    outcomes = {e["phase"]: e["data"] for e in events if e["kind"] == "phase.end"}
    assert outcomes["BG-4"]["outcome"] == "failed"
    assert "interrupted by the operator (Ctrl-C) during the monitoring window" in outcomes["BG-4"]["reason"]
    assert "traffic sent back to blue: succeeded" in outcomes["BG-4"]["reason"]
    assert outcomes["BG-5"]["outcome"] == "blocked"
    end = events[run.end]["data"]
    assert end["exitstatus"] == 2
    assert end["outcome"] == "failed"
    assert end["rollback_ran"] is True
    assert end["version_to"] == "1.0.0"
    (monitor,) = [e["data"] for e in events if e["kind"] == "monitor.result"]
    assert monitor["summary"]["interrupted"] is True
    assert monitor["summary"]["breach"] is None
    assert "interrupted by the operator (Ctrl-C)" in output
    assert "Traceback" not in output
    assert "KeyboardInterrupt" not in output


IN_THE_WINDOW = ("monitoring window", monitoring_started)


def test_ctrl_c_in_the_monitoring_window_rolls_back_and_leaves_no_lab_process(drill: DrillRunner) -> None:
    """One Ctrl-C in BG-4: traffic back on blue, verified; the run ends with exit code 2 and stops its Lab."""
    # A probe or two into the window.
    run = interrupt_drill(drill, marker="bluegreen", keep=False, when=IN_THE_WINDOW, after_s=1.5)
    assert len(run.pids) == 6, run.pids  # router, blue and green (web + worker each), webhook sink
    assert_rolled_back_to_blue(run)
    assert [r.pid for r in run.pids if r.alive()] == [], "the interrupted run left Lab processes running"
    assert lab_checks.lab_state(drill.lab_dir)["status"] == "stopped"


def test_ctrl_c_pressed_again_during_the_rollback_is_deferred(drill: DrillRunner) -> None:
    """Ctrl-C, then several more while the policy is applied (the rollback takes tens of milliseconds here, so
    the presses come 10 to 300 ms after the first): none breaks the rollback, they are journalled as deferred,
    and the kept Lab is consistent: blue serves 1.0.0 through the public address, green still runs."""
    run = interrupt_drill(
        drill, marker="bluegreen", keep=True, when=IN_THE_WINDOW, after_s=1.0,
        again_after_s=(0.01, 0.02, 0.03, 0.05, 0.1, 0.1),
    )  # fmt: skip
    assert_rolled_back_to_blue(run)
    deferred = [
        e["data"]
        for e in run.events
        if e["kind"] == "note" and "deferred until it was done" in e["data"]["message"]
    ]
    assert deferred, run.output
    assert sum(len(d["pressed"]) for d in deferred) >= 1
    lab = run.kept_lab()
    assert lab.router.active() == "blue"
    assert lab_checks.served_version(lab.urls()["public"]) == "1.0.0"
    assert lab_checks.served_version(lab.urls()["green"]) == "1.1.0"


def test_ctrl_c_after_the_monitoring_window_still_applies_the_policy(drill: DrillRunner) -> None:
    """Outside the window (BG-5 waits [slots] standby_s) Ctrl-C is pytest's KeyboardInterrupt; the release applies
    the rollback policy before run.end is journalled: traffic back on blue, verified, exit code 2."""

    def short_window(text: str) -> str:
        return text.replace("duration_s = 10", "duration_s = 2") + "\n[slots]\nstandby_s = 20\n"

    run = interrupt_drill(
        drill, marker="bluegreen", keep=True, edit_env=short_window, after_s=0.5,
        when=("BG-5", lambda e: e["kind"] == "phase.start" and e["phase"] == "BG-5"),
    )  # fmt: skip
    rollbacks = run.index(is_rollback_succeeded)
    assert rollbacks, run.output
    assert run.interrupted < rollbacks[0] < run.end, "the policy must be applied before run.end"
    assert run.events[rollbacks[0]]["data"]["to_slot"] == "blue"
    assert run.events[run.end]["data"]["rollback_ran"] is True
    assert run.events[run.end]["data"]["version_to"] == "1.0.0"
    lab = run.kept_lab()
    assert lab.router.active() == "blue"
    assert lab_checks.served_version(lab.urls()["public"]) == "1.0.0"


def test_monitor_stops_at_once_when_asked(stub: Stub) -> None:
    """Monitor.stop ends the window within a poll, not at the end of an interval, and the window is not judged:
    no breach, no alert, interrupted in the result and its summary."""
    stub.route("/health", json_reply(200, {"version": "1.1.0"}))
    stop = threading.Event()
    breaches: list[MonitorResult] = []
    monitor = Monitor(
        Prober(["127.0.0.1"], timeout_s=1.0, retries=0), f"{stub.url}/health", duration_s=600, interval_s=120,
        sla_p95_ms=800, max_error_rate=0.0, alert_after_failures=2, expect_version="1.1.0",
        on_breach=breaches.append, stop=stop,
    )  # fmt: skip
    timer = threading.Timer(0.5, stop.set)
    timer.start()
    began = time.monotonic()
    result = monitor.run()
    took = time.monotonic() - began
    timer.join()
    assert result.interrupted
    assert result.summary()["interrupted"] is True
    assert result.breach is None
    assert breaches == []
    assert not result.alert_fired
    assert len(result.samples) == 1  # the first probe; the next was 120 s away
    # Not a speed target: a monitor that waited for the end of its interval would take 120 s, not a poll.
    assert took < 60, f"the monitor waited {took:.2f} s for the end of its interval"


def test_ctrl_c_in_a_single_node_rollback_restores_before_the_run_ends(drill: DrillRunner) -> None:
    """Ctrl-C right after RB-2 stopped the site: pytest's KeyboardInterrupt; the site fixture's finalizer runs
    before run.end, with further presses deferred, so the site serves healthy when the run ends (1.1.0 restored,
    or 1.0.0 when RB-3 had already brought it up), and the journal says the operator interrupted it."""
    run = interrupt_drill(
        drill, marker="rollback", keep=True, again_after_s=(0.05,),
        when=("RB-2's stop", lambda e: e["kind"] == "action" and e["phase"] == "RB-2"),
    )  # fmt: skip
    restores = run.index(lambda e: e["kind"] == "rollback" and "node" in e["data"])
    assert all(i < run.end for i in restores), "a restore after run.end is not in the run's outcome"
    served = lab_checks.served_version(run.kept_lab().urls()["public"])
    assert served in ("1.0.0", "1.1.0")
    if restores:
        assert run.events[restores[-1]]["data"]["result"] == "succeeded"
        assert served == "1.1.0"
