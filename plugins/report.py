"""report.html: pytest-html, self-contained, with the runbook summary at the top.

The bundle's name carries the flow, which is known only after collection, so the report is attached when the
run starts rather than from `--html` at configure time; it is built from pytest-html's own classes, as its
`pytest_configure` builds them (pytest-html is pinned in requirements.txt).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from plugins.flow import phase_of
from plugins.state import RunbookRun, describe, run_key


def attach_html_report(session: pytest.Session, run: RunbookRun, path: Path) -> None:
    from pytest_html import plugin as html_plugin
    from pytest_html.report_data import ReportData
    from pytest_html.selfcontained_report import SelfContainedReport

    config = session.config
    if hasattr(config, "workerinput"):  # xdist workers write no files; the controller does
        return
    resources = Path(html_plugin.__file__).parent / "resources"
    template = html_plugin._read_template([resources])
    css = html_plugin._process_css(resources / "style.css", [])
    report = SelfContainedReport(str(path), config, ReportData(config), template, css)
    config.pluginmanager.register(report, "runbook-html")
    # Registered after the session started: give it the start and the collection it missed.
    report.pytest_sessionstart(session)
    report.pytest_collection_finish(session)
    report._report.title = f"DR runbook: {run.flow} on {run.env.name} ({run.run_id})"


def pytest_html_results_summary(
    prefix: list[str], summary: list[str], postfix: list[str], session: Any
) -> None:
    run = session.config.stash.get(run_key, None)
    if run is None or run.bundle is None:
        return
    prefix.append(render_summary(run))
    postfix.extend(render_sections(run))


def pytest_html_results_table_header(cells: list[str]) -> None:
    cells.insert(1, '<th class="sortable" data-column-type="phase">Phase</th>')


def pytest_html_results_table_row(report: Any, cells: list[str]) -> None:
    phase = getattr(report, "runbook_phase", "") or ""
    cells.insert(1, f'<td class="col-phase">{html.escape(phase)}</td>')


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    report.runbook_phase = phase_of(item) or ""
    return report


_STYLE = """
<style>
.runbook table{border-collapse:collapse;margin:.5em 0 1.2em}
.runbook th,.runbook td{border:1px solid #999;padding:3px 8px;text-align:left;vertical-align:top;color:#222}
.runbook .ok{color:#0a6b0a;font-weight:bold}.runbook .bad{color:#a4262c;font-weight:bold}
.runbook .warn{color:#8a5300;font-weight:bold}
.runbook .site-down{background:#a4262c;color:#fff;font-size:1.6em;font-weight:bold;padding:.6em}
</style>
"""


def _e(value: object, run: RunbookRun) -> str:
    return html.escape(run.env.redact(str(value)))


def _table(run: RunbookRun, header: list[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c, run)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_summary(run: RunbookRun) -> str:
    passed = run.outcome == "passed"
    outcome_class = "ok" if passed else "bad"
    rollback = f"yes: {run.rollback_result or 'result unknown'}" if run.rollback_ran else "no"
    slots = next((e["data"] for e in run.events if e["kind"] == "slots" and e["data"].get("live")), None)
    rows: list[tuple[str, str, str]] = [
        ("Environment", _e(f"{run.env.name} ({run.env.kind}, {run.env.source.name})", run), ""),
        ("Flow", _e(run.flow, run), ""),
        ("Versions", _e(run.versions_words(), run), ""),
        ("Outcome", _e(run.outcome_words(), run), outcome_class),
        ("Rollback ran", _e(rollback, run), "ok" if run.rollback_result in (None, "succeeded") else "bad"),
        ("Approved by", _e(run.approver or "-", run), ""),
    ]
    if slots:
        rows.insert(2, ("Slots at the start", _e(slots.get("words") or "", run), ""))
    if run.restore_result:
        ok = run.restore_result.startswith("succeeded")
        rows.append(("Restore after failure", _e(run.restore_result, run), "ok" if ok else "bad"))
    if run.options.lab_faults:
        rows.append(("Lab faults injected", _e(", ".join(run.options.lab_faults), run), "warn"))
    if run.blocked_by:
        rows.append(("Blocked by", _e(f"{run.blocked_by[0]}: {run.blocked_by[1]}", run), "bad"))
    notes = ", ".join(f"{n['event_type']} ({n['delivery']})" for n in run.notifications) or "none"
    rows.append(("Notifications sent", _e(notes, run), ""))
    body = "".join(f'<tr><th>{k}</th><td class="{cls}">{v}</td></tr>' for k, v, cls in rows)
    warnings = ""
    if run.warnings or run.writer_errors:
        items = "".join(f"<li>{_e(w, run)}</li>" for w in [*run.warnings, *run.writer_errors])
        warnings = f'<h3 class="warn">Warnings</h3><ul>{items}</ul>'
    headline = ""
    if run.site_down:
        headline = (
            f'<p class="site-down" id="runbook-site-down">SITE DOWN: {_e(run.site_down, run)}. '
            "The runbook could not bring the service back: restore it by hand now.</p>"
        )
    return (
        f'{_STYLE}<div class="runbook" id="runbook-summary">{headline}<h2>Runbook summary</h2><table>{body}</table>'
        f"{warnings}</div>"
    )


def render_sections(run: RunbookRun) -> list[str]:
    sections = []
    phases = [[p.id, p.outcome or "not run", p.reason] for p in run.phases.values()]
    sections.append(
        f'<div class="runbook" id="runbook-phases"><h2>Phases</h2>{_table(run, ["phase", "outcome", "reason"], phases)}</div>'
    )
    if run.notifications:
        rows = [
            [
                n["event_type"],
                n["delivery"],
                n["attempts"],
                n.get("http_status") or "",
                n.get("error") or "",
                n["target"],
            ]
            for n in run.notifications
        ]
        table = _table(run, ["event type", "delivery", "attempts", "HTTP", "error", "target"], rows)
        sections.append(
            f'<div class="runbook" id="runbook-notifications"><h2>Notifications</h2>{table}</div>'
        )
    watch = next(
        (e["data"] for e in run.events if e["kind"] == "note" and "failed_before_switch" in e["data"]), None
    )
    if watch is not None:
        before, after = watch["failed_before_switch"], watch["failed_after_switch"]
        cls = "bad" if before else ("warn" if after else "ok")
        sections.append(
            f'<div class="runbook" id="runbook-public-watch"><h2>Public address during the run</h2>'
            f'<p class="{cls}">{_e(watch["url"], run)}: {watch["probes"]} probes every {watch["interval_s"]:g} s, '
            f"{before} failed before the switch, {after} after it.</p></div>"
        )
    findings = [
        e for e in run.events if e["kind"] == "finding" and e["data"].get("tool") in ("public-watch", "scope")
    ]
    if findings:
        rows = [
            [e["ts"][11:23], e["phase"] or "", e["data"].get("tool", ""),
             e["data"].get("message") or e["data"].get("url") or e["data"].get("page") or ""]
            for e in findings
        ]  # fmt: skip
        sections.append(
            f'<div class="runbook" id="runbook-findings"><h2>Findings: public address and browser scope</h2>'
            f"{_table(run, ['time', 'phase', 'tool', 'what'], rows)}</div>"
        )
    timeline = [[e["ts"][11:23], e["phase"] or "", describe(e)] for e in run.events]
    sections.append(
        f'<div class="runbook" id="runbook-timeline"><h2>Timeline (UTC)</h2>'
        f"{_table(run, ['time', 'phase', 'step'], timeline)}</div>"
    )
    sections.extend(run.report_sections)
    return sections


def monitor_section(result: Any, sla_p95_ms: float) -> str:
    """The monitoring window as an inline SVG chart (self-contained): latency per probe, failures in red."""
    samples = result.samples
    width, height, pad = 720, 220, 40
    span = max((s.offset_s for s in samples), default=1.0) or 1.0
    top = max([sla_p95_ms * 1.2, *(s.latency_ms for s in samples)]) or 1.0

    def x(t: float) -> float:
        return pad + (width - 2 * pad) * t / span

    def y(ms: float) -> float:
        return height - pad - (height - 2 * pad) * min(ms, top) / top

    points = " ".join(f"{x(s.offset_s):.1f},{y(s.latency_ms):.1f}" for s in samples)
    dots = "".join(
        f'<circle cx="{x(s.offset_s):.1f}" cy="{y(s.latency_ms):.1f}" r="4" fill="{"#107c10" if s.ok else "#a4262c"}">'
        f"<title>{html.escape(s.ts)}: {s.status} in {s.latency_ms} ms{' ' + html.escape(s.error) if s.error else ''}</title></circle>"
        for s in samples
    )
    sla_y = y(sla_p95_ms)
    summary = result.summary()
    caption = (
        f"{summary['probes']} probes of {html.escape(str(summary['url']))}: p50 {summary['p50_ms']} ms, "
        f"p95 {summary['p95_ms']} ms, max {summary['max_ms']} ms, error rate {float(summary['error_rate']):.1%}, "
        f"alert {'FIRED' if summary['alert_fired'] else 'not fired'}"
        + (f"; breach: {html.escape(str(summary['breach']))}" if summary["breach"] else "")
    )
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="latency per monitoring probe">'
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff" stroke="#999"/>'
        f'<line x1="{pad}" y1="{sla_y:.1f}" x2="{width - pad}" y2="{sla_y:.1f}" stroke="#d83b01" stroke-dasharray="6 4"/>'
        f'<text x="{width - pad}" y="{sla_y - 4:.1f}" text-anchor="end" font-size="11" fill="#d83b01">SLA p95 {sla_p95_ms:g} ms</text>'
        f'<polyline points="{points}" fill="none" stroke="#0078d4" stroke-width="1.5"/>{dots}'
        f'<text x="{pad}" y="{height - 10}" font-size="11">0 s</text>'
        f'<text x="{width - pad}" y="{height - 10}" font-size="11" text-anchor="end">{span:.1f} s</text>'
        f'<text x="6" y="{pad - 8}" font-size="11">{top:.0f} ms</text></svg>'
    )
    return (
        f'<div class="runbook" id="runbook-monitor"><h2>Monitoring after the switch</h2>'
        f"<p>{caption}</p>{svg}<p>Data: artifacts/monitor.csv</p></div>"
    )


def axe_section(
    run: RunbookRun,
    rows: Sequence[Sequence[object]],
    engines: Sequence[str],
    pages: Sequence[str],
    unused: Sequence[str],
) -> str:
    """DR-AXE findings: one row per violated rule and page (rule, impact, nodes, page, help URL, gate verdict).

    `rows` are (rule, impact, nodes, page, help_url, verdict); a verdict that fails the gate is shown in red.
    """
    body = []
    for rule, impact, nodes, page, help_url, verdict in rows:
        failing = str(verdict).startswith(("fails", "EXPIRED"))
        cls = "bad" if failing else ("ok" if str(verdict).startswith("accepted") else "")
        url = _e(help_url, run)
        body.append(
            f"<tr><td>{_e(rule, run)}</td><td>{_e(impact, run)}</td><td>{_e(nodes, run)}</td>"
            f'<td>{_e(page, run)}</td><td><a href="{url}">{url}</a></td><td class="{cls}">{_e(verdict, run)}</td></tr>'
        )
    head = "".join(f"<th>{h}</th>" for h in ("rule", "impact", "nodes", "page", "help URL", "gate"))
    table = (
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        if body
        else '<p class="ok">No violations on the scanned pages.</p>'
    )
    caption = (
        f"axe-core {_e(', '.join(engines) or '?', run)} on {len(pages)} page(s): {_e(', '.join(pages), run)}. "
        "Data: artifacts/axe/&lt;page&gt;.json; screenshots: artifacts/screenshots/."
    )
    unused_html = ""
    if unused:
        items = "".join(f"<li>{_e(u, run)}</li>" for u in unused)
        unused_html = (
            f'<h3 class="warn">Baseline entries that matched nothing (remove them)</h3><ul>{items}</ul>'
        )
    return f'<div class="runbook" id="runbook-axe"><h2>Accessibility findings (DR-AXE)</h2><p>{caption}</p>{table}{unused_html}</div>'


def e2e_command_section(
    run: RunbookRun,
    argv: Sequence[str],
    outcome: str,
    passed: bool,
    junit: str,
    failures: Sequence[Sequence[object]],
    output_tail: str,
) -> str:
    """DR-E2E's external regression command: what ran, how it ended, its JUnit failures, its output's tail.

    `failures` are (suite, classname, name, failure|error, message) rows from the command's JUnit XML.
    """
    rows = [
        ("Command", _e(" ".join(argv), run), ""),
        ("Outcome", _e(outcome, run), "ok" if passed else "bad"),
        ("JUnit", _e(junit or "not configured", run), ""),
    ]
    body = "".join(f'<tr><th>{k}</th><td class="{cls}">{v}</td></tr>' for k, v, cls in rows)
    table = ""
    if failures:
        table = "<h3>Failed tests</h3>" + _table(
            run, ["suite", "class", "test", "outcome", "message"], failures
        )
    tail = f"<h3>Output (last lines)</h3><pre>{_e(output_tail, run)}</pre>" if output_tail else ""
    return (
        f'<div class="runbook" id="runbook-e2e-command"><h2>Regression command (DR-E2E)</h2>'
        f"<table>{body}</table>{table}{tail}<p>Data: artifacts/e2e/</p></div>"
    )


_ZAP_STYLE = "<style>#runbook-zap td:first-child{white-space:nowrap}#runbook-zap ul.rules{columns:2}</style>"


def zap_section(
    run: RunbookRun,
    *,
    target: str,
    engine: str,
    gate: str,
    passed: bool | None,
    rows: Sequence[Sequence[object]],
    rules: Sequence[str] = (),
    files: Sequence[str] = (),
    notes: Sequence[str] = (),
) -> str:
    """DR-ZAP's findings: which engine ran (in plain words, with the rules it is limited to), the gate's
    outcome, and one row per alert type: id, name, risk, count, example URL, gate decision (the last cell; it
    starts with FAIL, WARN, INFO, IGNORE or OUTOFSCOPE). `passed` None = the scan itself could not be done."""
    outcome_class = "ok" if passed else "bad"
    header = "".join(f"<th>{h}</th>" for h in ("id", "name", "risk", "count", "example URL", "gate decision"))
    body = ""
    for row in rows:
        *cells, decision = row
        cls = {"FAIL": "bad", "WARN": "warn"}.get(str(decision).split(" ", 1)[0], "")
        body += (
            "<tr>"
            + "".join(f"<td>{_e(c, run)}</td>" for c in cells)
            + f'<td class="{cls}">{_e(decision, run)}</td></tr>'
        )
    table = (
        f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"
        if rows
        else "<p>No alerts.</p>"
    )
    checked = "".join(f"<li>{_e(r, run)}</li>" for r in rules)
    rule_list = f'<ul class="rules">{checked}</ul>' if checked else ""
    extra = "".join(f"<li>{_e(n, run)}</li>" for n in notes)
    listing = f"<ul>{extra}</ul>" if extra else ""
    evidence = f"<p>Evidence: {_e(', '.join(files), run)}</p>" if files else ""
    return (
        f'{_ZAP_STYLE}<div class="runbook" id="runbook-zap"><h2>Security scan (DR-ZAP): {_e(target, run)}</h2>'
        f"<p><b>Engine</b>: {_e(engine, run)}</p>{rule_list}"
        f'<p class="{outcome_class}">{_e(gate, run)}</p>{table}{listing}{evidence}</div>'
    )
