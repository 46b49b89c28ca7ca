"""The site fixture's undo (the rollback policy, fixtures.rollback) against a real Lab.

A previous stable package that passes its hash check but never becomes healthy is the realistic way a rollback
fails after the site was stopped; the undo must bring back what was serving before, or say loudly that it could
not.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.base import DriverError
from drivers.config import Environment, load_environment
from drivers.deploy import LabDeployDriver
from drivers.packages import find_packages
from drivers.probe import Prober
from fixtures.deploy import SiteControl
from fixtures.rollback import RollbackRecorder
from lab import Lab, build_package
from plugins.state import RunbookRun, RunOptions
from tests.lab_checks import assert_stopped, health, served_version

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.lab


def lab_environment(tmp_path: Path, lab: Lab) -> Environment:
    text = (ROOT / "environments" / "Lab.toml").read_text(encoding="utf-8")
    text = text.replace("start_timeout_s = 10.0", "start_timeout_s = 3.0")
    path = tmp_path / "Lab.toml"
    path.write_text(text, encoding="utf-8")
    return load_environment(path).with_lab_endpoints(
        lab.public_url, {"blue": lab.node("blue").url}, lab.webhook_url, lab.packages_dir
    )


def started_lab(tmp_path: Path, *faults: str) -> Lab:
    lab = Lab(tmp_path / "lab", faults=faults)
    lab.start()
    return lab


@pytest.fixture
def make_lab(tmp_path: Path) -> Iterator[object]:
    labs: list[Lab] = []

    def make(*faults: str) -> tuple[Lab, SiteControl, RunbookRun]:
        lab = started_lab(tmp_path, *faults)
        labs.append(lab)
        env = lab_environment(tmp_path, lab)
        run = RunbookRun(env, RunOptions(evidence_dir=tmp_path / "reports"), ROOT)
        driver = LabDeployDriver(env, Prober(["127.0.0.1"], timeout_s=1, retries=0), {"lab": lab})
        recorder = RollbackRecorder(run, lambda event_type, summary, **facts: run.notified(
            event_type=event_type, summary=summary))  # fmt: skip
        return lab, SiteControl(run, driver, find_packages(lab.packages_dir), recorder), run

    yield make
    for lab in labs:
        lab.stop()


def served(lab: Lab) -> str:
    """The version a healthy public address serves; a refusal or a 5xx fails (see assert_stopped)."""
    return served_version(lab.public_url)


def broken_previous_stable(lab: Lab, version: str = "1.0.0") -> None:
    """Rebuild the package so that its hash is right but the release never becomes healthy."""
    build_package(version, lab.packages_dir, faults=["unhealthy"])


def test_failed_rollback_restores_what_was_serving(make_lab: object) -> None:
    lab, site, run = make_lab()  # type: ignore[operator]
    broken_previous_stable(lab)
    previous = find_packages(lab.packages_dir).previous_stable()
    site.stop("active")
    assert_stopped(lab.root, "blue")
    with pytest.raises(DriverError, match=r"node blue \(1\.0\.0\) did not start: .* not ready after"):
        site.deploy_and_start(previous)
    site.undo()
    (restore,) = [e["data"] for e in run.events if e["kind"] == "rollback"]
    assert restore["result"] == "succeeded", restore
    assert restore["to"] == "1.1.0"
    assert "restoring the release that was serving before (policy on-failure)" in restore["reason"]
    assert run.restore_result is not None
    assert run.restore_result.startswith("succeeded")
    assert run.site_down is None
    assert served(lab) == "1.1.0"


def test_restore_that_fails_is_loud(make_lab: object) -> None:
    lab, site, run = make_lab()  # type: ignore[operator]
    broken_previous_stable(lab, "1.0.0")
    broken_previous_stable(lab, "1.1.0")
    previous = find_packages(lab.packages_dir).previous_stable()
    site.stop("active")
    with pytest.raises(DriverError):
        site.deploy_and_start(previous)
    site.undo()
    (restore,) = [e["data"] for e in run.events if e["kind"] == "rollback"]
    assert restore["result"] == "failed"
    assert run.site_down is not None
    assert "restoring 1.1.0 on the active node failed" in run.site_down
    assert any(w.startswith("SITE DOWN: Lab: restoring 1.1.0") for w in run.warnings), run.warnings
    assert [e["data"]["what"] for e in run.events if e["kind"] == "site.down"] == [run.site_down]
    assert [n["event_type"] for n in run.notifications] == ["Alert"]
    assert_stopped(lab.root, "blue")


def test_site_that_was_not_serving_is_left_stopped(make_lab: object) -> None:
    lab, site, run = make_lab("service-stopped")  # type: ignore[operator]
    broken_previous_stable(lab)
    site.stop("active")
    with pytest.raises(DriverError):
        site.deploy_and_start(find_packages(lab.packages_dir).previous_stable())
    site.undo()
    (restore,) = [e["data"] for e in run.events if e["kind"] == "rollback"]
    assert restore["result"] == "not possible"
    assert "1.1.0 was not serving, so there is nothing to bring back" in restore["reason"]
    # Down before the run and still down after it: said as loudly as a failed restore.
    assert run.site_down == "the active node is stopped and no release serves (1.1.0 was not serving)"
    assert_stopped(lab.root, "blue")


def test_successful_deploy_needs_no_undo(make_lab: object) -> None:
    lab, site, run = make_lab()  # type: ignore[operator]
    site.stop("active")
    site.deploy_and_start(find_packages(lab.packages_dir).previous_stable())
    site.undo()
    (decision,) = [e["data"] for e in run.events if e["kind"] == "rollback"]
    assert decision["result"] == "not needed"
    assert decision["reason"] == "policy on-failure: the rolled-back release serves healthy"
    assert run.site_down is None
    assert served(lab) == "1.0.0"


def test_blue_green_rollback_that_does_not_restore_is_loud(tmp_path: Path) -> None:
    """Traffic goes back to blue, but blue is dead: the rollback is recorded as failed, never as success."""
    from drivers.notify import Notifier
    from drivers.packages import Package
    from drivers.router import LabRouterDriver
    from fixtures.bluegreen import BlueGreen, SlotState

    lab = Lab(tmp_path / "lab", topology="bluegreen")
    lab.start()
    try:
        env = load_environment(ROOT / "environments" / "Lab.toml").with_lab_endpoints(
            lab.public_url,
            {"blue": lab.node("blue").url, "green": lab.node("green").url},
            lab.webhook_url,
            lab.packages_dir,
        )
        run = RunbookRun(env, RunOptions(evidence_dir=tmp_path / "reports"), ROOT)
        prober = Prober(["127.0.0.1"], timeout_s=1, retries=0)
        deployer = LabDeployDriver(env, prober, {"lab": lab})
        notifier = Notifier(env.notify.webhook_url, "generic", tmp_path / "outbox.jsonl")
        sent: list[str] = []

        def notify(event_type: str, summary: str, **facts: object) -> object:
            sent.append(event_type)
            return notifier.send(event_type, env.name, summary, facts)

        release = Package("1.1.0", lab.package("1.1.0"))
        slots = SlotState("blue", "green", "1.0.0", None, lab.node("blue").url, lab.node("green").url)
        recorder = RollbackRecorder(run, notify)  # type: ignore[arg-type]
        router = LabRouterDriver(env, {"lab": lab})
        deployer.live_slot = router.active
        control = BlueGreen(run, env, deployer, router, prober, notify, release, slots, recorder)  # type: ignore[arg-type]
        control.deploy_to_idle()
        control.switch_to_release()
        assert served(lab) == "1.1.0"
        lab.node("blue").stop()  # the warm standby died
        control.apply_policy("test: green failed after the switch")
        (rollback,) = [e["data"] for e in run.events if e["kind"] == "rollback"]
        assert rollback["result"] == "failed"
        assert (rollback["from_slot"], rollback["to_slot"]) == ("green", "blue")
        assert run.rollback_result == "failed"
        assert any(
            w.startswith("ROLLBACK FAILED: traffic could not be restored on blue") for w in run.warnings
        )
        assert run.site_down is not None
        assert "traffic could not be sent back to blue" in run.site_down
        assert "Alert" in sent
        assert sent[-1] == "RolledBack"
        assert lab.router.active() == "blue"
        # Traffic is on blue, which is dead: the router answers for it (bad gateway), nothing serves.
        assert health(lab.public_url + "/health")[0] == 502
        assert_stopped(lab.root, "blue")
    finally:
        lab.stop()
