"""Orphaned local browsers: what a started browser leaves on record, and the reaper of a killed run's browser.

A runner killed hard (SIGKILL, a cancelled CI job, a closed terminal) runs no finalizer: its chromedriver and
Chromium keep running and its profile directory stays on disk. So the local browser keeps a record from the
moment it starts until it quits cleanly: one small JSON file per browser in `<project root>/.runbook/browsers/`
(RUNBOOK_BROWSER_STATE_DIR overrides it), written atomically, naming the runner (PID, start time, command
line), chromedriver and Chromium's processes (the same) and the profile directory.

`reap_orphans` stops what the records of dead runners name and deletes their profile directories and records;
a record whose runner is alive is never touched, so two runs can go at once. Nothing is found or killed by
name: a process is stopped only while its PID, start time and command line are the ones recorded (a reused
PID is another program), together with the processes it started since (its process tree). psutil does the
process work, the same on Linux and Windows.

Callers: the browser fixture before a browser starts, `make clean-lab` (`python -m drivers.reaper`), and PRE.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psutil  # loaded where processes are looked at: a run without a browser never needs it


__all__ = [
    "PROFILE_PREFIX",
    "STATE_DIR_ENV",
    "BrowserRecord",
    "Reaped",
    "RecordedProcess",
    "describe_reaped",
    "reap_orphans",
    "state_dir",
    "stop_processes",
]

STATE_DIR_ENV = "RUNBOOK_BROWSER_STATE_DIR"
# The local browser's profile directories are made with this prefix; the reaper deletes nothing else.
PROFILE_PREFIX = "runbook-browser-"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
RECORD_FORMAT = 1
# psutil derives a start time from the boot time and the process's start tick: the same process reads the same
# from any process on the machine. The margin only absorbs float noise; the command line must match as well.
_START_TIME_MARGIN_S = 1.0
_STOP_TIMEOUT_S = 10.0


def state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where the browser records are kept: RUNBOOK_BROWSER_STATE_DIR, else <project root>/.runbook/browsers."""
    environ = os.environ if environ is None else environ
    configured = environ.get(STATE_DIR_ENV, "")
    return Path(configured).expanduser() if configured else PROJECT_ROOT / ".runbook" / "browsers"


@dataclass(frozen=True)
class RecordedProcess:
    """A process as it was when recorded: what identifies it later, whatever else reuses its PID."""

    role: str  # runner | chromedriver | chromium
    pid: int
    create_time: float
    cmdline: tuple[str, ...]

    @classmethod
    def of(cls, proc: psutil.Process, role: str) -> RecordedProcess:
        with proc.oneshot():
            return cls(role, proc.pid, proc.create_time(), tuple(proc.cmdline()))

    def find(self, *, check_cmdline: bool = True) -> psutil.Process | None:
        """The running process that is this one (same PID, start time and command line), else None."""
        import psutil

        try:
            proc = psutil.Process(self.pid)
            with proc.oneshot():
                # A zombie has exited; only its parent's wait is missing (PID 1 of a container may never do it).
                if proc.status() == psutil.STATUS_ZOMBIE:
                    return None
                if abs(proc.create_time() - self.create_time) > _START_TIME_MARGIN_S:
                    return None
                if check_cmdline and tuple(proc.cmdline()) != self.cmdline:
                    return None
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return None
        return proc

    def describe(self) -> str:
        return f"{self.role} {self.pid}"

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "pid": self.pid,
            "create_time": self.create_time,
            "cmdline": list(self.cmdline),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RecordedProcess:
        return cls(
            str(data["role"]),
            int(data["pid"]),
            float(data["create_time"]),
            tuple(str(a) for a in data["cmdline"]),
        )


@dataclass(frozen=True)
class BrowserRecord:
    """One started local browser: its runner, its processes and its profile directory, in `path`."""

    path: Path
    runner: RecordedProcess
    profile_dir: str
    processes: tuple[RecordedProcess, ...] = ()
    started_at: str = ""

    @classmethod
    def new(cls, directory: Path, profile_dir: Path) -> BrowserRecord:
        """The record of a browser about to start in `profile_dir`, for this process as its runner."""
        import psutil

        runner = RecordedProcess.of(psutil.Process(), "runner")
        return cls(
            path=directory / f"{runner.pid}-{profile_dir.name}.json",
            runner=runner,
            profile_dir=str(profile_dir),
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )

    def with_driver(self, driver_pid: int, argv: Sequence[str] | None = None) -> BrowserRecord:
        """The record with chromedriver (`driver_pid`) and the Chromium processes it has started.

        `argv`: chromedriver's command line as it was started; right after the spawn the child may not have
        exec'd yet (its /proc command line is still its parent's), so the one given is what it will show."""
        import psutil

        driver = psutil.Process(driver_pid)
        recorded = RecordedProcess.of(driver, "chromedriver")
        if argv is not None:
            recorded = replace(recorded, cmdline=tuple(argv))
        found = [recorded]
        for child in driver.children(recursive=True):
            try:
                found.append(RecordedProcess.of(child, "chromium"))
            except psutil.Error:  # a helper process that ended meanwhile needs no record
                continue
        return replace(self, processes=tuple(found))

    def write(self) -> None:
        """Write atomically (a reader sees the old record or the new one, never half of one)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.to_json(), indent=1)
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def runner_alive(self) -> bool:
        # PID and start time say whether it is the same process; its command line may be rewritten by the program.
        return self.runner.find(check_cmdline=False) is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "format": RECORD_FORMAT,
            "started_at": self.started_at,
            "runner": self.runner.to_json(),
            "profile_dir": self.profile_dir,
            "processes": [p.to_json() for p in self.processes],
        }

    @classmethod
    def read(cls, path: Path) -> BrowserRecord:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            path=path,
            runner=RecordedProcess.from_json(data["runner"]),
            profile_dir=str(data["profile_dir"]),
            processes=tuple(RecordedProcess.from_json(p) for p in data.get("processes", [])),
            started_at=str(data.get("started_at", "")),
        )


@dataclass
class Reaped:
    """What the reaper did about one record of a dead runner."""

    record: str
    runner_pid: int
    started_at: str
    stopped: list[str] = field(default_factory=list)  # "chromedriver 4242", "chromium 4250", ...
    profile_dir: str = ""
    profile_removed: bool = False
    record_removed: bool = False
    problems: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """One sentence for an operator."""
        if not self.runner_pid:  # a record that could not be read names no run
            return "; ".join(self.problems) + "."
        drivers = sum(s.startswith("chromedriver ") for s in self.stopped)
        others = len(self.stopped) - drivers
        pieces = (["chromedriver"] if drivers else []) + (
            [f"{others} Chromium process{'es' if others != 1 else ''}"] if others else []
        )
        if pieces:
            pids = ", ".join(s.rpartition(" ")[2] for s in self.stopped)
            what = f"stopped {' and '.join(pieces)} (PID {pids})"
        else:
            what = "none of its processes was still running"
        if self.profile_removed:
            where = f"; deleted its profile {self.profile_dir}"
        elif not self.profile_dir or not Path(self.profile_dir).exists():
            where = "; its profile directory was gone already"
        else:
            where = ""  # kept: the problem below says why
        text = f"the browser of run {self.runner_pid} (started {self.started_at or 'at an unknown time'}; that run has ended): {what}{where}"
        if self.problems:
            text += "; NOT done: " + "; ".join(self.problems)
        return text + "."

    def to_json(self) -> dict[str, Any]:
        return {
            "record": self.record, "runner_pid": self.runner_pid, "started_at": self.started_at,
            "stopped": list(self.stopped), "profile_dir": self.profile_dir,
            "profile_removed": self.profile_removed, "record_removed": self.record_removed,
            "problems": list(self.problems),
        }  # fmt: skip


def stop_processes(
    processes: Iterable[RecordedProcess], timeout_s: float = _STOP_TIMEOUT_S
) -> tuple[list[str], list[str]]:
    """Kill the recorded processes that are still the ones recorded, with the processes each started since.

    Returns what was stopped ("chromedriver 4242", "chromium 4250", ...) and the problems in words. A process
    whose PID now runs something else is left alone; so is one that has exited already.
    """
    import psutil

    targets: dict[int, tuple[psutil.Process, str]] = {}
    for recorded in processes:
        proc = recorded.find()
        if proc is None:
            continue
        targets[proc.pid] = (proc, recorded.role)
        try:
            # Its descendants belong to it whatever they are called; they are found through it, never by name.
            for child in proc.children(recursive=True):
                targets.setdefault(child.pid, (child, "chromium"))
        except psutil.Error:
            continue
    problems: list[str] = []
    for proc, role in targets.values():
        try:
            proc.kill()  # SIGKILL on POSIX, TerminateProcess on Windows: an orphan has nothing left to save
        except psutil.NoSuchProcess:
            continue
        except psutil.AccessDenied:
            problems.append(f"not allowed to stop {role} {proc.pid} (run as the user who started it)")
    deadline = time.monotonic() + timeout_s
    remaining = {pid for pid in targets if _running(targets[pid][0])}
    while remaining and time.monotonic() < deadline:
        time.sleep(0.05)
        remaining = {pid for pid in remaining if _running(targets[pid][0])}
    problems += [
        f"{targets[pid][1]} {pid} still runs {timeout_s:g} s after it was killed" for pid in sorted(remaining)
    ]
    stopped = [f"{role} {pid}" for pid, (_, role) in targets.items() if pid not in remaining]
    return stopped, problems


def on_profile(profile_dir: str) -> list[RecordedProcess]:
    """The browser processes started with this record's own profile (`--user-data-dir=<it>`, a unique temporary
    directory the runbook made): found by that argument, never by name, for a run killed before its record
    named them."""
    import psutil

    if not profile_dir or not Path(profile_dir).name.startswith(PROFILE_PREFIX):
        return []
    flag = f"--user-data-dir={profile_dir}"
    found = []
    for proc in psutil.process_iter():
        try:
            if flag in proc.cmdline():
                found.append(RecordedProcess.of(proc, "chromium"))
        except psutil.Error:
            continue
    return found


def _running(proc: psutil.Process) -> bool:
    import psutil

    try:
        # is_running() also compares the start time, so a reused PID reads as gone.
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def remove_profile(profile_dir: str) -> tuple[bool, str | None]:
    """Delete a runbook browser profile directory; anything else is refused. (removed, problem)."""
    path = Path(profile_dir)
    if not path.exists():
        return False, None
    if not path.name.startswith(PROFILE_PREFIX) or path.is_symlink() or not path.is_dir():
        return False, f"{path} is not a runbook browser profile directory, so it was left in place"
    for attempt in range(20):  # Windows releases a killed browser's files a moment later
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            return True, None
        time.sleep(0.05 * (attempt + 1))
    return False, f"could not delete the profile {path}"


def reap_orphans(directory: Path | None = None) -> list[Reaped]:
    """Stop the browsers whose runner has died, delete their profile directories and records.

    `directory` defaults to `state_dir()`. Records of live runners are left alone (another run may be using its
    browser right now). Returns one `Reaped` per record of a dead runner; an empty list when there was none.
    """
    directory = state_dir() if directory is None else directory
    if not directory.is_dir():
        return []
    reaped: list[Reaped] = []
    for path in sorted(directory.glob("*.json")):
        try:
            record = BrowserRecord.read(path)
        except FileNotFoundError:  # its runner quit cleanly meanwhile
            continue
        except (OSError, ValueError, KeyError, TypeError) as exc:
            reaped.append(
                Reaped(
                    str(path),
                    0,
                    "",
                    problems=[f"unreadable browser record {path} ({exc}); delete it by hand"],
                )
            )
            continue
        if record.runner_alive():
            continue
        done = Reaped(str(path), record.runner.pid, record.started_at, profile_dir=record.profile_dir)
        done.stopped, done.problems = stop_processes([*record.processes, *on_profile(record.profile_dir)])
        if (
            not done.problems
        ):  # a profile still in use by a browser that would not stop is kept with its record
            done.profile_removed, problem = remove_profile(record.profile_dir)
            if problem:
                done.problems.append(problem)
        if not done.problems:
            record.remove()
            done.record_removed = True
        reaped.append(done)
    return reaped


def describe_reaped(reaped: list[Reaped]) -> str:
    """What the reaper did, in one or a few sentences."""
    if not reaped:
        return "No orphaned browser to reap."
    head = f"Reaped {len(reaped)} orphaned browser(s) of killed runs:"
    return "\n".join([head, *(f"- {r.describe()}" for r in reaped)])


def main(argv: list[str] | None = None) -> int:
    """`python -m drivers.reaper [DIR]`: reap and say what was done (exit 1 when something could not be)."""
    args = sys.argv[1:] if argv is None else argv
    reaped = reap_orphans(Path(args[0]) if args else None)
    print(describe_reaped(reaped))
    return 1 if any(r.problems for r in reaped) else 0


if __name__ == "__main__":
    raise SystemExit(main())
