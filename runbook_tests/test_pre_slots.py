"""PRE (Blue/Green): which slot is live. The router says which slot serves the public address; the release goes to
the other one, the idle slot, whichever colour it is (DESIGN "Slots: live and idle").

Nothing here changes a system. A run that cannot tell which slot is live deploys nothing.
"""

from __future__ import annotations

import pytest

from drivers.base import ActionResult, timed
from drivers.config import Environment
from drivers.router import RouterDriver
from fixtures.bluegreen import PublicWatch, SlotState
from fixtures.deploy import driver_step
from plugins.state import RunbookRun

pytestmark = [pytest.mark.bluegreen, pytest.mark.phase("PRE")]


def test_router_can_switch(runbook: RunbookRun, router: RouterDriver, environment: Environment) -> None:
    """The router could switch now, checked without changing anything. nginx: `nginx -t` passes on the
    configuration as it stands and the include names a live slot, so a broken nginx is found before BG-1
    touches the idle slot. A router without such a check (lab, command) has nothing to run here."""
    action = ActionResult("router.check", environment.drivers.router, "ready")
    with timed(action):
        action.detail = driver_step(router.check)
    if action.detail:
        runbook.action(action)


def test_live_slot_is_known(runbook: RunbookRun, slots: SlotState, public_watch: PublicWatch) -> None:
    """Ask the router which slot is live and journal both slots with the versions they serve; start watching the
    public address, which must answer throughout the run (a failed probe before the switch is a finding)."""
    if slots.live_version is None:
        pytest.fail(
            f"the live slot {slots.live} does not report a version on {slots.live_url}: a release cannot be "
            "checked against it, and it could not serve as the warm standby",
            pytrace=False,
        )
    runbook.version("from", slots.live_version, f"served by the live slot {slots.live}")
    runbook.record("note", {"message": f"slots: {slots.words()}; the release goes to {slots.idle}"})


def test_metric_queries_answer(runbook: RunbookRun, slots: SlotState, environment: Environment) -> None:
    """`[monitor.metrics]`: every query is evaluated once, for the slot the monitor will watch after the switch
    (the idle slot) and for the live one, so that a query API that does not answer or a query it cannot run is
    found before anything is touched, not as a breach after the switch. No data is expected for an idle slot not
    yet deployed; the values are journalled, and only a failed evaluation fails PRE."""
    from drivers.metrics import MetricsEvaluator

    metrics = environment.monitor.metrics
    if not metrics.queries:
        return  # no [monitor.metrics] queries: the monitor watches its HTTP probes only, nothing to check here
    failed: list[str] = []
    seen: dict[str, dict[str, str]] = {}
    for slot in (slots.idle, slots.live):
        evaluations = MetricsEvaluator(metrics, slot=slot, env=environment.name).round()
        seen[slot] = {ev.name: ev.words for ev in evaluations}
        failed += [f"{ev.words} (for {slot})" for ev in evaluations if ev.error is not None]
    runbook.record("note", {"message": "metric queries before the switch", "metrics": seen})
    if failed:
        pytest.fail(
            f"[monitor.metrics] at {metrics.url}: " + "; ".join(failed) + ". The monitor could not read them "
            "after the switch and would roll the release back; nothing was touched",
            pytrace=False,
        )
