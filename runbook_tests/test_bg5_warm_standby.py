"""BG-5: keep the previously live slot as a warm standby; on failure roll back to it at once (playbook §5)."""

from __future__ import annotations

import time

import pytest

from drivers.config import Environment
from fixtures.bluegreen import BlueGreen, version_words
from fixtures.deploy import driver_step
from plugins.state import RunbookRun

pytestmark = [pytest.mark.bluegreen, pytest.mark.traffic, pytest.mark.phase("BG-5")]


def test_previous_slot_kept_as_warm_standby(
    runbook: RunbookRun, bluegreen: BlueGreen, environment: Environment
) -> None:
    """The previously live slot stays running at least until monitoring ends, plus [slots] standby_s, and must
    answer healthy on its own address with the release it served (a cold standby is no standby). Then it is kept
    or released as [slots] standby_then says; with --runbook-rollback always it is kept, since traffic goes back
    to it."""
    standby = bluegreen.live
    wait = environment.slots.standby_s
    if wait:
        time.sleep(wait)
    version = bluegreen.live_version or ""
    waited = driver_step(
        lambda: bluegreen.deployer.wait_healthy(standby, version, environment.service.timeout_s)
    )
    runbook.record(
        "note",
        {"message": f"{standby} {version_words(version)} is a warm standby (healthy after {waited} s)"},
    )
    if environment.slots.standby_then == "release" and runbook.options.rollback_policy != "always":
        for step in driver_step(lambda: bluegreen.deployer.stop_site(standby)):
            runbook.action(step)
        runbook.record(
            "note", {"message": f"warm standby {standby} released ([slots] standby_then = release)"}
        )
    else:
        runbook.record("note", {"message": f"{standby} kept running as the warm standby"})
