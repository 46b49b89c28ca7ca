"""BG-3: approval, then notify -EventType Approved and prepare the switch (playbook §5, §9)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from drivers.packages import Package
from plugins.state import RunbookRun

pytestmark = [pytest.mark.bluegreen, pytest.mark.phase("BG-3")]


def test_operator_approves_the_switch(
    runbook: RunbookRun, approval: Callable[..., str | None], release: Package
) -> None:
    """One operator approves (--approved-by NAME; in the Lab, lab-auto when none is given). The approval is
    logged in the journal and sent as notify Approved. In a CI gate run without the traffic phases, the
    approval is left pending for the switch run."""
    switching = "BG-4" in runbook.phases
    approver = approval(switching=switching, version=release.version)
    if switching:
        assert approver, "no approval recorded, so nothing may be switched"
