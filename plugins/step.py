"""`--step`: the playbook's first rule, each step proceeds only after approval, asked of the operator at the
terminal before every phase; and guided failure (as in Octopus Deploy) when a phase fails.

Before the first test of each phase (plugins.flow calls `pytest_runbook_approve_phase`), the operator reads the
phase's section of the plan (plugins.flow.phase_section: its title, its checklist, and `phase_targets`: the
slot, address, version, package and the exact argv a command driver will run, filled in from what the run
knows at that moment) and answers `Proceed with RB-2 on InternalProd? [y]es / [s]kip / [a]bort`:

- yes: the phase runs;
- skip: its tests are skipped "skipped by the operator at the step prompt". A required phase (every phase of
  the flow, and the rows of `[matrix] required`) never passes silently: it fails the run and closes the gate
  like any other phase that did not pass, so every later phase is "blocked by RB-2: ..."; a row that is not
  required is just skipped, and the run goes on;
- abort: the phase fails "aborted by the operator at RB-3", which closes the gate; the rollback policy applies
  as after any failure (fixtures/rollback.py decides: a flow that already stopped the site restores it).

When a test of a phase fails, the operator is asked `RB-3 failed: <why>. [r]etry / roll [b]ack now / [a]bort`:

- retry: the failed test runs again, in the same session (its own fixtures set up again, a session fixture
  whose setup failed is set up again; what worked stays as it is, as for the next test). Only the last attempt
  is reported to pytest (terminal, junit.xml, report.html); the journal keeps every answer and why it was asked;
- roll back now: the gate closes with the failure and the rollback policy applies at once (single node: the
  site's restore runs now, not at the end of the run; Blue/Green: traffic goes back if it left the live slot,
  which a failure after the switch did already by itself);
- abort: the gate closes with the failure; the rollback policy applies at the end of the run, as without
  `--step`.

After an abort or a roll back, nothing is asked any more: the phases left are blocked, the recording phase
(RB-5) still records. Each answer is an `approval` event (phase, approver = `--approved-by`, else the OS user,
the answer, the time). Ctrl-C or the end of input at a prompt is an abort.

The prompts get through pytest's output capture the way `--pdb` does (the capture manager suspends the global
capture, stdin included, for the prompt). `--step` needs a terminal on stdin and a serial run: without one, or
under `-n` (pytest-xdist), it is a usage error (exit 4) before anything is touched.
"""

from __future__ import annotations

import getpass
import json
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import pytest
from _pytest.runner import call_and_report  # the runner's own step, as pytest-rerunfailures reruns a test

from drivers import commands
from drivers import phases as table
from drivers.base import DriverError, plain_error
from drivers.packages import find_packages
from drivers.probe import url_at
from plugins.state import RunbookRun, run_key

HELP_STEP = (
    "ask the operator at the terminal before each phase (what it will do in this run, then [y]es / [s]kip / "
    "[a]bort), and when a phase fails ([r]etry / roll [b]ack now / [a]bort); each answer is journalled as an "
    "approval. Needs a terminal; not with -n."
)
SKIPPED = "skipped by the operator at the step prompt"
STEP_ANSWERS = {"y": "yes", "yes": "yes", "s": "skip", "skip": "skip", "a": "abort", "abort": "abort"}
FAILURE_ANSWERS = {
    "r": "retry",
    "retry": "retry",
    "b": "roll back",
    "roll back": "roll back",
    "rollback": "roll back",
    "back": "roll back",
    "a": "abort",
    "abort": "abort",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("runbook", "DR & rollback runbook")
    group.addoption("--step", dest="runbook_step", action="store_true", help=HELP_STEP)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("runbook_step", False):
        return
    if config.getoption("runbook_plan", False) or config.option.collectonly:
        return  # nothing runs, nothing to approve
    if getattr(config, "workerinput", None) is not None:
        return  # never reached: the controller refuses --step with -n below
    if getattr(config.option, "dist", "no") != "no" and getattr(config.option, "tx", None):
        raise pytest.UsageError(
            f"--step: the operator approves each phase at the terminal, one phase after the other; it cannot run "
            f"under -n {len(config.option.tx)} (pytest-xdist runs the tests on workers, which have no terminal). "
            "Leave out -n, or leave out --step"
        )
    console = Console(config)
    if not console.stdin_is_terminal():
        raise pytest.UsageError(
            "--step: needs a terminal to ask the operator before each phase, and stdin is not one (a pipe, a file, "
            "a scheduled task or CI). Run it from a terminal, or leave out --step (then --approved-by NAME "
            "approves the run up front)"
        )
    config.pluginmanager.register(Stepper(config, console), "runbook-step")


def os_user() -> str:
    """The operator's login name, when --approved-by does not name the approver."""
    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):
        return "the operator at this terminal (the OS did not say who)"


class Console:
    """The operator's terminal, reached through pytest's output capture as --pdb reaches it: the capture manager
    suspends the global capture (stdin included) for the prompt, then puts it back as it was."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    @contextmanager
    def terminal(self) -> Iterator[None]:
        capman = self.config.pluginmanager.getplugin("capturemanager")
        if capman is None:
            yield
            return
        # Inside a test's setup the capture runs; between tests only stdin is captured. Put back what was.
        multi = getattr(capman, "_global_capturing", None)
        was_started = bool(multi is not None and multi.is_started())
        capman.suspend(in_=True)
        try:
            yield
        finally:
            capman.resume()
            if not was_started:
                capman.suspend_global_capture(in_=False)

    def stdin_is_terminal(self) -> bool:
        with self.terminal():
            stdin = sys.stdin
            try:
                return stdin is not None and stdin.isatty()
            except (AttributeError, ValueError, OSError):
                return False

    def ask(self, text: str, question: str, answers: Mapping[str, str]) -> tuple[str, str]:
        """Show `text`, ask `question` until one of `answers` is given; (answer, how it was given)."""
        reporter = self.config.pluginmanager.getplugin("terminalreporter")
        choices = "/".join(sorted({k for k in answers if len(k) == 1}))
        with self.terminal():
            if reporter is not None:
                reporter.ensure_newline()
            tw = self.config.get_terminal_writer()
            tw.line()
            tw.sep("-", "step", cyan=True)
            for line in text.rstrip("\n").splitlines():
                tw.line(line)
            try:
                while True:
                    tw.write(question + " ", bold=True)
                    tw.flush()
                    line = sys.stdin.readline()
                    if not line:
                        tw.line()
                        return "abort", "the terminal closed (end of input) at the prompt"
                    answer = answers.get(" ".join(line.strip().lower().split()))
                    if answer is not None:
                        return answer, "typed at the prompt"
                    tw.line(f"Please answer {choices} (or the whole word).", yellow=True)
            except KeyboardInterrupt:
                tw.line()
                return "abort", "Ctrl-C at the prompt"
            finally:
                if reporter is not None:
                    reporter.currentfspath = None  # the next result starts a fresh line with its file name

    def say(self, text: str) -> None:
        with self.terminal():
            self.config.get_terminal_writer().line(text)


class Stepper:
    """The --step plugin of one session ("runbook-step"): the answers given so far, and the run's stop."""

    def __init__(self, config: pytest.Config, console: Console) -> None:
        self.config, self.console = config, console
        self.approver = config.getoption("runbook_approved_by") or os_user()
        self.answers: dict[str, str] = {}  # phase -> yes | skip | abort, asked once per phase
        self.stopped: tuple[str, str] | None = None  # (phase, why) once the operator aborted or rolled back
        self.decided: set[str] = set()  # tests the operator skipped or aborted: their failure asks nothing
        self.retries: dict[str, int] = {}

    def _run(self) -> RunbookRun | None:
        run = self.config.stash.get(run_key, None)
        return run if run is not None and run.flow is not None and not run.worker else None

    # --- before a phase ---------------------------------------------------------------------------------
    @pytest.hookimpl
    def pytest_runbook_approve_phase(
        self, config: pytest.Config, run: RunbookRun, phase: str, item: pytest.Item
    ) -> None:
        from plugins.flow import start_phase

        if self.stopped is not None:
            if phase in table.RECORDING and self.stopped[0] != phase:
                return  # the recording phase records what happened; nothing to approve
            self.decided.add(item.nodeid)
            start_phase(run, phase, item)
            pytest.skip(self.stopped[1])
        answer = self.answers.get(phase)
        if answer is None:
            answer = self.answers[phase] = self._ask_step(run, phase, item)
        if answer == "yes":
            return
        self.decided.add(item.nodeid)
        start_phase(run, phase, item)
        if answer == "abort":
            why = f"aborted by the operator at {phase}"
            self.stopped = (phase, why)
            pytest.fail(why, pytrace=False)
        if required(run, phase) and not table.BY_ID[phase].is_row:
            # A required row's skip is failed by plugins.flow ("required check ... was skipped"); a step of the
            # flow likewise: the run cannot pass without it.
            pytest.fail(
                f"{SKIPPED}: {phase} is a required step of the {run.flow} flow (a required step never passes "
                "silently; every later phase is blocked)",
                pytrace=False,
            )
        pytest.skip(SKIPPED)

    def _ask_step(self, run: RunbookRun, phase: str, item: pytest.Item) -> str:
        from plugins.flow import phase_section, plan_key

        plan = self.config.stash.get(plan_key, None)
        items = plan.phases.get(phase, [item]) if plan is not None else [item]
        text = "\n".join(phase_section(phase, items, run))
        if required(run, phase):
            text += (
                f"\nSkip: {phase} is required, so skipping it fails the run and blocks every later phase"
                + (" (the recording phase still runs)." if table.RECORDING & run.phases.keys() else ".")
            )
        elif phase not in table.RECORDING:
            text += f"\nSkip: {phase} is not required ([matrix] required); the run goes on without it."
        text += "\nAbort: the run stops here and the rollback policy applies."
        asked = time.monotonic()
        answer, how = self.console.ask(
            text, f"Proceed with {phase} on {run.env.name}? [y]es / [s]kip / [a]bort", STEP_ANSWERS
        )
        words = {"yes": "proceed", "skip": SKIPPED, "abort": f"aborted by the operator at {phase}"}[answer]
        run.approval(
            self.approver,
            answer=answer,
            prompt="step",
            given=how,
            waited_s=round(time.monotonic() - asked, 3),
            env=run.env.name,
            **{"for": f"{phase} at the step prompt: {words}"},
        )
        return answer

    # --- when a test of a phase fails -------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
        from plugins.flow import phase_of

        run = self._run()
        phase = phase_of(item)
        if run is None or phase is None:
            return None
        ihook = item.ihook
        ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        try:
            reports, answer = self._attempts(run, phase, item)
            for report in reports:
                ihook.pytest_runtest_logreport(report=report)
            if answer == "roll back":
                self._roll_back_now(run, phase, item)
            if item.session.shouldfail or item.session.shouldstop:
                nextitem = None
            call_and_report(item, "teardown", True, nextitem=nextitem)
        finally:
            if hasattr(item, "_request"):
                item._request = False  # as runtestprotocol leaves an item
                item.funcargs = None  # type: ignore[attr-defined]
        ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        return True

    def _attempts(
        self, run: RunbookRun, phase: str, item: pytest.Item
    ) -> tuple[list[pytest.TestReport], str]:
        """Setup and call, again while the operator answers retry; the reports of the last attempt."""
        while True:
            if hasattr(item, "_request") and not item._request:
                item._initrequest()  # type: ignore[attr-defined]  # as pytest's runtestprotocol does for a rerun
            reports = [call_and_report(item, "setup", False)]
            if reports[0].passed:
                reports.append(call_and_report(item, "call", False))
            failed = next((r for r in reports if r.failed), None)
            if failed is None or item.nodeid in self.decided or self.stopped is not None:
                return reports, ""
            answer = self._ask_failure(run, phase, item, failed)
            if answer != "retry":
                return reports, answer
            self._reset(item)

    def _ask_failure(self, run: RunbookRun, phase: str, item: pytest.Item, failed: pytest.TestReport) -> str:
        from plugins.flow import one_line

        why = run.env.redact(one_line(failed))
        attempt = self.retries.get(item.nodeid, 0) + 1
        text = (
            f"{phase} failed: {item.nodeid}, attempt {attempt}.\n"
            f"Retry: run {item.name} again (its own fixtures are set up again).\n"
            "Roll back now: stop here and apply the rollback policy at once "
            f"(--runbook-rollback {run.options.rollback_policy}).\n"
            "Abort: stop here; the rollback policy applies at the end of the run."
        )
        asked = time.monotonic()
        answer, how = self.console.ask(
            text, f"{phase} failed: {why}. [r]etry / roll [b]ack now / [a]bort", FAILURE_ANSWERS
        )
        run.approval(
            self.approver,
            answer=answer,
            prompt="failure",
            given=how,
            why=why,
            attempt=attempt,
            waited_s=round(time.monotonic() - asked, 3),
            env=run.env.name,
            **{"for": f"{phase} failed, at the guided-failure prompt: {answer}"},
        )
        if answer == "retry":
            self.retries[item.nodeid] = attempt
            run.note(f"{phase}: the operator retries {item.name} after attempt {attempt} failed: {why}")
        else:
            verb = "rolled back" if answer == "roll back" else "aborted"
            self.stopped = (phase, f"{verb} by the operator at {phase}")
            run.note(f"{verb} by the operator at {phase} after it failed: {why}")
        return answer

    def _reset(self, item: pytest.Item) -> None:
        """Undo the failed attempt as pytest would between two tests: this test's own fixtures torn down (the
        wider ones stay, as for the next test), a fixture whose setup raised forgotten so that it runs again."""
        parent = cast(pytest.Item, item.parent)  # teardown_exact keeps what the parent's chain needs
        call_and_report(item, "teardown", False, nextitem=parent)
        info = getattr(item, "_fixtureinfo", None)
        for defs in getattr(info, "name2fixturedefs", {}).values():
            for fixturedef in defs:
                cached = getattr(fixturedef, "cached_result", None)
                if cached is not None and cached[2] is not None:
                    fixturedef.cached_result = None
        item._request = False  # type: ignore[attr-defined]
        item.funcargs = None  # type: ignore[attr-defined]

    def _roll_back_now(self, run: RunbookRun, phase: str, item: pytest.Item) -> None:
        """The rollback policy, at once (the gate has closed with the failure already)."""
        before = len(run.of_kind("rollback"))
        nothing = "nothing was stopped or switched"
        bluegreen = self.config.pluginmanager.get_plugin("runbook-bluegreen")
        if bluegreen is not None:
            if bluegreen.switched and not bluegreen.rolled_back:
                bluegreen.apply_policy(f"rolled back by the operator at {phase}")
            elif bluegreen.rolled_back:
                nothing = f"traffic is back on {bluegreen.live} already (sent back when the check failed)"
            else:
                nothing = (
                    f"traffic never left the live slot {bluegreen.live}; the idle slot {bluegreen.idle} is "
                    "stopped at the end of the run if this run touched it"
                )
        elif run.flow == table.ROLLBACK and "RB-2" in run.phases and run.phases["RB-2"].started:
            request = getattr(item, "_request", None)
            try:
                site = request.getfixturevalue("site") if request else None
            except Exception as exc:  # noqa: BLE001 - said to the operator; the finalizer still decides
                run.warn(
                    f"roll back now: the site's restore could not be reached ({plain_error(exc)}); the "
                    "rollback policy applies at the end of the run"
                )
                site = None
            if site is not None:
                site.undo()
                site.stopped.clear()  # decided and journalled: the fixture's finalizer has nothing left to undo
        done = run.of_kind("rollback")[before:]
        if done:
            from plugins.state import describe

            for data in done:
                self.console.say(describe({"kind": "rollback", "data": data}))
        else:
            self.console.say(f"Nothing to roll back now: {nothing}.")
            run.note(f"roll back now at {phase}: nothing to roll back ({nothing})")


def required(run: RunbookRun, phase: str) -> bool:
    """A phase the run cannot pass without: every step of the flow, and the rows of [matrix] required."""
    spec = table.BY_ID[phase]
    if spec.recording:
        return False
    return phase in run.env.matrix.required if spec.is_row else True


# --- what a phase will act on in this run -------------------------------------------------------------------
def phase_targets(run: RunbookRun, phase: str) -> list[str]:
    """What `phase` acts on in this run, in the operator's words: slot, address, version, package and the exact
    argv of each command driver verb, filled in from what the run knows now (the environment, with the Lab's
    addresses once it started; the journal: which slot is live, the version served). Reads files only (the
    offline package folder): never a network, never a system."""
    try:
        return _Targets(run).of(phase)
    except Exception as exc:  # noqa: BLE001 - a plan that cannot say is said, never an error of the run
        return [f"(cannot tell yet: {exc})"]


class _Targets:
    def __init__(self, run: RunbookRun) -> None:
        self.run, self.env = run, run.env
        self.lab_pending = run.env.is_lab and not run.lab  # the Lab's addresses are chosen when it starts
        self.public = (
            "the Lab's public address (chosen when the Lab starts)"
            if self.lab_pending
            else (run.env.service.base_url or "[service] base_url")
        )
        slots = [d for d in run.of_kind("slots") if d.get("live")]
        self.live: str | None = str(slots[-1]["live"]) if slots else None
        self.idle: str | None = str(slots[-1]["idle"]) if slots else None
        self.idle_url = str(slots[-1].get("idle_url") or "") if slots else ""

    def of(self, phase: str) -> list[str]:
        method = getattr(self, "_" + phase.lower().replace("-", "_"), None)
        return list(method()) if method is not None else []

    # helpers
    def packages(self) -> tuple[Any, Any, str]:
        """(latest, previous stable, why not) from the offline folder."""
        if self.lab_pending:
            return None, None, "the Lab's offline packages (known when the Lab starts)"
        directory = Path(self.env.packages.dir)
        if not directory.is_absolute():
            directory = self.run.rootdir / directory
        try:
            found = find_packages(directory)
            latest = found.latest
        except DriverError as exc:
            return None, None, str(exc)
        try:
            previous = found.previous_stable(self.env.packages.previous_stable)
        except DriverError as exc:
            return latest, None, str(exc)
        return latest, previous, ""

    def verb(self, verb: str, slot: str | None, **values: str) -> str:
        """One verb on one slot: the exact argv of a command driver, or which driver does it. `slot` None: the
        idle or live slot, which PRE asks the router for."""
        spec = commands.VERBS[verb]
        driver = getattr(self.env.drivers, spec.driver)
        on = f" on {slot}" if slot else (" on the slot PRE finds" if "slot" in spec.placeholders else "")
        if driver != "command":
            how = {"lab": "the embedded Lab's supervisor", "nginx": "the nginx router driver"}.get(
                driver, driver
            )
            return f"{verb}{on}: by {how}"
        template = self.env.drivers.command.get(verb)
        if template is None:
            return f"{verb}{on}: not configured ([drivers.command] {verb})"
        known = {"env": self.env.name, **({"slot": slot} if slot else {}), **values}
        missing = [p for p in spec.placeholders if p not in known]
        if missing:
            later = ", ".join("{" + p + "}" for p in missing)
            return f"{verb}{on}: runs {json.dumps(template)} ({later} filled in when known)"
        argv = commands.fill_template(verb, template, known)
        timeout = self.env.drivers.timeout_for(verb)
        return f"{verb}{on}: runs {json.dumps(argv)} (at most {timeout:g} s)"

    def health(self, base: str) -> str:
        return (
            base if self.lab_pending and base == self.public else url_at(base, self.env.service.health_path)
        )

    def row_target(self) -> str:
        if self.run.flow == table.BLUEGREEN:
            return (
                f"the idle slot {self.idle} at {self.idle_url}"
                if self.idle
                else "the idle slot's own address"
            )
        return self.public

    def stop_lines(self, slot: str | None) -> list[str]:
        lines = [self.verb("stop_site", slot)]
        if "recycle_pool" in self.env.drivers.command or self.env.drivers.deploy != "command":
            lines.append(self.verb("recycle_pool", slot))
        return lines

    def deploy_lines(self, slot: str | None, package: Any, why: str) -> list[str]:
        if package is None:
            return [f"the package: {why}", self.verb("deploy", slot), self.verb("start_site", slot)]
        values = {"version": package.version, "package": str(package.path)}
        return [
            f"package {package.path.name} (version {package.version}), its SHA-256 verified right before use",
            self.verb("deploy", slot, **values),
            self.verb("start_site", slot, version=package.version),
        ]

    # the phases
    def _pre(self) -> list[str]:
        latest, previous, why = self.packages()
        pkgs = why or ", ".join(
            f"{p.path.name} ({p.version})"
            for p in (latest, previous if self.run.flow == table.ROLLBACK else None)
            if p
        )
        lines = [
            "changes nothing: checks and records",
            f"packages verified (SHA-256): {pkgs}",
            f"the [notify] webhook ({self.env.notify.format}) probed; smoke checks at {self.public}",
        ]
        if self.run.flow == table.BLUEGREEN:
            lines.append("asks which slot is live: " + self.verb("active", None))
        return lines

    def _rb_1(self) -> list[str]:
        _, previous, why = self.packages()
        to = previous.version if previous is not None else why
        return [
            f"notify RolledBack ({self.env.notify.format}): from {self.run.version_from or 'the version serving'} to {to}"
        ]

    def _rb_2(self) -> list[str]:
        serving = self.run.version_from or "unknown version"
        return [
            f"the single node (slot active), serving {serving} at {self.public}",
            *self.stop_lines("active"),
            f"then {self.health(self.public)} must stop answering",
        ]

    def _rb_3(self) -> list[str]:
        _, previous, why = self.packages()
        version = previous.version if previous is not None else "the previous stable version"
        return [
            *self.deploy_lines("active", previous, why),
            f"then waits up to {self.env.drivers.start_timeout_s:g} s for {self.health(self.public)} "
            f"to answer 200 on {version}",
        ]

    def _bg_1(self) -> list[str]:
        latest, _, why = self.packages()
        slot = self.idle
        head = (
            f"the idle slot {self.idle} at {self.idle_url}; the live slot {self.live} keeps serving"
            if self.idle
            else "the idle slot (PRE asks the router which slot is live)"
        )
        return [head, *self.stop_lines(slot), *self.deploy_lines(slot, latest, why)]

    def _dr_smoke(self) -> list[str]:
        service = self.env.service
        paths = ", ".join(p for p in (service.health_path, service.swagger_path, service.kerberos_path) if p)
        return [f"probes {paths} at {self.row_target()}"]

    def _dr_e2e(self) -> list[str]:
        lines = []
        if self.env.e2e.flows:
            lines.append(f"the {', '.join(self.env.e2e.flows)} flow in a browser at {self.row_target()}")
        if self.env.e2e.command:
            lines.append(f"the regression command {json.dumps(self.env.e2e.command)}")
        return lines or ["nothing configured ([e2e] flows and command are empty)"]

    def _dr_axe(self) -> list[str]:
        return [f"axe-core on {', '.join(self.env.axe.pages)} at {self.row_target()}"]

    def _dr_zap(self) -> list[str]:
        return [f"a {self.env.zap.engine} security scan of {self.row_target()}"]

    def _rb_4(self) -> list[str]:
        return [f"notify Deployed ({self.env.notify.format}), only when every earlier phase passed"]

    def _rb_5(self) -> list[str]:
        from fixtures.environment import timeline_dir_for
        from plugins.archive import dated_timeline_name

        return [
            f"checks the bundle's timeline.md and {timeline_dir_for(self.run) / dated_timeline_name(self.run)}"
        ]

    def _bg_3(self) -> list[str]:
        approver = self.run.options.approved_by or ("lab-auto" if self.env.is_lab else "--approved-by")
        return [
            f"the approval of the switch ({approver}) journalled, notify Approved ({self.env.notify.format})"
        ]

    def _bg_4(self) -> list[str]:
        slot = self.idle
        monitor = self.env.monitor
        return [
            f"switches {self.public} to {slot or 'the idle slot'}",
            self.verb("switch", slot),
            f"then monitors {self.health(self.public)} every {monitor.interval_s:g} s for {monitor.duration_s:g} s; "
            f"a breach sends traffic back to {self.live or 'the previously live slot'} at once",
        ]

    def _bg_5(self) -> list[str]:
        slot = self.live
        slots = self.env.slots
        lines = [
            f"keeps {slot or 'the previously live slot'} running as the warm standby for {slots.standby_s:g} s more, then {slots.standby_then}s it"
        ]
        if slots.standby_then == "release":
            lines.append(self.verb("stop_site", slot))
        return lines


__all__ = ["Console", "Stepper", "phase_targets", "required"]
