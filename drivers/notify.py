"""Notify verb: the deploy-notification webhook (playbook notify-deploy.ps1).

Outbox first: every notification is appended to notifications.jsonl (state "queued") before it is sent, then
its delivery is appended (state "delivered" or "failed"); with a mirror (a remote environment's
<timeline_dir>/notifications/<env>.jsonl, playbook §3.2) every line goes there too. A delivery failure is
returned, never raised: a rollback must not stop because Teams is down.

Formats (`[notify] format`): `teams-workflow` (a Teams Workflows webhook: a message carrying an Adaptive Card
1.4), `teams` (the legacy Office 365 connector MessageCard), `slack` (text + Block Kit blocks) and `generic`
(the notification as plain JSON). Each renders the same facts.

Retries: a connection failure or a 5xx/429 answer is retried (`retries` times, exponential backoff). A 429 or
503 with `Retry-After` (seconds or an HTTP-date) waits what the webhook asked, up to `retry_after_cap_s`; a
webhook that asks for longer is not retried early: the delivery fails, says so, and stays queued for
`python -m plugins.notify resend BUNDLE`. Each wait is recorded in the delivery (`retry_after`).
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.message import Message
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from drivers.base import Registry, plain_error, quoted

EVENT_TYPES = ("RolledBack", "Deployed", "Approved", "Switched", "Failed", "Alert")
_COLOURS = {
    "RolledBack": "D83B01",
    "Deployed": "107C10",
    "Approved": "0078D4",
    "Switched": "008272",
    "Failed": "A4262C",
    "Alert": "A4262C",
}
# Adaptive Card TextBlock colours (the card's own palette, not hex).
_CARD_COLOURS = {
    "RolledBack": "Warning",
    "Deployed": "Good",
    "Approved": "Accent",
    "Switched": "Accent",
    "Failed": "Attention",
    "Alert": "Attention",
}
ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
ADAPTIVE_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
ADAPTIVE_VERSION = "1.4"  # what Teams Workflows' "post card in a chat or channel" renders
RETRY_AFTER_STATUSES = frozenset({429, 503})
SLACK_FIELDS_PER_SECTION = 10  # Block Kit: at most 10 fields in a section
SLACK_HEADER_MAX = 150  # Block Kit: a header's plain_text


@dataclass
class Notification:
    id: str
    event_type: str
    environment: str
    summary: str
    facts: dict[str, str]
    created: str

    @property
    def title(self) -> str:
        return f"MCMS {self.event_type}: {self.environment}"


@dataclass
class Delivery:
    id: str
    event_type: str
    delivery: str  # "delivered" | "failed"
    attempts: int
    http_status: int | None
    error: str | None
    duration_s: float
    target: str
    # One entry per answer that carried Retry-After: attempt, status, asked_s, waited_s, capped.
    retry_after: list[dict[str, Any]] = field(default_factory=list)

    @property
    def delivered(self) -> bool:
        return self.delivery == "delivered"


class PayloadFormat:
    """Renders a notification as the body one kind of webhook expects."""

    def body(self, note: Notification) -> dict[str, Any]:
        raise NotImplementedError


FORMATS: Registry[PayloadFormat] = Registry("notify format")


@FORMATS.register("generic")
class GenericFormat(PayloadFormat):
    def body(self, note: Notification) -> dict[str, Any]:
        return {"source": "mcms-dr-runbook", **asdict(note)}


@FORMATS.register("teams")
class TeamsFormat(PayloadFormat):
    # Office 365 connector MessageCard: what the legacy Teams incoming webhooks (connectors) accept.
    def body(self, note: Notification) -> dict[str, Any]:
        return {
            "@type": "MessageCard",
            "@context": "http://schema.org/extensions",
            "themeColor": _COLOURS.get(note.event_type, "605E5C"),
            "summary": note.summary,
            "title": note.title,
            "sections": [
                {
                    "activityTitle": note.summary,
                    "facts": [{"name": k, "value": v} for k, v in note.facts.items()],
                }
            ],
        }


@FORMATS.register("teams-workflow")
class TeamsWorkflowFormat(PayloadFormat):
    """A Teams Workflows webhook ("When a Teams webhook request is received" + post card): a message whose one
    attachment is an Adaptive Card. Workflows accept Adaptive Cards only, never the MessageCard."""

    def body(self, note: Notification) -> dict[str, Any]:
        card = {
            "$schema": ADAPTIVE_SCHEMA,
            "type": "AdaptiveCard",
            "version": ADAPTIVE_VERSION,
            "fallbackText": f"{note.title}: {note.summary}",
            "msteams": {"width": "Full"},
            "body": [
                {
                    "type": "TextBlock",
                    "text": note.title,
                    "size": "Large",
                    "weight": "Bolder",
                    "color": _CARD_COLOURS.get(note.event_type, "Default"),
                    "wrap": True,
                },
                {"type": "TextBlock", "text": note.summary, "wrap": True},
                {
                    "type": "FactSet",
                    "facts": [{"title": k, "value": v} for k, v in note.facts.items()],
                },
                {
                    "type": "TextBlock",
                    "text": f"Sent {note.created} by the MCMS DR runbook (notification {note.id})",
                    "isSubtle": True,
                    "size": "Small",
                    "wrap": True,
                },
            ],
        }
        return {
            "type": "message",
            "attachments": [{"contentType": ADAPTIVE_CARD, "contentUrl": None, "content": card}],
        }


def _slack_escape(text: str) -> str:
    # Slack's mrkdwn reserves &, < and > (links and mentions); everything else is shown as written.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@FORMATS.register("slack")
class SlackFormat(PayloadFormat):
    """A Slack incoming webhook: `text` (the notification and fallback) and Block Kit `blocks`."""

    def body(self, note: Notification) -> dict[str, Any]:
        lines = "\n".join(f"*{k}*: {v}" for k, v in note.facts.items())
        header = (
            note.title if len(note.title) <= SLACK_HEADER_MAX else note.title[: SLACK_HEADER_MAX - 1] + "…"
        )
        fields = [
            {"type": "mrkdwn", "text": f"*{_slack_escape(k)}*\n{_slack_escape(v)}"}
            for k, v in note.facts.items()
        ]
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": header}},
            {"type": "section", "text": {"type": "mrkdwn", "text": _slack_escape(note.summary)}},
        ]
        for start in range(0, len(fields), SLACK_FIELDS_PER_SECTION):
            blocks.append({"type": "section", "fields": fields[start : start + SLACK_FIELDS_PER_SECTION]})
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"{note.created} · {note.id}"}]}
        )
        return {
            "text": _slack_escape(f"MCMS {note.event_type} ({note.environment}): {note.summary}\n{lines}"),
            "blocks": blocks,
        }


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds to wait: delay-seconds or an HTTP-date (RFC 9110 §10.2.3); None if absent or
    unreadable (the usual backoff applies then)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class Notifier:
    """Queues each notification in the outbox (and its mirror), then sends it with bounded retries."""

    def __init__(
        self,
        webhook_url: str,
        payload_format: str,
        outbox: Path,
        *,
        timeout_s: float = 5.0,
        retries: int = 3,
        backoff_s: float = 0.1,
        retry_after_cap_s: float = 15.0,
        redact: Callable[[str], str] = lambda s: s,
        mirror: Path | None = None,
    ) -> None:
        self.webhook_url = webhook_url
        self.format_name = payload_format
        self.format = FORMATS.get(payload_format)()
        self.outbox = outbox
        self.mirror = mirror
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.retry_after_cap_s = retry_after_cap_s
        self.redact = redact
        self.mirror_error: str | None = None  # why the mirror could not be written, once
        self._lock = threading.Lock()
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @property
    def target(self) -> str:
        """Where notifications go, safe to show: scheme and host only (webhook paths carry tokens)."""
        parts = urlsplit(self.webhook_url)
        if not parts.hostname:
            return "(not configured)"
        # Host and port only: credentials in the netloc and tokens in the path stay out of the evidence.
        port = f":{parts.port}" if parts.port else ""
        return self.redact(f"{parts.scheme}://{parts.hostname}{port}/…")

    def reachable(self) -> tuple[int, float, str]:
        """GET the webhook host's root: (HTTP status or -1, latency ms, detail). Sends no notification.

        Any HTTP answer counts as reachable: webhooks often answer 404/405 to a GET of their root.
        """
        if not self.webhook_url:
            return -1, 0.0, "no webhook_url configured"
        parts = urlsplit(self.webhook_url)
        request = urllib.request.Request(f"{parts.scheme}://{parts.netloc}/", method="GET")
        start = time.perf_counter()
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                status, detail = response.status, f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            status, detail = exc.code, f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            status, detail = -1, self.redact(_reason(exc))
        return status, round((time.perf_counter() - start) * 1000, 2), detail

    def send(self, event_type: str, environment: str, summary: str, facts: Mapping[str, object]) -> Delivery:
        if event_type not in EVENT_TYPES:
            raise ValueError(
                f"unknown notification event type {quoted(event_type)} (known: {', '.join(EVENT_TYPES)})"
            )
        note = Notification(
            id=uuid.uuid4().hex[:12],
            event_type=event_type,
            environment=environment,
            summary=self.redact(summary),
            facts={k: self.redact(str(v)) for k, v in facts.items()},
            created=datetime.now(UTC).isoformat(timespec="milliseconds"),
        )
        self.record({"state": "queued", "target": self.target, **asdict(note)})
        delivery = self.deliver(note)
        self.record({"state": delivery.delivery, **asdict(delivery)})
        return delivery

    def deliver(self, note: Notification) -> Delivery:
        """POST one notification in this notifier's format, with the bounded retries; nothing is recorded."""
        data = json.dumps(self.format.body(note)).encode("utf-8")
        start = time.perf_counter()
        status: int | None = None
        error: str | None = "no webhook_url configured"
        attempts = 0
        waits: list[dict[str, Any]] = []
        pause = 0.0
        while self.webhook_url and attempts <= self.retries:
            if attempts:
                time.sleep(pause)
            attempts += 1
            pause = self.backoff_s * 2 ** (attempts - 1)
            request = urllib.request.Request(
                self.webhook_url, data=data, method="POST", headers={"Content-Type": "application/json"}
            )
            try:
                with self._opener.open(request, timeout=self.timeout_s) as response:
                    status, error = response.status, None
            except urllib.error.HTTPError as exc:
                status, error = exc.code, f"HTTP {exc.code}"
                if exc.code < 500 and exc.code != 429:
                    break  # the webhook refused this message; resending it will not help
                if exc.code in RETRY_AFTER_STATUSES:
                    asked = retry_after_seconds(_header(exc.headers, "Retry-After"))
                    if asked is not None:
                        capped = asked > self.retry_after_cap_s
                        last = attempts > self.retries
                        wait = 0.0 if capped or last else asked
                        waits.append({"attempt": attempts, "status": exc.code, "asked_s": round(asked, 3),
                                      "waited_s": round(wait, 3), "capped": capped,
                                      "cap_s": self.retry_after_cap_s})  # fmt: skip
                        if capped:
                            error = (
                                f"HTTP {exc.code}: the webhook asked to wait {asked:.0f} s before retrying "
                                f"(Retry-After), more than the cap of {self.retry_after_cap_s:g} s; not retried "
                                "early, the notification stays queued for a resend"
                            )
                            break
                        pause = wait
            except (urllib.error.URLError, OSError) as exc:
                status, error = None, self.redact(_reason(exc))
            if error is None:
                break
        return Delivery(
            id=note.id,
            event_type=note.event_type,
            delivery="delivered" if error is None else "failed",
            attempts=attempts,
            http_status=status,
            error=error,
            duration_s=round(time.perf_counter() - start, 4),
            target=self.target,
            retry_after=waits,
        )

    def record(self, record: Mapping[str, Any]) -> None:
        """Append one line to the outbox (fsynced) and to the mirror (flushed). A mirror that cannot be written
        is remembered in `mirror_error`, never raised: the outbox in the bundle is the record that counts."""
        line = json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
        with self._lock:
            self.outbox.parent.mkdir(parents=True, exist_ok=True)
            with self.outbox.open("a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
            if self.mirror is not None:
                try:
                    self.mirror.parent.mkdir(parents=True, exist_ok=True)
                    with self.mirror.open("a", encoding="utf-8") as fh:
                        fh.write(line)
                        fh.flush()
                except OSError as exc:
                    self.mirror_error = self.mirror_error or f"{self.mirror}: {exc.strerror or exc}"


def _header(headers: Message | Mapping[str, str] | None, name: str) -> str | None:
    if headers is None:
        return None
    value = headers.get(name)
    return str(value) if value is not None else None


def _reason(exc: BaseException) -> str:
    """Why a connection failed, in the OS's words ("Connection refused"), never "[Errno 111] ..."."""
    reason = getattr(exc, "reason", exc)
    return plain_error(reason) if isinstance(reason, BaseException) else str(reason)
