"""report.html: what happened first, in words, then the runbook's sections, then pytest-html's own part.

The bundle's name carries the flow, which is known only after collection, so the report is attached when the
run starts rather than from `--html` at configure time; it is built from pytest-html's own classes, as its
`pytest_configure` builds them (pytest-html is pinned in requirements.txt), with the runbook's own page template
(templates/index.html.j2): the headline sentence and the facts at the very top, the runbook's sections (static
HTML: nothing needs JavaScript to be read, and the page prints to PDF with the headline on page 1), then
pytest-html's environment box and interactive results table.

Everything the top of the report says is derived from the journal's events (RunbookRun's derived values): the
headline is one sentence per kind of outcome, with who approved it, who ran it (OS user @ host, journalled in
run.start) and when, in UTC and in the operator's local time zone (also journalled in run.start).
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import html
import math
import os
import re
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
import pytest

from drivers import phases as phase_table
from drivers.base import plain_error
from plugins.flow import one_line
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
    template = page_template(resources, functools.partial(environment_rows, config.stash[metadata_key]))
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


def page_template(resources: Path, environment: Callable[[], list[tuple[str, str]]]) -> jinja2.Template:
    """The page: the runbook's templates/index.html.j2 (pytest-html's index.jinja2, reordered), autoescaped as
    pytest-html's own; app.js, which it includes, from pytest-html's resources."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader([_TEMPLATES, resources]), autoescape=True)
    env.globals["runbook_environment"] = environment
    return env.get_template("index.html.j2")


def environment_rows(metadata: Mapping[str, Any]) -> list[tuple[str, str]]:
    """pytest-html's environment box as static rows (its app.js draws the same rows again when it runs): a
    table of packages or plugins in one line, name and version."""
    rows = []
    for key, value in metadata.items():
        if isinstance(value, Mapping):
            text = ", ".join(f"{k} {v}" for k, v in value.items())
        elif isinstance(value, list | tuple):
            text = ", ".join(str(v) for v in value)
        else:
            text = str(value)
        rows.append((str(key), text))
    return rows


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


SERVICE = "MCMS"
"""The service the runbook recovers, as the headline names it."""


# --- who ran it and where, journalled in run.start --------------------------------------------------------
def run_context(run: RunbookRun) -> dict[str, Any]:
    """What run.start journals besides the options, for the report's first lines: the reason (--reason), who ran
    the run (OS user @ this machine's host name; nothing is resolved) and the operator's local time zone."""
    return {
        "reason": run.options.reason or None,
        "operator": operator_identity(),
        "local_time": local_time_zone(),
    }


def operator_identity() -> dict[str, str]:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name (a container without a user entry): say so, run on
        user = "unknown user"
    try:
        host = socket.gethostname()
    except OSError:
        host = "unknown host"
    return {"user": user, "host": host}


def _offset_words(offset: timedelta) -> str:
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def local_time_zone(now: datetime | None = None) -> dict[str, Any]:
    """The operator's local time zone now: its name (KST, CET, "Korea Standard Time" on Windows), its offset."""
    local = (now or datetime.now(UTC)).astimezone()
    offset = local.utcoffset() or timedelta(0)
    return {
        "name": local.tzname() or _offset_words(offset),
        "utc_offset": _offset_words(offset),
        "offset_s": int(offset.total_seconds()),
    }


def _when(ts: str) -> datetime:
    return datetime.fromisoformat(ts).astimezone(UTC)


@dataclass(frozen=True)
class Clock:
    """Times of the journal in UTC and in the operator's local time zone (the one run.start journalled)."""

    name: str = "UTC"
    offset_s: int = 0

    @classmethod
    def of(cls, run: RunbookRun) -> Clock:
        start = run.of_kind("run.start")
        zone = (start[0].get("local_time") if start else None) or {}
        try:
            return cls(str(zone.get("name") or "UTC"), int(zone.get("offset_s") or 0))
        except (TypeError, ValueError):
            return cls()

    @property
    def differs(self) -> bool:
        return self.offset_s != 0

    @property
    def zone_words(self) -> str:
        return f"{self.name} ({_offset_words(timedelta(seconds=self.offset_s))})"

    def local(self, ts: str) -> datetime:
        return _when(ts).astimezone(timezone(timedelta(seconds=self.offset_s)))

    def at(self, ts: str, fmt: str = "%H:%M:%S") -> str:
        """03:24:27 UTC (12:24:27 KST); UTC alone when the operator's zone is UTC's offset."""
        utc = f"{_when(ts).strftime(fmt)} UTC"
        return f"{utc} ({self.local(ts).strftime(fmt)} {self.name})" if self.differs else utc

    def local_at(self, ts: str, fmt: str = "%H:%M") -> str:
        """The operator's own clock: 12:24 KST (UTC when that is the operator's zone)."""
        return f"{self.local(ts).strftime(fmt)} {self.name if self.differs else 'UTC'}"

    def span(self, start: str, end: str) -> str:
        """from 03:24:27 to 03:24:36 UTC (12:24:27 to 12:24:36 KST)."""
        fmt = "%H:%M:%S"
        utc = f"from {_when(start).strftime(fmt)} to {_when(end).strftime(fmt)} UTC"
        if not self.differs:
            return utc
        return f"{utc} ({self.local(start).strftime(fmt)} to {self.local(end).strftime(fmt)} {self.name})"

    def date(self, ts: str) -> str:
        """2026-12-02 03:24:27 UTC, 2026-12-02 12:24:27 KST (UTC+09:00)."""
        utc = f"{_when(ts).strftime('%Y-%m-%d %H:%M:%S')} UTC"
        if not self.differs:
            return f"{utc} (the operator's time zone is {self.name}, UTC's offset)"
        return f"{utc}; {self.local(ts).strftime('%Y-%m-%d %H:%M:%S')} {self.zone_words}"


def _duration_words(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


# --- what happened: one sentence per kind of outcome, from the journal's events ----------------------------
_CHANGES = frozenset({"stop_site", "recycle_pool", "deploy", "start_site", "switch_traffic"})
_NOT_A_CHANGE = frozenset({"already stopped", "failed"})


@dataclass(frozen=True)
class Headline:
    kind: (
        str  # site-down, rollback-passed, release-passed, release-rolled-back, untouched, matrix-passed, ...
    )
    what: str  # what happened, in one clause an operator reads aloud
    who: str  # approved by ... at ...; run by user@host from ... to ... UTC (... local)
    cls: str  # ok | bad | warn

    @property
    def sentence(self) -> str:
        return f"{self.what}; {self.who}." if self.who else f"{self.what}."


def _title(phase: str) -> str:
    known = phase_table.BY_ID.get(phase)
    return known.title if known else ""


def _phase_words(phase: str) -> str:
    title = _title(phase)
    return f"{phase} ({title})" if title else phase


def _events(run: RunbookRun, kind: str) -> list[dict[str, Any]]:
    return [e for e in run.events if e["kind"] == kind]


def _switches(run: RunbookRun) -> list[dict[str, Any]]:
    """The journal's traffic switches, in order (the first is the release's; any later one goes back)."""
    return [
        e
        for e in _events(run, "action")
        if e["data"].get("name") == "switch_traffic" and e["data"].get("result") == "ok"
    ]


def _release_version(run: RunbookRun) -> str | None:
    for e in _events(run, "version"):
        if e["data"].get("role") == "expected" and e["phase"] == "BG-1":
            return str(e["data"].get("version"))
    for d in run.of_kind("action"):
        detail = d.get("detail") or {}
        if d.get("name") == "verify_package" and str(detail.get("why", "")).startswith(
            "precondition: latest"
        ):
            return str(detail.get("version"))
    return None


def _v(version: object) -> str:
    return str(version) if version else "an unknown version"


def headline(run: RunbookRun) -> Headline:
    """What happened, in one sentence derived only from the journal's events."""
    clock = Clock.of(run)
    what, kind, cls = _what_happened(run)
    end = run.of_kind("run.end")
    if end and end[-1].get("exitstatus") == int(pytest.ExitCode.INTERRUPTED) and kind != "site-down":
        what, kind, cls = (
            f"Interrupted by the operator: {what[0].lower()}{what[1:]}",
            f"interrupted/{kind}",
            "bad",
        )
    return Headline(kind, what, _who(run, clock), cls)


def _what_happened(run: RunbookRun) -> tuple[str, str, str]:  # noqa: PLR0911, PLR0912 - one branch per outcome
    where = f"{SERVICE} on {run.env.name}"
    if run.site_down:
        return (
            f"SITE DOWN: {where} is not serving ({run.site_down}) and the runbook could not bring it back: "
            "restore it by hand now",
            "site-down",
            "bad",
        )
    failed = next((e for e in _events(run, "phase.end") if e["data"].get("outcome") == "failed"), None)
    at = _phase_words(str(failed["phase"])) if failed else ""
    passed = run.outcome == "passed" and failed is None
    touched = any(
        d.get("name") in _CHANGES and d.get("result") not in _NOT_A_CHANGE for d in run.of_kind("action")
    )
    rollbacks = run.of_kind("rollback")
    due = any(d.get("result") == "not run" for d in rollbacks)
    before, now = run.version_from, run.version_to
    if run.flow == phase_table.MATRIX:
        rows = [p for p in run.phases if p != "PRE"]
        checks = ", ".join(rows) or "the checks"
        serves = f", which serves {before}" if before else ""
        if passed:
            return (
                f"The checks {checks} passed on {where}{serves}; nothing was changed",
                "matrix-passed",
                "ok",
            )
        return (
            f"The checks of {where}{serves} FAILED at {at or 'a check'}; nothing was changed",
            "matrix-failed",
            "bad",
        )
    if not passed and not touched:
        flow = {phase_table.ROLLBACK: "rollback", phase_table.SWITCH_BACK: "switch-back"}.get(
            run.flow or "", "release"
        )
        slots = next((d for d in run.of_kind("slots") if d.get("live")), {})
        still = before or slots.get("live_version")
        on = f" on {slots['live']}" if slots.get("live") and still else ""
        serving = f"it still serves {still}{on}" if still else "what it serves was not found out"
        return (
            f"Nothing was changed on {where}: the {flow} stopped at {at or 'the start'}; {serving}",
            "untouched",
            "bad",
        )
    if run.flow == phase_table.ROLLBACK:
        restored = [d for d in rollbacks if "node" in d and d.get("result") == "succeeded"]
        if passed and restored:
            return (
                f"{where} was rolled back from {_v(before)} to {_v(restored[-1].get('from'))}, every check passed, "
                f"then {_v(now)} was restored (--runbook-rollback {run.options.rollback_policy}) and serves",
                "rollback-passed-restored",
                "ok",
            )
        if passed:
            return (
                f"{where} was rolled back from {_v(before)} to {_v(now)} and is serving {_v(now)}",
                "rollback-passed",
                "ok",
            )
        target = run.expected_version
        if restored:
            return (
                f"The rollback of {where} from {_v(before)} to {_v(target)} FAILED at {at}; {_v(now)}, which was "
                "serving before, was restored and serves",
                "rollback-failed-restored",
                "bad",
            )
        if due:
            return (
                f"The rollback of {where} from {_v(before)} to {_v(target)} FAILED at {at} and the release that "
                "was serving before was NOT restored (--runbook-rollback never): act now",
                "rollback-failed-due",
                "bad",
            )
        return (
            f"The rollback of {where} from {_v(before)} to {_v(target)} FAILED at {at}; {_v(now)} serves",
            "rollback-failed",
            "bad",
        )
    if run.flow == phase_table.SWITCH_BACK:
        return _switched_back(run, where, passed, at)
    # Blue/Green
    slots = next((d for d in run.of_kind("slots") if d.get("live")), {})
    live, idle = str(slots.get("live") or "the live slot"), str(slots.get("idle") or "the idle slot")
    live_version = slots.get("live_version") or before
    release = _release_version(run)
    switches = _switches(run)
    back = [d for d in rollbacks if "to_slot" in d]
    if not switches:
        if passed and "BG-4" not in run.phases:
            return (
                f"Release {_v(release)} of {where} was deployed to the idle slot {idle} and verified; the switch is "
                f"pending: {live} keeps serving {_v(live_version)}",
                "gate-passed",
                "warn",
            )
        return (
            f"Release {_v(release)} of {where} failed before the switch, at {at or 'a check'}; traffic never left "
            f"{live}, which serves {_v(live_version)}",
            "release-failed-before-switch",
            "bad",
        )
    went_back = [d for d in back if d.get("result") == "succeeded"]
    if went_back:
        on_release = (
            f" for {_duration_words((_when(switches[-1]['ts']) - _when(switches[0]['ts'])).total_seconds())}"
            if len(switches) > 1
            else ""
        )
        if passed:
            return (
                f"Release {_v(release)} of {where} passed every check on {idle}, then traffic went back to {live} "
                f"(--runbook-rollback {run.options.rollback_policy}), which serves {_v(live_version)}",
                "release-passed-went-back",
                "ok",
            )
        return (
            f"Release {_v(release)} of {where} was rolled back: traffic was on {idle}{on_release}, then went back "
            f"to {live} when {at} failed; {live} serves {_v(live_version)} again",
            "release-rolled-back",
            "bad",
        )
    if passed:
        return (
            f"{where} was released: traffic moved from {live} ({_v(live_version)}) to {idle}, which serves "
            f"{_v(release)}",
            "release-passed",
            "ok",
        )
    if any(d.get("result") == "failed" for d in back):
        return (
            f"Release {_v(release)} of {where} FAILED at {at} after the switch and traffic could NOT be sent back to "
            f"{live}: act now",
            "release-rollback-failed",
            "bad",
        )
    return (
        f"Release {_v(release)} of {where} FAILED at {at} after the switch; traffic stays on {idle} ({_v(release)}): "
        f"a rollback was due and was not run{' (--runbook-rollback never)' if due else ''}: act now",
        "release-failed-not-rolled-back",
        "bad",
    )


def _switched_back(run: RunbookRun, where: str, passed: bool, at: str) -> tuple[str, str, str]:
    """The switch-back flow's headline: traffic from the live slot back to the warm standby (SB-1..SB-3)."""
    slots = next((d for d in run.of_kind("slots") if d.get("live")), {})
    back: Mapping[str, Any] = next(
        (d for d in reversed(run.of_kind("rollback")) if d.get("trigger") == "operator"), {}
    )
    left = str(back.get("slot_from") or slots.get("live") or "the live slot")
    standby = str(back.get("slot_to") or slots.get("idle") or "the warm standby")
    before = back.get("from") or run.version_from
    target = back.get("to") or run.expected_version
    if passed:
        return (
            f"{where} was switched back from {left} ({_v(before)}) to the warm standby {standby} and is serving "
            f"{_v(target)}",
            "switch-back-passed",
            "ok",
        )
    if back.get("result") == "failed" or _switches(run):
        return (
            f"The switch-back of {where} to the warm standby {standby} ({_v(target)}) FAILED at {at or 'a check'}: "
            f"the public address was not seen serving {_v(target)}: check it now",
            "switch-back-failed",
            "bad",
        )
    return (
        f"The switch-back of {where} FAILED at {at or 'a check'} before traffic moved; {left} serves {_v(before)}",
        "switch-back-failed-before-switch",
        "bad",
    )


def _approval(run: RunbookRun) -> Mapping[str, Any] | None:
    """The approval that gated the run: the switch's (BG-3), else the flow's (PRE), else the last one."""
    given = _events(run, "approval")
    for phase in ("BG-3", "PRE"):
        found = [e for e in given if e["phase"] == phase]
        if found:
            return found[-1]
    return given[-1] if given else None


def _approval_words(run: RunbookRun, clock: Clock) -> str:
    event = _approval(run)
    if event is None:
        pending = any(
            "approval of the switch pending" in str(d.get("message", "")) for d in run.of_kind("note")
        )
        return "the switch awaits its approval" if pending else ""
    approver = str(event["data"].get("approver"))
    if approver == "lab-auto":
        return f"approved automatically (a Lab drill) at {clock.local_at(event['ts'])}"
    if approver == "not-required":
        return "no approval required by the environment file"
    return f"approved by {approver} at {clock.local_at(event['ts'])}"


def _run_by(run: RunbookRun) -> str:
    start = run.of_kind("run.start")
    operator = (start[0].get("operator") if start else None) or {}
    return f"{operator.get('user') or 'unknown user'}@{operator.get('host') or 'unknown host'}"


def _who(run: RunbookRun, clock: Clock) -> str:
    start, end = _events(run, "run.start"), _events(run, "run.end")
    parts = [_approval_words(run, clock)]
    if start:
        last = end[-1]["ts"] if end else run.events[-1]["ts"]
        parts.append(f"run by {_run_by(run)} {clock.span(start[0]['ts'], last)}")
    return "; ".join(p for p in parts if p)


# --- the top of the report: the headline and the facts -----------------------------------------------------
def _journal_state(run: RunbookRun) -> tuple[int, str] | None:
    """The journal's event count and last hash while this report is written (before the seal)."""
    for writer in run.writers:
        journal = getattr(writer, "journal", None)
        if writer.name == "evidence.jsonl" and journal is not None:
            return int(journal.seq), str(journal.last_hash)
    return None


def _journal_words(run: RunbookRun) -> str:
    state = _journal_state(run)
    if state is None:
        return "evidence.jsonl: not written (see the warnings)"
    seq, last = state
    return (
        f"evidence.jsonl held {seq} events when this report was written; the last one (event {seq}, "
        f"{run.events[-1]['kind'] if run.events else 'none'}) has hash {last}. manifest.json, written at the "
        "seal right after this report, records the journal's event count and last hash then: the same, unless "
        "something was journalled in between."
    )


def _seal_words(run: RunbookRun) -> str:
    where = run.bundle or "<bundle>"
    return (
        "Not in this file, on purpose: manifest.json lists the sha256 of this report, and the journal's seal "
        "(written after the manifest) lists the manifest's sha256, so neither the manifest's hash nor the seal's "
        "hash can be written here before they exist. Read them in the last line of evidence.jsonl (the seal "
        'event: manifest_sha256 and hash), at the end of the run\'s terminal output ("Journal: last hash ...": '
        f"keep that one with the change record), or with: python -m plugins.evidence verify {where}"
    )


def _next_step(run: RunbookRun, kind: str) -> str:
    if kind != "gate-passed":
        return ""
    approver = "" if run.env.is_lab else " --approved-by NAME"
    return f'pytest -m "bluegreen and traffic" {run.options.env_argument}{approver}'


def render_summary(run: RunbookRun) -> str:
    clock = Clock.of(run)
    head = headline(run)
    start = run.of_kind("run.start")
    started = start[0] if start else {}
    reason = started.get("reason")
    rollback = f"yes: {run.rollback_result or 'result unknown'}" if run.rollback_ran else "no"
    slots = next((d for d in run.of_kind("slots") if d.get("live")), None)
    first, last = (run.events[0]["ts"], run.events[-1]["ts"]) if run.events else ("", "")
    end = _events(run, "run.end")
    last = end[-1]["ts"] if end else last
    approval = _approval(run)
    rows: list[tuple[str, str, str]] = [
        ("Outcome", run.outcome_words(), "ok" if run.outcome == "passed" else "bad"),
        ("Reason", str(reason) if reason else "none given (pytest --reason TEXT)", "" if reason else "warn"),
        ("Environment", f"{run.env.name} ({run.env.kind}, {run.env.source.name})", ""),
        ("Flow", run.flow or "", ""),
        ("Versions", run.versions_words(), ""),
        ("Rollback ran", rollback, "ok" if run.rollback_result in (None, "succeeded") else "bad"),
        (
            "Approved by",
            f"{approval['data'].get('approver')} at {clock.at(approval['ts'])}" if approval else "-",
            "",
        ),
        ("Run by", f"{_run_by(run)} (OS user @ host)", ""),
    ]
    if first:
        rows += [
            ("Started", clock.date(first), ""),
            (
                "Ended",
                f"{clock.date(last)}; took {_duration_words((_when(last) - _when(first)).total_seconds())}",
                "",
            ),
        ]
    if slots:
        rows.insert(4, ("Slots at the start", str(slots.get("words") or ""), ""))
    step = _next_step(run, head.kind)
    if step:
        rows.insert(1, ("Next step", f"switch traffic when approved: {step}", "warn"))
    restore = run.restore_result
    if restore:
        rows.append(("Restore after failure", restore, "ok" if restore.startswith("succeeded") else "bad"))
    if run.options.lab_faults:
        rows.append(("Lab faults injected", ", ".join(run.options.lab_faults), "warn"))
    if run.blocked_by:
        rows.append(("Blocked by", f"{run.blocked_by[0]}: {run.blocked_by[1]}", "bad"))
    notes = ", ".join(f"{n.get('event_type')} ({n.get('delivery')})" for n in run.notifications) or "none"
    rows.append(("Notifications sent", notes, ""))
    rows.append(("Journal", _journal_words(run), ""))
    rows.append(("Manifest and seal hashes", _seal_words(run), ""))
    summary = {
        "headline": head,
        "rows": rows,
        "site_down": run.site_down,
        "warnings": [*run.warnings, *run.writer_errors],
    }
    with _macros(run) as macros:
        return str(macros.summary(summary))


# --- the sections -------------------------------------------------------------------------------------------
# The sections a row's or a flow's result event renders into: monitoring first, then the scanners' details.
_RESULT_SECTIONS = {
    "monitor.result": "monitor",
    "axe.result": "axe",
    "e2e.command": "e2e_command",
    "zap.result": "zap",
}


def render_sections(run: RunbookRun) -> list[str]:
    with _macros(run) as macros:
        return _sections(run, macros)


def phase_rows(run: RunbookRun, clock: Clock) -> list[list[str]]:
    """Each phase of the run: id, what it does (drivers/phases.py), outcome, elapsed, started, reason."""
    starts = {e["phase"]: e for e in _events(run, "phase.start")}
    ends = {e["phase"]: e for e in _events(run, "phase.end")}
    rows = []
    for p in run.phases.values():
        begun, done = starts.get(p.id), ends.get(p.id)
        title = _title(p.id) or str((begun or {}).get("data", {}).get("title", "")).split(": ", 1)[-1]
        elapsed = (
            _duration_words((_when(done["ts"]) - _when(begun["ts"])).total_seconds())
            if begun and done
            else ""
        )
        rows.append(
            [p.id, title, p.outcome or "not run", elapsed, clock.at(begun["ts"]) if begun else "", p.reason]
        )
    return rows


def test_rows(run: RunbookRun) -> list[list[str]]:
    """Every test's outcome, static (pytest-html's own table needs JavaScript)."""
    rows = []
    for nodeid, reports in run.reports.items():
        bad = next((r for r in reports if r.failed), None) or next((r for r in reports if r.skipped), None)
        phase = next((str(getattr(r, "runbook_phase", "") or "") for r in reports), "")
        outcome = "passed" if bad is None else ("error" if bad.failed and bad.when != "call" else bad.outcome)
        rows.append(
            [
                phase,
                nodeid,
                outcome,
                f"{sum(r.duration for r in reports):.2f} s",
                one_line(bad) if bad else "",
            ]
        )
    return rows


def _sections(run: RunbookRun, macros: Any) -> list[str]:
    clock = Clock.of(run)
    sections = [str(macros.phases(phase_rows(run, clock)))]
    results = _merged_results(run.events, run.env.axe.pages)
    monitors = [e for e in results if e["kind"] == "monitor.result"]
    scanners = [e for e in results if e["kind"] != "monitor.result"]
    for event in monitors:
        sections.append(_result_section(run, macros, event, clock))
    watch = next((d for d in run.of_kind("note") if "failed_before_switch" in d), None)
    if watch is not None:
        before, after = watch["failed_before_switch"], watch["failed_after_switch"]
        sections.append(str(macros.public_watch(watch, "bad" if before else ("warn" if after else "ok"))))
    findings = [
        e for e in run.events if e["kind"] == "finding" and e["data"].get("tool") in ("public-watch", "scope")
    ]
    if findings:
        rows = [
            [clock.at(e["ts"]), e["phase"] or "", e["data"].get("tool", ""),
             e["data"].get("message") or e["data"].get("url") or e["data"].get("page") or ""]
            for e in findings
        ]  # fmt: skip
        sections.append(str(macros.findings(rows)))
    if run.notifications:
        rows = [[n.get("event_type"), n.get("delivery"), n.get("attempts"), n.get("http_status") or "",
                 n.get("error") or "", n.get("target")] for n in run.notifications]  # fmt: skip
        sections.append(str(macros.notifications(rows)))
    for event in scanners:
        sections.append(_result_section(run, macros, event, clock))
    tests = test_rows(run)
    if tests:
        sections.append(str(macros.tests(tests)))
    header = ["time (UTC)", *([f"local ({clock.name})"] if clock.differs else []), "phase", "step"]
    timeline = [
        [e["ts"][11:23], *([clock.local(e["ts"]).strftime("%H:%M:%S.%f")[:12]] if clock.differs else []),
         e["phase"] or "", describe(e)]
        for e in run.events
    ]  # fmt: skip
    sections.append(str(macros.timeline(header, timeline)))
    return sections


def _result_section(run: RunbookRun, macros: Any, event: Mapping[str, Any], clock: Clock) -> str:
    macro = _RESULT_SECTIONS[event["kind"]]
    try:
        data = (
            monitor_chart(event["data"], chart_marks(run, event), clock)
            if macro == "monitor"
            else event["data"]
        )
        return str(getattr(macros, macro)(data))
    except Exception as exc:  # noqa: BLE001 - one broken section must not cost the operator the report
        why = f"the {event['kind']} section of report.html could not be rendered: {plain_error(exc)}"
        run.writer_errors.append(why)
        return f'<div class="runbook"><p class="bad">{html.escape(run.env.redact(why))}</p></div>'


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


# --- the monitoring charts: axes with ticks, a legend, the switch and the rollback marked -----------------
_WIDTH, _LEFT, _RIGHT_PAD, _TOP = 760, 64, 24, 24
_COLORS = {
    "latency": "#0078d4", "metric": "#8764b8", "ok": "#107c10", "bad": "#a4262c", "threshold": "#d83b01",
    "switch": "#5c2d91", "rollback": "#a4262c",
}  # fmt: skip


def _nice_step(span: float, count: int) -> float:
    raw = max(span, 1e-9) / count
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(float(m * magnitude) for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)


def _ticks(lo: float, hi: float, count: int) -> list[float]:
    step = _nice_step(hi - lo, count)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1e-9) + 1)]


@dataclass(frozen=True)
class _Scale:
    lo: float
    hi: float
    a: float  # pixel of lo
    b: float  # pixel of hi

    def __call__(self, value: float) -> float:
        span = (self.hi - self.lo) or 1.0
        clamped = min(max(value, self.lo), self.hi)
        return round(self.a + (self.b - self.a) * (clamped - self.lo) / span, 1)


def chart_marks(run: RunbookRun, event: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The moments the monitoring chart marks: the switch of traffic, and the rollback (every later switch)."""
    marks = []
    for i, e in enumerate(_switches(run)):
        to = e["data"].get("target")
        marks.append(
            {"ts": e["ts"], "kind": "switch" if i == 0 else "rollback",
             "label": f"switch to {to}" if i == 0 else f"traffic back to {to} (rollback)"}
        )  # fmt: skip
    return marks


def _legend(items: Sequence[tuple[str, str, str]], y: float) -> list[dict[str, Any]]:
    """Legend entries laid out left to right: (shape, colour, label); about 6.5 px per character at 11 px."""
    out, x = [], float(_LEFT)
    for shape, color, label in items:
        out.append({"shape": shape, "color": color, "label": label, "x": round(x, 1), "y": y})
        x += 30 + 6.2 * len(label)
    return out


def _frame(
    height: int, lo: float, hi: float, marks: Sequence[Mapping[str, Any]], origin: datetime
) -> dict[str, Any]:
    bottom = height - 72
    x = _Scale(lo, hi, _LEFT, _WIDTH - _RIGHT_PAD)
    drawn = []
    for m in marks:
        t = (_when(m["ts"]) - origin).total_seconds()
        if lo <= t <= hi:
            drawn.append({"x": x(t), "label": m["label"], "kind": m["kind"], "color": _COLORS[m["kind"]]})
    middle = (_LEFT + _WIDTH - _RIGHT_PAD) / 2
    for i, m in enumerate(drawn):  # labels alternate heights so that two close marks stay readable
        m["label_y"] = _TOP + 12 + 13 * (i % 2)
        right_half = m["x"] > middle  # a label right of the middle reads leftwards, so it stays in the chart
        m["label_x"], m["anchor"] = (m["x"] - 4, "end") if right_half else (m["x"] + 4, "start")
    return {
        "width": _WIDTH, "height": height, "left": _LEFT, "right": _WIDTH - _RIGHT_PAD, "top": _TOP,
        "bottom": bottom, "x": x, "marks": drawn,
        "xticks": [{"x": x(t), "label": f"{t:g} s"} for t in _ticks(lo, hi, 8)],
    }  # fmt: skip


def monitor_chart(
    data: Mapping[str, Any], marks: Sequence[Mapping[str, Any]] = (), clock: Clock | None = None
) -> dict[str, Any]:
    """The monitoring window as an inline SVG chart: probe latency per probe (failures in red) against the
    SLA, on a time axis in seconds after the switch, with the switch and the rollback marked, and a legend."""
    clock = clock or Clock()
    samples, sla_p95_ms = data["samples"], float(data["sla_p95_ms"])
    metrics = data.get("metrics") or {}
    if samples:
        began = _when(samples[0]["ts"]) - timedelta(seconds=float(samples[0]["offset_s"]))
    else:
        began = _when(marks[0]["ts"]) if marks else datetime.now(UTC)
    switch = next((m for m in marks if m["kind"] == "switch"), None)
    origin = _when(switch["ts"]) if switch and _when(switch["ts"]) <= began + timedelta(seconds=5) else began
    start_s = (began - origin).total_seconds()
    times = [start_s + float(s["offset_s"]) for s in samples]
    times += [start_s + float(s[0]) for m in metrics.values() for s in m["samples"]]
    near = [m for m in marks if abs((_when(m["ts"]) - began).total_seconds()) <= 120]
    times += [(_when(m["ts"]) - origin).total_seconds() for m in near]
    lo, hi = min([0.0, *times]), max([1.0, *times])
    hi += (hi - lo) * 0.02
    frame = _frame(300, lo, hi, near, origin)
    top = max([sla_p95_ms * 1.2, *(float(s["latency_ms"]) for s in samples)]) or 1.0
    step = _nice_step(top, 5)
    top = math.ceil(top / step - 1e-9) * step  # the axis ends on a labelled tick
    yticks = _ticks(0.0, top, 5)
    y = _Scale(0.0, top, frame["bottom"], _TOP)
    x = frame["x"]
    dots = [
        {"x": x(t), "y": y(float(s["latency_ms"])), "color": _COLORS["ok" if s["ok"] else "bad"], "square": False,
         "title": f"{clock.at(s['ts'])}: {s['status']} in {s['latency_ms']} ms" + (f" {s['error']}" if s.get("error") else "")}
        for t, s in zip(times, samples, strict=False)
    ]  # fmt: skip
    summary = data["summary"]
    caption = (
        f"{summary['probes']} probes of {summary['url']}: p50 {summary['p50_ms']} ms, "
        f"p95 {summary['p95_ms']} ms, max {summary['max_ms']} ms, error rate {float(summary['error_rate']):.1%}, "
        f"alert {'FIRED' if summary['alert_fired'] else 'not fired'}"
        + (f"; breach: {summary['breach']}" if summary["breach"] else "")
    )
    what = "the switch" if origin != began else "the start of monitoring"
    legend = [
        ("line", _COLORS["latency"], "probe latency"),
        ("dot", _COLORS["ok"], "probe OK"),
        ("dot", _COLORS["bad"], "probe failed"),
        ("dash", _COLORS["threshold"], f"SLA p95 {sla_p95_ms:g} ms"),
        *(
            ("vline", _COLORS[k], k)
            for k in ("switch", "rollback")
            if any(m["kind"] == k for m in frame["marks"])
        ),
    ]
    window = clock.span(samples[0]["ts"], samples[-1]["ts"]) if samples else "no probe ran"
    moments = "; ".join(f"{m['label']} at {clock.at(m['ts'])}" for m in near)
    chart = {
        **frame,
        "aria": "probe latency per monitoring probe, with the SLA, the switch and the rollback",
        "ytitle": "probe latency (ms)",
        "xtitle": f"seconds after {what} at {clock.at(origin.isoformat())}",
        "yticks": [{"y": y(v), "label": f"{v:g}"} for v in yticks],
        "hlines": [{"y": y(sla_p95_ms), "label": f"SLA p95 {sla_p95_ms:g} ms"}],
        "points": " ".join(f"{d['x']},{d['y']}" for d in dots),
        "series_color": _COLORS["latency"],
        "dots": dots,
        "legend": _legend(legend, 300 - 14),
    }
    del chart["x"]
    return {
        "chart": chart,
        "caption": caption,
        "window": f"Monitoring window {window}" + (f"; {moments}" if moments else ""),
        "sla_p95_ms": sla_p95_ms,
        "metrics": [metric_chart(name, m, (lo, hi), start_s, near, origin) for name, m in metrics.items()],
        "data_files": "artifacts/monitor.csv" + (", artifacts/metrics.csv" if metrics else ""),
    }


def metric_chart(
    name: str,
    m: Mapping[str, Any],
    span: tuple[float, float],
    start_s: float = 0.0,
    marks: Sequence[Mapping[str, Any]] = (),
    origin: datetime | None = None,
) -> dict[str, Any]:
    """One [monitor.metrics] query's evaluations on the probe chart's time axis, its threshold drawn: the value
    per evaluation (failed ones in red, no data as a red square on the axis), max and min as dashed lines."""
    samples = m["samples"]  # [offset_s, value or None, ok, words]
    bounds = [float(b) for b in (m.get("max"), m.get("min")) if b is not None]
    values = [float(s[1]) for s in samples if s[1] is not None]
    top, bottom = max([*values, *bounds, 0.0]), min([*values, *bounds, 0.0])
    margin = (top - bottom) * 0.15 or 1.0
    top, bottom = top + margin, bottom if bottom >= 0 else bottom - margin
    frame = _frame(240, span[0], span[1], marks, origin or datetime.now(UTC))
    yticks = _ticks(bottom, top, 4)
    y = _Scale(bottom, top, frame["bottom"], _TOP)
    x = frame["x"]
    unit = str(m.get("unit") or "")
    dots = [
        {"x": x(start_s + float(t)), "y": y(float(v) if v is not None else bottom), "square": v is None,
         "color": _COLORS["ok" if ok else "bad"], "title": f"+{float(t):.1f} s: {words}"}
        for t, v, ok, words in samples
    ]  # fmt: skip
    hlines: list[dict[str, Any]] = [
        {"y": y(float(bound)), "label": f"{label} {float(bound):g} {unit}".strip()}
        for label, bound in (("max", m.get("max")), ("min", m.get("min")))
        if bound is not None
    ]
    caption = (
        f"{name}: {m['query']} ({m['threshold']}); {m['evaluations']} evaluations, {m['failed']} out of threshold "
        f"or without data; last: {m['last']}"
    )
    legend = [
        ("line", _COLORS["metric"], name),
        ("dot", _COLORS["ok"], "within threshold"),
        ("dot", _COLORS["bad"], "out of threshold"),
        ("square", _COLORS["bad"], "no data"),
        *(("dash", _COLORS["threshold"], str(h["label"])) for h in hlines),
        *(
            ("vline", _COLORS[k], k)
            for k in ("switch", "rollback")
            if any(mk["kind"] == k for mk in frame["marks"])
        ),
    ]
    chart = {
        **frame,
        "aria": f"metric {name} per evaluation, with its threshold",
        "ytitle": f"{name}{' (' + unit + ')' if unit else ''}",
        "xtitle": "seconds, on the probe chart's axis",
        "yticks": [{"y": y(v), "label": f"{v:.4g}"} for v in yticks],
        "hlines": hlines,
        "points": " ".join(f"{d['x']},{d['y']}" for d in dots if not d["square"]),
        "series_color": _COLORS["metric"],
        "dots": dots,
        "legend": _legend(legend, 240 - 14),
    }
    del chart["x"]
    failed = any(d["color"] != _COLORS["ok"] for d in dots)
    return {"name": name, "chart": chart, "caption": caption, "cls": "bad" if failed else "ok"}
