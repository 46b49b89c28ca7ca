"""BG-1: deploy the latest package to the idle slot (playbook §5, package-offline.ps1, Deploy-CamService.ps1).

The idle slot is the one the public address does not serve (PRE asked the router): green after a release to blue,
blue after a release to green. The live slot is never stopped or deployed onto; the deploy verb refuses it."""

from __future__ import annotations

import pytest

from drivers.packages import Package
from fixtures.bluegreen import BlueGreen
from fixtures.deploy import driver_step
from plugins.state import RunbookRun

pytestmark = [pytest.mark.bluegreen, pytest.mark.phase("BG-1")]


def test_deploy_latest_package_to_idle_slot(
    runbook: RunbookRun, bluegreen: BlueGreen, release: Package
) -> None:
    """Verify the latest package's SHA-256 right before use, stop the idle slot, lay the package out there, start
    it and wait (bounded) until it is healthy on that version. The live slot keeps serving the public address."""
    runbook.version("expected", release.version, "the release deployed to the idle slot")
    started = driver_step(bluegreen.deploy_to_idle)
    assert bluegreen.release_version == release.version
    assert started.detail.get("version") == release.version
