"""BG-1: deploy the latest package to the Green slot (playbook §5, package-offline.ps1, Deploy-CamService.ps1)."""

from __future__ import annotations

import pytest

from drivers.packages import Package
from fixtures.bluegreen import BlueGreen
from fixtures.deploy import driver_step
from plugins.state import RunbookRun

pytestmark = [pytest.mark.bluegreen, pytest.mark.phase("BG-1")]


def test_deploy_latest_package_to_green(runbook: RunbookRun, bluegreen: BlueGreen, release: Package) -> None:
    """Verify the latest package's SHA-256 right before use, lay it out on green, start it and wait (bounded)
    until green is healthy on that version. Blue keeps serving the public address throughout."""
    runbook.expected_version = release.version
    started = driver_step(bluegreen.deploy_green)
    assert bluegreen.green_version == release.version
    assert started.detail.get("version") == release.version
