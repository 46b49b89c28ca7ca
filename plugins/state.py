"""The run's state and data model: one object per session, registered as the plugin "runbook".

Fed by pytest's reports (plugins.flow, plugins.evidence) and by the runbook's own events (the fixtures call the
recorder methods of `RunbookRun`); writers append each event as it happens (journal, timeline), renderers read
the events at the end (JUnit XML, report.html, the terminal summary). A writer that fails is caught, logged and
reported on its own: evidence must never abort a recovery.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pytest

from drivers.base import ActionResult, plain_error
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
    reason: str = ""  # --reason TEXT: why this run, in the operator's words (journalled in run.start)
    env_argument: str = "--env NAME"  # how the environment was given, repeated in rerun hints
    # "-n 2" when pytest-xdist runs this session on workers (this process is then the controller)
    parallel: str = ""
    dist: str = "no"  # xdist's --dist mode of a parallel run


@dataclass
class PhaseRecord:
    id: str
    nodeids: list[str] = field(default_factory=list)
    outcome: str | None = None  # passed | failed | blocked | skipped
    reason: str = ""
    started: str | None = None
    ended: str | None = None
    finished: set[str] = field(default_factory=set)  # nodeids whose teardown report arrived


class Writer(Protocol):
    name: str

    def write(self, event: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


class RunbookRun:
    """One runbook session: its identity, its environment, its plan and gate, and its journal of events.

    Fixtures and plugins share it through `config.stash[run_key]`. The journal is the model: phases and
    fixtures record typed events through the recorder methods below (each event has one timestamp, the one
    journalled), and everything the summary says (versions from -> to, slots, rollback and its result,
    approver, site down, outcome) is derived from those events, never set by a test.
    """

    def __init__(
        self, env: Environment, options: RunOptions, rootdir: Path, *, worker_of: str | None = None
    ) -> None:
        self.env = env  # the one environment: replaced once by the Lab-filled one when the Lab starts
        self.options = options
        self.rootdir = rootdir
        # A worker of a parallel run (plugins.distributed) has its controller's run id, writes no evidence file
        # and keeps its events in `outbox` until they travel to the controller with a test report.
        self.worker = worker_of is not None
        self.run_id = worker_of or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.outbox: list[dict[str, Any]] = []
        self.flow: str | None = None
        self.rows: frozenset[str] = frozenset()
        self.phases: dict[str, PhaseRecord] = {}
        self.bundle: Path | None = None
        self.events: list[dict[str, Any]] = []
        self.writers: list[Writer] = []
        self.writer_errors: list[str] = []
        self.current_phase: str | None = None
        self.current_nodeid: str | None = None
        self.blocked_by: tuple[str, str] | None = None
        self.item_outcomes: dict[str, str] = {}  # nodeid -> passed | failed | skipped | blocked
        self.journal_last_hash: str | None = None
        self.reports: dict[str, list[pytest.TestReport]] = {}  # nodeid -> setup/call/teardown reports
        self.config_problems: list[str] = []  # the environment file's own problems, reported by preflight
        self._lock = threading.RLock()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.reports.setdefault(report.nodeid, []).append(report)

    # --- the journal ----------------------------------------------------------------------------------
    def record(
        self, kind: str, data: Mapping[str, Any] | None = None, *, phase: str | object | None = ...
    ) -> None:
        """Append an event to every writer; a writer that fails is reported, never raised."""
        with self._lock:
            event = {
                "ts": now_iso(),
                "phase": self.current_phase if phase is ... else phase,
                "nodeid": self.current_nodeid,
                "kind": kind,
                "data": dict(data or {}),
            }
            self.append(event)

    def append(self, event: dict[str, Any]) -> None:
        """Give an event, stamped already, to every writer and keep it (also for events a worker recorded)."""
        with self._lock:
            for writer in self.writers:
                try:
                    writer.write(event)
                except Exception as exc:  # noqa: BLE001 - a broken writer must not stop a recovery
                    message = (
                        f"evidence writer {writer.name} failed on a {event['kind']} event: {plain_error(exc)}"
                    )
                    log.error(message)
                    self.writer_errors.append(message)
            self.events.append(event)
            if self.worker:
                self.outbox.append(event)

    def take_outbox(self) -> list[dict[str, Any]]:
        """A worker's events recorded since the last call, as plain JSON data (they cross a process boundary)."""
        with self._lock:
            events, self.outbox = self.outbox, []
        return [json.loads(json.dumps(e, default=str)) for e in events]

    # --- recorders: one typed event each ----------------------------------------------------------------
    def action(self, action: ActionResult, *, phase: str | object | None = ...) -> None:
        """Something done to a system (stop, deploy, start, switch, a browser, a scan)."""
        self.record("action", asdict(action), phase=phase)

    def approval(self, approver: str, **data: Any) -> None:
        self.record("approval", {"approver": approver, **data})

    def version(self, role: str, version: str | None, why: str) -> None:
        """A version the run learnt: `from` (served before), `to` (serves now), `expected` (what the next
        smoke must find)."""
        assert role in ("from", "to", "expected"), role
        self.record("version", {"role": role, "version": version, "why": why})

    def rollback(self, **data: Any) -> None:
        """A rollback decision or a rollback that ran (`result` succeeded or failed)."""
        self.record("rollback", data)

    def notified(self, **data: Any) -> None:
        """A notification and how its delivery went (delivered | failed, attempts, target)."""
        self.record("notify", data)

    def site_is_down(self, what: str, message: str) -> None:
        self.record("site.down", {"message": message, "what": what})

    def note(self, message: str, **data: Any) -> None:
        self.record("note", {"message": message, **data})

    def result(self, kind: str, **data: Any) -> None:
        """A row's structured result (`axe.result`, `zap.result`, `e2e.command`, `monitor.result`): the
        report renders its section from this event."""
        self.record(kind, data)

    def warn(self, message: str, **data: Any) -> None:
        """Something an operator must read, that does not stop the flow (e.g. a notification not delivered)."""
        self.record("warning", {"message": message, **data})

    def close_writers(self) -> None:
        for writer in self.writers:
            try:
                writer.close()
            except Exception as exc:  # noqa: BLE001 - likewise when closing
                self.writer_errors.append(
                    f"evidence writer {writer.name} failed to close: {plain_error(exc)}"
                )

    # --- what the events say ----------------------------------------------------------------------------
    def of_kind(self, kind: str) -> list[Mapping[str, Any]]:
        """The data of every event of `kind`, in order."""
        return [e["data"] for e in self.events if e["kind"] == kind]

    def _version(self, role: str) -> str | None:
        found = [d.get("version") for d in self.of_kind("version") if d.get("role") == role]
        return str(found[-1]) if found and found[-1] is not None else None

    @property
    def version_from(self) -> str | None:
        return self._version("from")

    @property
    def version_to(self) -> str | None:
        return self._version("to")

    @property
    def expected_version(self) -> str | None:
        return self._version("expected")

    def _rollbacks_ran(self) -> list[Mapping[str, Any]]:
        return [d for d in self.of_kind("rollback") if d.get("result") in ROLLBACK_RAN]

    @property
    def rollback_ran(self) -> bool:
        return bool(self._rollbacks_ran())

    @property
    def rollback_result(self) -> str | None:
        ran = self._rollbacks_ran()
        return str(ran[-1]["result"]) if ran else None

    @property
    def restore_result(self) -> str | None:
        """The undo of a failed flow on a node (restore-on-failure), if it ran."""
        ran = [d for d in self._rollbacks_ran() if "node" in d]
        return f"{ran[-1]['result']}: {ran[-1].get('detail') or ''}" if ran else None

    @property
    def site_down(self) -> str | None:
        """What is down and could not be brought back: the loudest fact of a run."""
        down = self.of_kind("site.down")
        return str(down[-1].get("what")) if down else None

    @property
    def approver(self) -> str | None:
        # An answer of skip or abort at a --step prompt is not an approval.
        given = [d for d in self.of_kind("approval") if d.get("answer") in (None, "yes")]
        return str(given[-1]["approver"]) if given else None

    @property
    def outcome(self) -> str | None:
        end = self.of_kind("run.end")
        return str(end[-1]["outcome"]) if end else None

    @property
    def warnings(self) -> list[str]:
        return [self.env.redact(str(d.get("message", ""))) for d in self.of_kind("warning")]

    @property
    def notifications(self) -> list[Mapping[str, Any]]:
        return self.of_kind("notify")

    @property
    def lab(self) -> Mapping[str, Any]:
        """The Lab this run used: urls, reused (kept by an earlier --keep-lab); empty without one."""
        labs = self.of_kind("lab")
        return labs[-1] if labs else {}

    @property
    def artifacts(self) -> Path:
        assert self.bundle is not None, "the evidence bundle is created when the run starts"
        return self.bundle / "artifacts"

    def versions_words(self) -> str:
        """Versions from -> to in words; a release that was rolled back is named, not hidden by "1.0.0 -> 1.0.0"."""
        start, end = self.version_from or "unknown", self.version_to or "not reached"
        tried = next(
            (d.get("from") for d in reversed(self.of_kind("rollback"))
             # A rollback that undid something (traffic back to a slot, a restore on a node), not RB-3 itself.
             if d.get("result") == "succeeded" and d.get("from") and ("to_slot" in d or "node" in d)),
            None,
        )  # fmt: skip
        if tried and tried != end:
            return f"{start} -> {tried}, rolled back: {end} serves"
        return f"{start} -> {end}"

    def outcome_words(self) -> str:
        site_down = self.site_down
        down = f"SITE DOWN: {site_down}. " if site_down else ""
        if self.outcome == "passed" and not site_down:
            return "PASSED: every phase that ran passed."
        failed = [p for p in self.phases.values() if p.outcome == "failed"]
        if failed:
            first = failed[0]
            return f"{down}FAILED at {first.id}: {first.reason or 'no reason given'}"
        return f"{down}FAILED"


ROLLBACK_RAN = frozenset({"succeeded", "failed"})  # a rollback event with one of these results ran


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
    "run.start": lambda d: (
        f"run started: env {d.get('env')}, flow {d.get('flow')}"
        + (f", by {d['operator'].get('user')}@{d['operator'].get('host')}" if d.get("operator") else "")
        + (f", reason: {d['reason']}" if d.get("reason") else "")
    ),
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
    "approval": lambda d: (
        f"approved by {d.get('approver')}"
        if d.get("answer") in (None, "yes", "retry")
        else f"{d.get('answer')} by {d.get('approver')} at the {d.get('prompt') or 'step'} prompt"
    ),
    "rollback": lambda d: (
        f"rollback {d.get('from') or 'unknown'} -> {d.get('to') or 'unknown'}: {d.get('result')} ({d.get('reason')})"
    ),
    "finding": lambda d: (
        f"finding {d.get('tool')} {d.get('id')} ({d.get('impact') or d.get('risk')}) on {d.get('page')}"
    ),
    "warning": lambda d: f"WARNING: {d.get('message')}",
    "site.down": lambda d: str(d.get("message", "SITE DOWN")),
    "note": lambda d: str(d.get("message", "")),
    "version": lambda d: f"version {d.get('role')}: {d.get('version') or 'unknown'} ({d.get('why')})",
    "lab": lambda d: (
        f"Lab {'reused' if d.get('reused') else 'started'}: "
        + ", ".join(f"{k} {v}" for k, v in (d.get("urls") or {}).items())
    ),
    "axe.result": lambda d: (
        f"axe-core on {len(d.get('pages') or [])} page(s): {len(d.get('rows') or [])} finding(s)"
    ),
    "zap.result": lambda d: f"security scan of {d.get('target')}: {d.get('gate')}",
    "e2e.command": lambda d: f"regression command: {d.get('outcome')}",
    "monitor.result": lambda d: (
        f"monitoring: {(d.get('summary') or {}).get('probes')} probes, p95 {(d.get('summary') or {}).get('p95_ms')} ms"
        + (f", breach: {d['summary']['breach']}" if (d.get("summary") or {}).get("breach") else "")
    ),
    "retention": lambda d: "retention, pruned: " + (", ".join(d.get("pruned") or []) or "nothing was due"),
}
