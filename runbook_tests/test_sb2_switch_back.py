"""SB-2: switch the public address back to the warm standby, at once (playbook §5, §7).

Right before the switch the standby is probed once more on its own address (still healthy, still the version
SB-1 found). The switch goes through the environment's router driver (lab, nginx, command); a switch that
would not change the live slot is an error."""

from __future__ import annotations

import pytest

from fixtures.bluegreen import SwitchBack

pytestmark = [pytest.mark.switch_back, pytest.mark.phase("SB-2")]


def test_switch_traffic_back_to_the_standby(switch_back: SwitchBack) -> None:
    """Send the public address to the warm standby; the router must report it live afterwards."""
    action = switch_back.step(switch_back.switch)
    assert action.detail.get("live_after") == switch_back.standby
