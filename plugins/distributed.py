"""A parallel run (pytest-xdist, `-n N`): one bundle, one journal, one report and one Lab, as in a serial run.

- Only the matrix rows run in parallel (`-m "dr_smoke or dr_axe or dr_zap"`): a flow stops, deploys and switches
  one system phase by phase, so preflight refuses `-n` for it, and any `--dist` but `load` (which keeps the
  playbook order on every worker).
- The controller collects the tests too: it must know the plan, preflight it and start the bundle before any
  worker runs a test. It starts the one Lab (workers attach to it and never stop it) and writes a handoff file
  beside the bundles, `.runbook-<run id>-<pid>.json`: the bundle, the phases that ended, the gate.
- Workers write no evidence file of their own: no journal, timeline, junit.xml, report or manifest. Each event a
  worker records travels with the report of the test it happened in (`report.runbook_events`; what is left at
  the end, in `workeroutput`); the controller appends them in arrival order to its one journal, then keeps the
  phases and the gate from the reports (plugins.flow.Gatekeeper). A row's own files (axe JSON, screenshots,
  ZAP's output) go into the one bundle's artifacts/, which the controller's manifest and seal cover.
- The gate: before a test, a worker waits until every earlier phase of the plan has ended (the controller says
  so in the handoff file); a phase that failed blocks the later tests ("blocked by <PHASE>: <why>").
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Generator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

from drivers import phases as table
from plugins.flow import Plan, plan_key
from plugins.state import PhaseRecord, RunbookRun, run_key

POLL_S = 0.02  # how often a waiting worker reads the handoff file

_handoff_key = pytest.StashKey[Path]()
_state_key = pytest.StashKey[dict[str, Any]]()  # what the handoff file says, kept by the controller


def is_controller(config: pytest.Config) -> bool:
    return config.pluginmanager.has_plugin("dsession")


def _run(config: pytest.Config) -> RunbookRun | None:
    run = config.stash.get(run_key, None)
    return run if run is not None and run.flow is not None else None


# --- the controller ------------------------------------------------------------------------------------
def _handoff_path(config: pytest.Config) -> Path | None:
    run = config.stash.get(run_key, None)
    if run is None:
        return None
    if _handoff_key not in config.stash:
        config.stash[_handoff_key] = run.options.evidence_dir / f".runbook-{run.run_id}-{os.getpid()}.json"
    return config.stash[_handoff_key]


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """Give each worker the run's identity and where to read the handoff."""
    config = node.config
    run = config.stash.get(run_key, None)
    path = _handoff_path(config)
    if run is not None and path is not None:
        node.workerinput["runbook_run_id"] = run.run_id
        node.workerinput["runbook_handoff"] = str(path)


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session: pytest.Session) -> bool | None:
    """The controller collects like a serial run (xdist's controller would not): plan, order and preflight."""
    config = session.config
    if not is_controller(config) or config.stash.get(run_key, None) is None:
        return None
    session.perform_collect()
    return True


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, object, object]:
    """Inside the evidence plugin's (the bundle exists): the one Lab and the handoff, before any test runs."""
    config = session.config
    run = _run(config)
    path = _handoff_path(config)
    if run is None or run.bundle is None or path is None or not is_controller(config):
        return (yield)
    from fixtures.environment import lab_for_run

    with ExitStack() as lab:
        state = config.stash[_state_key] = {"bundle": str(run.bundle), "lab_error": ""}
        try:
            lab.enter_context(lab_for_run(run))
        except pytest.fail.Exception as exc:
            state["lab_error"] = str(exc.msg)
            run.warn(f"the Lab could not start for this parallel run: {exc.msg}")
        _write_handoff(path, run, state)
        try:
            return (yield)
        finally:
            path.unlink(missing_ok=True)


def _write_handoff(path: Path, run: RunbookRun, state: dict[str, Any]) -> None:
    """The bundle, the Lab's failure if any, the phases that ended and the gate; atomically (temp file +
    rename): a worker never reads half a file."""
    state["ended"] = [p.id for p in run.phases.values() if p.ended is not None]
    state["blocked_by"] = list(run.blocked_by) if run.blocked_by else None
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(json.dumps(state), encoding="utf-8")
    temp.replace(path)


def pytest_runbook_phase_ended(config: pytest.Config, run: RunbookRun, record: PhaseRecord) -> None:
    """Tell the waiting workers: one more phase ended (and maybe closed the gate)."""
    path = _handoff_path(config)
    state = config.stash.get(_state_key, None)
    if path is not None and state is not None and path.exists():
        _write_handoff(path, run, state)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object | None) -> None:
    """A worker finished: the events it recorded after its last report, and a crash said in words."""
    run = _run(node.config)
    if run is None:
        return
    for event in getattr(node, "workeroutput", {}).get("runbook_events", []):
        run.append(event)
    if error:
        run.warn(f"parallel worker {node.gateway.id} went down: {error}")


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """The runbook's own scheduling of a parallel run (see PhaseScheduling)."""
    plan = config.stash.get(plan_key, None)
    if _run(config) is None or plan is None:
        return None
    return PhaseScheduling(config, log, plan)


class PhaseScheduling(LoadScopeScheduling):  # type: ignore[misc]
    """xdist's scope scheduling with the playbook's scopes: a row that may spread (drivers.phases) gives every
    test its own unit, any other phase is one unit that one worker runs; units go out in plan order, so every
    worker's queue keeps the playbook order (a worker waiting at the gate never waits for its own queue)."""

    def __init__(self, config: pytest.Config, log: Any, plan: Plan) -> None:
        super().__init__(config, log)
        config.option.loadscopereorder = False  # plan order, never "largest unit first"
        self.phase_of = {item.nodeid: phase for phase, items in plan.phases.items() for item in items}

    def _split_scope(self, nodeid: str) -> str:
        phase = self.phase_of.get(nodeid)
        return nodeid if phase is None or table.BY_ID[phase].spread else phase


# --- a worker --------------------------------------------------------------------------------------------
def read_handoff(config: pytest.Config) -> dict[str, Any]:
    """The controller's handoff, in a worker; empty outside a parallel run (or before the controller wrote it)."""
    worker_input = getattr(config, "workerinput", None)
    path = worker_input.get("runbook_handoff") if worker_input else None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8")) if path else {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def pytest_runbook_wait_for_gate(
    config: pytest.Config, run: RunbookRun, phase: str
) -> tuple[str, str] | None:
    """Wait until the controller says every earlier phase of the plan ended; the gate's verdict."""
    phases = list(run.phases)
    earlier = set(phases[: phases.index(phase)])
    while True:
        state = read_handoff(config)
        if run.bundle is None and state.get("bundle"):
            run.bundle = Path(state["bundle"])  # the controller's one bundle, for this worker's artifacts
        blocked = state.get("blocked_by")
        if blocked:
            return str(blocked[0]), str(blocked[1])
        if run.bundle is not None and earlier <= set(state.get("ended") or []):
            return None
        time.sleep(POLL_S)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Outermost: every event of this test phase, also those other plugins recorded while making the report."""
    report: pytest.TestReport = yield
    run = item.config.stash.get(run_key, None)
    if run is not None and run.worker:
        report.__dict__["runbook_events"] = run.take_outbox()
    return report


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    run = session.config.stash.get(run_key, None)
    worker_output = getattr(session.config, "workeroutput", None)
    if run is not None and run.worker and worker_output is not None:
        worker_output["runbook_events"] = run.take_outbox()
