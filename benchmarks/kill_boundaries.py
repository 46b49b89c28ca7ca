"""A SIGKILL of the runner at each phase boundary of the rollback drill, then a rerun (issue #8 item 5, #12).

For each boundary (the moment the journal of the run's bundle, evidence.jsonl, gets the `phase.start` event of
that phase; the file is polled) the drill `pytest -m rollback` runs as an operator runs it, a pytest subprocess
on its own Lab directory, evidence directory and browser state directory (RUNBOOK_BROWSER_STATE_DIR), and its
runner is killed there: suspended (so that it starts nothing more), its descendants noted, then SIGKILLed
(TerminateProcess on Windows), its PID only. Then:

1. the journal must be a valid prefix: `verify_bundle` says the chain is intact and the bundle not sealed;
2. what the killed run left is counted: its browser processes (the records in the state directory, the
   processes running on its profile directory, and its descendants), its profile directories, and the Lab
   processes recorded in <lab dir>/state.json; a process is identified by PID and start time, so a reused
   PID is not miscounted;
3. the same drill runs again to completion on the same Lab and state directories with a new evidence
   directory and --keep-lab, then the same processes, profiles and records are counted again, and the kept
   Lab's public address is read (/health must answer 200 Healthy with the version the drill deploys, 1.0.0)
   before that Lab is stopped.

Prints one table and the details of anything left; asserts nothing on timing. Exit 0 when every boundary
converged with nothing left, 1 otherwise.

    python -m benchmarks.kill_boundaries [--boundaries RB-2,DR-AXE] [--keep-going] [--after-ms N]

--after-ms N kills N ms after the boundary instead, to probe inside a phase (e.g. `--boundaries DR-E2E
--after-ms 400` kills while the browser starts, `--boundaries RB-3 --after-ms 10` sometimes while the new
release's processes are being spawned). A process that no record names (nor descends from one that is named)
is listed as "on no record": no rerun can find it.

"killed at" is the time from the drill's start to the kill; "lag" the time from the boundary's `phase.start`
timestamp to the kill (how far into the phase the runner got). Without --keep-going the first boundary that
fails ends the benchmark.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from drivers.reaper import PROFILE_PREFIX, STATE_DIR_ENV, BrowserRecord, reap_orphans, remove_profile
from lab import PREVIOUS_STABLE, Lab, LabError
from lab import procs as lab_procs
from lab.supervisor import _read_state, _records
from plugins.journal import JOURNAL_NAME, VerifyResult, read_events, verify_bundle

__all__ = [
    "PHASES",
    "Boundary",
    "KillDrill",
    "Killed",
    "Left",
    "Proc",
    "Rerun",
    "Served",
    "main",
]

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("PRE", "RB-1", "RB-2", "RB-3", "DR-SMOKE", "DR-E2E", "DR-AXE", "DR-ZAP", "RB-4", "RB-5")
DRILL_VERSION = PREVIOUS_STABLE  # what RB-3 lays out and the public address serves after a green drill
POLL_S = 0.002
BOUNDARY_TIMEOUT_S = 120.0  # only catches a hang: the last boundary comes about 10 s into a drill
RERUN_TIMEOUT_S = 240.0
_CREATE_TIME_MARGIN_S = (
    0.05  # psutil reads the same start time of one process from anywhere; float noise only
)


class BoundaryMissed(RuntimeError):
    """The drill ended, or hung, before the boundary."""


@dataclass(frozen=True)
class Proc:
    """A process as it was when counted: PID and start time say whether a later one is the same."""

    pid: int
    create_time: float
    cmdline: tuple[str, ...]
    what: str  # "lab webhook-sink", "chromedriver", "chromium", ...
    recorded: bool = True
    """Named by a record (Lab state.json, browser record) or descended from a recorded process: what a rerun
    can find. False: nothing on disk names it, no rerun can stop it."""

    @classmethod
    def of(cls, proc: psutil.Process, what: str = "", *, recorded: bool = True) -> Proc | None:
        try:
            with proc.oneshot():
                if proc.status() == psutil.STATUS_ZOMBIE:
                    return None
                cmdline = tuple(proc.cmdline())
                return cls(proc.pid, proc.create_time(), cmdline, what or _role(cmdline), recorded)
        except psutil.Error:
            return None

    def process(self) -> psutil.Process | None:
        """The running process that is this one, else None (exited, a zombie, or its PID reused)."""
        try:
            proc = psutil.Process(self.pid)
            with proc.oneshot():
                if proc.status() == psutil.STATUS_ZOMBIE:
                    return None
                if abs(proc.create_time() - self.create_time) > _CREATE_TIME_MARGIN_S:
                    return None
        except psutil.Error:
            return None
        return proc

    def alive(self) -> bool:
        return self.process() is not None

    def describe(self) -> str:
        return f"{self.what} {self.pid}" + ("" if self.recorded else " (on no record)")

    def __repr__(self) -> str:
        return f"<{self.describe()}>"


def _role(cmdline: Sequence[str]) -> str:
    if not cmdline:
        return "(exiting)"  # Linux shows no command line for a process on its way out
    name = Path(cmdline[0]).name
    scripts = [Path(a).stem for a in cmdline[1:] if a.endswith(".py")]
    if "python" in name and scripts:
        node = cmdline[cmdline.index("--node") + 1] if "--node" in cmdline[:-1] else ""
        return f"lab {node + '-' if node else ''}{scripts[0]}"
    if "chromedriver" in name:
        return "chromedriver"
    if "chrom" in name or name == "exe":  # Chromium's zygote re-executes itself as /proc/self/exe
        return "chromium"
    return name


@dataclass
class Left:
    """What a killed run left: browser processes, profile directories, Lab processes, browser records."""

    browser: list[Proc] = field(default_factory=list)
    profiles: list[Path] = field(default_factory=list)
    lab: list[Proc] = field(default_factory=list)
    records: list[Path] = field(default_factory=list)

    def now(self) -> Left:
        """What of it is still there."""
        return Left(
            [p for p in self.browser if p.alive()],
            [d for d in self.profiles if d.exists()],
            [p for p in self.lab if p.alive()],
            [r for r in self.records if r.exists()],
        )

    @property
    def nothing(self) -> bool:
        return not (self.browser or self.profiles or self.lab or self.records)

    @property
    def untracked(self) -> list[Proc]:
        return [p for p in (*self.browser, *self.lab) if not p.recorded]

    def counts(self) -> str:
        return f"{len(self.browser)} / {len(self.profiles)} / {len(self.lab)}"

    def describe(self) -> str:
        parts = [
            *(p.describe() for p in self.browser),
            *(f"profile {d}" for d in self.profiles),
            *(p.describe() for p in self.lab),
            *(f"record {r}" for r in self.records),
        ]
        return ", ".join(parts) if parts else "nothing"


@dataclass
class Killed:
    """The killed run: its bundle and journal, when it was killed, and what it left."""

    phase: str
    pid: int
    bundle: Path
    journal: VerifyResult
    phases_started: list[str]
    killed_at_s: float  # from the drill's start
    lag_s: float  # from the boundary's phase.start timestamp
    left: Left
    output: str = field(repr=False)

    @property
    def prefix_valid(self) -> bool:
        return self.journal.chain_intact and not self.journal.sealed and self.journal.events > 0

    @property
    def phase_order_ok(self) -> bool:
        """The phases started are the drill's order up to the boundary (or a little beyond, when late)."""
        n = len(self.phases_started)
        return self.phase in self.phases_started and list(PHASES[:n]) == self.phases_started


@dataclass
class Served:
    """What the kept Lab's public address answered at /health."""

    status: int
    version: str | None
    health: str | None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.health == "Healthy" and self.version == DRILL_VERSION

    def describe(self) -> str:
        if self.error:
            return self.error
        return f"{self.status} {self.health} {self.version}"


@dataclass
class Rerun:
    exit_code: int
    wall_s: float
    bundle: Path | None
    left: Left  # what is still there of the KILLED run's leftovers
    served: Served
    reaped: list[dict[str, Any]]  # the rerun's browser.reap actions that name a killed run's record
    output: str = field(repr=False)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.left.nothing and self.served.ok


def _lab_env_file(workdir: Path, lab_dir: Path) -> Path:
    text = (ROOT / "environments" / "Lab.toml").read_text(encoding="utf-8")
    if 'dir = ".lab"' not in text:
        raise RuntimeError(
            'environments/Lab.toml has no [lab] dir = ".lab" to point at a temporary directory'
        )
    env_file = workdir / "Lab.toml"
    env_file.write_text(text.replace('dir = ".lab"', f'dir = "{lab_dir.as_posix()}"'), encoding="utf-8")
    return env_file


def _bundle_in(evidence: Path) -> Path | None:
    if not evidence.is_dir():
        return None
    found = [p for p in evidence.iterdir() if p.is_dir() and p.name[:8].isdigit()]
    return found[0] if len(found) == 1 else None


class KillDrill:
    """One boundary's experiment in its own work directory: `kill_at_boundary`, `rerun`, always `cleanup`."""

    def __init__(self, workdir: Path, phase: str, *, marker: str = "rollback", after_s: float = 0.0) -> None:
        if phase not in PHASES:
            raise ValueError(f"unknown boundary {phase!r}; known: {', '.join(PHASES)}")
        self.workdir = workdir
        self.phase = phase
        self.marker = marker
        self.after_s = after_s  # kill this long after the boundary (0: at once)
        workdir.mkdir(parents=True, exist_ok=True)
        self.lab_dir = workdir / "lab"
        self.state_dir = workdir / "browsers"
        self.env_file = _lab_env_file(workdir, self.lab_dir)
        self.environ = {**os.environ, STATE_DIR_ENV: str(self.state_dir)}
        self.runner: subprocess.Popen[bytes] | None = None
        self.killed: Killed | None = None
        self.left_seen: list[Left] = []  # everything ever counted, for cleanup

    def argv(self, evidence: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "pytest", "-m", self.marker, f"--env-file={self.env_file}",
                f"--evidence-dir={evidence}", "-p", "no:cacheprovider", "-q", "-rs", *extra]  # fmt: skip

    # -- the killed run

    def kill_at_boundary(
        self, timeout_s: float = BOUNDARY_TIMEOUT_S, then: Callable[[int], bool] | None = None
    ) -> Killed:
        """Run the drill and kill its runner at the boundary (plus `after_s`); with `then`, at the first moment
        after the boundary that `then(runner_pid)` holds (polled), to kill inside a phase."""
        evidence = self.workdir / "killed"
        log = self.workdir / "killed.log"
        with log.open("wb") as out:
            started = time.monotonic()
            self.runner = subprocess.Popen(
                self.argv(evidence), cwd=ROOT, env=self.environ, stdout=out, stderr=subprocess.STDOUT
            )
        runner = self.runner
        try:
            deadline = time.monotonic() + timeout_s
            bundle = self._wait_for_boundary(runner, evidence, deadline)
            while then is not None and not then(runner.pid):
                if runner.poll() is not None or time.monotonic() > deadline:
                    raise BoundaryMissed(f"the moment waited for inside {self.phase} never came")
                time.sleep(POLL_S)
        except BoundaryMissed as exc:
            output = log.read_text(encoding="utf-8", errors="replace")
            raise BoundaryMissed(f"{exc}\n{output[-3000:]}") from None
        if self.after_s > 0:
            time.sleep(self.after_s)
        family, killed_wall = _kill(runner)
        killed_at_s = time.monotonic() - started
        _settle(family)
        events = read_events(bundle / JOURNAL_NAME, strict=False)
        starts = [e for e in events if e.get("kind") == "phase.start"]
        boundary_ts = next(
            (datetime.fromisoformat(e["ts"]).timestamp() for e in starts if e.get("phase") == self.phase),
            killed_wall,
        )
        left = self._survey(runner.pid, family)
        self.left_seen.append(left)
        self.killed = Killed(
            phase=self.phase,
            pid=runner.pid,
            bundle=bundle,
            journal=verify_bundle(bundle),
            phases_started=[str(e.get("phase")) for e in starts],
            killed_at_s=killed_at_s,
            lag_s=killed_wall - boundary_ts,
            left=left,
            output=log.read_text(encoding="utf-8", errors="replace"),
        )
        return self.killed

    def _wait_for_boundary(self, runner: subprocess.Popen[bytes], evidence: Path, deadline: float) -> Path:
        bundle: Path | None = None
        offset, pending = 0, b""
        while True:
            if bundle is None:
                bundle = _bundle_in(evidence)
            if bundle is not None:
                with contextlib.suppress(FileNotFoundError), (bundle / JOURNAL_NAME).open("rb") as journal:
                    journal.seek(offset)
                    chunk = journal.read()
                    offset += len(chunk)
                    lines = (pending + chunk).split(b"\n")
                    pending = lines.pop()
                    for line in lines:
                        try:
                            event = json.loads(line)
                        except ValueError:
                            continue
                        if event.get("kind") == "phase.start" and event.get("phase") == self.phase:
                            return bundle
            code = runner.poll()
            if code is not None:
                raise BoundaryMissed(f"the drill ended (exit {code}) before {self.phase} started")
            if time.monotonic() > deadline:
                raise BoundaryMissed(f"{self.phase} did not start within {BOUNDARY_TIMEOUT_S:g} s")
            time.sleep(POLL_S)

    def _survey(self, runner_pid: int, family: list[Proc]) -> Left:
        """What the killed run left: read its records and look at every process it started, by identity."""
        left = Left()
        seen: set[int] = set()

        def add(into: list[Proc], proc: Proc | None) -> None:
            if proc is not None and proc.pid not in seen:
                seen.add(proc.pid)
                into.append(proc)

        # The Lab's processes on record (state.json), while they still run what was recorded.
        for record in _records(_read_state(self.lab_dir / "state.json")):
            if record.alive():
                with contextlib.suppress(psutil.Error):
                    add(left.lab, Proc.of(psutil.Process(record.pid), f"lab {record.name}"))
        # The browsers on record for this runner: their processes and profile directories.
        records = []
        if self.state_dir.is_dir():
            for path in sorted(self.state_dir.glob("*.json")):
                with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                    browser_record = BrowserRecord.read(path)
                    if browser_record.runner.pid == runner_pid:
                        records.append(browser_record)
                        left.records.append(path)
        profiles = {Path(r.profile_dir) for r in records}
        for browser_record in records:
            for recorded in browser_record.processes:
                proc = Proc(recorded.pid, recorded.create_time, recorded.cmdline, recorded.role)
                if proc.alive():
                    add(left.browser, proc)
        # Descendants of what is on record: found through it by a rerun.
        for proc in [*left.lab, *left.browser]:
            live = proc.process()
            if live is not None:
                with contextlib.suppress(psutil.Error):
                    for child in live.children(recursive=True):
                        add(left.browser, Proc.of(child))
        # Whatever else the killed run started and still runs: on no record, so no rerun can find it.
        lab_root = str(self.lab_dir.resolve())
        for member in family:
            live = member.process()
            if live is None:
                continue
            # Classified by its command line now: one caught between fork and exec showed the runner's.
            now = Proc.of(live, recorded=False)
            cmdline = now.cmdline if now is not None else member.cmdline
            target = left.lab if any(lab_root in arg for arg in cmdline) else left.browser
            add(target, now)
            with contextlib.suppress(psutil.Error):
                for child in live.children(recursive=True):
                    add(target, Proc.of(child, recorded=False))
        # Processes that name one of its profile directories (Chromium's --user-data-dir, its crash handler's
        # database): a browser whose record names no process yet, or a helper that left its process tree.
        named = [str(d) for d in profiles if d.name.startswith(PROFILE_PREFIX)]
        for running in psutil.process_iter() if named else ():
            with contextlib.suppress(psutil.Error):
                args = running.cmdline()
                if any(d in arg for arg in args for d in named):
                    add(left.browser, Proc.of(running, recorded=False))
        for counted in [*left.browser, *left.lab]:
            for arg in counted.cmdline:
                if arg.startswith("--user-data-dir="):
                    profiles.add(Path(arg.split("=", 1)[1]))
        left.profiles = sorted(d for d in profiles if d.exists())
        return left

    # -- the rerun

    def rerun(self, timeout_s: float = RERUN_TIMEOUT_S) -> Rerun:
        """The same drill to completion (same Lab and state directories, new evidence, --keep-lab); then what
        is left of the killed run's leftovers, and what the kept Lab serves (that Lab is stopped after)."""
        if self.killed is None:
            raise RuntimeError("kill_at_boundary first")
        evidence = self.workdir / "rerun"
        log = self.workdir / "rerun.log"
        started = time.perf_counter()
        with log.open("wb") as out:
            try:
                code = subprocess.run(
                    self.argv(evidence, "--keep-lab"), cwd=ROOT, env=self.environ, stdout=out,
                    stderr=subprocess.STDOUT, timeout=timeout_s, check=False,
                ).returncode  # fmt: skip
            except subprocess.TimeoutExpired:
                code = -9  # subprocess.run killed it; cleanup() stops what it left
        wall = time.perf_counter() - started
        left = self.killed.left.now()
        bundle = _bundle_in(evidence)
        reaped: list[dict[str, Any]] = []
        if bundle is not None:
            killed_records = {str(p) for p in self.killed.left.records}
            for event in read_events(bundle / JOURNAL_NAME, strict=False):
                data = event.get("data") or {}
                is_reap = event.get("kind") == "action" and data.get("name") == "browser.reap"
                if is_reap and data.get("target") in killed_records:
                    reaped.append(dict(data))
        return Rerun(
            exit_code=code,
            wall_s=wall,
            bundle=bundle,
            output=log.read_text(encoding="utf-8", errors="replace"),
            left=left,
            served=self.served(),
            reaped=reaped,
        )

    def served(self) -> Served:
        """What the kept Lab's public address serves at /health; the Lab is stopped afterwards."""
        lab = Lab.attach(self.lab_dir)
        if lab is None:
            return Served(-1, None, None, "no Lab running")
        try:
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            try:
                with opener.open(lab.public_url + "/health", timeout=3) as response:
                    status, body = response.status, json.load(response)
            except urllib.error.HTTPError as exc:
                status, body = exc.code, {}
                with contextlib.suppress(ValueError, OSError):
                    body = json.load(exc)
            except (OSError, ValueError) as exc:
                return Served(-1, None, None, f"no answer: {exc}")
            body = body if isinstance(body, dict) else {}
            version, health = body.get("version"), body.get("status")
            return Served(
                status,
                str(version) if version is not None else None,
                str(health) if health is not None else None,
            )
        finally:
            lab.stop()

    # -- cleanup

    def cleanup(self) -> list[str]:
        """Stop everything this experiment started that still runs; returns what had to be stopped."""
        stopped: list[str] = []
        if self.runner is not None and self.runner.poll() is None:
            self.runner.kill()
            self.runner.wait(timeout=30)
            stopped.append(f"runner {self.runner.pid}")
        lab = Lab.attach(self.lab_dir)
        if lab is not None:
            with contextlib.suppress(LabError):
                lab.stop()
                stopped.append("kept Lab")
        for record in _records(_read_state(self.lab_dir / "state.json")):
            with contextlib.suppress(LabError):
                if lab_procs.stop_pid(record.pid, 5.0, record.argv):
                    stopped.append(f"lab {record.name} {record.pid}")
        for _ in range(3):  # a leftover may start helpers until it is gone itself
            targets = self._still_running()
            if not targets:
                break
            for proc in targets:
                live = proc.process()
                if live is not None:
                    with contextlib.suppress(psutil.Error):
                        live.kill()
                        stopped.append(proc.describe())
            # A killed Chromium writes to its profile until it is gone: only then can the profile be deleted.
            deadline = time.monotonic() + 10.0
            while any(p.alive() for p in targets) and time.monotonic() < deadline:
                time.sleep(0.05)
        with contextlib.suppress(OSError):
            for done in reap_orphans(self.state_dir):
                stopped.extend(done.stopped)
        for left in self.left_seen:
            for profile in left.profiles:
                if profile.exists():
                    remove_profile(str(profile))
                    stopped.append(f"profile {profile}")
        return stopped

    def _still_running(self) -> list[Proc]:
        """What still runs of the killed run's leftovers: those counted, what they started since, and whatever
        names one of its profile directories."""
        found: dict[int, Proc] = {}
        for left in self.left_seen:
            for proc in (*left.browser, *left.lab):
                live = proc.process()
                if live is None:
                    continue
                found.setdefault(proc.pid, proc)
                with contextlib.suppress(psutil.Error):
                    for child in live.children(recursive=True):
                        child_proc = Proc.of(child)
                        if child_proc is not None:
                            found.setdefault(child.pid, child_proc)
        named = [str(d) for left in self.left_seen for d in left.profiles]
        for running in psutil.process_iter() if named else ():
            with contextlib.suppress(psutil.Error):
                if any(d in arg for arg in running.cmdline() for d in named):
                    named_proc = Proc.of(running)
                    if named_proc is not None:
                        found.setdefault(named_proc.pid, named_proc)
        return list(found.values())


def _kill(runner: subprocess.Popen[bytes]) -> tuple[list[Proc], float]:
    """Suspend the runner (it starts nothing more), note its descendants, SIGKILL it; (descendants, when)."""
    proc = psutil.Process(runner.pid)
    family: list[Proc] = []
    with contextlib.suppress(psutil.Error):
        proc.suspend()
        for child in proc.children(recursive=True):
            found = Proc.of(child, recorded=False)
            if found is not None:
                family.append(found)
    killed_wall = datetime.now(UTC).timestamp()
    runner.kill()  # SIGKILL (TerminateProcess on Windows): no finalizer, no atexit runs
    runner.wait(timeout=30)
    return family, killed_wall


def _settle(family: Sequence[Proc], timeout_s: float = 2.0) -> None:
    """Give a process that was on its way out when the runner died (a Lab process it was stopping) a moment
    to be gone, so that it is not counted as left behind."""
    deadline = time.monotonic() + timeout_s
    for member in family:
        while time.monotonic() < deadline:
            live = member.process()
            if live is None:
                break
            with contextlib.suppress(psutil.Error):
                if live.cmdline():
                    break
            time.sleep(0.02)


@dataclass
class Boundary:
    """One row of the table."""

    phase: str
    killed: Killed | None = None
    rerun: Rerun | None = None
    error: str = ""
    cleaned: list[str] = field(default_factory=list)  # what the benchmark itself had to stop at the end

    @property
    def ok(self) -> bool:
        return (
            not self.error
            and self.killed is not None
            and self.killed.prefix_valid
            and self.rerun is not None
            and self.rerun.ok
        )


def measure(phase: str, workdir: Path, after_s: float = 0.0) -> Boundary:
    """Kill the drill at `phase`, rerun it, count; everything started is stopped before returning."""
    row = Boundary(phase)
    drill = KillDrill(workdir, phase, after_s=after_s)
    try:
        row.killed = drill.kill_at_boundary()
        row.rerun = drill.rerun()
    except (BoundaryMissed, OSError, RuntimeError, subprocess.SubprocessError) as exc:
        row.error = str(exc)
    finally:
        row.cleaned = drill.cleanup()
    return row


def _table(rows: Iterable[Boundary]) -> str:
    header = ("boundary", "killed at (lag)", "journal prefix valid", "left after kill", "left after rerun",
              "rerun exit", "served after rerun", "rerun")  # fmt: skip
    lines = [header]
    for row in rows:
        k, r = row.killed, row.rerun
        if k is None:
            lines.append((row.phase, "-", "-", "-", "-", "-", row.error.splitlines()[0][:60], "-"))
            continue
        valid = f"{'yes' if k.prefix_valid else 'NO'} ({k.journal.events} ev" + (
            ", unsealed)" if not k.journal.sealed else ", SEALED)"
        )
        lines.append(
            (
                row.phase,
                f"{k.killed_at_s:.2f} s ({k.lag_s * 1000:.0f} ms)",
                valid,
                k.left.counts(),
                r.left.counts() if r else "-",
                str(r.exit_code) if r else "-",
                (r.served.describe() + ("" if r.served.ok else " (NOT OK)")) if r else "-",
                f"{r.wall_s:.1f} s" if r else "-",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = [" | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    out.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(out)


def _details(rows: Iterable[Boundary]) -> list[str]:
    notes = []
    for row in rows:
        k, r = row.killed, row.rerun
        if row.error:
            notes.append(f"{row.phase}: {row.error.strip()}")
        if k is None:
            continue
        if not k.prefix_valid:
            notes.append(f"{row.phase}: journal not a valid unsealed prefix: {k.journal.problems}")
        if not k.phase_order_ok:
            notes.append(f"{row.phase}: phases started {k.phases_started} are not the drill's order")
        untracked = k.left.untracked
        if untracked:
            notes.append(
                f"{row.phase}: after the kill, on no record: {', '.join(p.describe() for p in untracked)}"
            )
        notes.append(f"{row.phase}: after the kill: {k.left.describe()}")
        if r is None:
            continue
        if not r.left.nothing:
            notes.append(f"{row.phase}: LEFT AFTER THE RERUN: {r.left.describe()}")
        if r.reaped:
            stopped = sum(len(d.get("detail", {}).get("stopped", [])) for d in r.reaped)
            notes.append(
                f"{row.phase}: the rerun reaped {len(r.reaped)} browser record(s), {stopped} process(es)"
            )
        if row.cleaned:
            notes.append(f"{row.phase}: the benchmark had to stop at the end: {', '.join(row.cleaned)}")
        if r.exit_code != 0:
            notes.append(f"{row.phase}: rerun exit {r.exit_code}:\n{r.output[-2000:]}")
    return notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--boundaries",
        default=",".join(PHASES),
        help=f"comma-separated phases to kill at (default all: {','.join(PHASES)})",
    )
    parser.add_argument("--keep-going", action="store_true", help="go on after a boundary that failed")
    parser.add_argument(
        "--after-ms",
        type=float,
        default=0.0,
        help="kill this many ms after the boundary instead of at once (to probe inside a phase)",
    )
    args = parser.parse_args(argv)
    chosen = [p.strip() for p in str(args.boundaries).split(",") if p.strip()]
    unknown = [p for p in chosen if p not in PHASES]
    if unknown or not chosen:
        parser.error(f"unknown boundary {', '.join(unknown) or '(none)'}; known: {', '.join(PHASES)}")
    rows: list[Boundary] = []
    for phase in chosen:
        workdir = Path(tempfile.mkdtemp(prefix=f"kill-{phase}-"))
        try:
            row = measure(phase, workdir, args.after_ms / 1000)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        rows.append(row)
        print(f"{phase}: {'ok' if row.ok else 'FAILED'}", file=sys.stderr, flush=True)
        if not row.ok and not args.keep_going:
            break
    print("python -m benchmarks.kill_boundaries: SIGKILL of the rollback drill's runner at each phase.start,")
    print(
        "then the same drill again (--keep-lab). Left = browser procs / profiles / Lab procs of the killed run.\n"
    )
    print(_table(rows))
    notes = _details(rows)
    if notes:
        print()
        print("\n".join(f"- {n}" for n in notes))
    return 0 if rows and all(r.ok for r in rows) and len(rows) == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
