"""BG-4: switch traffic to green and monitor (playbook §5, §7). Any failure after the switch rolls traffic back
to blue at once."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from drivers.config import Environment
from drivers.packages import Package
from drivers.probe import url_at
from fixtures.bluegreen import BlueGreen
from fixtures.deploy import driver_step
from fixtures.probe import Probe
from plugins.state import RunbookRun

pytestmark = [pytest.mark.bluegreen, pytest.mark.traffic, pytest.mark.phase("BG-4")]


def test_switch_traffic_to_green(
    runbook: RunbookRun,
    bluegreen: BlueGreen,
    approval: Callable[..., str | None],
    release: Package,
    probe: Probe,
    environment: Environment,
) -> None:
    """With the approval in hand (and, in a separate switch run, green checked to be the verified release and
    healthy), switch the public address to green, then smoke it through the public address."""
    if "BG-1" not in runbook.phases:
        driver_step(bluegreen.check_verified_green)
    assert approval(switching=True, version=bluegreen.green_version)
    driver_step(bluegreen.switch_to_green)
    runbook.expected_version = bluegreen.green_version
    health = probe("health", url_at(environment.service.base_url, environment.service.health_path))
    body = health.json() if health.status == 200 else None
    served = body.get("version") if isinstance(body, dict) else None
    if served != bluegreen.green_version:
        pytest.fail(f"after the switch the public address answers HTTP {health.status} serving {served}, "
                    f"expected green {bluegreen.green_version}", pytrace=False)  # fmt: skip


def test_monitor_after_the_switch(bluegreen: BlueGreen, environment: Environment) -> None:
    """Probe the public address every [monitor] interval_s for duration_s: latency p50/p95/max, error rate,
    consecutive failures. Alert after alert_after_failures failures in a row (§7: 2); a breach of the SLA, the
    error rate or the alert fails this step and traffic goes back to blue at once."""
    result = bluegreen.monitor()
    if result.breach is not None:
        rollback = (
            f"traffic rolled back to blue: {bluegreen.runbook.rollback_result}"
            if bluegreen.rolled_back
            else "traffic NOT rolled back (policy never)"
        )
        pytest.fail(f"monitor breach: {result.breach}; {rollback}", pytrace=False)
