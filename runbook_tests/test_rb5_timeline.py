"""RB-5: record each step with its time in the timeline (playbook §6.5, §9). Always runs, also after a
failure: the evidence of a failed rollback matters most."""

from __future__ import annotations

from pathlib import Path

import pytest

from plugins.archive import dated_section_phases, dated_timeline_name
from plugins.state import RunbookRun

pytestmark = [pytest.mark.rollback, pytest.mark.phase("RB-5")]


def test_record_timeline(runbook: RunbookRun, timeline_dir: Path) -> None:
    """The run is recorded, as it happened, in the dated Timeline_YYYY-MM-DD.md beside the deploy logs
    (plugins.archive writes it for every run): journal the dated file, then check that it and the bundle's
    timeline.md both hold every phase that started so far."""
    daily = timeline_dir / dated_timeline_name(runbook)
    runbook.record("action", {"name": "timeline.record", "target": str(daily), "result": "recorded",
                              "duration_s": 0.0, "detail": {"events": len(runbook.events)}})  # fmt: skip

    started = [p.id for p in runbook.phases.values() if p.started]
    bundle_timeline = (runbook.bundle / "timeline.md").read_text(encoding="utf-8") if runbook.bundle else ""
    missing = [p for p in started if f"| {p} |" not in bundle_timeline]
    assert not missing, (
        f"timeline.md lacks the phases {missing}; evidence writer errors: {runbook.writer_errors}"
    )
    dated = dated_section_phases(runbook, daily.read_text(encoding="utf-8") if daily.is_file() else "")
    assert dated is not None, (
        f"{daily} has no section for run {runbook.run_id}; evidence writer errors: {runbook.writer_errors}"
    )
    missing = [p for p in started if p not in dated]
    assert not missing, f"{daily} lacks the phases {missing}; evidence writer errors: {runbook.writer_errors}"
