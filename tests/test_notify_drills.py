"""The notifications of real Lab drills, as the Lab's webhook sink received them, one format per drill: a
rollback (teams-workflow), a failed precondition (slack), a Blue/Green release (teams) and a release whose green
degrades after the switch (generic). Each message is checked in its receiver's shape (tests/test_notify_formats.py)
with the facts people read."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.test_notify_formats import STANDARD_FACTS, check_payload

pytestmark = [pytest.mark.drill]


def received(d: Any, fmt: str) -> list[tuple[str, str, dict[str, str]]]:
    """(title, summary, facts) of every message the drill's Lab sink logged, in order, each checked."""
    folder = d.lab_dir / "logs" / "deploy" / "notifications"
    entries = [
        json.loads(line) for path in sorted(folder.glob("notifications_*.jsonl")) for line in path.open()
    ]
    seen = [check_payload(fmt, entry["body"]) for entry in entries]
    for _, _, facts in seen:
        assert set(STANDARD_FACTS) <= set(facts), facts
        assert facts["Report"] == str(d.bundle / "report.html")
        assert facts["Environment"] == "Lab"
    return seen


def with_format(fmt: str) -> Any:
    """Lab.toml's [notify] format set to `fmt`, whatever the shipped file says."""

    def edit(text: str) -> str:
        edited, count = re.subn(r'(?m)^format = "[a-z-]+"$', f'format = "{fmt}"', text)
        assert count == 1, "Lab.toml has one [notify] format line"
        return edited

    return edit


def test_rollback_drill_in_teams_workflow_cards(drill: Any) -> None:
    d = drill(edit_env=with_format("teams-workflow"))
    assert d.returncode == 0, d.output
    assert d.notified() == [("RolledBack", "delivered"), ("Deployed", "delivered")]
    (rolled_back, deployed) = received(d, "teams-workflow")
    assert rolled_back[0] == "MCMS RolledBack: Lab"
    assert (rolled_back[2]["Versions"], rolled_back[2]["Slots"], rolled_back[2]["Approver"]) == (
        "1.1.0 -> 1.0.0 (planned)",
        "single node",
        "lab-auto",
    )
    assert rolled_back[2]["Outcome"] == "in progress: no phase failed so far"
    assert deployed[0] == "MCMS Deployed: Lab"
    assert deployed[2]["Versions"] == "1.1.0 -> 1.0.0"


def test_a_failed_precondition_sends_failed_in_slack(drill: Any) -> None:
    d = drill("--lab-fault", "bad-package-hash", edit_env=with_format("slack"))
    assert d.returncode == 1, d.output
    assert d.notified() == [("Failed", "delivered")], "nothing was touched, so only Failed"
    ((title, summary, facts),) = received(d, "slack")
    assert title == "MCMS Failed: Lab"
    assert summary.startswith(
        "Lab: the rollback run failed: FAILED at PRE: MCMS_Setup_1.0.0.zip: sha256 mismatch"
    )
    assert facts["Outcome"].startswith("FAILED at PRE: ")
    assert facts["Versions"] == "1.1.0 -> not reached"


def test_bluegreen_release_sends_approved_then_switched_in_message_cards(drill: Any) -> None:
    d = drill(marker="bluegreen", edit_env=with_format("teams"))
    assert d.returncode == 0, d.output
    assert d.notified() == [("Approved", "delivered"), ("Switched", "delivered")]
    (approved, switched) = received(d, "teams")
    assert approved[2]["Slots"] == "live blue -> idle green"
    assert approved[2]["Versions"] == "1.0.0 -> 1.1.0 (not serving yet)"
    assert switched[0] == "MCMS Switched: Lab"
    assert switched[1] == "Lab: traffic switched to green 1.1.0; blue stays the warm standby"
    assert (switched[2]["Slots"], switched[2]["Versions"]) == (
        "live blue -> idle green; traffic now on green",
        "1.0.0 -> 1.1.0",
    )


def test_a_breach_after_the_switch_sends_alert_rolledback_and_failed(drill: Any) -> None:
    d = drill(
        "--lab-fault", "green-degrades-after-switch", marker="bluegreen", edit_env=with_format("generic")
    )
    assert d.returncode == 1, d.output
    assert d.notified() == [
        ("Approved", "delivered"),
        ("Switched", "delivered"),
        ("RolledBack", "delivered"),
        ("Alert", "delivered"),
        ("Failed", "delivered"),
    ]
    seen = received(d, "generic")
    assert [title for title, _, _ in seen] == [
        "MCMS Approved: Lab", "MCMS Switched: Lab", "MCMS RolledBack: Lab", "MCMS Alert: Lab", "MCMS Failed: Lab",
    ]  # fmt: skip
    _, alert, alert_facts = seen[3]
    assert alert.startswith("Lab: monitor breach after the switch: ")
    assert alert.endswith("; traffic sent back to blue (succeeded)")
    assert alert_facts["Slots"] == "live blue -> idle green; traffic now on blue"
    assert alert_facts["Versions"] == "1.0.0 -> 1.1.0, rolled back: 1.0.0 serves"
    _, failed, failed_facts = seen[4]
    assert failed.startswith("Lab: the bluegreen run failed: FAILED at BG-4: monitor breach")
    assert failed_facts["Outcome"] == failed.removeprefix("Lab: the bluegreen run failed: ")


def test_webhook_down_drill_then_resend_to_the_labs_sink(drill: Any, tmp_path: Any) -> None:
    """--lab-fault webhook-down: the drill ends green with both notifications queued; once a sink listens on the
    Lab's webhook port, `python -m plugins.notify resend BUNDLE` delivers them and the bundle still verifies."""
    import subprocess
    import sys

    from lab import Lab
    from plugins.journal import verify_bundle
    from plugins.notify import resent_path
    from tests.test_notify_formats import ROOT, Sink

    d = drill("--lab-fault", "webhook-down", edit_env=with_format("teams-workflow"))
    assert d.returncode == 0, d.output
    assert d.notified() == [("RolledBack", "failed"), ("Deployed", "failed")]
    command = [sys.executable, "-m", "plugins.notify", "resend", str(d.bundle)]
    down = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert down.returncode == 1, down.stdout + down.stderr
    lab = Lab.attach(d.lab_dir)
    assert lab is not None
    assert lab.webhook_port is not None
    sink = Sink(tmp_path / "late-sink", port=lab.webhook_port)
    try:
        up = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
        assert up.returncode == 0, up.stdout + up.stderr
        titles = [check_payload("teams-workflow", e["body"])[0] for e in sink.received()]
    finally:
        sink.stop()
    assert titles == ["MCMS RolledBack: Lab", "MCMS Deployed: Lab"]
    resent = [json.loads(line) for line in resent_path(d.bundle).read_text().splitlines()]
    assert [r["state"] for r in resent] == ["failed", "failed", "delivered", "delivered"]
    assert verify_bundle(d.bundle).ok
