"""No orphans (issue #8 item 5): a runner killed hard leaves its browser running; the reaper stops it.

A real runbook run (DR-AXE in a pytest subprocess) starts the local browser against a page that never answers,
so that the browser is up and busy; the runner is then killed (SIGKILL; TerminateProcess on Windows). Its
chromedriver, its Chromium processes and its profile directory are left behind, and the record it wrote names
them. Then either the reaper (`python -m drivers.reaper DIR`, what `make clean-lab` runs) or a rerun that starts
a browser stops exactly those processes and deletes the profile, while a browser of a run that is still going
(this test process's own) is left alone. A record whose PIDs now belong to other programs kills nothing.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from drivers.browser import browser_session
from drivers.config import Browser
from drivers.reaper import STATE_DIR_ENV, BrowserRecord, RecordedProcess, reap_orphans
from plugins.journal import read_events

ROOT = Path(__file__).resolve().parents[1]
START_CEILING_S = 120.0  # only catches a hang: a runner starts its browser in a few seconds


@pytest.fixture
def hanging_page() -> Iterator[str]:
    """A server on loopback that accepts every connection and never answers: the browser stays busy."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()
    for conn in held:
        conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class KilledRun:
    pid: int
    record: BrowserRecord
    output: str


def runbook_argv(tmp_path: Path, base_url: str, name: str) -> list[str]:
    env_file = tmp_path / f"{name}.toml"
    env_file.write_text(
        f'name = "{name}"\nkind = "remote"\n[service]\nbase_url = "{base_url}"\n'
        '[axe]\npages = ["/"]\n[browser]\npage_timeout_s = 120\n'
        f'[paths]\nlog_dirs = ["{(tmp_path / "logs").as_posix()}"]\ntimeline_dir = "{(tmp_path / "logs").as_posix()}"\n',
        encoding="utf-8",
    )
    return [sys.executable, "-m", "pytest", f"--env-file={env_file}", f"--evidence-dir={tmp_path / name}",
            "-p", "no:cacheprovider", "-m", "dr_axe"]  # fmt: skip


def state_environ(state: Path) -> dict[str, str]:
    return {**os.environ, STATE_DIR_ENV: str(state)}


def kill_runner_once_its_browser_is_up(tmp_path: Path, state: Path, base_url: str) -> KilledRun:
    log = tmp_path / "killed-runner.log"
    with log.open("wb") as out:
        runner = subprocess.Popen(
            runbook_argv(tmp_path, base_url, "Killed"), cwd=ROOT, env=state_environ(state), stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + START_CEILING_S
    record = None
    while record is None:
        if runner.poll() is not None:
            pytest.fail(f"the runner ended before its browser was up:\n{log.read_text(errors='replace')}")
        if time.monotonic() > deadline:
            runner.kill()
            pytest.fail(f"no browser record within {START_CEILING_S:g} s:\n{log.read_text(errors='replace')}")
        for path in state.glob("*.json"):
            found = BrowserRecord.read(path)
            # Up = Chromium on record too (chromedriver is on record from the moment it is spawned).
            if found.runner.pid == runner.pid and any(p.role == "chromium" for p in found.processes):
                record = found
        time.sleep(0.1)
    runner.kill()  # SIGKILL: no finalizer, no atexit, nothing of the runner runs any more
    runner.wait(timeout=30)
    return KilledRun(runner.pid, record, log.read_text(errors="replace"))


def leftovers(record: BrowserRecord) -> list[psutil.Process]:
    """Every running process of that browser: its chromedriver and whatever runs on its profile directory."""
    driver = next(p for p in record.processes if p.role == "chromedriver")
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue  # exited; only its parent's wait is missing
            if (proc.pid, proc.create_time()) == (driver.pid, driver.create_time) or any(
                record.profile_dir in arg for arg in proc.cmdline()
            ):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def test_kill_9_leaves_the_browser_and_the_reaper_stops_it_but_not_a_live_runs(
    tmp_path: Path, hanging_page: str
) -> None:
    state = tmp_path / "browsers"
    killed = kill_runner_once_its_browser_is_up(tmp_path, state, hanging_page)
    left = leftovers(killed.record)
    roles = sorted({p.role for p in killed.record.processes})
    assert roles == ["chromedriver", "chromium"], killed.record
    assert len(left) >= 2, "the kill took the browser with it: nothing to reap"
    assert Path(killed.record.profile_dir).is_dir()
    print(f"\norphans after kill -9: {len(left)} processes (chromedriver + Chromium), profile left")

    # A run still going (this test process) has its own browser on record in the same place.
    with browser_session(Browser(), environ=state_environ(state), allowed_hosts=["127.0.0.1"]) as live:
        live_record = Path(live.info["orphan_record"])
        assert live_record.parent == state
        reap = subprocess.run(
            [sys.executable, "-m", "drivers.reaper", str(state)],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert reap.returncode == 0, reap.stdout + reap.stderr
        assert reap.stdout.startswith("Reaped 1 orphaned browser(s) of killed runs:"), reap.stdout
        assert f"the browser of run {killed.pid} " in reap.stdout
        assert "stopped chromedriver and " in reap.stdout
        assert f"deleted its profile {killed.record.profile_dir}." in reap.stdout
        assert leftovers(killed.record) == []
        assert not Path(killed.record.profile_dir).exists()
        assert not killed.record.path.exists()
        # The live run's browser and record are untouched.
        assert live_record.is_file()
        assert live.driver.execute_script("return 6 * 7") == 42
    assert not live_record.exists(), "a clean quit removes its record"
    assert list(state.iterdir()) == []
    print("orphans after the reaper: 0")


def test_a_rerun_that_starts_a_browser_reaps_what_a_killed_run_left(
    tmp_path: Path, hanging_page: str
) -> None:
    state = tmp_path / "browsers"
    killed = kill_runner_once_its_browser_is_up(tmp_path, state, hanging_page)
    before = len(leftovers(killed.record))
    assert before >= 2
    rerun = subprocess.run(
        runbook_argv(tmp_path, f"http://127.0.0.1:{free_port()}", "Rerun"),
        cwd=ROOT, env=state_environ(state), capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    output = rerun.stdout + rerun.stderr
    assert rerun.returncode == 1, output  # nothing answers there: DR-AXE fails, after the reap
    (bundle,) = (tmp_path / "Rerun").iterdir()
    actions = [e["data"] for e in read_events(bundle / "evidence.jsonl") if e["kind"] == "action"]
    names = [a["name"] for a in actions]
    assert names.index("browser.reap") < names.index("browser.start")
    (reap,) = [a for a in actions if a["name"] == "browser.reap"]
    assert reap["detail"]["runner_pid"] == killed.pid
    assert reap["detail"]["profile_removed"] is True
    assert reap["detail"]["record_removed"] is True
    assert any(s.startswith("chromedriver ") for s in reap["detail"]["stopped"])
    assert reap["result"].startswith(f"the browser of run {killed.pid} ")
    after = leftovers(killed.record)
    assert after == []
    assert not Path(killed.record.profile_dir).exists()
    assert list(state.iterdir()) == [], "the rerun's own browser quit cleanly and removed its record"
    print(f"\norphans after kill -9: {before}; after the rerun: {len(after)}")


def test_the_reaper_kills_no_process_that_merely_reuses_a_recorded_pid(tmp_path: Path) -> None:
    state = tmp_path / "browsers"
    state.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    dead_runner = RecordedProcess.of(psutil.Process(gone.pid), "runner")
    gone.kill()
    gone.wait()
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        real = RecordedProcess.of(psutil.Process(bystander.pid), "chromium")
        profile = tmp_path / "runbook-browser-test"
        profile.mkdir()
        record = BrowserRecord(
            state / "1-a.json",
            dead_runner,
            str(profile),
            processes=(
                # Same PID and start time, another command line: another program now.
                RecordedProcess(
                    "chromedriver", real.pid, real.create_time, ("/usr/bin/chromedriver", "--port=1")
                ),
                # Same PID and command line, another start time: the PID was reused.
                RecordedProcess("chromium", real.pid, real.create_time - 50, real.cmdline),
            ),
        )
        record.write()
        not_ours = BrowserRecord(state / "2-b.json", dead_runner, str(tmp_path))
        not_ours.write()
        (state / "3-c.json").write_text("{ torn", encoding="utf-8")
        reaped = {Path(r.record).name: r for r in reap_orphans(state)}
        assert bystander.poll() is None, "a process that only shares a recorded PID was killed"
        assert reaped["1-a.json"].stopped == []
        assert reaped["1-a.json"].profile_removed is True
        assert not profile.exists()
        assert not record.path.exists()
        # A profile directory the runbook did not make is never deleted; the record stays for a person to look at.
        assert reaped["2-b.json"].problems == [
            f"{tmp_path} is not a runbook browser profile directory, so it was left in place"
        ]
        assert tmp_path.is_dir()
        assert not_ours.path.exists()
        assert reaped["3-c.json"].problems[0].startswith(f"unreadable browser record {state / '3-c.json'}")
        assert reaped["3-c.json"].describe().endswith("delete it by hand.")
        assert json.loads(not_ours.path.read_text(encoding="utf-8"))["runner"]["pid"] == dead_runner.pid
    finally:
        bystander.kill()
        bystander.wait()
