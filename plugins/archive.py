"""What the runbook keeps besides the bundle itself: its .zip, the retention of the evidence directory, and the
dated timeline (playbook §7, §9).

- `--evidence-zip`: when the bundle is sealed and closed (`pytest_runbook_bundle_sealed`), the whole bundle is
  written to <evidence dir>/<bundle>.zip under its folder name: first as <bundle>.zip.partial, read back, synced,
  then renamed, so a half-written archive never has the finished name. The terminal summary names it and says
  how to check it (unzipped, `python -m plugins.evidence verify <bundle>`).
- Retention (`[retention]`, playbook §7): when a run's bundle starts, the evidence directory drops the bundles
  (and their .zip) whose name begins with the run id of a run older than `reports_days`. Only entries directly
  inside the evidence directory, never the current run, never a name that is not a run's, never through a
  symlink. Notifications are kept longer (`notifications_days`): a pruned bundle's outbox
  (artifacts/notifications.jsonl) is first copied to <evidence dir>/notifications/<bundle>.jsonl, and those
  copies go after `notifications_days`. One `retention` event says what was pruned, or that nothing was due.
- The dated timeline (playbook §9): Timeline_YYYY-MM-DD.md in the timeline folder gets a section for every run
  that has a bundle (rollback, Blue/Green and matrix-only runs), one line per significant event, appended and
  flushed as it happens, redacted. RB-5 checks it.

Order: plugins.evidence starts the bundle in its pytest_runtestloop wrapper; the wrapper here is `trylast`, so
it runs inside that one: the journal exists when the dated writer joins and the retention event is journalled.
The terminal summary runs after the seal: the terminal reporter's pytest_sessionfinish wrapper, registered
after the runbook's plugins, wraps plugins.evidence's, which seals before it returns.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import zipfile
from collections.abc import Callable, Generator, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from drivers.base import plain_error
from plugins.state import RunbookRun, describe, run_key

RUN_ID_FORMAT = "%Y%m%dT%H%M%SZ"
# A bundle's name: <run id>_<env>_<flow>[-n]; its archive adds .zip, an archive being written .zip.partial.
_BUNDLE_NAME = re.compile(r"(?P<run_id>\d{8}T\d{6}Z)_[\w.-]+")
ZIP_SUFFIX = ".zip"
PARTIAL_SUFFIX = ".zip.partial"
# The events the dated timeline records (playbook §9); the bundle's timeline.md has every event.
DATED_KINDS = frozenset({"approval", "phase.end", "action", "rollback", "site.down", "notify", "run.end"})
_DATED_LINE = re.compile(r"^- \d{2}:\d{2}:\d{2}\.\d{3} (?P<phase>\S+): ", re.MULTILINE)


def _now() -> datetime:
    """The clock that retention measures ages with (the project's tests move it)."""
    return datetime.now(UTC)


def run_started(run_id: str) -> datetime | None:
    """When the run with this id started (UTC), or None when it is not a run id."""
    try:
        return datetime.strptime(run_id, RUN_ID_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def parse_evidence_name(name: str) -> tuple[str, str, datetime] | None:
    """(what, bundle name, run start) for an entry of the evidence directory that a run wrote: what is
    "bundle", "zip" or "partial zip". None for any other name: such an entry is never touched."""
    what, stem = "bundle", name
    for suffix, kind in ((PARTIAL_SUFFIX, "partial zip"), (ZIP_SUFFIX, "zip")):
        if name.endswith(suffix):
            what, stem = kind, name.removesuffix(suffix)
            break
    match = _BUNDLE_NAME.fullmatch(stem)
    started = run_started(match["run_id"]) if match else None
    return (what, stem, started) if started is not None else None


# --- the dated timeline ------------------------------------------------------------------------------------
def dated_timeline_name(run: RunbookRun) -> str:
    """Timeline_YYYY-MM-DD.md of the day the run started (UTC, the day of its run id): a run that crosses
    midnight keeps its one section in one file."""
    started = run_started(run.run_id)
    day: date = (started or _now()).date()
    return f"Timeline_{day.isoformat()}.md"


def dated_header(run: RunbookRun) -> str:
    """The heading of the run's section; the section runs to the next heading."""
    bundle = run.bundle.name if run.bundle is not None else "none"
    return f"## {run.run_id} {run.env.name} {run.flow}: evidence {bundle}, times in UTC"


def dated_line(event: Mapping[str, Any], redact: Callable[[str], str]) -> str:
    text = describe(event)
    data = event.get("data") or {}
    if event["kind"] == "approval" and data.get("for"):
        text += f" ({data['for']})"  # BG-3: the approval of the switch names both slots
    text = " ".join(redact(text).split())
    return f"- {event['ts'][11:23]} {event['phase'] or '-'}: {text}\n"


def dated_section_phases(run: RunbookRun, text: str) -> set[str] | None:
    """The phases that have a line in this run's section of a dated timeline's text; None without a section."""
    header = run.env.redact(dated_header(run))  # as the writer wrote it
    lines = text.splitlines()
    if header not in lines:
        return None
    section: list[str] = []
    for line in lines[lines.index(header) + 1 :]:
        if line.startswith("## "):
            break
        section.append(line)
    return {m["phase"] for m in _DATED_LINE.finditer("\n".join(section))}


class DatedTimelineWriter:
    """Timeline_YYYY-MM-DD.md: a heading for the run, then one line per significant event (DATED_KINDS),
    appended and flushed as it happens, redacted (the writer protocol of plugins.evidence.TimelineWriter)."""

    def __init__(self, run: RunbookRun, path: Path) -> None:
        self.run, self.path = run, path
        self.name = f"dated timeline {path}"
        title = "" if path.exists() else f"# {path.stem.replace('_', ' ')} (playbook §9)\n"
        self._append(f"{title}\n{run.env.redact(dated_header(run))}\n\n")

    def write(self, event: Mapping[str, Any]) -> None:
        if event["kind"] in DATED_KINDS:
            self._append(dated_line(event, self.run.env.redact))

    def _append(self, text: str) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()

    def close(self) -> None:
        return None


def start_dated_timeline(run: RunbookRun) -> None:
    """Append the dated writer to the run's writers; a timeline that cannot be started is an evidence writer
    error, never a stopped run."""
    # Imported here: fixtures.environment is a plugin of its own, registered (and assertion-rewritten) later.
    from fixtures.environment import timeline_dir_for

    try:
        directory = timeline_dir_for(run)
        directory.mkdir(parents=True, exist_ok=True)
        writer = DatedTimelineWriter(run, directory / dated_timeline_name(run))
    except Exception as exc:  # noqa: BLE001 - evidence must never abort a recovery
        run.writer_errors.append(f"the dated timeline could not be started: {plain_error(exc)}")
        return
    run.writers.append(writer)


# --- retention ---------------------------------------------------------------------------------------------
NOTIFICATIONS = "notifications"  # <evidence dir>/notifications/<bundle>.jsonl: outboxes of pruned bundles
OUTBOX = Path("artifacts") / "notifications.jsonl"


def prune_evidence(run: RunbookRun, now: datetime) -> dict[str, Any]:
    """Prune the evidence directory (module docstring); returns the data of the `retention` event."""
    assert run.bundle is not None
    keep = run.env.retention
    root = run.options.evidence_dir.resolve(strict=True)
    cutoff = now - timedelta(days=keep.reports_days)
    notifications_cutoff = now - timedelta(days=keep.notifications_days)
    counts = {"bundle": 0, "zip": 0, "partial zip": 0, "notifications": 0}
    kept: list[str] = []
    pruned: list[str] = []
    refused: list[dict[str, str]] = []
    failed: list[dict[str, str]] = []
    for entry in sorted(root.iterdir()):
        parsed = parse_evidence_name(entry.name)
        if parsed is None:
            continue  # not a run's name: never touched
        what, stem, started = parsed
        if stem == run.bundle.name or stem.startswith(f"{run.run_id}_") or started >= cutoff:
            continue  # the current run, or not due
        why, is_dir = _refusal(entry, root, what)
        if why:
            refused.append({"name": entry.name, "why": why})
            continue
        try:
            if is_dir and started >= notifications_cutoff and (entry / OUTBOX).is_file():
                # Playbook §7 keeps notifications longer than reports: the outbox outlives its bundle.
                (root / NOTIFICATIONS).mkdir(exist_ok=True)
                shutil.copy2(entry / OUTBOX, root / NOTIFICATIONS / f"{entry.name}.jsonl")
                kept.append(f"{NOTIFICATIONS}/{entry.name}.jsonl")
            if is_dir:
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError as exc:
            failed.append({"name": entry.name, "error": plain_error(exc)})
            continue
        counts[what] += 1
        pruned.append(entry.name)
    _prune_notifications(root, notifications_cutoff, counts, pruned, refused, failed)
    return {
        "reports_days": keep.reports_days,
        "notifications_days": keep.notifications_days,
        "evidence_dir": str(root),
        "pruned": pruned,
        "counts": {"bundles": counts["bundle"], "zips": counts["zip"], "partial_zips": counts["partial zip"],
                   "notification_files": counts["notifications"]},
        "kept_notifications": kept,
        "refused": refused,
        "failed": failed,
    }  # fmt: skip


def _prune_notifications(
    root: Path,
    cutoff: datetime,
    counts: dict[str, int],
    pruned: list[str],
    refused: list[dict[str, str]],
    failed: list[dict[str, str]],
) -> None:
    """<evidence dir>/notifications/<bundle>.jsonl older than notifications_days; nothing else there."""
    folder = root / NOTIFICATIONS
    if folder.is_symlink() or not folder.is_dir():
        return
    for entry in sorted(folder.iterdir()):
        parsed = (
            parse_evidence_name(entry.name.removesuffix(".jsonl")) if entry.name.endswith(".jsonl") else None
        )
        if parsed is None or parsed[2] >= cutoff:
            continue
        if entry.is_symlink() or not entry.is_file():
            refused.append(
                {"name": f"{NOTIFICATIONS}/{entry.name}", "why": "not a plain file: never followed"}
            )
            continue
        try:
            entry.unlink()
        except OSError as exc:
            failed.append({"name": f"{NOTIFICATIONS}/{entry.name}", "error": plain_error(exc)})
            continue
        counts["notifications"] += 1
        pruned.append(f"{NOTIFICATIONS}/{entry.name}")


def _refusal(entry: Path, root: Path, what: str) -> tuple[str, bool]:
    """Why an old entry named like a run's is left alone ("" when it may go), and whether it is a folder."""
    if entry.is_symlink():
        target = entry.resolve()
        where = "inside" if target.is_relative_to(root) else "outside"
        return f"a symlink to {target} ({where} the evidence directory): never followed", False
    if entry.resolve().parent != root:
        return "not directly inside the evidence directory", False
    is_dir = entry.is_dir()
    if is_dir != (what == "bundle"):
        return f"named like a {what} but is {'a folder' if is_dir else 'not a folder'}", is_dir
    return "", is_dir


def apply_retention(run: RunbookRun) -> None:
    """Prune and journal one `retention` event; a problem is a warning of the run, never a stopped run."""
    try:
        data = prune_evidence(run, _now())
    except Exception as exc:  # noqa: BLE001 - retention must never abort a recovery
        run.warn(f"retention: the evidence directory was not pruned: {plain_error(exc)}")
        return
    run.record("retention", data, phase=None)
    for failure in data["failed"]:
        run.warn(f"retention: could not prune {failure['name']}: {failure['error']}")


# --- the .zip ----------------------------------------------------------------------------------------------
def zip_path(bundle: Path) -> Path:
    return bundle.with_name(bundle.name + ZIP_SUFFIX)


def write_zip(bundle: Path) -> Path:
    """<bundle>.zip beside the bundle, holding the whole bundle under its folder name. Written as
    <bundle>.zip.partial, read back and synced, then renamed: the finished name only ever holds a whole archive.
    Symlinks are left out (never followed out of the bundle)."""
    final = zip_path(bundle)
    partial = bundle.with_name(bundle.name + PARTIAL_SUFFIX)
    try:
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, strict_timestamps=False) as zf:
            for folder, dirs, files in os.walk(bundle):
                dirs.sort()
                here = Path(folder)
                if not here.is_symlink():
                    zf.write(here, (Path(bundle.name) / here.relative_to(bundle)).as_posix())
                for name in sorted(files):
                    path = here / name
                    if not path.is_symlink():
                        zf.write(path, (Path(bundle.name) / path.relative_to(bundle)).as_posix())
        with zipfile.ZipFile(partial) as zf:
            broken = zf.testzip()
        if broken is not None:
            raise zipfile.BadZipFile(f"{broken} does not read back from {partial.name}")
        with partial.open("rb") as fh:
            os.fsync(fh.fileno())
        partial.replace(final)
        _sync_folder(final.parent)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return final


def _sync_folder(folder: Path) -> None:
    """Make the rename durable where the OS allows a folder to be synced (not on Windows)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --- the plugin --------------------------------------------------------------------------------------------
class Archive:
    """Registered as "runbook-archive": it keeps the config, which the runbook's own hooks do not receive."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.sealed = False
        self.zip: Path | None = None
        self.zip_error = ""

    @property
    def wanted(self) -> bool:
        return bool(self.config.getoption("runbook_evidence_zip", False))

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, object, object]:
        """Inside plugins.evidence's wrapper: the bundle and its journal exist here."""
        run = session.config.stash.get(run_key, None)
        # A worker of a parallel run writes no evidence: its controller keeps the timeline and the retention.
        if run is not None and run.bundle is not None and not getattr(run, "worker", False):
            start_dated_timeline(run)
            apply_retention(run)
        return (yield)

    def pytest_runbook_bundle_sealed(self, run: RunbookRun) -> None:
        self.sealed = True
        if not self.wanted or run.bundle is None:
            return
        try:
            self.zip = write_zip(run.bundle)
        except Exception as exc:
            self.zip_error = f"{zip_path(run.bundle)} not written: {plain_error(exc)}"
            raise RuntimeError(f"--evidence-zip: {self.zip_error}") from exc

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: Any, config: pytest.Config) -> None:
        """After plugins.evidence's lines of the "runbook evidence" section."""
        run = config.stash.get(run_key, None)
        if run is None or run.bundle is None or not self.wanted:
            return
        tr = terminalreporter
        if self.zip is not None:
            tr.write_line(f"Archive:  {self.zip}")
            tr.write_line(
                f"          check it: python -m zipfile -e {self.zip} DIR, then (in the project) "
                f"python -m plugins.evidence verify DIR/{run.bundle.name}"
            )
        elif self.zip_error:
            tr.write_line(f"Archive:  NOT WRITTEN: {self.zip_error}", red=True)
        elif not self.sealed:
            tr.write_line("Archive:  not written: the bundle was not sealed before this summary", red=True)


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(Archive(config), "runbook-archive")
