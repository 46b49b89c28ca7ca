"""SB-3: verify the switch-back through the public address and announce it (playbook §7, §9).

The public address must serve the standby's version, healthy (bounded by [service] timeout_s). The switch-back
is journalled as a rollback of traffic (trigger: the operator) and sent as notify RolledBack. The runbook never
switches again on its own: a switch-back that cannot be verified is an Alert, or SITE DOWN when the public
address does not answer, for the operator to act on."""

from __future__ import annotations

import pytest

from fixtures.bluegreen import SwitchBack

pytestmark = [pytest.mark.switch_back, pytest.mark.phase("SB-3")]


def test_public_address_serves_the_standby(switch_back: SwitchBack) -> None:
    """Health 200 on the standby's version through the public address, then notify RolledBack."""
    switch_back.step(switch_back.verify_and_announce)
