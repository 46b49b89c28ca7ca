"""The terminal guides (issue #11 item 7): what the operator reads while the runbook runs, and what to type next.

- One line as each phase starts and one as it ends: `RB-2 started: stop the site and recycle the App Pool`,
  `RB-2 passed in 4.1 s` (or FAILED with its reason, skipped, blocked by the phase that closed the gate). The
  description is the phase's title in drivers/phases.py; the time is measured from its start to its end.
- Live progress of the monitoring window (BG-4): probes done / total, p95 so far, failed probes. On a terminal
  the line is updated in place (carriage return); elsewhere (a CI log) a line every tenth of the window and at
  every failed probe. A final line says how the window ended.
- After the run, in the "runbook evidence" section of the summary: after a CI gate run that passed
  (`-m "bluegreen and not traffic"`), the exact command that switches traffic; after a failed run, how to open
  the report, how to run again, and how to stop a Lab left running.

The lines go through pytest's terminal reporter, each on a line of its own: pytest's own line (the file name and
its dots, or a test's id in -v) is taken up again after them. The capture of the running test is suspended
while they are written (as pytest's live logging does). `-q` (and -qq) leaves out the phase and progress lines,
as it leaves out pytest's own file names; the next command is always printed with the summary. A parallel run
(-n) prints the phase lines on the controller; the monitoring window then runs on a worker and has no progress
line (its final figures are in the report).
"""

from __future__ import annotations

import bisect
import math
import os
import shlex
import shutil
import sys
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import pytest

from drivers import phases as table
from drivers.monitor import MonitorResult, Sample
from plugins.state import PhaseRecord, RunbookRun, run_key

GATE_EXPRESSION = "bluegreen and not traffic"
SWITCH_EXPRESSION = "bluegreen and traffic"
TRAFFIC_PHASES = frozenset({"BG-4", "BG-5"})
PROGRESS_LINES = 10  # without a terminal: about this many progress lines over a whole window


def elapsed_words(seconds: float) -> str:
    """4.1 s, 59.9 s, 5 min 12 s, 1 h 02 min."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def ms_words(value: float) -> str:
    return f"{value:.0f} ms"


class Window:
    """The monitoring window as far as it has run: what the progress line says."""

    def __init__(self, url: str, probes: int, interval_s: float, duration_s: float) -> None:
        self.url, self.total, self.interval_s, self.duration_s = url, max(1, probes), interval_s, duration_s
        self.latencies: list[float] = []  # sorted
        self.failed = 0
        self.done = 0
        self.every = max(1, math.ceil(self.total / PROGRESS_LINES))

    def add(self, sample: Sample) -> None:
        self.done += 1
        bisect.insort(self.latencies, sample.latency_ms)
        if not sample.ok:
            self.failed += 1

    @property
    def p95(self) -> float:
        if not self.latencies:
            return 0.0
        return self.latencies[
            max(1, math.ceil(0.95 * len(self.latencies))) - 1
        ]  # nearest rank, as the monitor

    def figures(self) -> str:
        return f"{self.done}/{self.total} probes, p95 {ms_words(self.p95)}, {self.failed} failed"

    def opening(self) -> str:
        return (
            f"BG-4 monitoring {self.url}: {self.total} probes, one every {self.interval_s:g} s "
            f"for {elapsed_words(self.duration_s)}"
        )

    def line(self) -> str:
        return f"BG-4 monitoring: {self.figures()}"


class Progress:
    """The plugin object "runbook-progress": the phase lines, the monitoring progress and the next command."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.started: dict[str, float] = {}  # phase -> time.monotonic() at its start
        self.window: Window | None = None
        self._holding = False  # a block of our lines is open (the monitoring window): pytest's line waits
        self._held: str | None = None  # pytest's prefix, written again after our block
        self._in_place = False  # a progress line on the terminal that the next update overwrites

    # --- where the lines go -----------------------------------------------------------------------------
    @property
    def reporter(self) -> Any:
        return self.config.pluginmanager.get_plugin("terminalreporter")

    def shown(self, run: RunbookRun) -> bool:
        """Phase and progress lines: not with -q, not on a worker of a parallel run (its output is not shown)."""
        return self.reporter is not None and not run.worker and self.config.get_verbosity() >= 0

    @contextmanager
    def _terminal(self) -> Iterator[Any]:
        """The terminal writer, with the running test's capture suspended (a hook called during setup or call
        would otherwise write into the test's captured output)."""
        capman = self.config.pluginmanager.get_plugin("capturemanager")
        suspended = capman.global_and_fixture_disabled() if capman is not None else nullcontext()
        with suspended:
            yield self.reporter._tw

    def _pending_prefix(self) -> str | None:
        """What pytest wrote at the start of the current line and goes on writing after (its file name in the
        default mode, a test's id in -v); None when its next output starts a line of its own."""
        tr = self.reporter
        current = getattr(tr, "currentfspath", None)
        if isinstance(current, Path):
            try:
                return f"{os.path.relpath(current, getattr(tr, 'startpath', self.config.rootpath))} "
            except ValueError:  # another drive (Windows)
                return f"{current} "
        return current if isinstance(current, str) else None

    def _begin(self, tw: Any) -> None:
        """Start a block of our lines on a fresh line; on a terminal, a line that holds only pytest's prefix
        (nothing after it yet) is overwritten rather than left dangling."""
        if self._holding:
            if self._in_place:
                tw.line()
                self._in_place = False
            return
        prefix = self._pending_prefix()
        self._held, self._holding = prefix, True
        width = tw.width_of_current_line
        if prefix is not None and width == len(prefix) and self.reporter.isatty():
            tw.write("\r" + " " * width + "\r")
        elif width:
            tw.line()

    def _finish(self, tw: Any, *, resume: bool) -> None:
        """Give the line back to pytest. `resume`: pytest goes on with the line it had started (a test's result
        follows): its prefix is written again. Otherwise our last line is left open where pytest's next output
        starts a new line itself (no blank line), closed where it would not."""
        tr = self.reporter
        held, self._held, self._holding = self._held, None, False
        if resume and held is not None:
            if tw.width_of_current_line:
                tw.line()
            tw.write(held)
        elif self.config.get_verbosity() > 0:
            tr.currentfspath = -2  # pytest's "a result was written on this line": its next line breaks first
        elif getattr(tr, "showfspath", False) and not hasattr(self.config, "workerinput"):
            tr.currentfspath = None  # its next file name starts with a new line
        else:
            if tw.width_of_current_line:
                tw.line()
            tr.currentfspath = None  # -n without -v: its letters follow on this fresh line
        tw.flush()

    def write_lines(
        self, lines: list[tuple[str, dict[str, bool]]], *, resume: bool, keep_open: bool = False
    ) -> None:
        """Our lines, each on its own line; `keep_open`: more of ours follow (pytest does not write meanwhile)."""
        try:
            with self._terminal() as tw:
                self._begin(tw)
                for n, (text, markup) in enumerate(lines):
                    if n:
                        tw.line()
                    tw.write(text, **markup)
                if keep_open:
                    if lines:
                        tw.line()
                    tw.flush()
                else:
                    self._finish(tw, resume=resume)
        except Exception:  # noqa: BLE001, S110 - a terminal that cannot be written to must not stop a recovery
            pass

    def write_in_place(self, text: str, **markup: bool) -> None:
        """A progress line on a terminal, overwriting the previous one."""
        try:
            with self._terminal() as tw:
                if not self._in_place:
                    self._begin(tw)
                fill = max(0, tw.fullwidth - len(text) - 1)
                tw.write("\r" + text + " " * fill, flush=True, **markup)
                self._in_place = True
        except Exception:  # noqa: BLE001, S110 - as above
            pass

    # --- phases -----------------------------------------------------------------------------------------
    def pytest_runbook_phase_started(self, config: pytest.Config, run: RunbookRun, phase: str) -> None:
        self.started[phase] = time.monotonic()
        if not self.shown(run):
            return
        title = table.BY_ID[phase].title if phase in table.BY_ID else ""
        text = f"{phase} started: {title}" if title else f"{phase} started"
        # In a serial run this is the setup of the phase's first test: pytest's line for it goes on after ours. On a
        # parallel run's controller, pytest writes each result on a line of its own.
        self.write_lines([(text, {"bold": True})], resume=not run.options.parallel)

    def pytest_runbook_phase_ended(self, config: pytest.Config, run: RunbookRun, record: PhaseRecord) -> None:
        began = self.started.pop(record.id, None)
        if not self.shown(run):
            return
        took = elapsed_words(time.monotonic() - began) if began is not None else "an unknown time"
        reason = run.env.redact(record.reason) if record.reason else ""
        if record.outcome == "passed":
            text, markup = f"{record.id} passed in {took}", {"green": True}
        elif record.outcome == "failed":
            text, markup = f"{record.id} FAILED in {took}" + (f": {reason}" if reason else ""), {"red": True}
        elif record.outcome == "blocked":
            by = run.blocked_by[0] if run.blocked_by else "an earlier phase"
            text, markup = f"{record.id} not run: blocked by {by} ({took})", {"yellow": True}
        else:
            text = f"{record.id} {record.outcome or 'ended'} in {took}" + (f": {reason}" if reason else "")
            markup = {"yellow": True}
        lines = [(text, markup)]
        if self.window is not None and record.id == "BG-4":  # the window was interrupted: its last figures
            lines.insert(0, (f"BG-4 monitoring stopped: {self.window.figures()}", {"yellow": True}))
            self.window = None
        if not self._holding:
            self._fill_progress()
        self.write_lines(lines, resume=False)

    def _fill_progress(self) -> None:
        """pytest's own line ends with its percentage before a line of ours, as it would before the next file."""
        tr = self.reporter
        fill = getattr(tr, "_write_progress_information_filling_space", None)
        if isinstance(getattr(tr, "currentfspath", None), Path) and getattr(tr, "_show_progress_info", False):
            if getattr(tr, "_is_last_item", False):
                return  # pytest writes its 100% at once, on our line: it is the last
            if callable(fill):
                try:
                    with self._terminal():
                        fill()
                except Exception:  # noqa: BLE001, S110 - the percentage is a nicety
                    pass
            tr.currentfspath = None

    # --- the monitoring window (BG-4) -------------------------------------------------------------------
    def pytest_runbook_monitor_started(
        self,
        config: pytest.Config,
        run: RunbookRun,
        url: str,
        probes: int,
        interval_s: float,
        duration_s: float,
    ) -> None:
        self.window = window = Window(run.env.redact(url), probes, interval_s, duration_s)
        if not self.shown(run):
            return
        self.write_lines([(window.opening(), {})], resume=True, keep_open=True)
        if self.reporter.isatty():
            self.write_in_place(window.line())

    def pytest_runbook_monitor_probe(self, config: pytest.Config, run: RunbookRun, sample: Sample) -> None:
        window = self.window
        if window is None:
            return
        window.add(sample)
        if not self.shown(run):
            return
        if self.reporter.isatty():
            self.write_in_place(window.line(), red=window.failed > 0)
        elif not sample.ok:
            why = run.env.redact(sample.error or f"HTTP {sample.status}")
            line = f"{window.line()} (probe {window.done} failed: {why})"
            self.write_lines([(line, {"red": True})], resume=True, keep_open=True)
        elif window.done % window.every == 0 and window.done < window.total:
            self.write_lines([(window.line(), {})], resume=True, keep_open=True)

    def pytest_runbook_monitor_ended(
        self, config: pytest.Config, run: RunbookRun, result: MonitorResult
    ) -> None:
        window, self.window = self.window, None
        if window is None or not self.shown(run):
            return
        if result.breach:
            stopped = "done" if window.done >= window.total else "stopped"
            text = f"BG-4 monitoring {stopped}: {window.figures()}; breach: {run.env.redact(result.breach)}"
            markup = {"red": True}
        elif result.interrupted:
            text = f"BG-4 monitoring interrupted by the operator: {window.figures()}; not judged"
            markup = {"yellow": True}
        else:
            text, markup = f"BG-4 monitoring done: {window.figures()}; within the SLA", {"green": True}
        if self._in_place:
            self.write_in_place(text, **markup)
            self.write_lines([], resume=True)  # ends the in-place line; pytest's line goes on
        else:
            self.write_lines([(text, markup)], resume=True)

    # --- the next command -------------------------------------------------------------------------------
    @pytest.hookimpl(wrapper=True)
    def pytest_terminal_summary(self, terminalreporter: Any, config: pytest.Config) -> Generator[None]:
        """After the runbook's own summary lines (plugins.evidence, plugins.archive): what to type next."""
        result = yield
        run = config.stash.get(run_key, None)
        if run is not None and not run.worker and run.bundle is not None and run.flow is not None:
            for line in next_steps(run, config):
                terminalreporter.write_line(line, bold=line.startswith("Next:"))
        return result


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(Progress(config), "runbook-progress")


# --- commands an operator types ----------------------------------------------------------------------------
def quote(arg: str) -> str:
    """One argument as cmd, PowerShell and a POSIX shell all read it: as it is when plain, else in double quotes
    (an approver's name, a path with a space, a marker expression)."""
    if arg and all(c.isalnum() or c in "-_./\\:=@+," for c in arg):
        return arg
    if '"' in arg or "$" in arg or "`" in arg:
        return shlex.quote(arg)  # no such argument comes from the runbook's own options; a POSIX shell's form
    return f'"{arg}"'


def runbook_invocation() -> str:
    """How this pytest was started, as the operator can type it again: the console script (`pytest`, or the
    path it was run by), else `<python> -m pytest` (relative to the current folder when inside it)."""
    argv0 = sys.argv[0] if sys.argv else ""
    if Path(argv0).name.lower() in ("pytest", "pytest.exe", "py.test", "py.test.exe"):
        on_path = shutil.which("pytest")
        if on_path and Path(on_path).resolve() == Path(argv0).resolve():
            return "pytest"
        return quote(argv0)
    python = Path(sys.executable)
    try:
        shown = str(python.relative_to(Path.cwd()))
    except ValueError:
        shown = str(python)
    return f"{quote(shown)} -m pytest"


def open_command(path: Path) -> str:
    """The command that opens a file in the default program of this platform."""
    if os.name == "nt":
        return f'start "" {quote(str(path))}'
    if sys.platform == "darwin":
        return f"open {quote(str(path))}"
    return f"xdg-open {quote(str(path))}"


def _env_arguments(run: RunbookRun, config: pytest.Config) -> list[str]:
    env_file = config.getoption("runbook_env_file", None)
    args = [f"--env-file={env_file}"] if env_file else shlex.split(run.options.env_argument)
    evidence = config.getoption("runbook_evidence_dir", None)
    if evidence:
        args.append(f"--evidence-dir={evidence}")
    return args


def is_gate_run(run: RunbookRun) -> bool:
    """A Blue/Green run that deployed and verified the idle slot and left the switch out (the CI gate)."""
    return run.flow == table.BLUEGREEN and "BG-1" in run.phases and not TRAFFIC_PHASES & run.phases.keys()


def command(run: RunbookRun, config: pytest.Config, expression: str, *extra: str) -> tuple[str, bool]:
    """The runbook command for `expression` against this run's environment, with what that run needs: the
    approver (repeated, or NAME to fill in when the environment requires one) and --confirm-env for a protected
    environment. Also whether NAME is to be filled in."""
    env = run.env
    args = [runbook_invocation(), "-m", quote(expression), *(quote(a) for a in _env_arguments(run, config))]
    name_needed = False
    if run.options.approved_by:
        args += ["--approved-by", quote(run.options.approved_by)]
    elif not env.is_lab and env.approval.required:
        args += ["--approved-by", "NAME"]
        name_needed = True
    if env.protect:
        args += ["--confirm-env", quote(env.name)]
    args += [quote(a) for a in extra]
    return " ".join(args), name_needed


def next_steps(run: RunbookRun, config: pytest.Config) -> list[str]:
    """The lines that tell the operator what to type next, or none."""
    pad = " " * 10
    lab = run.lab
    lab_kept = bool(lab) and bool(run.options.keep_lab or lab.get("reused"))
    passed = run.outcome == "passed" and not run.site_down
    lines: list[str] = []
    if passed and is_gate_run(run):
        switch, name_needed = command(run, config, SWITCH_EXPRESSION)
        if run.env.is_lab and not lab_kept:
            gate, _ = command(run, config, GATE_EXPRESSION, "--keep-lab")
            lines += [
                "Next:     the gate passed, but the Lab stopped with this run and the switch needs the Lab it "
                "verified: run the gate again with the Lab kept, then switch",
                f"{pad}{gate}",
                f"{pad}{switch}",
            ]
        else:
            lines += [
                "Next:     the gate passed: the release waits on the idle slot; switch traffic to it with",
                f"{pad}{switch}",
            ]
        if name_needed:
            lines.append(f"{pad}(NAME: who approves the switch, as the change record names them)")
        return lines
    if passed:
        return lines
    report = run.bundle / "report.html" if run.bundle is not None else None
    if report is not None and report.exists():
        lines.append(f"Next:     read what failed in the report: {open_command(report)}")
    elif run.bundle is not None:
        lines.append(f"Next:     read what failed in the timeline of {run.bundle}")
    if run.site_down:
        lines.append(f"{pad}the site is DOWN: restore it by hand first")
    if is_gate_run(run):
        rerun, _ = command(run, config, GATE_EXPRESSION, *(["--keep-lab"] if lab_kept else []))
        lines += ["          once it is fixed, run the gate again:", f"{pad}{rerun}"]
    if lab_kept:
        lines.append(f"{pad}stop the Lab left running: make clean-lab")
    return lines
