"""Whole rollback drills against the real embedded Lab, run as an operator runs them (a pytest subprocess).

Each drill keeps its Lab (--keep-lab) so the test can check what the public address serves afterwards, then
stops it by its recorded PIDs.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lab import Lab
from plugins.journal import verify_bundle
from tests.conftest import Drill

pytestmark = [pytest.mark.lab, pytest.mark.drill]


ROLLBACK_ORDER = ["PRE", "RB-1", "RB-2", "RB-3", "DR-SMOKE", "DR-E2E", "DR-AXE", "DR-ZAP", "RB-4", "RB-5"]


def test_green_rollback_drill(rollback_drill: Drill) -> None:
    d = rollback_drill  # shared with other modules' tests (tests/conftest.py): only read here
    assert d.returncode == 0, d.output
    assert [e["phase"] for e in d.kinds("phase.start")] == ROLLBACK_ORDER
    assert set(d.phase_outcomes().values()) == {"passed"}
    end = d.kinds("run.end")[-1]
    assert end["kind"] == "run.end"
    assert end["data"]["exitstatus"] == 0
    assert (end["data"]["version_from"], end["data"]["version_to"]) == ("1.1.0", "1.0.0")
    assert end["data"]["rollback_ran"] is True
    assert d.served_version() == "1.0.0"
    # RB-2 really stopped the site: the probe right after it found no connection.
    rb2_probes = [e for e in d.kinds("probe") if e["phase"] == "RB-2"]
    assert rb2_probes
    assert rb2_probes[-1]["data"]["status"] == -1
    assert [(n["data"]["event_type"], n["data"]["delivery"]) for n in d.kinds("notify")] == [
        ("RolledBack", "delivered"),
        ("Deployed", "delivered"),
    ]
    received = sorted((d.lab_dir / "logs" / "deploy" / "notifications").glob("*.jsonl"))
    assert received, "the Lab's webhook sink logged nothing"
    assert sum(1 for f in received for _ in f.open()) == 2
    assert verify_bundle(d.bundle).ok
    for name in ("report.html", "junit.xml", "timeline.md", "manifest.json", "artifacts/notifications.jsonl"):
        assert (d.bundle / name).is_file(), name
    assert "Runbook summary" in (d.bundle / "report.html").read_text(encoding="utf-8")
    # RB-5 appended the run to the dated timeline beside the deploy logs (playbook §9). The date is the run's
    # own (UTC, as the journal's timestamps): RB-5 took it between its phase.start and its action, so either
    # of their dates is right, whatever the clock says now (a drill may cross midnight).
    (started,) = [e for e in d.kinds("phase.start") if e["phase"] == "RB-5"]
    (recorded,) = [e for e in d.kinds("action") if e["data"]["name"] == "timeline.record"]
    days = {datetime.fromisoformat(e["ts"]).astimezone(UTC).date().isoformat() for e in (started, recorded)}
    daily = Path(recorded["data"]["target"])
    assert daily.parent == d.lab_dir.resolve() / "logs" / "deploy"
    assert daily.name in {f"Timeline_{day}.md" for day in days}
    dated = daily.read_text(encoding="utf-8")
    assert f"## {d.events[0]['run_id']} Lab rollback: evidence {d.bundle.name}, times in UTC" in dated
    assert "RB-3: rollback 1.1.0 -> 1.0.0: succeeded" in dated


def test_service_stopped_is_treated_as_fully_stopped_and_redeployed(drill: Any) -> None:
    d = drill("--lab-fault", "service-stopped")
    assert d.returncode == 0, d.output
    pre_probes = [
        e["data"] for e in d.kinds("probe") if e["phase"] == "PRE" and e["data"]["name"] != "webhook"
    ]
    assert [p["status"] for p in pre_probes] == [-1, -1, -1]
    assert all(p["error"] for p in pre_probes)
    notes = [e["data"] for e in d.kinds("note") if e["data"].get("service_state") == "stopped"]
    assert notes
    assert "fully stopped (playbook §4)" in notes[0]["message"]
    assert d.run_end()["version_from"] == "1.1.0"
    assert d.served_version() == "1.0.0"


def test_bad_package_hash_stops_before_touching_the_service(drill: Any) -> None:
    d = drill("--lab-fault", "bad-package-hash")
    assert d.returncode == 1, d.output
    outcomes = d.phase_outcomes()
    assert outcomes["PRE"] == "failed"
    assert {
        outcomes[p] for p in ("RB-1", "RB-2", "RB-3", "DR-SMOKE", "DR-E2E", "DR-AXE", "DR-ZAP", "RB-4")
    } == {"blocked"}
    assert outcomes["RB-5"] == "passed"
    assert "blocked by PRE: MCMS_Setup_1.0.0.zip: sha256 mismatch" in d.output
    acted = {e["data"]["name"] for e in d.kinds("action")}
    assert not acted & {"stop_site", "recycle_pool", "deploy", "start_site"}, acted
    assert d.notified() == [("Failed", "delivered")]  # nothing touched; the run's end is announced
    assert d.served_version() == "1.1.0"
    assert d.run_end()["outcome"] == "failed"
    assert verify_bundle(d.bundle).ok


def test_webhook_down_queues_notifications_and_goes_on(drill: Any) -> None:
    d = drill("--lab-fault", "webhook-down")
    assert d.returncode == 0, d.output
    assert [(n["data"]["event_type"], n["data"]["delivery"]) for n in d.kinds("notify")] == [
        ("RolledBack", "failed"),
        ("Deployed", "failed"),
    ]
    outbox = [json.loads(line) for line in (d.bundle / "artifacts" / "notifications.jsonl").open()]
    assert [r["state"] for r in outbox] == ["queued", "failed", "queued", "failed"]
    assert d.run_end()["warnings"] >= 2
    assert "WARNING:  notification RolledBack was not delivered" in d.output
    assert "Warnings" in (d.bundle / "report.html").read_text(encoding="utf-8")
    assert d.served_version() == "1.0.0"


def test_matrix_run_uses_the_kept_lab_and_leaves_it_running(drill: Any) -> None:
    first = drill()
    assert first.returncode == 0, first.output
    smoke = drill(marker="dr_smoke", keep=False)
    assert smoke.returncode == 0, smoke.output
    assert [e["phase"] for e in smoke.kinds("phase.start")] == ["DR-SMOKE"]
    assert "Lab left running" in smoke.output
    assert not [e for e in smoke.kinds("action") if e["data"]["name"] in ("lab.start", "lab.stop")]
    assert smoke.served_version() == "1.0.0"  # the state the rollback drill left, still serving


def test_drill_without_keep_lab_stops_every_lab_process(unkept_rollback_drill: Drill) -> None:
    d = unkept_rollback_drill  # shared with other modules' tests (tests/conftest.py), with --evidence-zip
    assert d.returncode == 0, d.output
    assert Lab.attach(d.lab_dir) is None
    assert [e["data"]["name"] for e in d.kinds("action")][-1] == "lab.stop"
