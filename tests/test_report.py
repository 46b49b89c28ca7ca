"""report.html and its optional plugins: a run without pytest-html or pytest-metadata still leaves its evidence
and says why there is no report; the environment table shows no secret and no process variable with an address."""

from __future__ import annotations

from pathlib import Path

import pytest

from plugins.journal import read_events, verify_bundle
from tests.runbook_project import make_runbook_project, phase_module

ROOT = Path(__file__).resolve().parents[1]


def smoke_project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """One DR-SMOKE test; run in a subprocess (a plugin can only be left out of a fresh process)."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    project = make_runbook_project(pytester)
    project.makepyfile(test_smoke=phase_module("DR-SMOKE", "rollback", "bluegreen", "dr_smoke"))
    return project


def only_bundle(project: pytest.Pytester) -> Path:
    (bundle,) = sorted((project.path / "reports").iterdir())
    return bundle


@pytest.mark.parametrize("plugin", ["html", "metadata"])
def test_a_run_without_an_optional_report_plugin_keeps_its_evidence_and_says_so(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, plugin: str
) -> None:
    project = smoke_project(pytester, monkeypatch)
    result = project.runpytest_subprocess("-m", "dr_smoke", "--env", "Remote", "-p", f"no:{plugin}")
    result.assert_outcomes(passed=1)
    assert result.ret == 0
    out = result.stdout.str()
    assert f"Report:   report.html not written: pytest-{plugin} disabled (-p no:{plugin})" in out
    assert "Traceback" not in out + result.stderr.str()
    bundle = only_bundle(project)
    assert not (bundle / "report.html").exists()
    assert {"evidence.jsonl", "timeline.md", "junit.xml", "manifest.json"} <= {
        p.name for p in bundle.iterdir()
    }
    assert verify_bundle(bundle).ok
    warnings = [
        e["data"]["message"] for e in read_events(bundle / "evidence.jsonl") if e["kind"] == "warning"
    ]
    assert any(f"pytest-{plugin} disabled" in w for w in warnings), warnings


def test_the_environment_table_shows_no_secret_and_no_address_of_a_process_variable(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    internal = "jenkins-dr.corp.example"
    monkeypatch.setenv("JENKINS_URL", f"https://{internal}/")
    monkeypatch.setenv("BUILD_URL", f"https://ci-user:ci-token-77@{internal}/job/dr/42/")
    monkeypatch.setenv("BUILD_NUMBER", "42")
    project = smoke_project(pytester, monkeypatch)
    result = project.runpytest_subprocess(
        "-m",
        "dr_smoke",
        "--env",
        "Remote",
        "--metadata",
        "DEPLOY_TOKEN",
        "tok-9f8e7d",
        "--metadata",
        "Ticket",
        "CHG-1",
    )
    result.assert_outcomes(passed=1)
    report = (only_bundle(project) / "report.html").read_text(encoding="utf-8")
    assert internal not in report, "a CI address reached the report"
    assert "ci-token-77" not in report, "a CI credential reached the report"
    assert "tok-9f8e7d" not in report, "a secret-looking variable reached the report"
    # The rows stay, with their values redacted; what is no secret stays as it is (the operator's ticket).
    for key in ("BUILD_URL", "JENKINS_URL", "DEPLOY_TOKEN", "BUILD_NUMBER"):
        assert key in report
    assert "CHG-1" in report
