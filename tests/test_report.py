"""report.html and its optional plugins: a run without pytest-html or pytest-metadata still leaves its evidence
and says why there is no report; the environment table shows no secret and no process variable with an address."""

from __future__ import annotations

import getpass
import html
import re
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from drivers.config import load_environment
from plugins.journal import read_events, verify_bundle
from plugins.report import Clock, headline, local_time_zone, monitor_chart, render_sections, render_summary
from plugins.state import PhaseRecord, RunbookRun, RunOptions
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


# --- the top of the report: one headline per kind of outcome, derived from the journal's events -------------
KST = {"name": "KST", "utc_offset": "UTC+09:00", "offset_s": 9 * 3600}


def journal_run(
    tmp_path: Path, flow: str, phases: list[str], *, reason: str | None = "CHG-1 drill"
) -> RunbookRun:
    """A run fed events the way the fixtures record them (no writer: the journal is the run's events)."""
    env = load_environment(ROOT / "environments" / "Lab.toml")
    run = RunbookRun(env, RunOptions(evidence_dir=tmp_path), ROOT)
    run.flow = flow
    run.phases = {p: PhaseRecord(p) for p in phases}
    run.record(
        "run.start",
        {
            "env": "Lab",
            "flow": flow,
            "reason": reason,
            "operator": {"user": "op", "host": "PC-17"},
            "local_time": KST,
        },
        phase=None,
    )
    return run


def phase(run: RunbookRun, pid: str, *events: tuple[str, dict[str, Any]], outcome: str = "passed") -> None:
    run.current_phase = pid
    run.record("phase.start", {"title": f"{pid}: ..."})
    for kind, data in events:
        run.record(kind, data)
    run.record("phase.end", {"outcome": outcome, "reason": "it broke" if outcome == "failed" else ""})
    run.phases[pid].outcome, run.phases[pid].reason = outcome, ("it broke" if outcome == "failed" else "")
    run.current_phase = None


def end(run: RunbookRun, outcome: str) -> None:
    run.record("run.end", {"outcome": outcome, "exitstatus": 0 if outcome == "passed" else 1}, phase=None)


def act(name: str, target: str, result: str = "ok") -> tuple[str, dict[str, Any]]:
    return "action", {"name": name, "target": target, "result": result, "duration_s": 0.01, "detail": {}}


def version(role: str, value: str) -> tuple[str, dict[str, Any]]:
    return "version", {"role": role, "version": value, "why": "test"}


APPROVED = ("approval", {"approver": "A. Operator"})
SLOTS = (
    "slots",
    {"live": "blue", "idle": "green", "live_version": "1.0.0", "words": "live blue (1.0.0), idle green"},
)
ROLLBACK_PHASES = ["PRE", "RB-1", "RB-2", "RB-3", "DR-SMOKE", "RB-4", "RB-5"]
BLUEGREEN_PHASES = ["PRE", "BG-1", "DR-SMOKE", "BG-3", "BG-4", "BG-5"]


def passed_rollback(run: RunbookRun) -> None:
    phase(run, "PRE", APPROVED, version("from", "1.1.0"))
    phase(run, "RB-2", act("stop_site", "active", "stopped"))
    phase(run, "RB-3", version("expected", "1.0.0"), act("deploy", "active"), version("to", "1.0.0"),
          ("rollback", {"from": "1.1.0", "to": "1.0.0", "result": "succeeded", "reason": "single-node rollback"}))  # fmt: skip
    end(run, "passed")


def released(run: RunbookRun, *, fail_after_switch: bool = False) -> None:
    phase(run, "PRE", APPROVED, SLOTS, version("from", "1.0.0"))
    phase(run, "BG-1", version("expected", "1.1.0"), act("deploy", "green"))
    phase(run, "BG-3", ("approval", {"approver": "A. Operator", "for": "switch"}))
    back = [act("switch_traffic", "blue"), version("to", "1.0.0"),
            ("rollback", {"from": "1.1.0", "to": "1.0.0", "result": "succeeded", "to_slot": "blue", "reason": "breach"})]  # fmt: skip
    phase(run, "BG-4", act("switch_traffic", "green"), version("to", "1.1.0"), *(back if fail_after_switch else []),
          outcome="failed" if fail_after_switch else "passed")  # fmt: skip
    end(run, "failed" if fail_after_switch else "passed")


SWITCH_BACK_PHASES = ["PRE", "SB-1", "SB-2", "SB-3"]
SWITCHED_SLOTS = (
    "slots",
    {"live": "green", "idle": "blue", "live_version": "1.1.0", "words": "live green (1.1.0), idle blue"},
)


def switched_back(run: RunbookRun, *, verified: bool = True) -> None:
    phase(run, "PRE", SWITCHED_SLOTS)
    phase(run, "SB-1", APPROVED, version("from", "1.1.0"), version("expected", "1.0.0"))
    phase(run, "SB-2", act("switch_traffic", "blue"))
    back = {"from": "1.1.0", "to": "1.0.0", "trigger": "operator", "slot_from": "green", "slot_to": "blue",
            "result": "succeeded" if verified else "failed", "reason": "switch-back by the operator"}  # fmt: skip
    phase(run, "SB-3", ("rollback", back), *([version("to", "1.0.0")] if verified else []),
          outcome="passed" if verified else "failed")  # fmt: skip
    end(run, "passed" if verified else "failed")


def switch_back_unverified(run: RunbookRun) -> None:
    switched_back(run, verified=False)


def switch_back_refused(run: RunbookRun) -> None:
    phase(run, "PRE", SWITCHED_SLOTS)
    phase(run, "SB-1", APPROVED, outcome="failed")
    end(run, "failed")


def rolled_back_release(run: RunbookRun) -> None:
    released(run, fail_after_switch=True)


def untouched(run: RunbookRun) -> None:
    phase(run, "PRE", APPROVED, version("from", "1.1.0"), outcome="failed")
    end(run, "failed")


def site_down(run: RunbookRun) -> None:
    phase(run, "PRE", APPROVED, version("from", "1.1.0"))
    phase(run, "RB-2", act("stop_site", "active", "stopped"))
    phase(
        run,
        "RB-3",
        ("site.down", {"what": "restoring 1.1.0 failed", "message": "SITE DOWN"}),
        outcome="failed",
    )
    end(run, "failed")


def matrix_only(run: RunbookRun) -> None:
    phase(run, "PRE", version("from", "1.1.0"))
    phase(run, "DR-SMOKE")
    end(run, "passed")


def gate(run: RunbookRun) -> None:
    phase(run, "PRE", APPROVED, SLOTS, version("from", "1.0.0"))
    phase(run, "BG-1", version("expected", "1.1.0"), act("deploy", "green"))
    phase(run, "DR-SMOKE")
    phase(run, "BG-3", ("note", {"message": "approval of the switch pending: the switch runs with ..."}))
    end(run, "passed")


@pytest.mark.parametrize(
    ("flow", "phases", "story", "kind", "what"),
    [
        ("rollback", ROLLBACK_PHASES, passed_rollback, "rollback-passed",
         re.escape("MCMS on Lab was rolled back from 1.1.0 to 1.0.0 and is serving 1.0.0")),
        ("bluegreen", BLUEGREEN_PHASES, released, "release-passed",
         re.escape("MCMS on Lab was released: traffic moved from blue (1.0.0) to green, which serves 1.1.0")),
        ("bluegreen", BLUEGREEN_PHASES, rolled_back_release, "release-rolled-back",
         r"Release 1.1.0 of MCMS on Lab was rolled back: traffic was on green for \d+\.\d s, then went back to blue "
         r"when BG-4 \(switch traffic to the idle slot and monitor\) failed; blue serves 1.0.0 again"),
        ("rollback", ROLLBACK_PHASES, untouched, "untouched",
         r"Nothing was changed on MCMS on Lab: the rollback stopped at PRE \(preconditions: .*\); it still serves 1.1.0"),
        ("rollback", ROLLBACK_PHASES, site_down, "site-down",
         r"SITE DOWN: MCMS on Lab is not serving \(restoring 1.1.0 failed\) and the runbook could not bring it back: "
         "restore it by hand now"),
        ("matrix", ["PRE", "DR-SMOKE"], matrix_only, "matrix-passed",
         re.escape("The checks DR-SMOKE passed on MCMS on Lab, which serves 1.1.0; nothing was changed")),
        ("switch_back", SWITCH_BACK_PHASES, switched_back, "switch-back-passed",
         re.escape("MCMS on Lab was switched back from green (1.1.0) to the warm standby blue and is serving 1.0.0")),
        ("switch_back", SWITCH_BACK_PHASES, switch_back_unverified, "switch-back-failed",
         r"The switch-back of MCMS on Lab to the warm standby blue \(1.0.0\) FAILED at SB-3 \(.*\): the public "
         r"address was not seen serving 1.0.0: check it now"),
        ("switch_back", SWITCH_BACK_PHASES, switch_back_refused, "untouched",
         r"Nothing was changed on MCMS on Lab: the switch-back stopped at SB-1 \(.*\); it still serves 1.1.0 on "
         r"green"),
        ("bluegreen", ["PRE", "BG-1", "DR-SMOKE", "BG-3"], gate, "gate-passed",
         re.escape("Release 1.1.0 of MCMS on Lab was deployed to the idle slot green and verified; the switch is "
                   "pending: blue keeps serving 1.0.0")),
    ],
)  # fmt: skip
def test_the_headline_says_in_one_sentence_what_happened(
    tmp_path: Path, flow: str, phases: list[str], story: Callable[[RunbookRun], None], kind: str, what: str
) -> None:
    run = journal_run(tmp_path, flow, phases)
    story(run)
    head = headline(run)
    assert (head.kind, head.cls == "ok") == (
        kind,
        kind in ("rollback-passed", "release-passed", "matrix-passed", "switch-back-passed"),
    )
    assert re.fullmatch(what, head.what), head.what
    # Who and when, in UTC and in the operator's zone (journalled in run.start): "... at 12:24 KST; run by
    # op@PC-17 from 03:24:27 to 03:24:28 UTC (12:24:27 to 12:24:28 KST)".
    t = r"\d\d:\d\d:\d\d"
    assert re.search(rf"run by op@PC-17 from {t} to {t} UTC \({t} to {t} KST\)$", head.who), head.who
    if kind == "gate-passed":
        assert head.who.startswith("approved by A. Operator at ")  # PRE's approval; the switch's is pending
    elif kind != "matrix-passed":
        assert re.match(r"approved by A\. Operator at \d\d:\d\d KST; ", head.who), head.who
    summary = render_summary(run)
    assert head.what in html.unescape(summary)
    assert "CHG-1 drill" in summary
    if kind == "gate-passed":
        assert 'pytest -m "bluegreen and traffic" --env NAME' in html.unescape(summary)
    render_sections(run)  # every section renders from these events


def test_a_run_without_a_reason_says_how_to_give_one(tmp_path: Path) -> None:
    run = journal_run(tmp_path, "rollback", ROLLBACK_PHASES, reason=None)
    passed_rollback(run)
    assert "none given (pytest --reason TEXT)" in render_summary(run)


def test_times_are_given_in_utc_and_in_the_operators_zone() -> None:
    clock = Clock("KST", 9 * 3600)
    ts = "2026-12-02T23:24:27.840+00:00"
    assert clock.at(ts) == "23:24:27 UTC (08:24:27 KST)"
    assert clock.date(ts) == "2026-12-02 23:24:27 UTC; 2026-12-03 08:24:27 KST (UTC+09:00)"
    assert clock.local_at(ts) == "08:24 KST"
    assert Clock().at(ts) == "23:24:27 UTC"
    zone = local_time_zone(datetime(2026, 12, 2, 3, 0, tzinfo=UTC))
    assert set(zone) == {"name", "utc_offset", "offset_s"}
    assert zone["name"]


def test_the_monitoring_chart_has_axes_a_legend_and_marks_the_switch_and_the_rollback() -> None:
    switch, began = (
        datetime(2026, 12, 2, 3, 24, 56, tzinfo=UTC),
        datetime(2026, 12, 2, 3, 24, 56, 500000, tzinfo=UTC),
    )
    samples = [
        {"ts": (began + timedelta(seconds=i)).isoformat(), "offset_s": float(i), "status": 200 if i < 3 else 500,
         "latency_ms": 5.0 if i < 3 else 300.0, "ok": i < 3, "error": None if i < 3 else "HTTP 500"}
        for i in range(5)
    ]  # fmt: skip
    summary = {"url": "http://127.0.0.1:1/health", "probes": 5, "p50_ms": 5, "p95_ms": 300, "max_ms": 300,
               "error_rate": 0.4, "alert_fired": True, "breach": "2 consecutive failed checks"}  # fmt: skip
    marks = [
        {"ts": switch.isoformat(), "kind": "switch", "label": "switch to green"},
        {"ts": (began + timedelta(seconds=4.1)).isoformat(), "kind": "rollback", "label": "traffic back to blue (rollback)"},
    ]  # fmt: skip
    m = monitor_chart(
        {"samples": samples, "sla_p95_ms": 800, "summary": summary}, marks, Clock("KST", 9 * 3600)
    )
    c = m["chart"]
    assert c["xtitle"] == "seconds after the switch at 03:24:56 UTC (12:24:56 KST)"
    assert c["xticks"][0]["label"] == "0 s"
    assert c["xticks"][-1]["label"] == "4 s"
    assert c["yticks"][0]["label"] == "0"
    assert float(c["yticks"][-1]["label"]) >= 960  # the SLA and a fifth above it fit
    (on, back) = c["marks"]
    assert (on["kind"], back["kind"]) == ("switch", "rollback")
    assert on["x"] == c["left"]
    assert c["left"] < back["x"] < c["right"]
    # Failed probes in red after the good ones; the switch at 0 s, the rollback after the last failed probe.
    xs = [d["x"] for d in c["dots"]]
    assert xs == sorted(xs)
    assert on["x"] < xs[0]
    assert xs[-1] < back["x"]
    assert [d["color"] for d in c["dots"]] == ["#107c10"] * 3 + ["#a4262c"] * 2
    assert [g["label"] for g in c["legend"]] == [
        "probe latency", "probe OK", "probe failed", "SLA p95 800 ms", "switch", "rollback"
    ]  # fmt: skip
    assert "switch to green at 03:24:56 UTC (12:24:56 KST)" in m["window"]


def test_a_metric_chart_shares_the_probe_charts_time_axis_and_draws_its_threshold(tmp_path: Path) -> None:
    began = datetime(2026, 12, 2, 3, 24, 56, tzinfo=UTC)
    samples = [{"ts": (began + timedelta(seconds=i)).isoformat(), "offset_s": float(i), "status": 200,
                "latency_ms": 5.0, "ok": True, "error": None} for i in range(4)]  # fmt: skip
    queue = {"query": 'max(mcms_worker_queue_depth{slot="green"})', "threshold": "max 5 jobs", "evaluations": 4,
             "failed": 2, "last": "21 jobs", "max": 5, "min": None, "unit": "jobs",
             "samples": [[0.0, 0, True, "0 jobs"], [1.0, 2, True, "2 jobs"], [2.0, 12, False, "12 jobs"],
                         [3.0, None, False, "no data"]]}  # fmt: skip
    summary = {"url": "http://127.0.0.1:1/health", "probes": 4, "p50_ms": 5, "p95_ms": 5, "max_ms": 5,
               "error_rate": 0.0, "alert_fired": True, "breach": "metric queue_depth"}  # fmt: skip
    marks = [{"ts": began.isoformat(), "kind": "switch", "label": "switch to green"}]
    data = {"samples": samples, "sla_p95_ms": 800, "summary": summary, "metrics": {"queue_depth": queue}}
    m = monitor_chart(data, marks)
    (metric,) = m["metrics"]
    c = metric["chart"]
    assert metric["cls"] == "bad"
    assert [h["label"] for h in c["hlines"]] == ["max 5 jobs"]
    assert [d["square"] for d in c["dots"]] == [False, False, False, True]  # no data: a square on the axis
    assert [d["x"] for d in c["dots"]] == [d["x"] for d in m["chart"]["dots"]]  # the same seconds, the same x
    assert c["marks"][0]["x"] == m["chart"]["marks"][0]["x"]
    assert "no data" in [g["label"] for g in c["legend"]]
    run = journal_run(tmp_path, "bluegreen", BLUEGREEN_PHASES)
    run.record("monitor.result", data)
    section = next(s for s in render_sections(run) if 'id="runbook-monitor"' in s)
    assert "Metric queue_depth" in section
    assert ">max 5 jobs</text>" in section


def test_report_template_keeps_every_element_pytest_html_scripts_need() -> None:
    """templates/index.html.j2 is pytest-html's index.jinja2 reordered: its app.js looks up these ids."""
    from pytest_html import plugin as html_plugin

    theirs = (Path(html_plugin.__file__).parent / "resources" / "index.jinja2").read_text(encoding="utf-8")
    ours = (ROOT / "plugins" / "templates" / "index.html.j2").read_text(encoding="utf-8")
    ids = set(re.findall(r'id="([^"]+)"', theirs))
    assert "environment" in ids
    missing = ids - set(re.findall(r'id="([^"]+)"', ours))
    assert not missing
    for variable in re.findall(r"{{\s*(\w+)", theirs):
        assert variable in ours, variable


@pytest.mark.parametrize("value", ["", "   ", "x" * 301])
def test_a_reason_that_is_not_one_line_of_words_is_a_usage_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    project = smoke_project(pytester, monkeypatch)
    result = project.runpytest_subprocess("-m", "dr_smoke", "--env", "Remote", "--reason", value)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert (
        "argument --reason: invalid reason (one line of words, 1 to 300 characters) value"
        in result.stderr.str()
    )
    assert not (project.path / "reports").exists()


def test_the_reason_and_who_ran_it_are_journalled_and_lead_the_report(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = smoke_project(pytester, monkeypatch)
    result = project.runpytest_subprocess(
        "-m", "dr_smoke", "--env", "Remote", "--reason", "CHG-77\n  weekly check"
    )
    result.assert_outcomes(passed=1)
    bundle = only_bundle(project)
    (start,) = [e["data"] for e in read_events(bundle / "evidence.jsonl") if e["kind"] == "run.start"]
    assert start["reason"] == "CHG-77 weekly check"  # a pasted line break is one space
    assert start["operator"] == {"user": getpass.getuser(), "host": socket.gethostname()}
    assert start["local_time"]["name"]
    report = (bundle / "report.html").read_text(encoding="utf-8")
    body = re.sub(r"<(style|script)\b.*?</\1>", "", report[report.index("<body>") :], flags=re.DOTALL)
    # The headline is the first thing in the page, before the facts, the sections and pytest-html's own part.
    first_text = " ".join(re.sub(r"<[^>]+>", " ", body[: body.index("</h1>")]).split())
    assert first_text.startswith(
        "The checks DR-SMOKE passed on MCMS on Remote; nothing was changed. Run by "
    ), first_text
    order = [body.index(s) for s in ('id="runbook-headline"', "CHG-77 weekly check", 'id="runbook-phases"',
                                     'id="runbook-tests"', 'id="environment"', 'id="results-table"')]  # fmt: skip
    assert order == sorted(order)
    # pytest-html's environment box is written out, not only drawn by its script.
    environment = body[
        body.index('<table id="environment">') : body.index("</table>", body.index('id="environment"'))
    ]
    assert "<td>Python</td>" in environment
    assert "<td>Platform</td>" in environment
    # Phases carry what they do and how long they took; every test's outcome is in a static table.
    assert "Health 200, Swagger 200, Kerberos answering" in report
    assert re.search(r"<td>test_smoke.py::test_step</td><td class=\"ok\">passed</td>", report)
