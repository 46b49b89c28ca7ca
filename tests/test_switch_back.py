"""`-m switch_back` (issue #11, item 6): traffic back to the warm standby at once, after a release.

Real Lab drills in subprocesses (tests/conftest.py DrillRunner): a Blue/Green release kept running (`--keep-lab`),
then the switch-back on that Lab, with its own bundle and journal; and the refusals, before anything is touched.
The preflight cases run in a pytester project against a remote environment file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lab import Lab
from tests import lab_checks
from tests.conftest import ROOT, Drill, DrillRunner
from tests.runbook_project import make_runbook_project, phase_module


def release_kept(drill: DrillRunner, **kwargs: Any) -> Drill:
    """A green Blue/Green release (blue 1.0.0 -> green 1.1.0), its Lab kept running."""
    released = drill(marker="bluegreen", **kwargs)
    assert released.returncode == 0, released.output
    assert released.served_version() == "1.1.0"
    return released


def lab_of(drill: Drill) -> Lab:
    lab = Lab.attach(drill.lab_dir)
    assert lab is not None, "the kept Lab is gone"
    return lab


def verify(bundle: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plugins.evidence", "verify", str(bundle)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_release_then_switch_back_serves_the_previous_version_again(drill: DrillRunner) -> None:
    """After a release, `-m switch_back` sends the public address back to blue 1.0.0, verified through it, sends
    RolledBack and leaves a bundle of its own that verifies; green keeps running untouched. A second switch-back
    is then refused: green serves a newer version, and a switch-back never goes forward."""
    released = release_kept(drill)
    back = drill(marker="switch_back")
    assert back.returncode == 0, back.output
    assert back.bundle != released.bundle
    assert back.bundle.name.endswith("_Lab_switch_back")
    assert back.phase_outcomes() == {"SB-1": "passed", "SB-2": "passed", "SB-3": "passed"}
    assert back.served_version() == "1.0.0"
    lab = lab_of(back)
    assert lab.router.active() == "blue"
    assert back.version_at("green") == "1.1.0"  # the slot it left is not stopped: it is the next standby
    assert [back.events[i]["data"]["target"] for i in back.actions("switch_traffic")] == ["blue"]
    assert back.actions("stop_site") == []
    assert back.actions("deploy") == []
    (rollback,) = back.kinds("rollback")
    assert rollback["phase"] == "SB-3"
    assert rollback["data"]["result"] == "succeeded"
    assert rollback["data"]["trigger"] == "operator"
    assert (rollback["data"]["from"], rollback["data"]["to"]) == ("1.1.0", "1.0.0")
    assert "serves 1.0.0 from blue" in rollback["data"]["detail"]
    assert back.notified() == [("RolledBack", "delivered")]
    (approval,) = back.kinds("approval")
    assert approval["phase"] == "SB-1"
    assert approval["data"]["approver"] == "lab-auto"
    assert back.actions("switch_traffic")[0] > back.index(lambda e: e["kind"] == "approval")[0]
    end = back.run_end()
    assert (end["version_from"], end["version_to"]) == ("1.1.0", "1.0.0")
    assert end["rollback_ran"] is True
    assert end["outcome"] == "passed"
    assert "Versions: 1.1.0 -> 1.0.0" in back.output
    timeline = (back.bundle / "timeline.md").read_text(encoding="utf-8")
    assert "traffic switched back: green (1.1.0) -> blue (1.0.0)" in timeline
    checked = verify(back.bundle)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    again = drill(marker="switch_back")
    assert again.returncode == 1, again.output
    assert again.phase_outcomes() == {"SB-1": "failed", "SB-2": "blocked", "SB-3": "blocked"}
    assert "green serves 1.1.0, newer than the live blue (1.0.0)" in again.output
    assert again.actions("switch_traffic") == []
    assert lab.router.active() == "blue"
    assert again.served_version() == "1.0.0"


def test_switch_back_without_a_healthy_standby_is_refused_and_touches_nothing(drill: DrillRunner) -> None:
    """A release that released its standby (`[slots] standby_then = "release"`): blue is stopped, so the
    switch-back is refused in SB-1 with a sentence saying why and what to do; nothing is switched, started or
    stopped, and green keeps serving 1.1.0 through the public address."""
    release_kept(drill, edit_env=lambda text: text + '\n[slots]\nstandby_then = "release"\n')
    lab_checks.assert_stopped(drill.lab_dir, "blue")
    refused = drill(
        marker="switch_back", edit_env=lambda text: text + '\n[slots]\nstandby_then = "release"\n'
    )
    assert refused.returncode == 1, refused.output
    assert refused.phase_outcomes() == {"SB-1": "failed", "SB-2": "blocked", "SB-3": "blocked"}
    (end,) = [e for e in refused.kinds("phase.end") if e["phase"] == "SB-1"]
    reason = end["data"]["reason"]
    assert reason.startswith(
        "switch-back refused, no healthy warm standby with the previous version: blue does"
    )
    assert "does not answer on its own address" in reason
    assert "Traceback" not in refused.output
    assert "Nothing was switched: traffic stays on green (1.1.0)" in refused.output
    assert "Start the previous release on blue" in refused.output
    assert refused.actions("switch_traffic") == []
    assert refused.kinds("rollback") == []
    assert ("RolledBack", "delivered") not in refused.notified()
    assert lab_of(refused).router.active() == "green"
    assert refused.served_version() == "1.1.0"
    lab_checks.assert_stopped(drill.lab_dir, "blue")
    assert refused.run_end()["rollback_ran"] is False


def test_switch_back_needs_a_kept_blue_green_lab(drill: DrillRunner) -> None:
    """Without a Lab kept by a release there is no standby: the run says which command comes first and starts no
    Lab of its own."""
    refused = drill(marker="switch_back")
    assert refused.returncode == 1, refused.output
    assert "pytest -m bluegreen --env Lab --keep-lab, then pytest -m switch_back --env Lab" in refused.output
    assert refused.kinds("lab") == []
    assert Lab.attach(drill.lab_dir) is None
    assert refused.kinds("action") == []


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    p = make_runbook_project(pytester)
    p.makepyfile(
        test_sb1=phase_module("SB-1", "switch_back"),
        test_sb2=phase_module("SB-2", "switch_back"),
        test_bg1=phase_module("BG-1", "bluegreen"),
        test_smoke=phase_module("DR-SMOKE", "dr_smoke"),
    )
    return p


def usage_error(p: pytest.Pytester, *args: str) -> str:
    result = p.runpytest(*args)
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, out
    assert not (p.path / "reports").exists() or not any((p.path / "reports").iterdir()), (
        "evidence was written"
    )
    return out


def test_switch_back_outside_the_lab_needs_approval_and_confirmation(project: pytest.Pytester) -> None:
    """Like every flow that changes a system: --approved-by with [approval] required = true, --confirm-env with
    protect = true, both before anything is touched (exit 4)."""
    env = project.path / "environments" / "Remote.toml"
    text = env.read_text().replace("required = false", "required = true")
    env.write_text(text.replace('kind = "remote"', 'kind = "remote"\nprotect = true'))
    out = usage_error(project, "-m", "switch_back", "--env", "Remote")
    assert "--approved-by NAME: required up front for the switch_back flow on Remote" in out
    assert "--confirm-env Remote: required for the switch_back flow" in out
    result = project.runpytest("-m", "switch_back", "--env", "Remote", "--approved-by", "A. Operator",
                               "--confirm-env", "Remote", "--runbook-plan")  # fmt: skip
    assert result.ret == 0, result.stdout.str()
    plan = result.stdout.str()
    assert "# Runbook plan: switch_back against Remote" in plan
    assert plan.index("test_sb1.py") < plan.index("test_sb2.py")


def test_switch_back_checks_the_router_commands_it_will_run(project: pytest.Pytester) -> None:
    """A command router: `active` and `switch` are the verbs a switch-back runs, checked by preflight; the deploy
    verbs are not needed (nothing is stopped or deployed), nor the offline package folder."""
    env = project.path / "environments" / "Remote.toml"
    lines = [ln for ln in env.read_text().splitlines() if not ln.startswith(("switch =", "stop_site ="))]
    env.write_text("\n".join(lines).replace('dir = "offline"', 'dir = "no-such-folder"') + "\n")
    out = usage_error(project, "-m", "switch_back", "--env", "Remote")
    assert "[drivers.command] switch: missing" in out
    assert "1 problem" in out
    assert "stop_site" not in out
    assert "no-such-folder" not in out


def test_switch_back_outside_the_lab_needs_both_slots_the_webhook_and_the_paths(
    project: pytest.Pytester,
) -> None:
    """The standby is checked on its own address, the switch-back is announced and timed in the dated timeline:
    [slots] blue and green, [notify] webhook_url and [paths] are required outside the Lab, all said at once."""
    env = project.path / "environments" / "Remote.toml"
    drop = ("green =", "webhook_url =", "[paths]", "log_dirs =", "timeline_dir =")
    env.write_text("\n".join(ln for ln in env.read_text().splitlines() if not ln.startswith(drop)) + "\n")
    out = usage_error(project, "-m", "switch_back", "--env", "Remote")
    assert "3 problems" in out
    assert "[slots] green: required for the switch_back flow" in out
    assert "[notify] webhook_url: required for the switch_back flow" in out
    assert "[paths]: required for the switch_back flow outside the Lab" in out


def test_switch_back_runs_alone(project: pytest.Pytester) -> None:
    """One flow at a time, and without matrix rows: the switch-back is about speed."""
    out = usage_error(project, "-m", "switch_back or bluegreen", "--env", "Remote")
    assert "selects phases of both the bluegreen and the switch_back flow (BG-1, SB-1, SB-2)" in out
    assert "-m rollback or -m bluegreen or -m switch_back" in out
    out = usage_error(project, "-m", "switch_back or dr_smoke", "--env", "Remote")
    assert "the switch_back flow does not run DR-SMOKE; select it alone (-m switch_back)" in out
