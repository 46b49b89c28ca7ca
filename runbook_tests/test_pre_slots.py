"""PRE (Blue/Green): which slot is live. The router says which slot serves the public address; the release goes to
the other one, the idle slot, whichever colour it is (DESIGN "Slots: live and idle").

Nothing here changes a system. A run that cannot tell which slot is live deploys nothing.
"""

from __future__ import annotations

import pytest

from fixtures.bluegreen import PublicWatch, SlotState
from plugins.state import RunbookRun

pytestmark = [pytest.mark.bluegreen, pytest.mark.phase("PRE")]


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
