"""`python -m plugins.notify resend BUNDLE`: deliver the notifications a run could not.

A run queues every notification in its bundle's outbox (artifacts/notifications.jsonl) before sending it, then
records the delivery. When the webhook was down, the notification stays `failed` there. `resend` reads the
outbox, takes every notification whose last state is queued or failed, and delivers it with the webhook of the
environment file the bundle names (its `${VAR}` from the process environment, never stored anywhere), in the
environment's current `[notify] format`.

The bundle is sealed (its manifest covers the outbox), so nothing inside it changes: each delivery is recorded
in <evidence dir>/notifications/<bundle>.resent.jsonl, beside the outboxes retention keeps for
`notifications_days` (and prunes with them), and, for a remote environment, in its notification log
<timeline_dir>/notifications/<env>.jsonl (the path the run journalled). A second resend reads those records too:
what was delivered is never sent twice.

Exit codes: 0 every pending notification delivered, or nothing to resend (said in a sentence); 1 a webhook
that is down or refuses (what is not delivered stays queued); 2 a bad bundle or a bad environment file (named).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drivers.base import DriverError, plain_error
from drivers.config import ConfigError, Environment, load_environment
from drivers.notify import Notification, Notifier
from plugins.journal import MISSING_MANIFEST, NOT_SEALED, read_events, verify_bundle

OUTBOX = Path("artifacts") / "notifications.jsonl"
PENDING = frozenset({"queued", "failed"})
RESENT_SUFFIX = ".resent.jsonl"


class BadBundle(Exception):
    """The bundle or its environment cannot be used: exit 2, with the sentence."""


class WebhookDown(Exception):
    """Nothing can receive the notifications now: exit 1, with the sentence."""


def resent_path(bundle: Path) -> Path:
    """<evidence dir>/notifications/<bundle>.resent.jsonl: outside the sealed bundle, kept as its outbox is."""
    return bundle.parent / "notifications" / f"{bundle.name}{RESENT_SUFFIX}"


@dataclass
class Outbox:
    notes: dict[str, Notification]  # id -> the notification as queued
    last_state: dict[str, str]  # id -> queued | delivered | failed (resends included)

    def pending(self) -> list[Notification]:
        return [note for nid, note in self.notes.items() if self.last_state.get(nid) in PENDING]


def _read_jsonl(path: Path, what: str, *, torn_tail_ok: bool) -> list[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadBundle(f"{path}: cannot read the {what} ({plain_error(exc)})") from None
    records: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            if torn_tail_ok and number == len(lines):
                continue  # the torn last line of a killed run
            raise BadBundle(f"{path} line {number}: not a JSON record of the {what}") from None
        if not isinstance(record, dict):
            raise BadBundle(f"{path} line {number}: not a JSON object")
        records.append(record)
    return records


_NOTE_FIELDS = [f.name for f in fields(Notification)]


def read_outbox(bundle: Path) -> Outbox:
    notes: dict[str, Notification] = {}
    state: dict[str, str] = {}
    for record in _read_jsonl(bundle / OUTBOX, "notification outbox", torn_tail_ok=True):
        nid, what = record.get("id"), record.get("state")
        if not isinstance(nid, str) or not isinstance(what, str):
            raise BadBundle(f"{bundle / OUTBOX}: a record without an id and a state")
        if what == "queued":
            missing = [f for f in _NOTE_FIELDS if f not in record]
            if missing:
                raise BadBundle(f"{bundle / OUTBOX}: notification {nid} lacks {', '.join(missing)}")
            notes[nid] = Notification(**{f: record[f] for f in _NOTE_FIELDS})
        state[nid] = what
    resent = resent_path(bundle)
    if resent.is_file():
        for record in _read_jsonl(resent, "resend records", torn_tail_ok=True):
            if isinstance(record.get("id"), str) and isinstance(record.get("state"), str):
                state[record["id"]] = record["state"]
    return Outbox(notes, state)


@dataclass
class BundleRun:
    """What the bundle's journal says about the run that wrote it."""

    env_name: str
    env_file: Path
    lab_root: Path | None
    mirror: Path | None


def read_run(bundle: Path) -> BundleRun:
    journal = bundle / "evidence.jsonl"
    if not journal.is_file():
        raise BadBundle(f"{bundle}: no evidence.jsonl in it (not an evidence bundle?)")
    check = verify_bundle(bundle)
    if not check.ok and not set(check.problems) <= {NOT_SEALED, MISSING_MANIFEST}:
        raise BadBundle(
            f"{bundle}: the evidence was altered, so its notifications are not resent: "
            + "; ".join(check.problems[:3])
            + f" (details: python -m plugins.evidence verify {bundle})"
        )
    events = read_events(journal, strict=False)
    start = next((e["data"] for e in events if e.get("kind") == "run.start"), None)
    if not isinstance(start, dict) or not start.get("env_file"):
        raise BadBundle(f"{journal}: no run.start event naming the environment file")
    lab = next((e["data"] for e in reversed(events) if e.get("kind") == "lab"), None)
    mirrors = [e["data"]["mirror"] for e in events if e.get("kind") == "notify" and e["data"].get("mirror")]
    return BundleRun(
        env_name=str(start.get("env") or ""),
        env_file=Path(str(start["env_file"])),
        lab_root=Path(str(lab["root"])) if isinstance(lab, dict) and lab.get("root") else None,
        mirror=Path(mirrors[-1]) if mirrors else None,
    )


def load_env(run: BundleRun, env_file: Path | None) -> Environment:
    path = env_file or run.env_file
    if not path.is_file():
        hint = "" if env_file else "; give its current place with --env-file=PATH"
        raise BadBundle(f"{path}: the environment file the bundle names is not there{hint}")
    try:
        env = load_environment(path)
    except ConfigError as exc:
        raise BadBundle(str(exc)) from None
    var = env.unset.get("[notify] webhook_url")
    if var:
        raise BadBundle(
            f"{path}: [notify] webhook_url: ${{{var}}} is not set in the process environment (set {var})"
        )
    return env


def webhook_url(env: Environment, run: BundleRun) -> str:
    if env.is_lab:
        from lab import Lab

        lab = Lab.attach(run.lab_root) if run.lab_root is not None else None
        if lab is None:
            where = f" at {run.lab_root}" if run.lab_root else ""
            raise WebhookDown(
                f"the Lab that ran this bundle is not running{where}, so its webhook sink cannot receive "
                "anything: start a Lab (e.g. a drill with --keep-lab) and resend"
            )
        return lab.webhook_url
    if not env.notify.webhook_url:
        raise BadBundle(f"{env.source}: [notify] webhook_url is empty: there is nowhere to send to")
    return env.notify.webhook_url


def resend(bundle: Path, env_file: Path | None, out: Any = sys.stdout) -> int:
    """Deliver what the bundle's outbox still holds; the exit code of the command."""
    if not bundle.is_dir():
        raise BadBundle(f"{bundle}: no such folder (give a run's folder under reports/)")
    run = read_run(bundle)
    if not (bundle / OUTBOX).is_file():
        print(f"Nothing to resend: {bundle} sent no notifications (no {OUTBOX.as_posix()}).", file=out)
        return 0
    outbox = read_outbox(bundle)
    pending = outbox.pending()
    if not pending:
        print(
            f"Nothing to resend: every notification of {bundle.name} was delivered ({len(outbox.notes)} in all).",
            file=out,
        )
        return 0
    env = load_env(run, env_file)
    url = webhook_url(env, run)
    try:
        notifier = Notifier(
            url,
            env.notify.format,
            resent_path(bundle),
            timeout_s=env.notify.timeout_s,
            retries=env.notify.retries,
            redact=env.redact,
            mirror=run.mirror,
        )
    except DriverError as exc:
        raise BadBundle(f"{env.source}: [notify] format: {exc}") from None
    print(
        f"Resending {len(pending)} of {len(outbox.notes)} notification(s) of {bundle.name} to {notifier.target} "
        f"({env.notify.format})",
        file=out,
    )
    failed = 0
    for note in pending:
        delivery = notifier.deliver(note)
        notifier.record(
            {"state": delivery.delivery, **asdict(delivery), "resent": True, "bundle": bundle.name,
             "resent_at": datetime.now(UTC).isoformat(timespec="milliseconds")}
        )  # fmt: skip
        said = f"after {delivery.attempts} attempt(s)"
        if delivery.delivered:
            print(f"  {note.event_type} {note.id} (queued {note.created}): delivered {said}", file=out)
        else:
            failed += 1
            print(
                f"  {note.event_type} {note.id} (queued {note.created}): NOT delivered {said}: {delivery.error}",
                file=out,
            )
    where = f"{resent_path(bundle)}" + (f" and {run.mirror}" if run.mirror else "")
    if notifier.mirror_error:
        print(f"WARNING: the notification log could not be written: {notifier.mirror_error}", file=out)
    if failed:
        print(
            f"{failed} of {len(pending)} still not delivered: they stay queued; resend again when the webhook "
            f"answers. Recorded in {where}.",
            file=out,
        )
        return 1
    print(
        f"All {len(pending)} delivered. Recorded in {where}; the bundle itself is unchanged (still sealed).",
        file=out,
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m plugins.notify",
        description="Notifications of the runbook's evidence bundles.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    cmd = commands.add_parser(
        "resend",
        help="deliver every notification of a bundle that is still queued or failed, and record it",
        description="Exit 0 when everything pending was delivered (or nothing was pending), 1 when the webhook "
        "is down or refused, 2 on a bad bundle, environment file or usage.",
    )
    cmd.add_argument("bundle", metavar="BUNDLE", type=Path, help="a run's folder under reports/")
    cmd.add_argument(
        "--env-file",
        type=Path,
        default=None,
        help="the environment file to take the webhook from (default: the one the bundle names)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 2
    try:
        return resend(args.bundle, args.env_file)
    except BadBundle as exc:
        print(f"resend: {exc}", file=sys.stderr)
        return 2
    except WebhookDown as exc:
        print(f"resend: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
