"""A parallel run (pytest-xdist, -n): one bundle, one journal, one report and one Lab; the gate still holds; a
flow refuses -n before anything is touched."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from lab import Lab
from plugins.journal import read_events, verify_bundle
from tests.runbook_project import make_runbook_project, phase_module

ROOT = Path(__file__).resolve().parents[1]

# Each test journals which worker ran it; the row modules of a parallel matrix run.
WHO = (
    "import os\n\n"
    "def test_{n}(runbook):\n"
    "    runbook.note('ran on ' + os.environ.get('PYTEST_XDIST_WORKER', 'serial'), where=runbook.rootdir)\n"
)


def rows_module(phase: str, marker: str, count: int, prefix: str) -> str:
    body = "".join(WHO.format(n=f"{prefix}_{i}") + "\n" for i in range(count))
    return phase_module(phase, "rollback", "bluegreen", marker, body=body)


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    p = make_runbook_project(pytester)
    p.makepyfile(
        test_smoke=rows_module("DR-SMOKE", "dr_smoke", 4, "smoke"),
        test_axe=rows_module("DR-AXE", "dr_axe", 6, "axe"),
        test_zap=rows_module("DR-ZAP", "dr_zap", 3, "zap"),
    )
    return p


def the_bundle(p: pytest.Pytester) -> Path:
    (bundle,) = [d for d in (p.path / "reports").iterdir() if d.is_dir()]
    return bundle


def workers_by_phase(events: list[dict[str, Any]]) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = {}
    for e in events:
        if e["kind"] == "note" and str(e["data"].get("message", "")).startswith("ran on "):
            seen.setdefault(e["phase"], set()).add(e["data"]["message"].removeprefix("ran on "))
    return seen


def test_a_parallel_run_on_a_remote_environment_makes_one_bundle(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess("-n", "2", "-m", "dr_smoke or dr_axe or dr_zap", "--env", "Remote")
    result.assert_outcomes(passed=13)
    bundle = the_bundle(project)
    check = verify_bundle(bundle)
    assert (check.ok, check.sealed) == (True, True), check.problems
    assert (bundle / "report.html").is_file()
    events = read_events(bundle / "evidence.jsonl")
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), (
        "one chain, numbered by the controller"
    )
    workers = workers_by_phase(events)
    assert workers["DR-SMOKE"] | workers["DR-AXE"] == {"gw0", "gw1"}, "the spreading rows used both workers"
    assert len(workers["DR-ZAP"]) == 1, "a row that does not spread runs on one worker"
    ends = {e["phase"]: e["data"]["outcome"] for e in events if e["kind"] == "phase.end"}
    assert ends == {"DR-SMOKE": "passed", "DR-AXE": "passed", "DR-ZAP": "passed"}
    # Each phase's events lie between its start and its end, whichever worker sent them.
    for phase in ends:
        start, end = (next(i for i, e in enumerate(events) if e["kind"] == k and e["phase"] == phase)
                      for k in ("phase.start", "phase.end"))  # fmt: skip
        notes = [i for i, e in enumerate(events) if e["kind"] == "note" and e["phase"] == phase]
        assert notes, phase
        assert start < min(notes) <= max(notes) < end, phase
    suite = ET.parse(bundle / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    assert suite.get("tests") == "13"
    assert not list((project.path / "reports").glob(".runbook-*")), "the handoff file is removed at the end"


def test_a_failed_phase_blocks_the_later_ones_on_every_worker(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_pre=phase_module(
            "PRE", "rollback", "bluegreen", body="def test_pre():\n    assert False, 'no tool'\n"
        )
    )
    result = project.runpytest_subprocess("-n", "2", "--env", "Remote", "-rs")
    result.assert_outcomes(failed=1, skipped=13)
    result.stdout.fnmatch_lines(["SKIPPED [[]13[]] *: blocked by PRE: no tool"])
    events = read_events(the_bundle(project) / "evidence.jsonl")
    assert not workers_by_phase(events), "no row ran after PRE failed"
    ends = {e["phase"]: e["data"]["outcome"] for e in events if e["kind"] == "phase.end"}
    assert ends == {"PRE": "failed", "DR-SMOKE": "blocked", "DR-AXE": "blocked", "DR-ZAP": "blocked"}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-n", "2", "-m", "rollback"], "-n 2: the rollback flow stops, deploys and switches one system"),
        (["-n", "2", "--dist", "loadfile", "-m", "dr_smoke"], "--dist loadfile: a parallel runbook run needs --dist load"),
    ],
)  # fmt: skip
def test_a_parallel_run_that_cannot_keep_the_order_is_refused_before_anything_runs(
    project: pytest.Pytester, args: list[str], expected: str
) -> None:
    project.makepyfile(
        test_rb2=phase_module("RB-2", "rollback", body="def test_stop():\n    raise SystemExit(9)\n")
    )
    result = project.runpytest_subprocess(*args, "--env", "Remote")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert expected in result.stderr.str()
    assert not (project.path / "reports").exists() or not list((project.path / "reports").iterdir())


@pytest.mark.lab
def test_a_parallel_lab_run_starts_one_lab_and_leaves_one_bundle(drill: Any) -> None:
    d = drill("-n", "2", marker="dr_smoke or dr_axe or dr_zap", keep=False)
    assert d.returncode == 0, d.output
    check = verify_bundle(d.bundle)
    assert (check.ok, check.sealed) == (True, True), check.problems
    assert (d.bundle / "report.html").is_file()
    assert [len(d.actions(name)) for name in ("lab.start", "lab.stop", "zap.scan")] == [1, 1, 1]
    assert len(d.actions("browser.start")) == 2, "DR-AXE's pages were spread over two browsers"
    assert d.phase_outcomes() == {"DR-SMOKE": "passed", "DR-AXE": "passed", "DR-ZAP": "passed"}
    report = (d.bundle / "report.html").read_text(encoding="utf-8")
    assert report.count('id="runbook-axe"') == 1, "one findings table for the pages of both workers"
    section = report[report.index('id="runbook-axe"') :]
    assert "on 5 page(s): /, /login, /dashboard, /items, /items/new" in section.split("</p>")[0]
    assert Lab.attach(d.lab_dir) is None, "the controller stopped the one Lab"
