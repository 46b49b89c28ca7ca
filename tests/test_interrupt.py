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
        env_file = runner.tmp_path / "Lab.toml"
        text = (ROOT / "environments" / "Lab.toml").read_text(encoding="utf-8")
        text = text.replace('dir = ".lab"', f'dir = "{runner.lab_dir.as_posix()}"')
        env_file.write_text(edit_env(text), encoding="utf-8")
        cmd = [sys.executable, "-m", "pytest", "-m", marker, f"--env-file={env_file}",
               f"--evidence-dir={runner.reports}", *(["--keep-lab"] if keep else []), "-p", "no:cacheprovider",
               "-rs", *args]  # fmt: skip
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


def assert_interrupted_and_rolled_back(events: list[dict[str, Any]], output: str, code: int) -> None:
    """The evidence of a Ctrl-C in BG-4 under policy on-failure: the interruption journalled, then the rollback to
    blue (succeeded, verified through the public address), RolledBack sent, BG-4 failed, BG-5 blocked, exit 2."""
    assert code == 2, output
    interrupted = index_of(
        events, lambda e: e["kind"] == "warning" and "interrupted by the operator" in e["data"]["message"]
    )
    assert interrupted, output
    assert events[interrupted[0]]["phase"] == "BG-4"
    assert events[interrupted[0]]["data"]["interrupted"] is True
    rollbacks = index_of(events, lambda e: e["kind"] == "rollback" and e["data"].get("result") == "succeeded")
    assert len(rollbacks) == 1, [e["data"] for e in events if e["kind"] == "rollback"]
    rollback = events[rollbacks[0]]["data"]
    assert interrupted[0] < rollbacks[0]
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
    (end,) = [e["data"] for e in events if e["kind"] == "run.end"]
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


def test_ctrl_c_in_the_monitoring_window_rolls_back_and_leaves_no_lab_process(tmp_path: Path) -> None:
    """One Ctrl-C in BG-4: traffic back on blue, verified; the run ends with exit code 2 and stops its Lab."""
    runner = DrillRunner(tmp_path)
    drill = RunningDrill(runner, marker="bluegreen", keep=False, edit_env=lambda t: t)
    try:
        drill.wait_for("monitoring window", monitoring_started)
        pids = lab_pids(runner.lab_dir)
        assert len(pids) == 6, pids  # router, blue and green (web + worker each), webhook sink
        time.sleep(1.5)  # a probe or two into the window
        drill.interrupt()
        code = drill.finish()
    finally:
        drill.kill()
    events = drill.journal()
    assert_interrupted_and_rolled_back(events, drill.output(), code)
    assert [r.pid for r in pids if r.alive()] == [], "the interrupted run left Lab processes running"
    assert lab_checks.lab_state(runner.lab_dir)["status"] == "stopped"
    checked = verify(drill.bundle or Path())
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_ctrl_c_pressed_again_during_the_rollback_is_deferred(tmp_path: Path) -> None:
    """Ctrl-C, then several more while the policy is applied (the rollback takes tens of milliseconds here, so
    the presses come 10 to 300 ms after the first): none breaks the rollback, they are journalled as deferred,
    and the kept Lab is consistent: blue serves 1.0.0 through the public address, green still runs."""
    runner = DrillRunner(tmp_path)
    drill = RunningDrill(runner, marker="bluegreen", keep=True, edit_env=lambda t: t)
    try:
        drill.wait_for("monitoring window", monitoring_started)
        time.sleep(1.0)
        drill.interrupt()
        for gap in (0.01, 0.02, 0.03, 0.05, 0.1, 0.1):
            time.sleep(gap)
            if drill.proc.poll() is None:
                drill.interrupt()
        code = drill.finish()
    finally:
        drill.kill()
        output = drill.output()
    try:
        events = drill.journal()
        assert_interrupted_and_rolled_back(events, output, code)
        deferred = [
            e["data"]
            for e in events
            if e["kind"] == "note" and "deferred until it was done" in e["data"]["message"]
        ]
        assert deferred, output
        assert sum(len(d["pressed"]) for d in deferred) >= 1
        lab = Lab.attach(runner.lab_dir)
        assert lab is not None, "the kept Lab is not consistent (a process of it died)"
        assert lab.router.active() == "blue"
        assert lab_checks.served_version(lab.urls()["public"]) == "1.0.0"
        assert lab_checks.served_version(lab.urls()["green"]) == "1.1.0"
        checked = verify(drill.bundle or Path())
        assert checked.returncode == 0, checked.stdout + checked.stderr
    finally:
        kept = Lab.attach(runner.lab_dir)
        if kept is not None:
            kept.stop()


def test_ctrl_c_after_the_monitoring_window_still_applies_the_policy(tmp_path: Path) -> None:
    """Outside the window (BG-5 waits [slots] standby_s) Ctrl-C is pytest's KeyboardInterrupt; the release applies
    the rollback policy before run.end is journalled: traffic back on blue, verified, exit code 2."""
    runner = DrillRunner(tmp_path)

    def short_window(text: str) -> str:
        return text.replace("duration_s = 10", "duration_s = 2") + "\n[slots]\nstandby_s = 20\n"

    drill = RunningDrill(runner, marker="bluegreen", keep=True, edit_env=short_window)
    try:
        drill.wait_for("BG-5", lambda e: e["kind"] == "phase.start" and e["phase"] == "BG-5")
        time.sleep(0.5)
        drill.interrupt()
        code = drill.finish()
    finally:
        drill.kill()
        output = drill.output()
    try:
        assert code == 2, output
        events = drill.journal()
        kinds = [e["kind"] for e in events]
        end = kinds.index("run.end")
        interrupted = index_of(
            events, lambda e: e["kind"] == "warning" and "interrupted by the operator" in e["data"]["message"]
        )
        rollbacks = index_of(
            events, lambda e: e["kind"] == "rollback" and e["data"].get("result") == "succeeded"
        )
        assert interrupted, output
        assert rollbacks, output
        assert interrupted[0] < rollbacks[0] < end, "the policy must be applied before run.end"
        assert events[rollbacks[0]]["data"]["to_slot"] == "blue"
        assert events[end]["data"]["rollback_ran"] is True
        assert events[end]["data"]["version_to"] == "1.0.0"
        lab = Lab.attach(runner.lab_dir)
        assert lab is not None
        assert lab.router.active() == "blue"
        assert lab_checks.served_version(lab.urls()["public"]) == "1.0.0"
        checked = verify(drill.bundle or Path())
        assert checked.returncode == 0, checked.stdout + checked.stderr
    finally:
        kept = Lab.attach(runner.lab_dir)
        if kept is not None:
            kept.stop()


def test_monitor_stops_at_once_when_asked(stub: Stub) -> None:
    """Monitor.stop ends the window within a poll, not at the end of an interval, and the window is not judged:
    no breach, no alert, interrupted in the result and its summary."""
    stub.route("/health", json_reply(200, {"version": "1.1.0"}))
    stop = threading.Event()
    breaches: list[MonitorResult] = []
    monitor = Monitor(
        Prober(["127.0.0.1"], timeout_s=1.0, retries=0), f"{stub.url}/health", duration_s=30, interval_s=5,
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
    assert len(result.samples) == 1  # the first probe; the next was 5 s away
    assert took < 4.0, f"the monitor waited {took:.2f} s for the end of its interval"


def test_ctrl_c_in_a_single_node_rollback_restores_before_the_run_ends(tmp_path: Path) -> None:
    """Ctrl-C right after RB-2 stopped the site: pytest's KeyboardInterrupt; the site fixture's finalizer runs
    before run.end, with further presses deferred, so the site serves healthy when the run ends (1.1.0 restored,
    or 1.0.0 when RB-3 had already brought it up), and the journal says the operator interrupted it."""
    runner = DrillRunner(tmp_path)
    drill = RunningDrill(runner, marker="rollback", keep=True, edit_env=lambda t: t)
    try:
        drill.wait_for("RB-2's stop", lambda e: e["kind"] == "action" and e["phase"] == "RB-2")
        drill.interrupt()
        time.sleep(0.05)
        if drill.proc.poll() is None:
            drill.interrupt()
        code = drill.finish()
    finally:
        drill.kill()
        output = drill.output()
    try:
        assert code == 2, output
        events = drill.journal()
        kinds = [e["kind"] for e in events]
        end = kinds.index("run.end")
        interrupted = index_of(
            events, lambda e: e["kind"] == "warning" and "interrupted by the operator" in e["data"]["message"]
        )
        assert interrupted, output
        assert interrupted[0] < end
        restores = index_of(events, lambda e: e["kind"] == "rollback" and "node" in e["data"])
        assert all(i < end for i in restores), "a restore after run.end is not in the run's outcome"
        served = lab_checks.served_version(lab_of_kept(runner).urls()["public"])
        assert served in ("1.0.0", "1.1.0")
        if restores:
            assert events[restores[-1]]["data"]["result"] == "succeeded"
            assert served == "1.1.0"
        checked = verify(drill.bundle or Path())
        assert checked.returncode == 0, checked.stdout + checked.stderr
    finally:
        kept = Lab.attach(runner.lab_dir)
        if kept is not None:
            kept.stop()


def lab_of_kept(runner: DrillRunner) -> Lab:
    lab = Lab.attach(runner.lab_dir)
    assert lab is not None, "the kept Lab is not consistent (a process of it died)"
    return lab
