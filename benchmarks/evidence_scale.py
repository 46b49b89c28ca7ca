"""Evidence at scale: ``python -m benchmarks.evidence_scale [--events 10000] [--tests 500] [--runs 3] [--dir DIR]``.

(a) The journal's durable append, in this process, into a temporary directory (``--dir`` chooses the file
    system; its type is printed, since fsync on tmpfs costs nothing):
    - ``Journal.append`` (plugins/journal.py) of ``--events`` probe events, each written, flushed and fsynced
      before it returns, as in a run (with the run's redactor); then ``Journal.seal`` of that journal;
      wall time and this process's CPU time (the rest is waiting for the disk);
    - the same events through ``RunbookRun.record`` with the writers a run has (plugins/evidence.py
      start_bundle: JournalWriter + TimelineWriter), the run built from an environment file without a pytest
      session;
    - for reference, the floor: the same number of lines of the same size written + fsynced (and, where the
      system has it, + fdatasynced), nothing else.
    Target: 10,000 events <= 2 s.
(b) The session-end work of a ``--tests`` (500) trivial matrix-only run through the runbook (the project of
    benchmarks/_project.py, in a subprocess; one untimed warm-up, then ``--runs`` runs, the median shown;
    bytecode cached as in benchmarks.overhead, or not with ``--cold-bytecode``): the time from the last test's
    end to the process's exit. The
    generated conftest stamps (time.time()) the end of every test (pytest_runtest_logfinish: the last one
    stays), the start and end of pytest_sessionfinish (an outermost wrapper: the runbook's run.end, pytest-html's
    report, junit.xml, the scrub, manifest and seal, then pytest's terminal summary), and pytest_unconfigure;
    this process stamps the exit. The journal (last phase.end, run.end, seal) and the bundle files' mtimes
    (report.html, junit.xml, manifest.json) split the sessionfinish part. Plus report.html's size. What this
    leaves out: nothing of the session end happens before the last test's logfinish (the runbook's last
    phase.end is journalled in that test's teardown report, just before), so the figure is the whole of it,
    interpreter shutdown included.
    Target: <= 5 s.

``--root DIR`` takes the runbook's source (plugins/, drivers/) from another copy, e.g. a `git archive` of an
earlier commit. Prints figures; asserts nothing on time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks import _project as proj

TARGET_APPEND_S = 2.0
TARGET_SESSION_END_S = 5.0

# Stamps of the generated run, written when pytest unconfigures (the last hook a conftest gets).
STAMPS = """
import json as _json
import time as _time
from pathlib import Path as _Path

import pytest as _pytest

_STAMPS = {}


def pytest_runtest_logfinish(nodeid, location):
    _STAMPS["last_test_end"] = _time.time()


@_pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    _STAMPS["sessionfinish_start"] = _time.time()
    try:
        return (yield)
    finally:
        _STAMPS["sessionfinish_end"] = _time.time()


@_pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    _STAMPS["unconfigure"] = _time.time()
    (_Path(__file__).parent / "stamps.json").write_text(_json.dumps(_STAMPS))
"""

PROBE = {
    "name": "health",
    "url": "http://127.0.0.1:8080/health",
    "status": 200,
    "latency_ms": 3.2,
    "error": None,
    "body": {"status": "Healthy", "version": "1.1.0"},
}
NODEID = "runbook_tests/test_dr_smoke.py::test_health_answers_200"


def filesystem(path: Path) -> str:
    """The type of the file system `path` is on (Linux: /proc/self/mounts), or "unknown"."""
    best, kind = "", "unknown"
    try:
        mounts = Path("/proc/self/mounts").read_text(encoding="utf-8").splitlines()
    except OSError:
        return kind
    resolved = str(path.resolve())
    for line in mounts:
        fields = line.split()
        if len(fields) < 3 or len(fields[1]) < len(best):
            continue
        if resolved == fields[1] or resolved.startswith(fields[1].rstrip("/") + "/"):
            best, kind = fields[1], fields[2]
    return f"{kind} (mounted at {best})" if best else kind


def journal_append(directory: Path, events: int) -> tuple[float, float, float, int]:
    """Wall and CPU seconds for `events` Journal.append calls, seconds for the seal, bytes written."""
    from drivers.config import load_environment
    from plugins.journal import Journal

    env = load_environment(env_file(directory))
    journal = Journal(directory / "evidence.jsonl", "20260101T000000Z", env.name, "matrix", redact=env.redact)
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(events):
        journal.append("probe", PROBE, phase="DR-SMOKE", nodeid=NODEID)
    appended, cpu = time.perf_counter() - started, time.process_time() - cpu
    started = time.perf_counter()
    journal.seal()
    sealed = time.perf_counter() - started
    return appended, cpu, sealed, journal.path.stat().st_size


def run_record(directory: Path, events: int) -> tuple[float, float] | str:
    """Wall and CPU seconds for `events` RunbookRun.record calls with a run's journal and timeline writers,
    or why they could not be measured."""
    try:
        from drivers.config import load_environment
        from plugins.evidence import JournalWriter, TimelineWriter
        from plugins.state import RunbookRun, RunOptions

        env = load_environment(env_file(directory))
        run = RunbookRun(env, RunOptions(evidence_dir=directory), directory)
        run.flow = "matrix"
        run.bundle = directory / "bundle"
        (run.bundle / "artifacts").mkdir(parents=True)
        run.writers = [
            JournalWriter(run, run.bundle / "evidence.jsonl"),
            TimelineWriter(run, run.bundle / "timeline.md"),
        ]
        run.current_phase, run.current_nodeid = "DR-SMOKE", NODEID
    except Exception as exc:  # noqa: BLE001 - a figure that cannot be taken is said, not raised
        return (
            f"not measured: the run could not be built without a pytest session ({type(exc).__name__}: {exc})"
        )
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(events):
        run.record("probe", PROBE)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    run.close_writers()
    if run.writer_errors:
        return f"not measured: writer errors: {run.writer_errors[:3]}"
    return elapsed, cpu


def sync_floor(directory: Path, events: int, line_bytes: int, sync: Callable[[int], None]) -> float:
    """Seconds to write and `sync` `events` lines of `line_bytes` bytes, one sync per line, nothing else."""
    line = b"x" * (line_bytes - 1) + b"\n"
    with (directory / f"floor-{sync.__name__}.jsonl").open("ab", buffering=0) as fh:
        started = time.perf_counter()
        for _ in range(events):
            fh.write(line)
            sync(fh.fileno())
        return time.perf_counter() - started


def env_file(directory: Path) -> Path:
    path = directory / "Bench.toml"
    if not path.exists():
        path.write_text(proj.remote_env(), encoding="utf-8")
    return path


def part_a(base: Path | None, events: int) -> None:
    with tempfile.TemporaryDirectory(prefix="journal-bench-", dir=base) as tmp:
        root = Path(tmp)
        print(f"(a) {events} events appended durably (fsync per event) in {root}")
        print(f"    file system: {filesystem(root)}; {proj.load_words()}")
        print(f"    {'':<34} {'wall':>9} {'events/s':>9} {'per event':>10} {'CPU':>8}")
        (root / "journal").mkdir()
        appended, cpu, sealed, size = journal_append(root / "journal", events)
        line = size // (events + 1)
        print(f"    {'Journal.append':<34} {rate(appended, cpu, events)}   {target(appended)}")
        (root / "run").mkdir()
        recorded = run_record(root / "run", events)
        label = "RunbookRun.record (+ timeline)"
        if isinstance(recorded, str):
            print(f"    {label:<34} {recorded}")
        else:
            print(f"    {label:<34} {rate(*recorded, events)}   {target(recorded[0])}")
        syncs: list[Callable[[int], None]] = [os.fsync]
        if hasattr(os, "fdatasync"):
            syncs.append(os.fdatasync)
        for sync in syncs:
            floor = sync_floor(root, events, line, sync)
            print(f"    {'floor: write + ' + sync.__name__ + ' only':<34} {rate(floor, float('nan'), events)}   "
                  f"(lines of {line} bytes, nothing else)")  # fmt: skip
        print(f"    Journal.seal of the {events}-event journal ({size / 1e6:.1f} MB): {sealed:.3f} s")


def rate(wall: float, cpu: float, events: int) -> str:
    cpu_words = "" if cpu != cpu else f"{cpu:6.3f} s"  # NaN: not measured
    return f"{wall:7.3f} s {events / wall:9.0f} {wall / events * 1e6:7.0f} us {cpu_words:>8}"


def target(seconds: float) -> str:
    return f"(target <= {TARGET_APPEND_S:.0f} s: {'within' if seconds <= TARGET_APPEND_S else 'OVER'})"


def ts(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(event["ts"])).timestamp()


@dataclass(frozen=True)
class SessionEnd:
    result: proj.Result
    stamps: dict[str, float]
    events: list[dict[str, Any]]
    files: dict[str, os.stat_result]

    @property
    def total_s(self) -> float:
        """From the last test's end to the process's exit."""
        return self.result.ended - self.stamps["last_test_end"]


def one_session_end(project: proj.Project, evidence: Path, tests: int) -> SessionEnd:
    from plugins.journal import read_events

    result = proj.run(project, proj.runbook_args(project, evidence))
    proj.require_all_passed(result, tests, "runbook run")
    bundle = proj.one_bundle(evidence)
    stamps: dict[str, float] = json.loads((project.path / "stamps.json").read_text(encoding="utf-8"))
    events = read_events(bundle / "evidence.jsonl", seal=True)
    files = {name: (bundle / name).stat() for name in ("report.html", "junit.xml", "manifest.json")}
    return SessionEnd(result, stamps, events, files)


def part_b(tests: int, runs: int, root: Path, cold_bytecode: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="report-bench-") as tmp:
        scratch = Path(tmp)
        pycache = None if cold_bytecode else scratch / "pycache"
        project = proj.make_runbook_project(scratch / "project", tests, root, STAMPS, pycache)
        one_session_end(project, scratch / "evidence-warmup", tests)  # bytecode cached, not counted
        print(f"\n(b) {tests}-test matrix-only runbook runs, {proj.load_words()}")
        measured = []
        for i in range(runs):
            measured.append(one_session_end(project, scratch / f"evidence-{i}", tests))
            print(
                f"    run {i + 1}: whole run {measured[-1].result.wall_s:.2f} s, session end {measured[-1].total_s:.3f} s"
            )
    median = sorted(measured, key=lambda m: m.total_s)[len(measured) // 2]
    stamps, events, result = median.stamps, median.events, median.result
    mtime = {name: stat.st_mtime for name, stat in median.files.items()}
    phase_end = [e for e in events if e["kind"] == "phase.end"][-1]
    run_end = next(e for e in events if e["kind"] == "run.end")
    seal = events[-1]
    last = stamps["last_test_end"]
    print(f"    the median run by session end (whole run {result.wall_s:.2f} s, passed {result.passed}/{tests}, "
          f"{len(events)} journal events); seconds after the last test's end (pytest_runtest_logfinish):")  # fmt: skip
    rows = [
        ("pytest_sessionfinish starts (outermost wrapper)", stamps["sessionfinish_start"]),
        ("journal: last phase.end (ms stamp)", ts(phase_end)),
        ("journal: run.end (ms stamp)", ts(run_end)),
        ("report.html written (mtime)", mtime["report.html"]),
        ("junit.xml written (mtime)", mtime["junit.xml"]),
        ("manifest.json written (mtime)", mtime["manifest.json"]),
        ("journal: seal (ms stamp)", ts(seal)),
        ("pytest_sessionfinish ends (after terminal summary)", stamps["sessionfinish_end"]),
        ("pytest_unconfigure (trylast)", stamps["unconfigure"]),
        ("process exited (seen by this benchmark)", result.ended),
    ]
    for label, at in rows:
        print(f"      {label:<52} {at - last:+7.3f}")
    total = median.total_s
    verdict = "within" if total <= TARGET_SESSION_END_S else "OVER"
    print(f"    session-end total (last test end -> process exit)  {total:7.3f} s   median of {runs} (target <= "
          f"{TARGET_SESSION_END_S:.0f} s: {verdict})")  # fmt: skip
    print(f"      run.end -> report.html written         {mtime['report.html'] - ts(run_end):7.3f} s "
          "(the runbook's summary and sections, pytest-html's render and write)")  # fmt: skip
    print(f"      report.html -> seal                    {ts(seal) - mtime['report.html']:7.3f} s "
          "(junit.xml, scrub, manifest, seal)")  # fmt: skip
    print(f"      seal -> sessionfinish ends             {stamps['sessionfinish_end'] - ts(seal):7.3f} s "
          "(terminal summary)")  # fmt: skip
    print(f"      unconfigure -> process exit            {result.ended - stamps['unconfigure']:7.3f} s "
          "(interpreter shutdown)")  # fmt: skip
    for name in ("report.html", "junit.xml"):
        size = median.files[name].st_size
        print(
            f"    {name + ' size':<48} {size:>11,} bytes ({size / 1e6:.2f} MB, {size / tests:,.0f} bytes/test)"
        )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=10_000, help="journal events for (a) (default 10000)")
    parser.add_argument("--tests", type=int, default=500, help="trivial tests for (b) (default 500)")
    parser.add_argument("--runs", type=int, default=3, help="runs of (b), the median shown (default 3)")
    parser.add_argument("--dir", type=Path, default=None, help="where (a) writes (default: the temp dir)")
    proj.add_source_options(parser, "(b) with PYTHONDONTWRITEBYTECODE=1 (no bytecode cache)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    sys.path.insert(0, str(root))  # before the runbook's modules are first imported
    print(f"runbook source {root}")
    part_a(args.dir, args.events)
    part_b(args.tests, args.runs, root, args.cold_bytecode)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
