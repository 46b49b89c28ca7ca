"""The run's state and data model: one object per session, registered as the plugin "runbook".

Fed by pytest's reports (plugins.flow, plugins.evidence) and by the runbook's own events (the fixtures call
`RunbookRun.record`); separate writers render it (journal, timeline, JUnit XML, HTML summary). A writer that
fails is caught, logged and reported on its own: evidence must never abort a recovery.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pytest

from drivers.base import plain_error
from drivers.config import Environment

log = logging.getLogger("runbook")

run_key = pytest.StashKey["RunbookRun"]()


@dataclass
class RunOptions:
    evidence_dir: Path
    approved_by: str | None = None
    lab_faults: tuple[str, ...] = ()
    keep_lab: bool = False
    plan: bool = False
    rollback_policy: str = "on-failure"
    selenium_remote: str = ""
    confirm_env: str | None = None
    env_argument: str = "--env NAME"  # how the environment was given, repeated in rerun hints


@dataclass
class PhaseRecord:
    id: str
    nodeids: list[str] = field(default_factory=list)
    outcome: str | None = None  # passed | failed | blocked | skipped
    reason: str = ""
    started: str | None = None
    ended: str | None = None


class Writer(Protocol):
    name: str

    def write(self, event: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


class RunbookRun:
    """Everything one runbook session knows; fixtures and plugins share it through `config.stash[run_key]`."""

    def __init__(self, env: Environment, options: RunOptions, rootdir: Path) -> None:
        self.env = env
        self.options = options
        self.rootdir = rootdir
        self.run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.flow: str | None = None
        self.rows: frozenset[str] = frozenset()
        self.phases: dict[str, PhaseRecord] = {}
        self.bundle: Path | None = None
        self.events: list[dict[str, Any]] = []
        self.writers: list[Writer] = []
        self.writer_errors: list[str] = []
        self.warnings: list[str] = []
        self.notifications: list[dict[str, Any]] = []
        self.current_phase: str | None = None
        self.current_nodeid: str | None = None
        self.blocked_by: tuple[str, str] | None = None
        self.item_outcomes: dict[str, str] = {}  # nodeid -> passed | failed | skipped | blocked
        self.version_from: str | None = None
        self.version_to: str | None = None
        self.expected_version: str | None = None  # what DR-SMOKE's health must report, when the flow knows
        self.rollback_ran = False
        self.rollback_result: str | None = None
        self.restore_result: str | None = None  # the undo of a failed flow (restore-on-failure), if it ran
        self.site_down: str | None = None  # what is down and could not be brought back: the loudest fact
        self.approver: str | None = options.approved_by
        self.outcome: str | None = None
        self.service_state: str | None = None  # what the pre-rollback smoke found: up | degraded | stopped
        self.journal_last_hash: str | None = None
        self.lab_urls: dict[str, str] = {}
        self.lab_reused = False  # a Lab kept by an earlier --keep-lab, which this run leaves running
        self.effective_env: Environment = env
        self.report_sections: list[
            str
        ] = []  # extra HTML sections (monitoring chart, findings) for report.html
        self.reports: dict[str, list[pytest.TestReport]] = {}  # nodeid -> setup/call/teardown reports
        self.config_problems: list[str] = []  # the environment file's own problems, reported by preflight
        self._lock = threading.RLock()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.reports.setdefault(report.nodeid, []).append(report)

    # --- the runbook's own events -------------------------------------------------------------------
    def record(
        self, kind: str, data: Mapping[str, Any] | None = None, *, phase: str | object | None = ...
    ) -> None:
        """Append an event to every writer; a writer that fails is reported, never raised."""
        with self._lock:
            event = {
                "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "phase": self.current_phase if phase is ... else phase,
                "nodeid": self.current_nodeid,
                "kind": kind,
                "data": dict(data or {}),
            }
            for writer in self.writers:
                try:
                    writer.write(event)
                except Exception as exc:  # noqa: BLE001 - a broken writer must not stop a recovery
                    message = f"evidence writer {writer.name} failed on a {kind} event: {plain_error(exc)}"
                    log.error(message)
                    self.writer_errors.append(message)
            self.events.append(event)

    def warn(self, message: str, **data: Any) -> None:
        """Something an operator must read, that does not stop the flow (e.g. a notification not delivered)."""
        self.warnings.append(self.env.redact(message))
        self.record("warning", {"message": message, **data})

    def close_writers(self) -> None:
        for writer in self.writers:
            try:
                writer.close()
            except Exception as exc:  # noqa: BLE001 - likewise when closing
                self.writer_errors.append(
                    f"evidence writer {writer.name} failed to close: {plain_error(exc)}"
                )

    # --- questions the plugins and the report ask ---------------------------------------------------
    @property
    def artifacts(self) -> Path:
        assert self.bundle is not None, "the evidence bundle is created when the run starts"
        return self.bundle / "artifacts"

    def versions_words(self) -> str:
        """Versions from -> to in words; a release that was rolled back is named, not hidden by "1.0.0 -> 1.0.0"."""
        start, end = self.version_from or "unknown", self.version_to or "not reached"
        tried = next(
            (e["data"].get("from") for e in reversed(self.events)
             # A rollback that undid something (traffic back to a slot, a restore on a node), not RB-3 itself.
             if e["kind"] == "rollback" and e["data"].get("result") == "succeeded" and e["data"].get("from")
             and ("to_slot" in e["data"] or "node" in e["data"])),
            None,
        )  # fmt: skip
        if tried and tried != end:
            return f"{start} -> {tried}, rolled back: {end} serves"
        return f"{start} -> {end}"

    def outcome_words(self) -> str:
        down = f"SITE DOWN: {self.site_down}. " if self.site_down else ""
        if self.outcome == "passed" and not self.site_down:
            return "PASSED: every phase that ran passed."
        failed = [p for p in self.phases.values() if p.outcome == "failed"]
        if failed:
            first = failed[0]
            return f"{down}FAILED at {first.id}: {first.reason or 'no reason given'}"
        return f"{down}FAILED"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def describe(event: Mapping[str, Any]) -> str:
    """One line of plain English for an event: the timeline and the report share it."""
    kind, data = event["kind"], event.get("data") or {}
    render: Callable[[Mapping[str, Any]], str] = _DESCRIBE.get(
        kind, lambda d: ", ".join(f"{k}={v}" for k, v in d.items())
    )
    return render(data)


def _slots(d: Mapping[str, Any]) -> str:
    if not d.get("live"):
        return f"which slot is live: unknown ({d.get('error') or 'the router did not say'})"
    return f"slots: {d.get('words') or str(d.get('live')) + ' live'}"


def _probe(d: Mapping[str, Any]) -> str:
    status = "no connection (-1)" if d.get("status") == -1 else f"HTTP {d.get('status')}"
    error = f" ({d['error']})" if d.get("error") else ""
    return f"probe {d.get('name')} {d.get('url')}: {status}{error} in {d.get('latency_ms')} ms"


def _action(d: Mapping[str, Any]) -> str:
    detail = d.get("detail") or {}
    extra = ", ".join(
        f"{k} {v}" for k, v in detail.items() if k in ("version", "package", "pid", "healthy_after_s")
    )
    return f"{d.get('name')} on {d.get('target')}: {d.get('result')} ({d.get('duration_s')} s{'; ' + extra if extra else ''})"


_DESCRIBE: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "run.start": lambda d: f"run started: env {d.get('env')}, flow {d.get('flow')}",
    "run.end": lambda d: (
        f"run ended {d.get('outcome')}: version {d.get('version_from') or 'unknown'} -> "
        f"{d.get('version_to') or 'not reached'}, rollback {'ran' if d.get('rollback_ran') else 'did not run'}"
        + (f"; SITE DOWN: {d['site_down']}" if d.get("site_down") else "")
    ),
    "slots": _slots,
    "phase.start": lambda d: "phase started",
    "phase.end": lambda d: f"phase {d.get('outcome')}" + (f": {d['reason']}" if d.get("reason") else ""),
    "probe": _probe,
    "action": _action,
    "notify": lambda d: (
        f"notify {d.get('event_type')}: {d.get('delivery')}" + (f" ({d['error']})" if d.get("error") else "")
    ),
    "approval": lambda d: f"approved by {d.get('approver')}",
    "rollback": lambda d: (
        f"rollback {d.get('from') or 'unknown'} -> {d.get('to') or 'unknown'}: {d.get('result')} ({d.get('reason')})"
    ),
    "finding": lambda d: (
        f"finding {d.get('tool')} {d.get('id')} ({d.get('impact') or d.get('risk')}) on {d.get('page')}"
    ),
    "warning": lambda d: f"WARNING: {d.get('message')}",
    "site.down": lambda d: str(d.get("message", "SITE DOWN")),
    "note": lambda d: str(d.get("message", "")),
}
