"""BG-3: approval, then notify -EventType Approved and prepare the switch (playbook §5, §9)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from drivers.packages import Package
from fixtures.bluegreen import BlueGreen
from plugins.state import RunbookRun

pytestmark = [pytest.mark.bluegreen, pytest.mark.phase("BG-3")]


def test_operator_approves_the_switch(
    runbook: RunbookRun, approval: Callable[..., str | None], release: Package, bluegreen: BlueGreen
) -> None:
    """One operator approves the switch from the live slot to the idle one (--approved-by NAME; in the Lab,
    lab-auto when none is given). The approval is logged in the journal and sent as notify Approved, naming both
    slots. In a CI gate run without the traffic phases, the approval of the switch is left pending."""
    switching = "BG-4" in runbook.phases
    approver = approval(switching=switching, version=release.version, words=bluegreen.words())
    if switching:
        assert approver, "no approval recorded, so nothing may be switched"
