"""The runbook's own hooks (added in `pytest_addhooks`), for plugins and fixtures that must act on its events.

Model: pytest-xdist's newhooks.py. Implementations are ordinary pluggy hookimpls on a registered plugin object
(the Blue/Green release registers itself for the length of the run)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from drivers.monitor import MonitorResult, Sample
    from plugins.state import PhaseRecord, RunbookRun


@pytest.hookspec
def pytest_runbook_phase_failed(run: RunbookRun, phase: str, why: str) -> None:
    """A runbook test of `phase` failed (called at once, from its report, not at session end): a Blue/Green
    release sends traffic back to the previously live slot here. An implementation that raises is reported as a
    warning of the run; the gate still closes."""


@pytest.hookspec
def pytest_runbook_bundle_sealed(run: RunbookRun) -> None:
    """The evidence bundle of `run` is complete and sealed (manifest written, journal closed): archive it here.
    Nothing may be written into the bundle any more. An implementation that raises is reported as an evidence
    writer error; the run's outcome stands."""


@pytest.hookspec(firstresult=True)
def pytest_runbook_wait_for_gate(
    config: pytest.Config, run: RunbookRun, phase: str
) -> tuple[str, str] | None:
    """In a worker of a parallel run, before a test of `phase`: wait until every earlier phase of the plan has
    ended, and return the (phase, reason) that closed the gate, or None when it is open. Serial runs keep the
    gate themselves and do not call it."""


@pytest.hookspec
def pytest_runbook_approve_phase(
    config: pytest.Config, run: RunbookRun, phase: str, item: pytest.Item
) -> None:
    """In a serial run, before each test of `phase` while the gate is open (or closed by this phase, or the phase
    records), before the phase starts: `--step` (plugins/step.py) asks the operator here. An implementation
    lets the test run by returning, or skips or fails it as `pytest_runtest_setup` does (`pytest.skip`,
    `pytest.fail`), after journalling the phase's start itself (plugins.flow.start_phase)."""


@pytest.hookspec
def pytest_runbook_phase_ended(config: pytest.Config, run: RunbookRun, record: PhaseRecord) -> None:
    """Every test of a phase has finished (its outcome is in `record`); in a parallel run, on the controller."""


@pytest.hookspec
def pytest_runbook_phase_started(config: pytest.Config, run: RunbookRun, phase: str) -> None:
    """A phase starts (once, before its first test runs; in a parallel run, on the controller when the first
    report of it arrives). Its `phase.start` event is journalled already."""


@pytest.hookspec
def pytest_runbook_monitor_started(
    config: pytest.Config, run: RunbookRun, url: str, probes: int, interval_s: float, duration_s: float
) -> None:
    """The monitoring window after the switch (BG-4) starts: `probes` probes of `url`, one every `interval_s`
    for `duration_s` (fewer when a breach stops it). Called where the monitor runs (a worker in a parallel
    run). An implementation must not raise: the window is timed."""


@pytest.hookspec
def pytest_runbook_monitor_probe(config: pytest.Config, run: RunbookRun, sample: Sample) -> None:
    """One probe of the monitoring window was recorded (called from the monitor's loop, at once: an
    implementation must be quick and must not raise)."""


@pytest.hookspec
def pytest_runbook_monitor_ended(config: pytest.Config, run: RunbookRun, result: MonitorResult) -> None:
    """The monitoring window ended (every probe done, or stopped by a breach, which `result.breach` names; any
    rollback it caused has run)."""
