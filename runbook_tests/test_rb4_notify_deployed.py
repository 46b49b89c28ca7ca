"""RB-4: when every check passed, announce the redeploy (playbook §6.4)."""

from __future__ import annotations

import pytest

from drivers.config import Environment
from fixtures.notify import Notify
from plugins.state import RunbookRun

pytestmark = [pytest.mark.rollback, pytest.mark.phase("RB-4")]


def test_notify_deployed(runbook: RunbookRun, notify: Notify, environment: Environment) -> None:
    """Send notify -EventType Deployed for the restored version. The gate runs this only when every earlier
    phase passed."""
    if runbook.blocked_by is not None:
        phase, why = runbook.blocked_by
        pytest.fail(f"not announcing Deployed: blocked by {phase}: {why}", pytrace=False)
    assert runbook.version_to, "no version was deployed by RB-3"
    notify(
        "Deployed",
        f"{environment.name} rolled back to {runbook.version_to}; smoke checks passed",
        version_from=runbook.version_from,
        version_to=runbook.version_to,
    )
