"""The runbook's own overhead on a large matrix: ``python -m benchmarks.overhead [--runs 5] [--tests 1000] [--profile]``.

Generates (benchmarks/_project.py) a project of 1,000 trivial matrix-only tests (`dr_smoke`, phase DR-SMOKE,
`pass`) in a temporary directory and runs, each as a whole process (`python -m pytest -q -p no:cacheprovider`),
alternately, ``--runs`` times each after one untimed warm-up of each (bytecode caches written):

(a) the runbook: the runbook's plugins, `-m dr_smoke --env-file=<remote env on a closed loopback port>`, its
    bundle (journal, timeline, report.html, junit.xml, manifest, seal) into a fresh temporary evidence dir;
(b) plain pytest on the same test files with pytest-html (`--html=... --self-contained-html`) and
    `--junitxml=...`, no runbook plugin: the same reports a CI run would write without the runbook.

Prints both medians (wall time, and CPU time of the process, which a busy machine disturbs less; the load
average before and after says how busy it was), the ratio a/b (target <= 1.05x, on wall time) and how many
tests passed in each; a run that did not pass every test stops the benchmark with its output (its figure would
mean nothing).

``--profile`` then runs (a) and (b) once more each under cProfile (on the process's CPU time, so that a busy
machine disturbs it little; the main thread from pytest's import to its exit, pytest's `console_main`) and prints the 25 functions of the runbook (plugins/, drivers/,
fixtures/) with the largest cumulative time in (a), the own time of (a) and (b) summed by where the code lives
(the runbook's folders, each third-party distribution, the standard library, C built-ins) with the largest
differences first, and the 15 largest own times of (a): where the overhead is.

Prints figures; asserts nothing on time.
"""

from __future__ import annotations

import argparse
import pstats
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks import _project as proj

TARGET_RATIO = 1.05


def runbook_run(project: proj.Project, scratch: Path, count: int) -> proj.Result:
    evidence = Path(tempfile.mkdtemp(prefix="evidence-", dir=scratch))
    result = proj.run(project, proj.runbook_args(project, evidence))
    proj.require_all_passed(result, count, "(a) runbook run")
    bundle = proj.one_bundle(evidence)
    if not (bundle / "report.html").is_file() or not (bundle / "junit.xml").is_file():
        sys.exit(f"BENCHMARK INVALID: (a) runbook run: {bundle} has no report.html or junit.xml")
    return result


def plain_run(project: proj.Project, scratch: Path, count: int) -> proj.Result:
    out = Path(tempfile.mkdtemp(prefix="plain-", dir=scratch))
    args = [f"--html={out / 'report.html'}", "--self-contained-html", f"--junitxml={out / 'junit.xml'}"]
    result = proj.run(project, args)
    proj.require_all_passed(result, count, "(b) plain pytest + pytest-html + junitxml")
    return result


Stats = dict[tuple[str, int, str], tuple[int, int, float, float, object]]


# cProfile on process CPU time, not wall time: a busy machine then disturbs the profile little.
PROFILED_PYTEST = """\
import cProfile, sys, time
profile = cProfile.Profile(time.process_time)
profile.enable()
import pytest
code = pytest.console_main()
profile.disable()
profile.dump_stats({stats!r})
sys.exit(code)
"""


def profiled(
    project: proj.Project, args: list[str], stats_file: Path, count: int, what: str
) -> tuple[Stats, float]:
    """Run once under cProfile (CPU time); the raw stats ((file, line, name) -> (cc, nc, tottime, cumtime,
    callers)) and the CPU time of the profiled run."""
    prefix = [sys.executable, "-c", PROFILED_PYTEST.format(stats=str(stats_file)), *proj.PYTEST[3:]]
    result = proj.run(project, args, prefix=prefix)
    proj.require_all_passed(result, count, f"{what} under cProfile")
    raw: Stats = pstats.Stats(str(stats_file)).stats  # type: ignore[attr-defined]
    return raw, result.cpu_s


def package(filename: str, root: Path, scratch: Path) -> str:
    """Where a profiled function lives, coarsely: the runbook's top folder, a third-party distribution, the
    standard library, C built-ins, the generated project."""
    if "site-packages/" in filename:  # before the runbook's root: its .venv may be inside it
        return filename.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if filename.startswith(str(root) + "/"):
        return Path(filename).relative_to(root).parts[0].removesuffix(".py") + "/ (runbook)"
    if filename.startswith(str(scratch) + "/"):
        return "generated tests + conftest"
    if filename == "~":
        return "C built-ins (compile, I/O, re, ...)"
    if filename.startswith("<frozen"):
        return "import machinery (frozen)"
    if "/lib/python3" in filename:
        rest = filename.split("/lib/python3", 1)[1].split("/", 2)
        return "stdlib " + (rest[1].removesuffix(".py") if len(rest) > 1 else "?")
    return filename


def own_time_by_package(raw: Stats, root: Path, scratch: Path) -> dict[str, float]:
    totals: dict[str, float] = {}
    for (filename, _line, _name), (_cc, _nc, tt, _ct, _callers) in raw.items():
        key = package(filename, root, scratch)
        totals[key] = totals.get(key, 0.0) + tt
    return totals


def builtin_times(raw: Stats) -> dict[str, tuple[float, int]]:
    """Own time and calls of each C built-in (cProfile files them under "~")."""
    return {
        name: (tt, nc)
        for (filename, _line, name), (_cc, nc, tt, _ct, _callers) in raw.items()
        if filename == "~"
    }


def profile(runbook: proj.Project, plain: proj.Project, scratch: Path, count: int, root: Path) -> None:
    evidence = Path(tempfile.mkdtemp(prefix="evidence-prof-", dir=scratch))
    raw, cpu = profiled(runbook, proj.runbook_args(runbook, evidence), scratch / "a.prof", count, "(a)")
    out = Path(tempfile.mkdtemp(prefix="plain-prof-", dir=scratch))
    plain_args = [f"--html={out / 'report.html'}", "--self-contained-html", f"--junitxml={out / 'junit.xml'}"]
    raw_b, cpu_b = profiled(plain, plain_args, scratch / "b.prof", count, "(b)")
    total = sum(tt for (_cc, _nc, tt, _ct, _callers) in raw.values())
    total_b = sum(tt for (_cc, _nc, tt, _ct, _callers) in raw_b.values())
    own_dirs = tuple(str(root / d) + "/" for d in ("plugins", "drivers", "fixtures"))
    ours = [(key, value) for key, value in raw.items() if str(key[0]).startswith(own_dirs)]
    ours.sort(key=lambda kv: kv[1][3], reverse=True)
    print(f"\n--profile: once each under cProfile on CPU time: (a) {cpu:.2f} s CPU, {total:.2f} s profiled; "
          f"(b) {cpu_b:.2f} s CPU, {total_b:.2f} s profiled")  # fmt: skip
    print(f"(a): top 25 cumulative inside {root} (plugins/, drivers/, fixtures/):")
    print(f"  {'ncalls':>9} {'tottime':>8} {'cumtime':>8} {'cum %':>6}  function")
    for (filename, line, name), (_cc, nc, tt, ct, _callers) in ours[:25]:
        where = Path(filename).relative_to(root).as_posix()
        print(f"  {nc:>9} {tt:8.3f} {ct:8.3f} {100 * ct / total:5.1f}%  {where}:{line}({name})")
    by_a, by_b = own_time_by_package(raw, root, scratch), own_time_by_package(raw_b, root, scratch)
    print("own time by where the code lives, (a) - (b), the 15 largest differences (seconds):")
    print(f"  {'(a)':>7} {'(b)':>7} {'a - b':>7}  code")
    names = sorted(by_a.keys() | by_b.keys(), key=lambda k: by_a.get(k, 0.0) - by_b.get(k, 0.0), reverse=True)
    for name in names[:15]:
        a, b = by_a.get(name, 0.0), by_b.get(name, 0.0)
        print(f"  {a:7.3f} {b:7.3f} {a - b:+7.3f}  {name}")
    print(f"  {total:7.3f} {total_b:7.3f} {total - total_b:+7.3f}  all")
    builtins_a, builtins_b = builtin_times(raw), builtin_times(raw_b)
    print("  of the C built-ins, the 8 largest differences:")
    names = sorted(builtins_a, key=lambda k: builtins_a[k][0] - builtins_b.get(k, (0.0, 0))[0], reverse=True)
    for name in names[:8]:
        (a, calls_a), (b, calls_b) = builtins_a[name], builtins_b.get(name, (0.0, 0))
        print(f"  {a:7.3f} {b:7.3f} {a - b:+7.3f}    {name} ({calls_a} calls in (a), {calls_b} in (b))")
    print("(a): top 15 own time (tottime), whole process:")
    everything = sorted(raw.items(), key=lambda kv: kv[1][2], reverse=True)
    for (filename, line, name), (_cc, nc, tt, ct, _callers) in everything[:15]:
        print(f"  {nc:>9} {tt:8.3f} {ct:8.3f} {100 * tt / total:5.1f}%  {short(filename)}:{line}({name})")


def short(filename: str) -> str:
    for marker in ("site-packages/", "lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each (default 5)")
    parser.add_argument("--tests", type=int, default=1000, help="trivial tests in the project (default 1000)")
    parser.add_argument("--profile", action="store_true", help="also run (a) and (b) once under cProfile")
    proj.add_source_options(parser, "PYTHONDONTWRITEBYTECODE=1: compile everything every run")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    count = args.tests
    with tempfile.TemporaryDirectory(prefix="overhead-bench-") as tmp:
        scratch = Path(tmp)
        pycache = None if args.cold_bytecode else scratch / "pycache"
        runbook = proj.make_runbook_project(scratch / "runbook", count, root, pycache=pycache)
        plain = proj.make_plain_project(scratch / "plain", count, pycache=pycache)
        runbook_run(runbook, scratch, count)  # warm-up: bytecode of the tests and plugins written
        plain_run(plain, scratch, count)
        a: list[proj.Result] = []
        b: list[proj.Result] = []
        print(f"before: {proj.load_words()}")
        for i in range(args.runs):
            a.append(runbook_run(runbook, scratch, count))
            b.append(plain_run(plain, scratch, count))
            print(f"run {i + 1}: (a) runbook {a[-1].wall_s:.3f} s wall, {a[-1].cpu_s:.3f} s CPU   "
                  f"(b) plain pytest-html+junitxml {b[-1].wall_s:.3f} s wall, {b[-1].cpu_s:.3f} s CPU")  # fmt: skip
        print(f"after:  {proj.load_words()}")
        cache = "never cached (PYTHONDONTWRITEBYTECODE=1)" if args.cold_bytecode else "cached (warm)"
        print(f"\n{count} trivial matrix-only tests, whole process, median of {args.runs}, bytecode {cache}")
        print(f"runbook source {root}:")
        print(f"  {'':<36} {'wall':>8} {'(min':>7} {'max)':>7} {'CPU':>8}  passed")
        for label, results in (
            ("(a) runbook -m dr_smoke --env-file", a),
            ("(b) plain pytest --html --junitxml", b),
        ):
            walls = [r.wall_s for r in results]
            print(f"  {label:<36} {statistics.median(walls):6.3f} s {min(walls):7.3f} {max(walls):7.3f} "
                  f"{statistics.median(r.cpu_s for r in results):6.3f} s  "
                  f"{min(r.passed for r in results)}/{count} in every run")  # fmt: skip
        med_a, med_b = (statistics.median(r.wall_s for r in x) for x in (a, b))
        cpu_a, cpu_b = (statistics.median(r.cpu_s for r in x) for x in (a, b))
        ratio = med_a / med_b
        verdict = "within" if ratio <= TARGET_RATIO else "OVER"
        print(
            f"  ratio a/b, wall                      {ratio:.3f}x  (target <= {TARGET_RATIO:.2f}x: {verdict})"
        )
        print(
            f"  ratio a/b, CPU                       {cpu_a / cpu_b:.3f}x  (less sensitive to a busy machine)"
        )
        print(f"  runbook overhead, wall               {(med_a - med_b) * 1000:.0f} ms, "
              f"{(med_a - med_b) / count * 1e6:.0f} us per test")  # fmt: skip
        if args.profile:
            profile(runbook, plain, scratch, count, root)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
