"""The one table of phases and rows (drivers/phases.py): what reads it agrees with it."""

from __future__ import annotations

import pytest

from drivers import phases
from drivers.config import Matrix
from tests.runbook_project import make_runbook_project


def test_each_flow_runs_its_phases_in_the_one_total_order() -> None:
    for flow, ids in phases.FLOWS.items():
        assert list(ids) == sorted(ids, key=phases.ORDER.index), flow
    assert phases.FLOWS[phases.MATRIX] == ("PRE", *phases.ROWS)
    # A flow's own phases decide the flow; the shared ones (PRE and the rows) never do.
    assert not phases.OWN_PHASES[phases.ROLLBACK] & phases.OWN_PHASES[phases.BLUEGREEN]
    assert "PRE" not in phases.OWN_PHASES[phases.ROLLBACK] | phases.OWN_PHASES[phases.BLUEGREEN]


def test_every_row_may_be_required_and_is_by_default() -> None:
    assert Matrix().required == list(phases.ROWS)
    assert phases.ROWS == ("DR-SMOKE", "DR-E2E", "DR-AXE", "DR-ZAP")


def test_the_runbook_registers_every_marker_of_the_table(pytester: pytest.Pytester) -> None:
    """The project's ini lists no runbook marker: pytest learns them from the table (with --strict-markers)."""
    out = make_runbook_project(pytester).runpytest("--markers").stdout.str()
    for name, text in phases.markers().items():
        assert f"@pytest.mark.{name}: {text}" in out
    assert "@pytest.mark.dr_zap: matrix row DR-ZAP: security scan" in out
