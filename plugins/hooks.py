"""The runbook's own hooks (added in `pytest_addhooks`), for plugins and fixtures that must act on its events.

Model: pytest-xdist's newhooks.py. Implementations are ordinary pluggy hookimpls on a registered plugin object
(the Blue/Green release registers itself for the length of the run)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from plugins.state import RunbookRun


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
