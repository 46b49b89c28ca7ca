"""report.html: pytest-html, self-contained, with the runbook summary at the top.

The bundle's name carries the flow, which is known only after collection, so the report is attached when the
run starts rather than from `--html` at configure time; it is built from pytest-html's own classes, as its
`pytest_configure` builds them (pytest-html is pinned in requirements.txt).
"""

from __future__ import annotations

import contextlib
import functools
import html
import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
import pytest

from drivers.base import plain_error
from plugins.state import RunbookRun, describe, run_key


def html_unavailable(config: pytest.Config) -> str:
    """Why report.html cannot be written in this run, in words; empty when it can."""
    missing = [name for name in ("html", "metadata") if not config.pluginmanager.has_plugin(name)]
    if not missing:
        return ""
    return (
        f"report.html not written: pytest-{' and pytest-'.join(missing)} disabled (-p no:{' -p no:'.join(missing)}); "
        "evidence.jsonl, timeline.md and junit.xml hold the whole run"
    )


def attach_html_report(session: pytest.Session, run: RunbookRun, path: Path) -> None:
    config = session.config
    if hasattr(config, "workerinput"):  # xdist workers write no files; the controller does
        return
    why = html_unavailable(config)
    if why:
        run.warn(why)
        return
    from pytest_html import plugin as html_plugin
    from pytest_html.report_data import ReportData
    from pytest_html.selfcontained_report import SelfContainedReport
    from pytest_metadata.plugin import metadata_key

    redact_metadata(config.stash[metadata_key], run)
    resources = Path(html_plugin.__file__).parent / "resources"
    template = html_plugin._read_template([resources])
    css = html_plugin._process_css(resources / "style.css", [])
    report = SelfContainedReport(str(path), config, ReportData(config), template, css)
    config.pluginmanager.register(report, "runbook-html")
    # Registered after the session started: give it the start and the collection it missed.
    report.pytest_sessionstart(session)
    report.pytest_collection_finish(session)
    report._report.title = f"DR runbook: {run.flow} on {run.env.name} ({run.run_id})"


# Process variables whose name says they hold a secret; pytest-html blacks them out (environment_table_redact_list).
SECRET_NAMES = r"(?i).*(token|secret|passw|pwd|api_?key|auth|credential|cookie|session|private).*"  # noqa: S105 - a pattern of names, no password
_REDACTED = "(redacted)"


def redact_metadata(metadata: dict[str, Any], run: RunbookRun) -> None:
    """The report's environment table: no value of a `${VAR}` of the environment file, no secret-looking
    process variable, no process variable holding an address (a CI server's BUILD_URL names internal hosts and
    may carry credentials); the Python, platform and package lines stay."""
    for key, value in list(metadata.items()):
        from_process = key in os.environ and os.environ[key] == str(value)
        if re.fullmatch(SECRET_NAMES, key) or (from_process and _ADDRESS.search(str(value))):
            metadata[key] = _REDACTED
        elif isinstance(value, dict):
            redact_metadata(value, run)
        else:
            redacted = run.env.redact(str(value))
            if redacted != str(value):
                metadata[key] = redacted


_ADDRESS = re.compile(r"[a-z][a-z0-9+.-]*://|\b\w+@[\w.-]+\.\w+", re.IGNORECASE)


def pytest_configure(config: pytest.Config) -> None:
    if config.pluginmanager.has_plugin("html"):
        config.addinivalue_line("environment_table_redact_list", SECRET_NAMES)


@pytest.hookimpl(optionalhook=True)
def pytest_html_results_summary(
    prefix: list[str], summary: list[str], postfix: list[str], session: Any
) -> None:
    run = session.config.stash.get(run_key, None)
    if run is None or run.bundle is None:
        return
    prefix.append(render_summary(run))
    postfix.extend(render_sections(run))


@pytest.hookimpl(optionalhook=True)
def pytest_html_results_table_header(cells: list[str]) -> None:
    cells.insert(1, '<th class="sortable" data-column-type="phase">Phase</th>')


@pytest.hookimpl(optionalhook=True)
def pytest_html_results_table_row(report: Any, cells: list[str]) -> None:
    phase = getattr(report, "runbook_phase", "") or ""
    cells.insert(1, f'<td class="col-phase">{html.escape(phase)}</td>')


_TEMPLATES = Path(__file__).parent / "templates"

_redact: ContextVar[Callable[[str], str]] = ContextVar("runbook_report_redact")
"""The redactor of the run whose sections are being rendered (`_macros`): read by `_finalize`."""


def _finalize(value: object) -> object:
    """Every value a template prints, through the redactor of the run being rendered. Outside `_macros` there
    is none: LookupError, rather than a value printed unredacted."""
    if isinstance(value, markupsafe.Markup):  # a macro's output, built from values finalized already
        return value
    return "" if value is None else _redact.get()(str(value))


def _verdict_class(value: object) -> str:
    text = str(value)
    return "bad" if text.startswith(("fails", "EXPIRED")) else "ok" if text.startswith("accepted") else ""


def _decision_class(value: object) -> str:
    return {"FAIL": "bad", "WARN": "warn"}.get(str(value).split(" ", 1)[0], "")


@functools.cache
def _sections_module(name: str = "sections.html.j2") -> Any:
    """The template's macros, compiled once per process (its environment too): autoescape on, every value
    printed through `_finalize`, so through the redactor of the run being rendered, which `_macros` sets."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=True,
        finalize=_finalize,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["verdict_class"] = _verdict_class
    env.filters["decision_class"] = _decision_class
    return env.get_template(name).module


@contextlib.contextmanager
def _macros(run: RunbookRun) -> Iterator[Any]:
    """The sections' macros, printing every value through this run's redactor while the block runs (a context
    variable: a render in another thread or context keeps its own)."""
    # Compiled before the redactor is set: Jinja finalizes constant output at compile time when it can, which
    # would keep one run's redaction in the cached template; without a redactor it leaves it to render time.
    macros = _sections_module()
    token = _redact.set(run.env.redact)
    try:
        yield macros
    finally:
        _redact.reset(token)


def render_summary(run: RunbookRun) -> str:
    rollback = f"yes: {run.rollback_result or 'result unknown'}" if run.rollback_ran else "no"
    slots = next((d for d in run.of_kind("slots") if d.get("live")), None)
    rows: list[tuple[str, str, str]] = [
        ("Environment", f"{run.env.name} ({run.env.kind}, {run.env.source.name})", ""),
        ("Flow", run.flow or "", ""),
        ("Versions", run.versions_words(), ""),
        ("Outcome", run.outcome_words(), "ok" if run.outcome == "passed" else "bad"),
        ("Rollback ran", rollback, "ok" if run.rollback_result in (None, "succeeded") else "bad"),
        ("Approved by", run.approver or "-", ""),
    ]
    if slots:
        rows.insert(2, ("Slots at the start", str(slots.get("words") or ""), ""))
    restore = run.restore_result
    if restore:
        rows.append(("Restore after failure", restore, "ok" if restore.startswith("succeeded") else "bad"))
    if run.options.lab_faults:
        rows.append(("Lab faults injected", ", ".join(run.options.lab_faults), "warn"))
    if run.blocked_by:
        rows.append(("Blocked by", f"{run.blocked_by[0]}: {run.blocked_by[1]}", "bad"))
    notes = ", ".join(f"{n.get('event_type')} ({n.get('delivery')})" for n in run.notifications) or "none"
    rows.append(("Notifications sent", notes, ""))
    summary = {"rows": rows, "site_down": run.site_down, "warnings": [*run.warnings, *run.writer_errors]}
    with _macros(run) as macros:
        return str(macros.summary(summary))


# The sections a row's or a flow's result event renders into, in the order the events happened.
_RESULT_SECTIONS = {
    "monitor.result": "monitor",
    "axe.result": "axe",
    "e2e.command": "e2e_command",
    "zap.result": "zap",
}


def render_sections(run: RunbookRun) -> list[str]:
    with _macros(run) as macros:
        return _sections(run, macros)


def _sections(run: RunbookRun, macros: Any) -> list[str]:
    sections = [str(macros.phases([[p.id, p.outcome or "not run", p.reason] for p in run.phases.values()]))]
    if run.notifications:
        rows = [[n.get("event_type"), n.get("delivery"), n.get("attempts"), n.get("http_status") or "",
                 n.get("error") or "", n.get("target")] for n in run.notifications]  # fmt: skip
        sections.append(str(macros.notifications(rows)))
    watch = next((d for d in run.of_kind("note") if "failed_before_switch" in d), None)
    if watch is not None:
        before, after = watch["failed_before_switch"], watch["failed_after_switch"]
        sections.append(str(macros.public_watch(watch, "bad" if before else ("warn" if after else "ok"))))
    findings = [
        e for e in run.events if e["kind"] == "finding" and e["data"].get("tool") in ("public-watch", "scope")
    ]
    if findings:
        rows = [
            [e["ts"][11:23], e["phase"] or "", e["data"].get("tool", ""),
             e["data"].get("message") or e["data"].get("url") or e["data"].get("page") or ""]
            for e in findings
        ]  # fmt: skip
        sections.append(str(macros.findings(rows)))
    sections.append(
        str(macros.timeline([[e["ts"][11:23], e["phase"] or "", describe(e)] for e in run.events]))
    )
    for event in _merged_results(run.events, run.env.axe.pages):
        macro = _RESULT_SECTIONS[event["kind"]]
        try:
            data = monitor_chart(event["data"]) if macro == "monitor" else event["data"]
            sections.append(str(getattr(macros, macro)(data)))
        except Exception as exc:  # noqa: BLE001 - one broken section must not cost the operator the report
            why = f"the {event['kind']} section of report.html could not be rendered: {plain_error(exc)}"
            run.writer_errors.append(why)
            sections.append(
                f'<div class="runbook"><p class="bad">{html.escape(run.env.redact(why))}</p></div>'
            )
    return sections


def _merged_results(events: list[dict[str, Any]], page_order: list[str]) -> list[dict[str, Any]]:
    """The result events that make a section, in order; the axe results of a parallel run (one per worker,
    each for the pages its browser scanned) merged into one table, pages in the order of [axe] pages."""
    results = [e for e in events if e["kind"] in _RESULT_SECTIONS]
    axe = [e["data"] for e in results if e["kind"] == "axe.result"]
    if len(axe) < 2:
        return results

    def rank(page: str) -> int:
        return page_order.index(page) if page in page_order else len(page_order)

    pages = sorted((p for d in axe for p in d["pages"]), key=rank)
    # A baseline entry is unused when no worker that scanned its page (any page, for "*") used it.
    listed = [{u["text"] for u in d["unused"]} for d in axe]
    unused = []
    for d in axe:
        for u in d["unused"]:
            scanned = [i for i, other in enumerate(axe) if u["page"] == "*" or u["page"] in other["pages"]]
            if all(u["text"] in listed[i] for i in scanned) and u not in unused:
                unused.append(u)
    merged = {"kind": "axe.result", "data": {
        "rows": sorted((r for d in axe for r in d["rows"]), key=lambda r: rank(str(r[3]))), "engines": sorted({x for d in axe for x in d["engines"]}),
        "pages": pages, "unused": unused}}  # fmt: skip
    first = next(i for i, e in enumerate(results) if e["kind"] == "axe.result")
    rest = [e for e in results if e["kind"] != "axe.result"]
    return [*rest[:first], merged, *rest[first:]]


def monitor_chart(data: Mapping[str, Any]) -> dict[str, Any]:
    """The monitoring window's geometry for the inline SVG chart: latency per probe, failures in red."""
    samples, sla_p95_ms = data["samples"], float(data["sla_p95_ms"])
    width, height, pad = 720, 220, 40
    span = max((float(s["offset_s"]) for s in samples), default=1.0) or 1.0
    top = max([sla_p95_ms * 1.2, *(float(s["latency_ms"]) for s in samples)]) or 1.0

    def x(t: float) -> str:
        return f"{pad + (width - 2 * pad) * t / span:.1f}"

    def y(ms: float) -> float:
        return round(height - pad - (height - 2 * pad) * min(ms, top) / top, 1)

    dots = [
        {"x": x(s["offset_s"]), "y": y(s["latency_ms"]), "ok": s["ok"],
         "title": f"{s['ts']}: {s['status']} in {s['latency_ms']} ms" + (f" {s['error']}" if s.get("error") else "")}
        for s in samples
    ]  # fmt: skip
    summary = data["summary"]
    caption = (
        f"{summary['probes']} probes of {summary['url']}: p50 {summary['p50_ms']} ms, "
        f"p95 {summary['p95_ms']} ms, max {summary['max_ms']} ms, error rate {float(summary['error_rate']):.1%}, "
        f"alert {'FIRED' if summary['alert_fired'] else 'not fired'}"
        + (f"; breach: {summary['breach']}" if summary["breach"] else "")
    )
    metrics = data.get("metrics") or {}
    return {
        "width": width, "height": height, "pad": pad, "span": span, "top": top, "sla_p95_ms": sla_p95_ms,
        "sla_y": y(sla_p95_ms), "points": " ".join(f"{d['x']},{d['y']}" for d in dots), "dots": dots,
        "caption": caption, "metrics": [metric_chart(name, m, span) for name, m in metrics.items()],
        "data_files": "artifacts/monitor.csv" + (", artifacts/metrics.csv" if metrics else ""),
    }  # fmt: skip


def metric_chart(name: str, m: Mapping[str, Any], span: float) -> dict[str, Any]:
    """One [monitor.metrics] query's evaluations on the probe chart's time axis, its threshold drawn: the value
    per evaluation (failed ones in red, no data as a red mark on the axis), max and min as dashed lines."""
    width, height, pad = 720, 160, 40
    samples = m["samples"]  # [offset_s, value or None, ok, words]
    span = max([span, *(float(s[0]) for s in samples)]) or 1.0
    bounds = [float(b) for b in (m.get("max"), m.get("min")) if b is not None]
    values = [float(s[1]) for s in samples if s[1] is not None]
    top = max([*values, *bounds, 0.0])
    bottom = min([*values, *bounds, 0.0])
    margin = (top - bottom) * 0.15 or 1.0
    top, bottom = top + margin, bottom if bottom >= 0 else bottom - margin

    def x(t: float) -> str:
        return f"{pad + (width - 2 * pad) * t / span:.1f}"

    def y(v: float) -> float:
        return round(
            height - pad - (height - 2 * pad) * (min(max(v, bottom), top) - bottom) / (top - bottom), 1
        )

    unit = str(m.get("unit") or "")
    dots = [
        {"x": x(float(t)), "y": y(float(v) if v is not None else bottom), "ok": ok, "no_data": v is None,
         "title": f"+{float(t):.1f} s: {words}"}
        for t, v, ok, words in samples
    ]  # fmt: skip
    lines = [
        {"y": y(float(bound)), "label": f"{label} {float(bound):g} {unit}".strip()}
        for label, bound in (("max", m.get("max")), ("min", m.get("min")))
        if bound is not None
    ]
    caption = (
        f"{name}: {m['query']} ({m['threshold']}); {m['evaluations']} evaluations, {m['failed']} out of threshold "
        f"or without data; last: {m['last']}"
    )
    return {
        "name": name, "width": width, "height": height, "pad": pad, "span": span, "top": top, "bottom": bottom,
        "unit": unit, "dots": dots, "lines": lines, "caption": caption,
        "points": " ".join(f"{d['x']},{d['y']}" for d in dots if not d["no_data"]),
    }  # fmt: skip
