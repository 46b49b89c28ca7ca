"""Blue/Green releases against the real embedded Lab (router, two slots), run as an operator runs them."""

from __future__ import annotations

import csv
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from lab import NEXT, Lab
from plugins.journal import verify_bundle
from tests.conftest import Drill
from tests.lab_checks import closed_url

pytestmark = [pytest.mark.lab, pytest.mark.drill]

BG_ORDER = ["PRE", "BG-1", "DR-SMOKE", "DR-E2E", "DR-AXE", "DR-ZAP", "BG-3", "BG-4", "BG-5"]


def rollbacks(d: Any) -> list[dict[str, Any]]:
    return [e["data"] for e in d.kinds("rollback")]


def test_green_release(release_drill: Drill) -> None:
    d = release_drill  # shared with other modules' tests (tests/conftest.py): only read here
    assert d.returncode == 0, d.output
    assert [e["phase"] for e in d.kinds("phase.start")] == BG_ORDER
    assert set(d.phase_outcomes().values()) == {"passed"}
    end = d.run_end()
    assert (end["version_from"], end["version_to"], end["rollback_ran"]) == ("1.0.0", "1.1.0", False)
    assert d.served_version() == "1.1.0"
    assert d.version_at("blue") == "1.0.0", "blue must still be running as the warm standby"
    # Approved up front in PRE (the Lab approves its own drills), and the switch itself at BG-3.
    assert [(e["phase"], e["data"]["approver"]) for e in d.kinds("approval")] == [
        ("PRE", "lab-auto"),
        ("BG-3", "lab-auto"),
    ]
    assert d.notified() == [("Approved", "delivered"), ("Switched", "delivered")]
    (decision,) = rollbacks(d)
    assert decision["result"] == "not needed"
    assert "policy on-failure: every check after the switch passed" in decision["reason"]
    # DR-SMOKE looked at green's own address, before any traffic went there.
    smoke = [e["data"]["url"] for e in d.kinds("probe") if e["phase"] == "DR-SMOKE"]
    lab_urls = next(e for e in d.kinds("action") if e["data"]["name"] == "lab.start")["data"]["detail"][
        "urls"
    ]
    assert smoke
    assert all(url.startswith(lab_urls["green"]) for url in smoke)
    monitor = (d.bundle / "artifacts" / "monitor.csv").read_text().splitlines()
    assert monitor[0] == "ts,offset_s,status,latency_ms,ok,error"
    assert len(monitor) >= 10  # about 10 s at one probe a second in the Lab
    assert all(line.split(",")[4] == "1" for line in monitor[1:])
    assert 'id="runbook-monitor"' in (d.bundle / "report.html").read_text(encoding="utf-8")
    assert verify_bundle(d.bundle).ok


def test_green_unhealthy_keeps_blue_serving(drill: Any) -> None:
    d = drill("--lab-fault", "green-unhealthy", marker="bluegreen")
    assert d.returncode == 1, d.output
    outcomes = d.phase_outcomes()
    assert outcomes["BG-1"] == "failed"
    assert {outcomes[p] for p in ("DR-SMOKE", "DR-E2E", "DR-AXE", "DR-ZAP", "BG-3", "BG-4", "BG-5")} == {
        "blocked"
    }
    assert not [e for e in d.kinds("action") if e["data"]["name"] == "switch_traffic"]
    assert d.served_version() == "1.0.0"
    d.assert_stopped("green")
    # The Lab's own Node.start already stopped the release that never became healthy; what this checks is that
    # the runbook stops the failed release itself (BlueGreen.stop_failed_release), after BG-1 failed and
    # before it says so in the rollback decision.
    (decided,) = d.index(lambda e: e["kind"] == "rollback")
    stops = [i for i in d.actions("stop_site", "green") if d.phase_end("BG-1") < i < decided]
    assert stops, "the runbook itself stops the failed release on the idle slot"
    decision = d.events[decided]["data"]
    assert "failed before the switch" in decision["reason"]
    assert "traffic never left the live slot" in decision["reason"]
    assert "the idle slot green is stopped" in decision["reason"]
    assert decision["detail"] == "the public address serves 1.0.0"


def test_release_failing_a_check_on_the_idle_slot_is_stopped_there(drill: Any) -> None:
    """Green starts healthy, then DR-AXE fails on it: nothing is switched, blue keeps serving, and the runbook
    stops green itself (no Lab fault stops it): its address refuses and no process of it runs."""
    d = drill("--lab-fault", "a11y-regression", marker="bluegreen")
    assert d.returncode == 1, d.output
    outcomes = d.phase_outcomes()
    assert (outcomes["BG-1"], outcomes["DR-SMOKE"], outcomes["DR-AXE"]) == ("passed", "passed", "failed")
    assert {outcomes[p] for p in ("DR-ZAP", "BG-3", "BG-4", "BG-5")} == {"blocked"}
    assert not d.actions("switch_traffic")
    (started,) = [d.events[i]["data"] for i in d.actions("start_site", "green")]
    assert started["result"] == "ok", "green was running and healthy before DR-AXE"
    assert d.served_version() == "1.0.0"
    d.assert_stopped("green")
    after_axe = [i for i in d.actions("stop_site", "green") if i > d.phase_end("DR-AXE")]
    assert [d.events[i]["data"]["result"] for i in after_axe] == ["stopped"], "the runbook stopped green"
    (decision,) = rollbacks(d)
    assert "the release failed before the switch, blocked by DR-AXE" in decision["reason"]
    assert "the idle slot green is stopped" in decision["reason"]
    assert decision["result"] == "not needed"


def test_green_degrading_after_switch_rolls_back_at_once(rolled_back_release_drill: Drill) -> None:
    d = rolled_back_release_drill  # shared with other modules' tests (tests/conftest.py): only read here
    assert d.returncode == 1, d.output
    outcomes = d.phase_outcomes()
    assert outcomes["BG-4"] == "failed"
    assert outcomes["BG-5"] == "blocked"
    assert "monitor breach: 2 consecutive failed checks" in d.output
    assert "Versions: 1.0.0 -> 1.1.0, rolled back: 1.0.0 serves" in d.output, "the tried release is named"
    (rollback,) = rollbacks(d)
    assert rollback["result"] == "succeeded", rollback
    assert (rollback["from"], rollback["to"]) == ("1.1.0", "1.0.0")
    # At once: the breach is followed by the switch back to blue, with no further monitor probe in between
    # and before the monitor says it is done. (How fast is benchmarks/switch_under_load.py's figure; the
    # ceiling here only catches a hang.)
    (breach,) = d.index(lambda e: e["kind"] == "note" and e["data"]["message"].startswith("monitor breach"))
    (back,) = d.actions("switch_traffic", "blue")
    (decided,) = d.index(lambda e: e["kind"] == "rollback")
    (done,) = d.index(lambda e: e["kind"] == "note" and e["data"]["message"] == "monitoring done")
    assert breach < back < decided < done
    between = {(e["kind"], e["data"].get("tool")) for e in d.events[breach + 1 : back]}
    assert between <= {("finding", "public-watch")}, "nothing but the public watch between breach and switch"
    samples = list(csv.DictReader((d.bundle / "artifacts" / "monitor.csv").open(encoding="utf-8")))
    failed = [s["ok"] == "0" for s in samples]
    detected = next(
        i for i in range(1, len(failed)) if failed[i - 1] and failed[i]
    )  # alert_after_failures = 2
    switched_back = datetime.fromisoformat(d.events[back]["ts"])
    probed_before = [s for s in samples if datetime.fromisoformat(s["ts"]) < switched_back]
    assert probed_before == samples[: detected + 1], "no monitor probe between the breach and the switch back"
    # How fast is a figure (benchmarks/switch_under_load.py measures it), not an assertion: it is journalled.
    assert rollback["restore_s_from_detection"] > 0
    assert d.served_version() == "1.0.0"
    assert d.notified()[-3:] == [("RolledBack", "delivered"), ("Alert", "delivered"), ("Failed", "delivered")]
    # The rollback happened during BG-4, not at the end of the session.
    assert next(e for e in d.kinds("rollback"))["phase"] == "BG-4"
    end = d.run_end()
    assert (end["outcome"], end["rollback_ran"], end["rollback_result"]) == ("failed", True, "succeeded")
    report = (d.bundle / "report.html").read_text(encoding="utf-8")
    summary = report[report.index('id="runbook-summary"') : report.index('id="runbook-phases"')]
    assert "yes: succeeded" in summary


def test_two_step_gate_switches_the_green_it_verified(drill: Any) -> None:
    gate = drill(marker="bluegreen and not traffic")
    assert gate.returncode == 0, gate.output
    assert [e["phase"] for e in gate.kinds("phase.start")] == [
        "PRE",
        "BG-1",
        "DR-SMOKE",
        "DR-E2E",
        "DR-AXE",
        "DR-ZAP",
        "BG-3",
    ]
    assert gate.served_version() == "1.0.0"
    assert gate.version_at("green") == "1.1.0"
    record_path = gate.bundle.parent / "verified-release" / "Lab.json"
    record = json.loads(record_path.read_text())
    assert (record["version"], record["run_id"], record["slot"]) == (
        "1.1.0",
        gate.events[0]["run_id"],
        "green",
    )

    switch = drill("--approved-by", "Alice Example", marker="bluegreen and traffic")
    assert switch.returncode == 0, switch.output
    assert [e["phase"] for e in switch.kinds("phase.start")] == ["BG-4", "BG-5"]
    assert [e["data"]["approver"] for e in switch.kinds("approval")] == ["Alice Example"]
    assert switch.served_version() == "1.1.0"
    notes = [e["data"]["message"] for e in switch.kinds("note")]
    assert any(m.startswith("green holds the release 1.1.0 verified by run") for m in notes)


def test_switch_step_without_a_gate_run_refuses(drill: Any) -> None:
    d = drill(marker="bluegreen and traffic")
    assert d.returncode == 1, d.output
    assert "no Blue/Green Lab kept" in d.output


def test_policy_always_goes_back_to_blue_after_success(drill: Any) -> None:
    d = drill("--runbook-rollback", "always", marker="bluegreen")
    assert d.returncode == 0, d.output
    (rollback,) = rollbacks(d)
    assert (rollback["result"], rollback["policy"]) == ("succeeded", "always")
    assert d.served_version() == "1.0.0"


def test_policy_never_leaves_traffic_on_green_and_says_so(drill: Any) -> None:
    d = drill("--runbook-rollback", "never", "--lab-fault", "green-degrades-after-switch", marker="bluegreen")
    assert d.returncode == 1, d.output
    decisions = rollbacks(d)
    assert decisions
    assert all(r["result"] == "not run" for r in decisions)
    assert "policy never" in decisions[0]["reason"]
    assert not [
        e
        for e in d.kinds("action")
        if e["data"]["name"] == "switch_traffic" and e["data"]["target"] == "blue"
    ]
    assert "ROLLBACK DUE, NOT RUN (--runbook-rollback never)" in d.output


def test_approval_required_outside_the_lab(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A remote environment with [approval] required and no --approved-by: preflight refuses the run up front
    (exit 4), with the command to rerun as the environment was given; no bundle is created, nothing is run."""
    root = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("PYTHONPATH", str(root))
    packages = pytester.path / "offline"
    packages.mkdir()
    (pytester.path / "logs").mkdir()
    (packages / "MCMS_Setup_1.1.0.zip").write_bytes(b"release")
    (packages / "MCMS_Setup_1.1.0.zip.sha256").write_text(
        "c1dd4c8b8d1f5e3f8bcd3a5e0f0b7e8b0d4c2e1f8a9b7c6d5e4f3a2b1c0d9e8f  MCMS_Setup_1.1.0.zip\n"
    )
    called = pytester.path / "called.txt"
    public, blue, green = closed_url(), closed_url(), closed_url()
    noop = json.dumps([sys.executable, "-c", f"open({str(called)!r}, 'a').write('x')"])
    (pytester.path / "Remote.toml").write_text(
        f'name = "Remote"\nkind = "remote"\n[service]\nbase_url = "{public}"\n'
        f'[slots]\nblue = "{blue}"\ngreen = "{green}"\n'
        f'[packages]\ndir = "{packages.as_posix()}"\n'
        f'[paths]\nlog_dirs = ["{(pytester.path / "logs").as_posix()}"]\ntimeline_dir = "{(pytester.path / "logs").as_posix()}"\n'
        f'[drivers]\ndeploy = "command"\nrouter = "command"\n[drivers.command]\nstop_site = {noop}\n'
        f"deploy = {noop}\nstart_site = {noop}\nswitch = {noop}\nactive = {noop}\n"
        f'[notify]\nwebhook_url = "{closed_url()}/hook"\nretries = 0\ntimeout_s = 0.5\n'
        "[approval]\nrequired = true\n"
    )
    for name in ("test_bg3_approval.py", "test_bg4_switch_traffic.py"):
        (pytester.path / name).write_text((root / "runbook_tests" / name).read_text())
    pytester.makeconftest((root / "conftest.py").read_text())
    pytester.makeini((root / "pytest.ini").read_text().replace("testpaths = runbook_tests\n", ""))
    env_file = pytester.path / "Remote.toml"
    result = pytester.runpytest_subprocess(
        "-m", "bluegreen", "-rs", f"--env-file={env_file}", f"--evidence-dir={pytester.path / 'r'}"
    )
    assert result.ret == 4
    result.stderr.fnmatch_lines(
        [
            "*preflight found 1 problem before anything was touched*",
            f"*--approved-by NAME: required up front for the bluegreen flow on Remote ({env_file}: [[]approval[]] "
            f"required = true); rerun with --env-file={env_file} --approved-by NAME",
        ]
    )
    assert not (pytester.path / "r").exists(), "no evidence bundle before preflight passed"
    assert not called.exists(), "no command may run before preflight passed"


def test_two_releases_on_one_kept_lab_alternate_slots(drill: Any) -> None:
    """A kept Lab after a release has green live, like a real site: the next release goes to blue, nothing is done
    to green, and the public address answers every probe of both runs."""
    first = drill(marker="bluegreen")
    assert first.returncode == 0, first.output
    lab = Lab.attach(first.lab_dir)
    assert lab is not None
    assert lab.router.active() == "green"
    lab.publish(NEXT)  # the next release arrives in the offline folder

    second = drill(marker="bluegreen")
    assert second.returncode == 0, second.output
    assert "reusing the Lab kept running" in " ".join(
        e["data"].get("message", "") for e in second.kinds("note")
    )
    (slots,) = [e["data"] for e in second.kinds("slots")]
    assert (slots["live"], slots["idle"], slots["live_version"]) == ("green", "blue", "1.1.0")
    acted = {(e["data"]["name"], e["data"]["target"]) for e in second.kinds("action")}
    assert {("deploy", "blue"), ("stop_site", "blue"), ("switch_traffic", "blue")} <= acted
    assert not {a for a in acted if a[1] == "green" and a[0] in ("deploy", "stop_site", "recycle_pool")}
    assert second.run_end()["version_from"] == "1.1.0"
    assert second.run_end()["version_to"] == NEXT
    assert second.served_version() == NEXT
    assert second.version_at("green") == "1.1.0", "the previously live slot is the warm standby"
    for run in (first, second):
        (watch,) = [e["data"] for e in run.kinds("note") if "failed_before_switch" in e["data"]]
        assert watch["probes"] >= 5
        assert (watch["failed_before_switch"], watch["failed_after_switch"]) == (0, 0), watch


def test_switch_run_refuses_when_the_idle_slot_changed_since_the_gate(drill: Any) -> None:
    """Someone switched traffic by hand between the CI gate and the switch run: the slot the gate verified is
    now the live one. The switch run refuses and touches nothing."""
    gate = drill(marker="bluegreen and not traffic")
    assert gate.returncode == 0, gate.output
    lab = Lab.attach(gate.lab_dir)
    assert lab is not None
    lab.router.switch("green")  # by hand, outside the runbook
    switch = drill("--approved-by", "Alice Example", marker="bluegreen and traffic")
    assert switch.returncode == 1, switch.output
    assert "the gate verified the release on green, but blue is the idle slot now" in switch.output
    assert not [e for e in switch.kinds("action") if e["data"]["name"] == "switch_traffic"]
    assert lab.router.active() == "green"
