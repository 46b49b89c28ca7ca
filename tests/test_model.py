"""The journal is the model: what the summary says is derived from the recorded events, and every event has one
timestamp, the one the journal keeps."""

from __future__ import annotations

from pathlib import Path

from drivers.base import ActionResult
from drivers.config import load_environment
from plugins.evidence import JournalWriter
from plugins.journal import read_events
from plugins.state import RunbookRun, RunOptions

ROOT = Path(__file__).resolve().parents[1]


def lab_run(tmp_path: Path) -> RunbookRun:
    run = RunbookRun(load_environment(ROOT / "environments" / "Lab.toml"), RunOptions(tmp_path / "r"), ROOT)
    run.flow = "bluegreen"
    return run


def test_the_summary_is_derived_from_the_events(tmp_path: Path) -> None:
    run = lab_run(tmp_path)
    assert (run.version_from, run.version_to, run.rollback_ran, run.approver, run.site_down) == (
        None, None, False, None, None,
    )  # fmt: skip
    run.version("from", "1.0.0", "served by the live slot blue")
    run.approval("A. Operator", **{"for": "switch"})
    run.version("to", "1.1.0", "traffic switched to green")
    assert run.versions_words() == "1.0.0 -> 1.1.0"
    run.rollback(
        reason="monitor breach", result="succeeded", to_slot="blue", **{"from": "1.1.0", "to": "1.0.0"}
    )
    run.version("to", "1.0.0", "traffic back on blue")
    assert (run.rollback_ran, run.rollback_result, run.approver) == (True, "succeeded", "A. Operator")
    assert run.versions_words() == "1.0.0 -> 1.1.0, rolled back: 1.0.0 serves"
    # A decision that runs nothing is journalled, but no rollback ran because of it.
    other = lab_run(tmp_path)
    other.rollback(reason="every check passed", result="not needed")
    assert (other.rollback_ran, other.rollback_result) == (False, None)


def test_a_restore_and_a_site_down_come_from_their_events(tmp_path: Path) -> None:
    run = lab_run(tmp_path)
    run.rollback(reason="RB-3 failed", result="failed", node="active", detail="1.1.0 never became healthy")
    run.site_is_down("the active node is stopped", "SITE DOWN: Lab: the active node is stopped")
    assert run.restore_result == "failed: 1.1.0 never became healthy"
    assert run.site_down == "the active node is stopped"
    assert run.outcome_words().startswith("SITE DOWN: the active node is stopped. ")


def test_the_journal_keeps_the_recorders_timestamp(tmp_path: Path) -> None:
    run = lab_run(tmp_path)
    run.writers = [JournalWriter(run, tmp_path / "evidence.jsonl")]
    run.action(ActionResult("site.stop", "blue", "stopped", 0.1))
    run.warn("a notification was not delivered")
    run.close_writers()
    journalled = read_events(tmp_path / "evidence.jsonl", seal=False)
    assert [e["ts"] for e in journalled] == [e["ts"] for e in run.events]
    assert [e["kind"] for e in journalled] == ["action", "warning"]
    assert run.warnings == ["a notification was not delivered"]
