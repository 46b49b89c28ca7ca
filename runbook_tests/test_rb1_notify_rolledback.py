"""RB-1: announce the rollback (playbook §6.1) before the service is touched."""

from __future__ import annotations

import pytest

from drivers.config import Environment
from drivers.packages import Package
from fixtures.notify import Notify
from plugins.state import RunbookRun

pytestmark = [pytest.mark.rollback, pytest.mark.phase("RB-1")]


def test_notify_rolled_back(
    runbook: RunbookRun, notify: Notify, environment: Environment, previous_stable: Package
) -> None:
    """Send notify -EventType RolledBack -Environment <env>, saying from which version to which. A delivery
    failure is queued and reported; it never stops the rollback."""
    delivery = notify(
        "RolledBack",
        f"Rollback of {environment.name} from {runbook.version_from} to {previous_stable.version} started",
        version_from=runbook.version_from,
        version_to=previous_stable.version,
        approved_by=runbook.approver or "-",
    )
    assert delivery.event_type == "RolledBack"
