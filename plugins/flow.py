"""Flows, phase order and gates.

- Every runbook test carries `@pytest.mark.phase("<playbook id>")` and its flow/row markers.
- Order: one total order of all phase ids that agrees with both flows, applied first (tryfirst) with a stable
  sort, so the tests within a phase keep their written order.
- Flow: after `-m`/`-k` deselection (trylast), the flow whose own phases are selected; both is a usage error;
  neither is "matrix".
- Gate: the first failed phase blocks every later phase of the flow (reported as skipped with the reason
  `blocked by <PHASE>: <why>`); recording phases still run. A matrix row that skips for any other reason
  fails: a required check never passes silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from drivers import phases as table
from drivers.base import plain_error
from plugins import preflight
from plugins.state import PhaseRecord, RunbookRun, now_iso, run_key

_ROW_MARKERS = table.row_markers()
_RANK = {phase: n for n, phase in enumerate(table.ORDER)}

plan_key = pytest.StashKey["Plan"]()
plan_problems_key = pytest.StashKey[list[str]]()


@dataclass
class Plan:
    flow: str
    items: list[pytest.Item]
    phases: dict[str, list[pytest.Item]] = field(default_factory=dict)


_phase_key = pytest.StashKey[str | None]()


def phase_of(item: pytest.Item) -> str | None:
    """The playbook phase of a test (its `phase` mark), worked out once per item."""
    if _phase_key not in item.stash:
        item.stash[_phase_key] = _read_phase(item)
    return item.stash[_phase_key]


def _read_phase(item: pytest.Item) -> str | None:
    mark = item.get_closest_marker("phase")
    if mark is None:
        if any(item.get_closest_marker(name) for name in _ROW_MARKERS):
            raise pytest.UsageError(f"{item.nodeid}: a runbook test needs @pytest.mark.phase(<playbook id>)")
        return None
    if len(mark.args) != 1 or mark.kwargs or mark.args[0] not in table.BY_ID:
        raise pytest.UsageError(
            f"{item.nodeid}: @pytest.mark.phase takes one playbook phase id, one of "
            f"{', '.join(table.ORDER)}; got args={mark.args!r} kwargs={mark.kwargs!r}"
        )
    return str(mark.args[0])


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from plugins import hooks

    pluginmanager.add_hookspecs(hooks)


def pytest_configure(config: pytest.Config) -> None:
    for name, text in table.markers().items():
        config.addinivalue_line("markers", f"{name}: {text}")
    config.pluginmanager.register(Gatekeeper(config), "runbook-gate")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put runbook tests in playbook order; other tests keep their place after them."""

    def key(item: pytest.Item) -> int:
        phase = phase_of(item)
        return _RANK[phase] if phase else len(_RANK)

    items[:] = sorted(items, key=key)


def determine_flow(config: pytest.Config, items: list[pytest.Item]) -> Plan | None:
    phases: dict[str, list[pytest.Item]] = {}
    for item in items:
        phase = phase_of(item)
        if phase is not None:
            phases.setdefault(phase, []).append(item)
    if not phases:
        return None
    flows = [flow for flow, own in table.OWN_PHASES.items() if own & phases.keys()]
    if len(flows) > 1:
        mixed = ", ".join(sorted(p for p in phases if p not in table.FLOWS[table.MATRIX]))
        which = (
            f"both the {flows[0]} and the {flows[1]} flow"
            if len(flows) == 2
            else "the " + ", ".join(flows) + " flows"
        )
        raise pytest.UsageError(
            f"-m {config.option.markexpr or '(none)'}: selects phases of {which} ({mixed}); run one flow at a "
            "time: " + " or ".join(f"-m {f}" for f in table.OWN_PHASES)
        )
    flow = flows[0] if flows else table.MATRIX
    stray = sorted(set(phases) - set(table.FLOWS[flow]), key=_RANK.__getitem__)
    if stray:
        raise pytest.UsageError(
            f"-m {config.option.markexpr or '(none)'}: the {flow} flow does not run {', '.join(stray)}; "
            f"select it alone (-m {flow})"
        )
    ordered = [item for phase in table.FLOWS[flow] for item in phases.get(phase, [])]
    return Plan(flow, ordered, {phase: phases[phase] for phase in table.FLOWS[flow] if phase in phases})


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    config = session.config
    plan = determine_flow(config, session.items)
    run = config.stash.get(run_key, None)
    if plan is None:
        if run is not None and run.config_problems:
            preflight.raise_if_problems(run.config_problems, run)
        return
    config.stash[plan_key] = plan
    if run is None:
        if config.getoption("runbook_plan"):
            return
        raise pytest.UsageError(
            "runbook tests are selected but no environment is: pass --env NAME (e.g. --env Lab) or --env-file PATH"
        )
    run.flow = plan.flow
    run.rows = frozenset(p for p in plan.phases if table.BY_ID[p].is_row)
    run.phases = {p: PhaseRecord(p, [i.nodeid for i in items]) for p, items in plan.phases.items()}
    if run.worker:
        return  # a worker of a parallel run: its controller preflighted the same plan
    # Nothing before preflight: every problem of the file, the flow and the options, at once (exit 4).
    plan_only = bool(config.getoption("runbook_plan") or config.option.collectonly)
    problems = preflight.check(run, plan.phases, plan_only=plan_only)
    if config.getoption("runbook_plan"):
        # The plan is what an operator reads before deciding: it lists what preflight would refuse.
        config.stash[plan_problems_key] = problems
        return
    preflight.raise_if_problems(problems, run)


def _run(config: pytest.Config) -> RunbookRun | None:
    run = config.stash.get(run_key, None)
    return run if run is not None and run.flow is not None else None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    run = _run(item.config)
    phase = phase_of(item)
    if run is None or phase is None:
        return
    run.current_phase, run.current_nodeid = phase, item.nodeid
    if run.worker:
        # A worker of a parallel run: the controller keeps the phases; wait until the earlier ones ended.
        blocked = item.config.hook.pytest_runbook_wait_for_gate(config=item.config, run=run, phase=phase)
    else:
        if run.blocked_by is None or run.blocked_by[0] == phase or phase in table.RECORDING:
            # --step (plugins/step.py): the operator approves the phase before it starts; may skip or fail it.
            item.config.hook.pytest_runbook_approve_phase(config=item.config, run=run, phase=phase, item=item)
        start_phase(run, phase, item)
        blocked = run.blocked_by
    if blocked and blocked[0] != phase and phase not in table.RECORDING:
        item.stash[_blocked_key] = True
        pytest.skip(f"blocked by {blocked[0]}: {blocked[1]}")


def start_phase(
    run: RunbookRun, phase: str, item: pytest.Item | None, config: pytest.Config | None = None
) -> None:
    """Journal the start of a phase, once; its title is the runbook module's docstring. The one place a phase
    starts (a serial run here, a parallel run's controller from the Gatekeeper): `pytest_runbook_phase_started`."""
    record = run.phases[phase]
    if record.started is None:
        record.started = now_iso()
        run.record("phase.start", {"title": phase_title(item) if item else ""}, phase=phase)
        config = config if config is not None else (item.config if item is not None else None)
        if config is not None:
            config.hook.pytest_runbook_phase_started(config=config, run=run, phase=phase)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """The report as the runbook needs it, where the test ran: its phase, whether the gate blocked it, a
    required row that skipped turned into a failure, secrets redacted; a failure reaches the runbook's hook at
    once (a Blue/Green release sends traffic back here)."""
    report: pytest.TestReport = yield
    phase = phase_of(item)
    report.__dict__["runbook_phase"] = phase or ""
    run = _run(item.config)
    if run is None or phase is None:
        return report
    blocked = item.stash.get(_blocked_key, False)
    report.__dict__["runbook_blocked"] = blocked
    required = table.BY_ID[phase].is_row and phase in run.env.matrix.required
    if required and report.skipped and not blocked and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = (
            f"required check {phase} was skipped: {one_line(report)} "
            "(a required matrix check never passes silently)"
        )
    redact_report(run, report)
    if report.failed:
        try:
            item.config.hook.pytest_runbook_phase_failed(run=run, phase=phase, why=one_line(report))
        except Exception as exc:  # noqa: BLE001 - the gate must still close
            run.warn(f"a handler of the failure of {phase} raised: {plain_error(exc)}")
    return report


class Gatekeeper:
    """Each phase's outcome and the gate, kept from the test reports: in a serial run as they are made, in a
    parallel run on the controller as the workers send them (with the events each test recorded)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        run = _run(self.config)
        phase = getattr(report, "runbook_phase", "")
        if run is None or run.worker or not phase:
            return
        events = getattr(
            report, "runbook_events", None
        )  # a worker's; a serial run journalled its own already
        if events is not None:
            if report.when == "setup":
                plan = self.config.stash.get(plan_key, None)
                first = next(iter(plan.phases.get(phase, []) if plan else []), None)
                start_phase(run, phase, first, self.config)
            for event in events:
                run.append(event)
        record = _gate(run, phase, report)
        if record is not None:
            self.config.hook.pytest_runbook_phase_ended(config=self.config, run=run, record=record)


def redact_report(run: RunbookRun, report: pytest.TestReport) -> None:
    """Secrets never reach the terminal, junit.xml or report.html through a failure message or captured output."""
    if not run.env.secrets:
        return
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):
        # A skip's (path, line, message): pytest needs it to stay a tuple (a string here is an INTERNALERROR).
        path, lineno, message = longrepr
        report.longrepr = (path, lineno, run.env.redact(message))
    else:
        text = report.longreprtext if longrepr is not None else ""
        redacted = run.env.redact(text)
        if redacted != text:
            report.longrepr = redacted
    report.sections = [(title, run.env.redact(content)) for title, content in report.sections]


_blocked_key = pytest.StashKey[bool]()


def _gate(run: RunbookRun, phase: str, report: pytest.TestReport) -> PhaseRecord | None:
    """Keep each phase's outcome, close the gate on the first failure, and journal the end of a phase when
    every test of it has finished; returns the phase's record when it ended."""
    record = run.phases[phase]
    before = run.item_outcomes.get(report.nodeid)
    if getattr(report, "runbook_blocked", False):
        outcome = "blocked"
    elif report.failed or before == "failed":
        outcome = "failed"
    elif report.skipped or before == "skipped":
        outcome = "skipped"
    else:
        outcome = "passed"
    run.item_outcomes[report.nodeid] = outcome
    if report.failed:
        why = one_line(report)
        record.reason = record.reason or why
        if run.blocked_by is None and phase not in table.RECORDING:
            run.blocked_by = (phase, why)
    if report.when != "teardown":
        return None
    record.finished.add(report.nodeid)
    if not record.finished.issuperset(record.nodeids) or record.ended is not None:
        return None
    outcomes = [run.item_outcomes.get(nodeid, "blocked") for nodeid in record.nodeids]
    if "failed" in outcomes:
        record.outcome = "failed"
    elif all(o == "blocked" for o in outcomes):
        record.outcome = "blocked"
        record.reason = f"blocked by {run.blocked_by[0]}" if run.blocked_by else ""
    elif all(o in ("skipped", "blocked") for o in outcomes):
        record.outcome = "skipped"
    else:
        record.outcome = "passed"
    record.ended = now_iso()
    run.record("phase.end", {"outcome": record.outcome, "reason": record.reason}, phase=phase)
    return record


def phase_title(item: pytest.Item) -> str:
    module = getattr(item, "module", None)
    doc = (getattr(module, "__doc__", None) or "").strip()
    return doc.split("\n\n")[0].replace("\n", " ") if doc else ""


def one_line(report: pytest.TestReport) -> str:
    """The why of a failure or skip, in one line an operator can read in a 'blocked by' reason."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):
        text = str(longrepr[2])
    else:
        crash = getattr(longrepr, "reprcrash", None)
        text = crash.message if crash is not None else str(longrepr)
    for prefix in ("Skipped: ", "Failed: ", "AssertionError: ", "E   "):
        text = text.removeprefix(prefix)
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "no reason given")
    return line if len(line) <= 240 else line[:237] + "..."


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> bool | None:
    """--runbook-plan: print the ordered phases as a Markdown checklist and run nothing."""
    config = session.config
    if not config.getoption("runbook_plan"):
        return None
    plan = config.stash.get(plan_key, None)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    text = render_plan(plan, config) if plan else "No runbook phases selected.\n"
    if reporter is not None:
        reporter.write("\n" + text)
    return True


def phase_section(phase: str, items: list[pytest.Item], run: RunbookRun | None) -> list[str]:
    """One phase of the plan: its title, its tests as a checklist, and what it acts on in this run (the
    targets, plugins.step); `--runbook-plan` prints every section, `--step` the next one before asking."""
    title = phase_title(items[0])
    heading = f"## {title}" if title.startswith(phase) else f"## {phase}" + (f" — {title}" if title else "")
    lines = [heading, ""]
    for item in items:
        doc = " ".join((getattr(getattr(item, "obj", None), "__doc__", None) or "").split())
        label = doc or item.name
        lines.append(f"- [ ] {label}  `{item.nodeid}`")
    if phase in table.RECORDING:
        lines.append("  (recording phase: runs even after a failed gate)")
    if run is not None:
        from plugins.step import phase_targets

        targets = phase_targets(run, phase)
        if targets:
            header = f"In this run, {phase} ({table.BY_ID[phase].title}):"
            lines += ["", header] + [f"  - {run.env.redact(t)}" for t in targets]
    lines.append("")
    return lines


def render_plan(plan: Plan, config: pytest.Config) -> str:
    run = config.stash.get(run_key, None)
    env = f" against {run.env.name}" if run else ""
    lines = [f"# Runbook plan: {plan.flow}{env}", ""]
    if config.option.markexpr:
        lines += [f"Selected with `-m {config.option.markexpr}`.", ""]
    for phase, items in plan.phases.items():
        lines += phase_section(phase, items, run)
    problems = config.stash.get(plan_problems_key, [])
    if problems and run is not None:
        lines += ["## Preflight would refuse this run", ""]
        lines += [f"- {run.env.redact(p)}" for p in problems]
        lines.append("")
    return "\n".join(lines)
