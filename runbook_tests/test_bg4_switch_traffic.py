"""BG-4: switch traffic to the idle slot that holds the release, and monitor (playbook §5, §7). Any failure after
the switch sends traffic back to the previously live slot at once."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from drivers.config import Environment
from drivers.probe import url_at
from fixtures.bluegreen import BlueGreen, version_words
from fixtures.deploy import driver_step
from fixtures.probe import Probe
from plugins.state import RunbookRun

pytestmark = [pytest.mark.bluegreen, pytest.mark.traffic, pytest.mark.phase("BG-4")]


def test_switch_traffic_to_the_release(
    runbook: RunbookRun,
    bluegreen: BlueGreen,
    approval: Callable[..., str | None],
    probe: Probe,
    environment: Environment,
) -> None:
    """With the approval in hand (and, in a separate switch run, the idle slot checked to be the one the gate
    verified, still serving that release and healthy), switch the public address from the live slot to the idle
    one, then smoke it through the public address. A switch that would not change the live slot is an error."""
    if "BG-1" not in runbook.phases:
        driver_step(bluegreen.check_verified_release)
    assert approval(switching=True, version=bluegreen.release_version, words=bluegreen.words())
    driver_step(bluegreen.switch_to_release)
    runbook.version("expected", bluegreen.release_version, "the release the public address must serve")
    health = probe("health", url_at(environment.service.base_url, environment.service.health_path))
    served = health.reported_version() if health.status == 200 else None
    if served != bluegreen.release_version:
        answer = "no answer" if health.refused else f"HTTP {health.status} serving {version_words(served)}"
        pytest.fail(f"after the switch the public address gives {answer}, expected {bluegreen.idle} "
                    f"{version_words(bluegreen.release_version)}", pytrace=False)  # fmt: skip


def test_monitor_after_the_switch(bluegreen: BlueGreen) -> None:
    """Probe the public address every [monitor] interval_s for duration_s: latency p50/p95/max, error rate,
    consecutive failures. Alert after alert_after_failures failures in a row (§7: 2); a breach of the SLA, the
    error rate or the alert fails this step and traffic goes back to the previously live slot at once."""
    result = bluegreen.monitor()
    if result.breach is not None:
        rollback = (
            f"traffic sent back to {bluegreen.live}: {bluegreen.runbook.rollback_result or 'unknown result'}"
            if bluegreen.rolled_back
            else f"traffic NOT sent back to {bluegreen.live} (policy never)"
        )
        pytest.fail(f"monitor breach: {result.breach}; {rollback}", pytrace=False)
