"""Notify verb: the deploy-notification webhook (playbook notify-deploy.ps1).

Outbox first: every notification is appended to notifications.jsonl (state "queued") before it is sent, then
its delivery is appended (state "delivered" or "failed"). A delivery failure is returned, never raised: a
rollback must not stop because Teams is down.
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
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from drivers.base import Registry, quoted

EVENT_TYPES = ("RolledBack", "Deployed", "Approved", "Alert")
_COLOURS = {"RolledBack": "D83B01", "Deployed": "107C10", "Approved": "0078D4", "Alert": "A4262C"}


@dataclass
class Notification:
    id: str
    event_type: str
    environment: str
    summary: str
    facts: dict[str, str]
    created: str


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
    # Office 365 connector MessageCard: what Teams incoming webhooks accept.
    def body(self, note: Notification) -> dict[str, Any]:
        return {
            "@type": "MessageCard",
            "@context": "http://schema.org/extensions",
            "themeColor": _COLOURS.get(note.event_type, "605E5C"),
            "summary": note.summary,
            "title": f"MCMS {note.event_type}: {note.environment}",
            "sections": [
                {
                    "activityTitle": note.summary,
                    "facts": [{"name": k, "value": v} for k, v in note.facts.items()],
                }
            ],
        }


@FORMATS.register("slack")
class SlackFormat(PayloadFormat):
    def body(self, note: Notification) -> dict[str, Any]:
        lines = "\n".join(f"*{k}*: {v}" for k, v in note.facts.items())
        return {"text": f"MCMS {note.event_type} ({note.environment}): {note.summary}\n{lines}"}


class Notifier:
    """Queues each notification in the outbox, then sends it with bounded retries."""

    def __init__(
        self,
        webhook_url: str,
        payload_format: str,
        outbox: Path,
        *,
        timeout_s: float = 5.0,
        retries: int = 3,
        backoff_s: float = 0.1,
        redact: Callable[[str], str] = lambda s: s,
    ) -> None:
        self.webhook_url = webhook_url
        self.format = FORMATS.get(payload_format)()
        self.outbox = outbox
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.redact = redact
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
            status, detail = -1, self.redact(str(getattr(exc, "reason", exc)))
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
        body = self.format.body(note)
        self._outbox({"state": "queued", "target": self.target, **asdict(note)})
        delivery = self._deliver(note, body)
        self._outbox({"state": delivery.delivery, **asdict(delivery)})
        return delivery

    def _deliver(self, note: Notification, body: dict[str, Any]) -> Delivery:
        data = json.dumps(body).encode("utf-8")
        start = time.perf_counter()
        status: int | None = None
        error: str | None = "no webhook_url configured"
        attempts = 0
        while self.webhook_url and attempts <= self.retries:
            if attempts:
                time.sleep(self.backoff_s * 2 ** (attempts - 1))
            attempts += 1
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
            except (urllib.error.URLError, OSError) as exc:
                status, error = None, self.redact(str(getattr(exc, "reason", exc)))
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
        )

    def _outbox(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
        with self._lock:
            self.outbox.parent.mkdir(parents=True, exist_ok=True)
            with self.outbox.open("a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
