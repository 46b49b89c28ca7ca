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
    version = previous_stable.version
    runbook.version("expected", version, "the previous stable release RB-3 deploys")
    rollback = {"reason": "single-node rollback (playbook §6)", "from": runbook.version_from, "to": version}
    try:
        started = driver_step(lambda: site.deploy_and_start(previous_stable))
    except (
        BaseException
    ) as exc:  # pytest's Failed is a BaseException: the failed rollback is journalled first
        runbook.rollback(**rollback, result="failed", detail=str(exc))
        raise
    runbook.version("to", version, "the previous stable release is deployed and healthy")
    runbook.rollback(**rollback, result="succeeded", healthy_after_s=started.detail.get("healthy_after_s"))
