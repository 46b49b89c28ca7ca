"""A generated pytest project of trivial matrix-only tests, shared by benchmarks.overhead and .evidence_scale.

Every test is `@pytest.mark.dr_smoke @pytest.mark.phase("DR-SMOKE") def test_...(): pass`, 100 to a module:
only the DR-SMOKE row is selected, so the runbook sees a matrix-only run with no PRE and no fixtures, and what
is measured is the runbook's own per-test and per-session work (hooks, journal, timeline, report.html,
junit.xml, the seal), not a probe.

Two flavours of the same test files:

- the runbook project: a conftest that loads the plugins the runbook's conftest.py lists (read from that file,
  so the list is never restated), the runbook's source on `pythonpath`, and a remote environment file whose
  one address is a loopback port proven closed (nothing is contacted: no test probes it);
- the plain project: the same tests with the two markers registered in pytest.ini, no runbook plugin; the
  report options (`--html --self-contained-html --junitxml`) are given on the command line.

Runs cache bytecode under a PYTHONPYCACHEPREFIX in the scratch directory (warmed by an untimed first run), as
an operator's machine does after its first run, and write nothing into the source trees; `--cold-bytecode`
of both benchmarks runs with PYTHONDONTWRITEBYTECODE=1 instead (every module compiled, every plugin
assertion-rewritten, on every run).

`--root DIR` of both benchmarks points the runbook project at another copy of the runbook (e.g. a
`git archive` of an earlier commit) to compare before and after an optimisation.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

RUNBOOK_ROOT = Path(__file__).resolve().parents[1]
PER_MODULE = 100
PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]

_TEST = '@pytest.mark.dr_smoke\n@pytest.mark.phase("DR-SMOKE")\ndef test_{n:05d}():\n    pass\n\n\n'


def add_source_options(parser: argparse.ArgumentParser, cold_help: str) -> None:
    """--root (another copy of the runbook to measure) and --cold-bytecode, for the scripts that generate projects."""
    parser.add_argument(
        "--root", type=Path, default=RUNBOOK_ROOT, help="the runbook's source (default: this project)"
    )
    parser.add_argument("--cold-bytecode", action="store_true", help=cold_help)


def runbook_plugins(root: Path) -> list[str]:
    """The runbook's plugin list as written: plugins/entry.py's PLUGINS (the entry point's and conftest's), or in
    an earlier copy of the runbook (--root) its conftest.py's literal `pytest_plugins`."""
    for path, name in ((root / "plugins" / "entry.py", "PLUGINS"), (root / "conftest.py", "pytest_plugins")):
        if not path.is_file():
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets
            ):
                try:
                    plugins = ast.literal_eval(node.value)
                except ValueError:
                    continue
                if isinstance(plugins, list) and all(isinstance(p, str) for p in plugins):
                    return plugins
    raise RuntimeError(
        f"{root}: no PLUGINS = [...] in plugins/entry.py, no pytest_plugins = [...] in conftest.py"
    )


def closed_url(host: str = "127.0.0.1") -> str:
    """A loopback address where nothing listens: the system just handed the port out free and it was closed."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return f"http://{host}:{sock.getsockname()[1]}"


def remote_env(name: str = "Bench") -> str:
    """A remote environment complete for a matrix-only DR-SMOKE run (preflight passes, nothing is reached)."""
    return f'name = "{name}"\nkind = "remote"\n[service]\nbase_url = "{closed_url()}"\n[approval]\nrequired = false\n'


def write_tests(directory: Path, count: int) -> None:
    """`count` trivial matrix-only tests, PER_MODULE to a module."""
    directory.mkdir(parents=True, exist_ok=True)
    for first in range(0, count, PER_MODULE):
        body = "".join(_TEST.format(n=n) for n in range(first, min(first + PER_MODULE, count)))
        text = f'"""DR-SMOKE: a generated trivial check."""\n\nimport pytest\n\n\n{body}'
        (directory / f"test_bench_{first // PER_MODULE:03d}.py").write_text(text, encoding="utf-8")


@dataclass(frozen=True)
class Project:
    path: Path
    env_file: Path | None  # the runbook project's environment file; None for the plain project
    pycache: Path | None = None  # PYTHONPYCACHEPREFIX of its runs; None: no bytecode written or read

    def environ(self) -> dict[str, str]:
        """The runs' process environment: bytecode cached under `pycache` (outside the source trees, so a
        run writes nothing into them), as on an operator's machine after the first run; or never cached."""
        environ = {
            k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")
        }
        if self.pycache is None:
            environ["PYTHONDONTWRITEBYTECODE"] = "1"
        else:
            environ["PYTHONPYCACHEPREFIX"] = str(self.pycache)
        return environ


def make_runbook_project(
    path: Path, count: int, root: Path = RUNBOOK_ROOT, conftest_extra: str = "", pycache: Path | None = None
) -> Project:
    """The tests with the runbook's plugins, loaded the way the runbook's conftest.py loads them."""
    write_tests(path, count)
    plugins = runbook_plugins(root)
    (path / "conftest.py").write_text(f"pytest_plugins = {plugins!r}\n{conftest_extra}", encoding="utf-8")
    (path / "pytest.ini").write_text(
        f"[pytest]\npythonpath = {root.as_posix()}\naddopts = --strict-markers\n", encoding="utf-8"
    )
    env_file = path / "Bench.toml"
    env_file.write_text(remote_env(), encoding="utf-8")
    return Project(path, env_file, pycache)


def make_plain_project(path: Path, count: int, pycache: Path | None = None) -> Project:
    """The same tests under plain pytest: the two markers registered, no runbook plugin."""
    write_tests(path, count)
    (path / "pytest.ini").write_text(
        "[pytest]\naddopts = --strict-markers\nmarkers =\n    dr_smoke: the smoke row\n    phase(id): the phase\n",
        encoding="utf-8",
    )
    return Project(path, None, pycache)


@dataclass(frozen=True)
class Result:
    wall_s: float
    cpu_s: float  # user + system seconds of the process (and its children), NaN where unknown
    returncode: int
    passed: int
    stdout: str
    stderr: str
    ended: float  # time.time() when the process had exited


_PASSED = re.compile(r"\b(\d+) passed\b")


def passed_count(stdout: str) -> int:
    """The "N passed" of pytest's last summary line (0 when there is none)."""
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    found = _PASSED.search(lines[-1]) if lines else None
    return int(found.group(1)) if found else 0


def run(project: Project, args: list[str], prefix: list[str] | None = None) -> Result:
    """One whole pytest process (`prefix`, default PYTEST, then `args`) in the project's directory; wall time
    from spawn to exit."""
    command = [*(prefix if prefix is not None else PYTEST), *args]
    cpu_before = children_cpu_s()
    started = time.perf_counter()
    proc = subprocess.run(
        command, cwd=project.path, capture_output=True, text=True, check=False, env=project.environ()
    )
    wall = time.perf_counter() - started
    ended = time.time()
    cpu = children_cpu_s() - cpu_before
    return Result(wall, cpu, proc.returncode, passed_count(proc.stdout), proc.stdout, proc.stderr, ended)


def children_cpu_s() -> float:
    """User + system CPU seconds of this process's waited-for children so far (NaN where unknown)."""
    if sys.platform == "win32":
        return float("nan")
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def load_words() -> str:
    """The 1/5/15-minute load averages against the CPU count: whether the machine was busy meanwhile."""
    if not hasattr(os, "getloadavg"):
        return "load average unknown"
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def require_all_passed(result: Result, count: int, what: str) -> None:
    """Stop the benchmark, loudly, when a run did not pass every test: its time would mean nothing."""
    if result.returncode == 0 and result.passed == count:
        return
    tail = "\n".join((result.stdout + "\n" + result.stderr).strip().splitlines()[-30:])
    sys.exit(
        f"BENCHMARK INVALID: {what}: exit {result.returncode}, {result.passed} of {count} tests passed; "
        f"a figure of a broken run means nothing. Last lines:\n{tail}"
    )


def runbook_args(project: Project, evidence_dir: Path) -> list[str]:
    assert project.env_file is not None
    return ["-m", "dr_smoke", f"--env-file={project.env_file}", f"--evidence-dir={evidence_dir}"]


def one_bundle(evidence_dir: Path) -> Path:
    bundles = [p for p in evidence_dir.iterdir() if p.is_dir()]
    if len(bundles) != 1:
        sys.exit(f"BENCHMARK INVALID: expected one evidence bundle in {evidence_dir}, found {len(bundles)}")
    return bundles[0]
