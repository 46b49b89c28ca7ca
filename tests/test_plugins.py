"""The runbook plugins in real pytest sessions (pytester): order, gates, usage errors, evidence.

The runbook modules here are small stand-ins written by each test; the plugins under test are the real ones.
The environment is remote and points at a loopback port where nothing listens: these tests touch no system.
"""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from plugins.journal import read_events, verify_bundle
from tests.lab_checks import closed_url
from tests.runbook_project import PLUGINS, make_runbook_project, phase_module, remote_env


@pytest.fixture
def runbook_project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A project with the runbook plugins, a remote environment file and an evidence dir of its own."""
    return make_runbook_project(pytester)


def write_rollback_modules(
    p: pytest.Pytester, failing: str | None = None, message: str = "disk full"
) -> None:
    """One module per rollback phase, named so that file order is NOT playbook order."""
    fail = f'def test_step():\n    raise AssertionError("{message}")\n'
    phases = {
        "test_a_rb5": ("RB-5", ["rollback"]),
        "test_b_smoke": ("DR-SMOKE", ["rollback", "bluegreen", "dr_smoke"]),
        "test_c_rb3": ("RB-3", ["rollback"]),
        "test_d_pre": ("PRE", ["rollback", "bluegreen"]),
        "test_e_rb4": ("RB-4", ["rollback"]),
        "test_f_rb1": ("RB-1", ["rollback"]),
        "test_g_rb2": ("RB-2", ["rollback"]),
    }
    for name, (phase, markers) in phases.items():
        body = fail if phase == failing else "def test_step():\n    pass\n"
        if phase == failing:
            body += "\ndef test_same_phase_goes_on():\n    pass\n"
        p.makepyfile(**{name: phase_module(phase, *markers, body=body)})


def bundles(p: pytest.Pytester) -> list[Path]:
    root = p.path / "reports"
    return sorted(root.iterdir()) if root.exists() else []


def journal_phases(bundle: Path) -> list[str]:
    return [e["phase"] for e in read_events(bundle / "evidence.jsonl") if e["kind"] == "phase.start"]


def test_phases_run_in_playbook_order(runbook_project: pytest.Pytester) -> None:
    write_rollback_modules(runbook_project)
    result = runbook_project.runpytest("-m", "rollback", "--env", "Remote", "-v")
    result.assert_outcomes(passed=7)
    (bundle,) = bundles(runbook_project)
    assert journal_phases(bundle) == ["PRE", "RB-1", "RB-2", "RB-3", "DR-SMOKE", "RB-4", "RB-5"]
    assert bundle.name.endswith("_Remote_rollback")
    assert verify_bundle(bundle).ok


def test_failed_phase_blocks_the_rest_but_recording_runs(runbook_project: pytest.Pytester) -> None:
    write_rollback_modules(runbook_project, failing="RB-2", message="site did not stop: HTTP 200")
    result = runbook_project.runpytest("-m", "rollback", "--env", "Remote", "-rs")
    # RB-2 fails, its second test still runs; RB-3, DR-SMOKE, RB-4 are blocked; RB-5 records.
    result.assert_outcomes(passed=4, failed=1, skipped=3)
    result.stdout.fnmatch_lines(["*blocked by RB-2: site did not stop: HTTP 200*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    (bundle,) = bundles(runbook_project)
    ends = {
        e["phase"]: e["data"]["outcome"]
        for e in read_events(bundle / "evidence.jsonl")
        if e["kind"] == "phase.end"
    }
    assert ends == {
        "PRE": "passed",
        "RB-1": "passed",
        "RB-2": "failed",
        "RB-3": "blocked",
        "DR-SMOKE": "blocked",
        "RB-4": "blocked",
        "RB-5": "passed",
    }
    *_, run_end, seal = read_events(bundle / "evidence.jsonl")
    assert (run_end["kind"], seal["kind"]) == ("run.end", "seal")
    assert run_end["data"]["outcome"] == "failed"
    assert run_end["data"]["blocked_by"] == "RB-2"


def test_required_matrix_row_that_skips_fails(runbook_project: pytest.Pytester) -> None:
    body = 'def test_scan():\n    pytest.skip("ZAP not installed")\n'
    runbook_project.makepyfile(
        test_zap_row=phase_module("DR-ZAP", "rollback", "bluegreen", "dr_zap", body=body)
    )
    result = runbook_project.runpytest("-m", "dr_zap", "--env", "Remote")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*required check DR-ZAP was skipped: ZAP not installed*"])


def test_matrix_only_run_has_no_flow(runbook_project: pytest.Pytester) -> None:
    runbook_project.makepyfile(test_smoke=phase_module("DR-SMOKE", "rollback", "bluegreen", "dr_smoke"))
    runbook_project.runpytest("-m", "dr_smoke", "--env", "Remote").assert_outcomes(passed=1)
    (bundle,) = bundles(runbook_project)
    assert bundle.name.endswith("_Remote_matrix")
    assert read_events(bundle / "evidence.jsonl")[0]["flow"] == "matrix"


def test_runbook_plan_prints_checklist_and_runs_nothing(runbook_project: pytest.Pytester) -> None:
    runbook_project.makepyfile(
        test_rb1=phase_module(
            "RB-1",
            "rollback",
            body='def test_notify():\n    """Send notify RolledBack."""\n    raise SystemExit\n',
        ),
        test_pre=phase_module("PRE", "rollback", "bluegreen"),
    )
    result = runbook_project.runpytest("-m", "rollback", "--runbook-plan")
    assert result.ret == 0
    out = result.stdout.str()
    assert "# Runbook plan: rollback" in out
    assert out.index("## PRE") < out.index("- [ ] test_step  `test_pre.py::test_step`") < out.index("## RB-1")
    assert "- [ ] Send notify RolledBack.  `test_rb1.py::test_notify`" in out
    assert bundles(runbook_project) == []


def usage_error(p: pytest.Pytester, *args: str) -> str:
    result = p.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    assert bundles(p) == [], "a usage error must stop the run before any evidence or system is touched"
    return result.stderr.str() + result.stdout.str()


def test_both_flows_selected_is_a_usage_error(runbook_project: pytest.Pytester) -> None:
    runbook_project.makepyfile(
        test_rb1=phase_module("RB-1", "rollback"), test_bg1=phase_module("BG-1", "bluegreen")
    )
    out = usage_error(runbook_project, "-m", "rollback or bluegreen", "--env", "Remote")
    assert "selects phases of both the rollback and the bluegreen flow (BG-1, RB-1)" in out
    assert "-m rollback or -m bluegreen" in out


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("name = 'X'\nkind = 'remote'\n[service\n", r"X\.toml: not valid TOML"),
        ('name = "X"\ncolour = "blue"\n', r"X\.toml: colour: unknown key \(known: "),
        ('name = "X"\n[service]\nbase_url = "http://127.0.0.1:9"\nhealthpath = "/h"\n', r"\[service\] healthpath: unknown key"),
        ('name = "X"\n[service]\nbase_url = "http://127.0.0.1:9"\n[monitor]\ninterval_s = "five"\n',
         r"\[monitor\] interval_s: expected a number, got a string 'five'"),
        ('kind = "remote"\n', r"X\.toml: name: required: expected a str"),
        ('name = "X"\nkind = "cloud"\n', r"kind: expected \"lab\" or \"remote\", got \"cloud\""),
        ('name = "X"\n[service]\nbase_url = "ftp://host"\n', r"\[service\] base_url: expected an http\(s\) URL"),
        ('name = "X"\n[notify]\nformat = "email"\n', r"\[notify\] format: no notify format \"email\" \(known: generic, slack, teams, teams-workflow\)"),
        ('name = "X"\n[service]\nbase_url = "http://127.0.0.1:9"\n[notify]\nwebhook_url = "${RUNBOOK_TEST_UNSET_VAR}"\n',
         r"\[notify\] webhook_url: \$\{RUNBOOK_TEST_UNSET_VAR\} is not set in the process environment"),
        ('name = "X"\n[notify]\nwebhook_url = "http://127.0.0.1:9/h"\n', r"\[service\] base_url: required"),
    ],
    ids=["toml-syntax", "unknown-top-key", "unknown-key", "wrong-type", "missing-name", "bad-kind", "bad-url",
         "bad-choice", "unset-var", "missing-base-url"],
)  # fmt: skip
def test_bad_environment_file_is_a_usage_error(
    runbook_project: pytest.Pytester, toml: str, expected: str
) -> None:
    os.environ.pop("RUNBOOK_TEST_UNSET_VAR", None)
    (runbook_project.path / "environments" / "X.toml").write_text(toml)
    write_rollback_modules(runbook_project)
    out = usage_error(runbook_project, "-m", "rollback", "--env", "X")
    assert re.search(expected, out), out


def test_unset_variable_in_a_section_the_run_does_not_use_is_fine(runbook_project: pytest.Pytester) -> None:
    os.environ.pop("RUNBOOK_TEST_UNSET_VAR", None)
    env = remote_env(webhook_url="${RUNBOOK_TEST_UNSET_VAR}")
    (runbook_project.path / "environments" / "Remote.toml").write_text(env)
    runbook_project.makepyfile(test_smoke=phase_module("DR-SMOKE", "rollback", "bluegreen", "dr_smoke"))
    runbook_project.runpytest("-m", "dr_smoke", "--env", "Remote").assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--env", "Staging"], "--env Staging: no environments/Staging.toml (have: Remote)"),
        ([], "no environment is: pass --env NAME"),
        (["--env", "Remote", "--lab-fault", "webhook-down"], "--lab-fault webhook-down: only for the embedded Lab"),
        (["--env", "Remote", "--lab-fault", "meteor"], "argument --lab-fault: invalid choice: 'meteor'"),
        (["--lab-fault", "service-stopped"], "--lab-fault: needs --env Lab"),
        (["--env", "Remote", "--keep-lab"], "--keep-lab: only for the embedded Lab"),
        (["--env", "Remote", "--env-file", "environments/Remote.toml"], "give either --env or --env-file"),
        (["--env-file", "nowhere.toml"], "--env-file nowhere.toml: no such file"),
        (["--env", "Remote", "--approved-by", "<script>"], "argument --approved-by: invalid approver name"),
    ],
    ids=["unknown-env", "no-env", "fault-outside-lab", "unknown-fault", "fault-without-env", "keep-lab-remote",
         "env-and-env-file", "missing-env-file", "bad-approver"],
)  # fmt: skip
def test_bad_option_is_a_usage_error(
    runbook_project: pytest.Pytester, args: list[str], expected: str
) -> None:
    write_rollback_modules(runbook_project)
    out = usage_error(runbook_project, "-m", "rollback", *args)
    assert expected in out, out


def test_runbook_environment_variable_selects_the_environment(
    runbook_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNBOOK_ENV", "Nowhere")
    runbook_project.makepyfile(test_smoke=phase_module("DR-SMOKE", "rollback", "bluegreen", "dr_smoke"))
    out = usage_error(runbook_project, "-m", "dr_smoke")
    assert "RUNBOOK_ENV Nowhere: no environments/Nowhere.toml" in out
    runbook_project.runpytest("-m", "dr_smoke", "--env", "Remote").assert_outcomes(passed=1)  # CLI wins


@pytest.mark.parametrize(
    ("marks", "expected"),
    [
        ('pytestmark = [pytest.mark.rollback, pytest.mark.phase("RB-9")]', "takes one playbook phase id"),
        (
            'pytestmark = [pytest.mark.rollback, pytest.mark.phase("RB-1", "RB-2")]',
            "takes one playbook phase id",
        ),
        ("pytestmark = [pytest.mark.rollback]", "a runbook test needs @pytest.mark.phase"),
    ],
    ids=["unknown-phase", "two-phases", "no-phase"],
)
def test_bad_phase_marker_is_a_usage_error(
    runbook_project: pytest.Pytester, marks: str, expected: str
) -> None:
    runbook_project.makepyfile(test_x=f"import pytest\n{marks}\ndef test_x():\n    pass\n")
    out = usage_error(runbook_project, "-m", "rollback", "--env", "Remote")
    assert expected in out


def test_evidence_bundle_is_complete_and_holds_no_secret(
    runbook_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cr3t-token-value-42"
    monkeypatch.setenv("RUNBOOK_TEST_WEBHOOK", f"{closed_url()}/hook/{secret}")
    env = remote_env(webhook_url="${RUNBOOK_TEST_WEBHOOK}")
    (runbook_project.path / "environments" / "Remote.toml").write_text(env)
    body = (
        "def test_leaky(runbook):\n"
        "    url = runbook.env.notify.webhook_url\n"
        "    print('posting to', url)\n"
        "    runbook.record('note', {'message': 'webhook ' + url})\n"
        "    assert url == 'nope', url\n"
    )
    runbook_project.makepyfile(test_pre=phase_module("PRE", "rollback", "bluegreen", body=body))
    runbook_project.makepyfile(test_rb5=phase_module("RB-5", "rollback"))
    result = runbook_project.runpytest("-m", "rollback", "--env", "Remote", "-rA", "--showlocals")
    result.assert_outcomes(failed=1, passed=1)
    assert secret not in result.stdout.str() + result.stderr.str(), "secret leaked to the terminal"
    assert "posting to ***" in result.stdout.str()
    (bundle,) = bundles(runbook_project)
    names = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    assert {"evidence.jsonl", "timeline.md", "junit.xml", "report.html", "manifest.json"} <= names
    for path in bundle.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), f"secret leaked into {path.name}"
    assert verify_bundle(bundle).ok, verify_bundle(bundle).problems
    manifest = json.loads((bundle / "manifest.json").read_text())
    # The manifest names the journal's last hash before the seal; the seal event closes over the manifest.
    assert manifest["journal_last_hash"] == read_events(bundle / "evidence.jsonl")[-2]["hash"]
    suite = ET.parse(bundle / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    report = (bundle / "report.html").read_text()
    assert 'id="runbook-summary"' in report
    assert "FAILED at PRE" in report


def test_a_failing_evidence_writer_does_not_stop_the_run(runbook_project: pytest.Pytester) -> None:
    runbook_project.makeconftest(
        f"pytest_plugins = {PLUGINS!r}\n"
        "import pytest\n"
        "class Broken:\n"
        "    name = 'broken-writer'\n"
        "    def write(self, event):\n"
        "        raise OSError('disk gone')\n"
        "    def close(self):\n"
        "        pass\n"
        "@pytest.fixture(autouse=True)\n"
        "def broken(request):\n"
        "    run = request.getfixturevalue('runbook')\n"
        "    if not any(w.name == 'broken-writer' for w in run.writers):\n"
        "        run.writers.append(Broken())\n"
    )
    write_rollback_modules(runbook_project)
    result = runbook_project.runpytest("-m", "rollback", "--env", "Remote")
    result.assert_outcomes(passed=7)
    result.stdout.fnmatch_lines(["*EVIDENCE WRITER ERROR: evidence writer broken-writer failed*disk gone*"])
    (bundle,) = bundles(runbook_project)
    assert verify_bundle(bundle).ok


@pytest.mark.parametrize("secret", ["k", "k2", "key", "key-4242-long"])
def test_redaction_never_crashes_whatever_the_secret_length(
    runbook_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, secret: str
) -> None:
    """A blocked phase's skip reason is a (path, line, message) tuple pytest needs intact; a one-letter secret
    is hidden where it stands alone and does not turn every "k" of the evidence into ***."""
    monkeypatch.setenv("RUNBOOK_TEST_KEY", secret)
    env = runbook_project.path / "environments" / "Remote.toml"
    env.write_text(env.read_text() + '[zap]\napi_key = "${RUNBOOK_TEST_KEY}"\n')
    runbook_project.makepyfile(
        test_pre=phase_module(
            "PRE", "rollback", body=f'def test_step():\n    raise AssertionError("value {secret} refused")\n'
        ),
        test_rb1=phase_module("RB-1", "rollback"),
    )
    result = runbook_project.runpytest("-m", "rollback", "--env", "Remote")
    out = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in out
    assert result.ret == 1
    result.assert_outcomes(failed=1, skipped=1)
    assert f"value {secret} refused" not in out
    assert "value *** refused" in out
    (bundle,) = bundles(runbook_project)
    journal = (bundle / "evidence.jsonl").read_text()
    assert '"kind":"run.start"' in journal, "ordinary words stay readable"
    assert verify_bundle(bundle).ok, verify_bundle(bundle).problems


def test_runbook_plan_lists_what_preflight_would_refuse(runbook_project: pytest.Pytester) -> None:
    """The plan is read before deciding: it runs nothing, and says what preflight would refuse."""
    env = runbook_project.path / "environments" / "Remote.toml"
    env.write_text(env.read_text().replace('timeline_dir = "logs"', 'timeline_dir = "no-such-folder"'))
    write_rollback_modules(runbook_project)
    result = runbook_project.runpytest("-m", "rollback", "--env", "Remote", "--runbook-plan")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "## Preflight would refuse this run",
            '- *Remote.toml: [[]paths[]] timeline_dir = "*no-such-folder": expected an existing folder (no such folder)',
        ]
    )
    assert not (runbook_project.path / "reports").exists()


def test_a_failed_phase_reaches_the_failure_hook_at_once(runbook_project: pytest.Pytester) -> None:
    """plugins/hooks.py: pytest_runbook_phase_failed is called when the test fails, before later phases run; an
    implementation that raises is a warning of the run, and the gate still closes."""
    runbook_project.makeconftest(
        f"pytest_plugins = {PLUGINS!r}\n"
        "import pytest\n"
        "seen = []\n"
        "class Watcher:\n"
        "    def pytest_runbook_phase_failed(self, run, phase, why):\n"
        "        seen.append((phase, why))\n"
        "        raise RuntimeError('handler broke')\n"
        "def pytest_configure(config):\n"
        "    config.pluginmanager.register(Watcher(), 'watcher')\n"
    )
    write_rollback_modules(runbook_project, failing="RB-2")
    result = runbook_project.runpytest("-m", "rollback", "--env", "Remote", "-rs")
    out = result.stdout.str()
    assert "a handler of the failure of RB-2 raised: handler broke" in out
    assert "blocked by RB-2: disk full" in out
    (bundle,) = bundles(runbook_project)
    events = read_events(bundle / "evidence.jsonl")
    warned = next(i for i, e in enumerate(events) if e["kind"] == "warning")
    rb3 = next(i for i, e in enumerate(events) if e["kind"] == "phase.start" and e["phase"] == "RB-3")
    assert warned < rb3, "the hook ran when RB-2 failed, before the next phase"
