"""SB-1: the warm standby runs healthy on its own address and serves the previous version (playbook §5, §7).

Nothing here changes a system: without a healthy standby the switch-back is refused. The standby is the slot
the public address does not serve (the router says which one is live): blue after a release to green. It must
answer 200 on its own address with a version older than the live one; a stopped, unhealthy or newer standby is
refused with the reason and what to do, and traffic stays where it is."""

from __future__ import annotations

import pytest

from drivers.base import ActionResult, timed
from drivers.config import Environment
from drivers.notify import Notifier
from drivers.router import RouterDriver
from fixtures.bluegreen import SwitchBack
from fixtures.deploy import driver_step
from fixtures.notify import check_webhook
from plugins.state import RunbookRun

pytestmark = [pytest.mark.switch_back, pytest.mark.phase("SB-1")]


def test_approval_recorded_before_the_switch_back(runbook: RunbookRun, environment: Environment) -> None:
    """The approver given up front (--approved-by; required outside the Lab when [approval] required = true, and
    --confirm-env for protect = true, checked by preflight) is journalled before anything is switched; in the
    Lab the drill approves itself (lab-auto)."""
    approver = runbook.options.approved_by or ("lab-auto" if environment.is_lab else None)
    if approver is None:
        runbook.note(f"no approver given; {environment.source}: [approval] required = false")
        return
    runbook.approval(
        approver, env=environment.name, given="--approved-by" if runbook.options.approved_by
        else "the Lab drills approve themselves", **{"for": f"the switch-back on {environment.name}"},
    )  # fmt: skip


def test_router_can_switch(runbook: RunbookRun, router: RouterDriver, environment: Environment) -> None:
    """The router could switch now, checked without changing anything (nginx: `nginx -t` and the include read
    back); a router without such a check (lab, command) has nothing to run here."""
    action = ActionResult("router.check", environment.drivers.router, "ready")
    with timed(action):
        action.detail = driver_step(router.check)
    if action.detail:
        runbook.action(action)


def test_notification_webhook_configured(runbook: RunbookRun, notifier: Notifier) -> None:
    """The webhook that hears of the switch-back is configured; unreachable, the notification queues in the
    outbox (a warning) and the switch-back goes on: it must not wait for a webhook."""
    check_webhook(runbook, notifier, "the switch-back")


def test_warm_standby_serves_the_previous_version(switch_back: SwitchBack) -> None:
    """Ask the router which slot is live; the other one, the warm standby, must answer 200 on its own address
    with a version older than the live one. Otherwise the switch-back is refused here, before anything is
    touched, with the reason and what to do."""
    switch_back.step(switch_back.check_standby)
