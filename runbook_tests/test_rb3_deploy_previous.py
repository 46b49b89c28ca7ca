"""RB-3: lay out the previous stable version from the offline package and start it (playbook §6.3)."""

from __future__ import annotations

import pytest

from drivers.packages import Package
from fixtures.deploy import SiteControl, driver_step
from plugins.state import RunbookRun

pytestmark = [pytest.mark.rollback, pytest.mark.phase("RB-3")]


def test_deploy_previous_stable_package(
    runbook: RunbookRun, site: SiteControl, previous_stable: Package
) -> None:
    """Verify the previous stable package's SHA-256 again right before use, deploy it, start it, and wait
    (bounded by [drivers] start_timeout_s) until it is healthy on that version."""
    runbook.expected_version = previous_stable.version
    runbook.rollback_ran = True
    runbook.rollback_result = "failed"
    started = driver_step(lambda: site.deploy_and_start(previous_stable))
    runbook.version_to = previous_stable.version
    runbook.rollback_result = "succeeded"
    runbook.record(
        "rollback",
        {"reason": "single-node rollback (playbook §6)", "from": runbook.version_from,
         "to": previous_stable.version, "result": "succeeded",
         "healthy_after_s": started.detail.get("healthy_after_s")},
    )  # fmt: skip
