"""RB-5: record each step with its time in the timeline (playbook §6.5, §9). Always runs, also after a
failure: the evidence of a failed rollback matters most."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from plugins.state import RunbookRun, describe

pytestmark = [pytest.mark.rollback, pytest.mark.phase("RB-5")]


def test_record_timeline(runbook: RunbookRun, timeline_dir: Path) -> None:
    """Append this run's steps to the dated Timeline_YYYY-MM-DD.md beside the deploy logs, and check that the
    bundle's timeline.md holds every phase that ran."""
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    timeline_dir.mkdir(parents=True, exist_ok=True)
    daily = timeline_dir / f"Timeline_{today}.md"
    failed = [p.id for p in runbook.phases.values() if p.outcome == "failed"]
    state = f"failed at {', '.join(failed)}" if failed else "all phases so far passed"
    lines = [f"\n## {runbook.run_id} {runbook.env.name} {runbook.flow}: {state}\n", "\n"]
    lines += [
        f"- {e['ts'][11:23]} {e['phase'] or '-'}: {runbook.env.redact(describe(e))}\n" for e in runbook.events
    ]
    with daily.open("a", encoding="utf-8") as fh:
        fh.writelines(lines)
    runbook.record("action", {"name": "timeline.record", "target": str(daily), "result": "ok",
                              "duration_s": 0.0, "detail": {"events": len(runbook.events)}})  # fmt: skip

    bundle_timeline = (runbook.bundle / "timeline.md").read_text(encoding="utf-8") if runbook.bundle else ""
    started = [p.id for p in runbook.phases.values() if p.started]
    missing = [p for p in started if f"| {p} |" not in bundle_timeline]
    assert not missing, (
        f"timeline.md lacks the phases {missing}; evidence writer errors: {runbook.writer_errors}"
    )
