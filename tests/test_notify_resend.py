"""Notifications in real runbook sessions (pytester, a remote environment whose webhook is a loopback port):
the Failed event sent once when a run ends failed, the remote environment's notification log beside the
timeline, and `python -m plugins.notify resend BUNDLE` delivering what a run with the webhook down left
queued, while the sealed bundle still verifies."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lab import procs
from plugins.journal import read_events, verify_bundle
from plugins.notify import resent_path
from tests.http_stub import Reply, Stub
from tests.runbook_project import PLUGINS, make_runbook_project, phase_module, remote_env
from tests.test_notify_formats import STANDARD_FACTS, check_payload

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "T0KEN-resend-5e1f9a"
HOOK_VAR = "RESEND_TEST_HOOK_URL"


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def project(
    pytester: pytest.Pytester, port: int, modules: dict[str, str], conftest: str = ""
) -> pytest.Pytester:
    """The shared remote project with the notify fixtures; its webhook is ${HOOK_VAR}, in teams-workflow format."""
    make_runbook_project(pytester)
    pytester.makeconftest(f"pytest_plugins = {[*PLUGINS, 'fixtures.notify']!r}\n{conftest}")
    env = remote_env(webhook_url="${" + HOOK_VAR + "}").replace(
        "[notify]\n", '[notify]\nformat = "teams-workflow"\nretries = 1\ntimeout_s = 2.0\n'
    )
    (pytester.path / "environments" / "Remote.toml").write_text(env)
    for name, source in modules.items():
        pytester.makepyfile(**{name: source})
    return pytester


def hook_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/webhookb2/{TOKEN}/hook"


def only_bundle(p: pytest.Pytester) -> Path:
    (bundle,) = [d for d in (p.path / "reports").iterdir() if d.is_dir() and d.name[:8].isdigit()]
    return bundle


def resend(bundle: Path, port: int | None, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in __import__("os").environ.items() if k != HOOK_VAR}
    if port is not None:
        env[HOOK_VAR] = hook_url(port)
    return subprocess.run(
        [sys.executable, "-m", "plugins.notify", "resend", str(bundle), *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip


NOTIFY_TWICE = {
    "test_rb1": phase_module(
        "RB-1", "rollback",
        body="def test_step(notify):\n    notify('RolledBack', 'Rollback of Remote started', version_to='1.0.0')\n",
    ),
    "test_rb4": phase_module(
        "RB-4", "rollback", body="def test_step(notify):\n    notify('Deployed', 'Remote serves 1.0.0 again')\n"
    ),
}  # fmt: skip


def test_a_run_with_the_webhook_down_then_resend_delivers_and_the_bundle_still_verifies(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = procs.free_port()  # nothing listens there during the run
    monkeypatch.setenv(HOOK_VAR, hook_url(port))
    p = project(pytester, port, NOTIFY_TWICE)
    result = p.runpytest("-m", "rollback", "--env", "Remote")
    result.assert_outcomes(passed=2)
    bundle = only_bundle(p)
    assert verify_bundle(bundle).ok
    outbox = lines(bundle / "artifacts" / "notifications.jsonl")
    assert [r["state"] for r in outbox] == ["queued", "failed", "queued", "failed"]
    assert f"python -m plugins.notify resend {bundle}" in result.stdout.str()
    # The remote environment's notification log: every outbox line, beside the timeline ([paths] timeline_dir
    # = "logs", relative to the project root as the timeline's folder is).
    mirror = p.path / "logs" / "notifications" / "Remote.jsonl"
    assert lines(mirror) == outbox
    (notify_event, _) = [e for e in read_events(bundle / "evidence.jsonl") if e["kind"] == "notify"]
    assert notify_event["data"]["mirror"] == str(mirror)

    # Without the webhook's variable nothing is sent: a usage error naming it.
    unset = resend(bundle, None)
    assert unset.returncode == 2, unset.stdout + unset.stderr
    assert f"[notify] webhook_url: ${{{HOOK_VAR}}} is not set in the process environment" in unset.stderr
    # Still down: exit 1, each one named, both stay queued.
    down = resend(bundle, port)
    assert down.returncode == 1, down.stdout + down.stderr
    assert "RolledBack" in down.stdout
    assert "NOT delivered after 2 attempt(s): Connection refused" in down.stdout
    assert "2 of 2 still not delivered: they stay queued" in down.stdout
    assert [r["state"] for r in lines(resent_path(bundle))] == ["failed", "failed"]

    with Stub(port=port) as hook:
        hook.route(f"/webhookb2/{TOKEN}/hook", Reply(200, b"1"))
        up = resend(bundle, port)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "All 2 delivered" in up.stdout
        bodies = [json.loads(seen.body) for seen in hook.requests]
        assert [check_payload("teams-workflow", b)[0] for b in bodies] == [
            "MCMS RolledBack: Remote",
            "MCMS Deployed: Remote",
        ]
        for body in bodies:
            facts = check_payload("teams-workflow", body)[2]
            assert set(STANDARD_FACTS) <= set(facts)
            assert facts["Report"] == str(bundle / "report.html")
        # A second resend finds nothing pending: what was delivered is never sent twice.
        again = resend(bundle, port)
        assert again.returncode == 0, again.stdout + again.stderr
        assert again.stdout.strip() == (
            f"Nothing to resend: every notification of {bundle.name} was delivered (2 in all)."
        )
        assert len(hook.requests) == 2
    resent = lines(resent_path(bundle))
    assert [(r["state"], r["event_type"], r["resent"]) for r in resent[2:]] == [
        ("delivered", "RolledBack", True),
        ("delivered", "Deployed", True),
    ]
    assert resent_path(bundle).parent == bundle.parent / "notifications", "outside the sealed bundle"
    assert lines(mirror)[len(outbox) :] == resent, "the resends are in the environment's log too"
    check = verify_bundle(bundle)
    assert (check.ok, check.sealed) == (True, True), check.problems
    verify = subprocess.run([sys.executable, "-m", "plugins.evidence", "verify", str(bundle)], cwd=ROOT,
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert verify.returncode == 0, verify.stdout
    for text in (down.stdout, up.stdout, resent_path(bundle).read_text(), mirror.read_text()):
        assert TOKEN not in text, "the webhook's token is never stored or shown"


def test_resend_refuses_a_bad_bundle(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    port = procs.free_port()
    monkeypatch.setenv(HOOK_VAR, hook_url(port))
    p = project(pytester, port, NOTIFY_TWICE)
    p.runpytest("-m", "rollback", "--env", "Remote").assert_outcomes(passed=2)
    bundle = only_bundle(p)
    missing = resend(p.path / "no-such-run", port)
    assert (missing.returncode, missing.stderr.strip()) == (
        2,
        f"resend: {p.path / 'no-such-run'}: no such folder (give a run's folder under reports/)",
    )
    not_a_bundle = resend(p.path / "logs", port)
    assert not_a_bundle.returncode == 2
    assert "no evidence.jsonl in it (not an evidence bundle?)" in not_a_bundle.stderr
    forged = p.path / "copy" / bundle.name
    shutil.copytree(bundle, forged)
    with (forged / "artifacts" / "notifications.jsonl").open("a") as fh:
        fh.write(json.dumps({"state": "failed", "id": "forged"}) + "\n")
    altered = resend(forged, port)
    assert altered.returncode == 2, altered.stdout + altered.stderr
    assert "the evidence was altered, so its notifications are not resent: artifacts/notifications.jsonl" in (
        altered.stderr
    )
    assert not resent_path(forged).exists()
    usage = subprocess.run([sys.executable, "-m", "plugins.notify"], cwd=ROOT, capture_output=True, text=True,
                           check=False)  # fmt: skip
    assert usage.returncode == 2


def test_a_run_that_ends_failed_sends_failed_once(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Stub() as hook:
        hook.route("/hook", Reply(200))
        monkeypatch.setenv(HOOK_VAR, f"{hook.url}/hook")
        modules = {
            "test_rb1": NOTIFY_TWICE["test_rb1"],
            "test_rb4": phase_module(
                "RB-4", "rollback", body="def test_step(notify):\n    assert 0, 'smoke red'\n"
            ),
        }
        p = project(pytester, 0, modules)
        p.runpytest("-m", "rollback", "--env", "Remote").assert_outcomes(passed=1, failed=1)
        bodies = [json.loads(seen.body) for seen in hook.requests]
    titles = [check_payload("teams-workflow", b)[0] for b in bodies]
    assert titles == ["MCMS RolledBack: Remote", "MCMS Failed: Remote"]
    _, summary, facts = check_payload("teams-workflow", bodies[1])
    assert summary.startswith("Remote: the rollback run failed: FAILED at RB-4: ")
    assert facts["Outcome"].startswith("FAILED at RB-4: ")
    events = read_events(only_bundle(p) / "evidence.jsonl")
    kinds = [(e["kind"], e["data"].get("event_type")) for e in events if e["kind"] in ("notify", "run.end")]
    assert kinds == [("notify", "RolledBack"), ("notify", "Failed"), ("run.end", None)]


LATE_FAILURE = """
import pytest

@pytest.fixture(scope="session")
def breaks_at_the_end():
    yield
    raise RuntimeError("the log share went away")
"""


def test_a_run_that_fails_after_the_flow_is_announced_after_run_end(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure after the notify fixture's teardown (a fixture torn down later) is only known at run.end: the
    Failed notification is sent then, still once, before the seal."""
    with Stub() as hook:
        hook.route("/hook", Reply(200))
        monkeypatch.setenv(HOOK_VAR, f"{hook.url}/hook")
        body = "def test_step(breaks_at_the_end, notify):\n    notify('RolledBack', 'Rollback of Remote started')\n"
        p = project(
            pytester, 0, {"test_rb1": phase_module("RB-1", "rollback", body=body)}, conftest=LATE_FAILURE
        )
        p.runpytest("-m", "rollback", "--env", "Remote").assert_outcomes(passed=1, errors=1)
        titles = [check_payload("teams-workflow", json.loads(s.body))[0] for s in hook.requests]
    assert titles == ["MCMS RolledBack: Remote", "MCMS Failed: Remote"]
    bundle = only_bundle(p)
    events = read_events(bundle / "evidence.jsonl")
    kinds = [(e["kind"], e["data"].get("event_type")) for e in events if e["kind"] in ("notify", "run.end")]
    assert kinds == [("notify", "RolledBack"), ("run.end", None), ("notify", "Failed")]
    assert verify_bundle(bundle).ok, "sent before the seal: the bundle holds it"
