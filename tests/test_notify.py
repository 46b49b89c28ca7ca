"""drivers/notify.py in plain Python: the webhook formats, the outbox, retries and redaction, against the
loopback HTTP stub (tests/http_stub.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from drivers.base import DriverError
from drivers.config import Environment
from drivers.notify import Notifier
from tests.http_stub import Reply, Stub

FACTS = {"from": "1.1.0", "to": "1.0.0", "operator": "jdoe"}


def outbox_lines(outbox: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in outbox.read_text(encoding="utf-8").splitlines()]


def notifier(url: str, outbox: Path, fmt: str = "generic", retries: int = 2, **kw: Any) -> Notifier:
    return Notifier(url, fmt, outbox, timeout_s=2.0, retries=retries, backoff_s=0.01, **kw)


@pytest.mark.parametrize("fmt", ["generic", "teams", "slack"])
def test_notify_posts_the_body_of_each_format(stub: Stub, tmp_path: Path, fmt: str) -> None:
    stub.route("/hook", Reply(200, b"1"))
    delivery = notifier(f"{stub.url}/hook", tmp_path / "notifications.jsonl", fmt).send(
        "RolledBack", "InternalProd", "rolled back to 1.0.0", FACTS
    )
    assert (delivery.delivery, delivery.attempts, delivery.http_status) == ("delivered", 1, 200)
    [seen] = stub.requests
    assert (seen.method, seen.path, seen.headers["content-type"]) == ("POST", "/hook", "application/json")
    body = json.loads(seen.body)
    if fmt == "generic":
        assert body == {
            "source": "mcms-dr-runbook",
            "id": delivery.id,
            "event_type": "RolledBack",
            "environment": "InternalProd",
            "summary": "rolled back to 1.0.0",
            "facts": FACTS,
            "created": body["created"],
        }
        assert datetime.fromisoformat(body["created"]).tzinfo == UTC
    elif fmt == "teams":
        assert body == {
            "@type": "MessageCard",
            "@context": "http://schema.org/extensions",
            "themeColor": "D83B01",
            "summary": "rolled back to 1.0.0",
            "title": "MCMS RolledBack: InternalProd",
            "sections": [
                {
                    "activityTitle": "rolled back to 1.0.0",
                    "facts": [
                        {"name": "from", "value": "1.1.0"},
                        {"name": "to", "value": "1.0.0"},
                        {"name": "operator", "value": "jdoe"},
                    ],
                }
            ],
        }
    else:
        assert body["text"] == (
            "MCMS RolledBack (InternalProd): rolled back to 1.0.0\n*from*: 1.1.0\n*to*: 1.0.0\n*operator*: jdoe"
        )
        assert [b["type"] for b in body["blocks"]] == ["header", "section", "section", "context"]
        assert body["blocks"][2]["fields"][0] == {"type": "mrkdwn", "text": "*from*\n1.1.0"}


@pytest.mark.parametrize(
    ("event_type", "colour"),
    [
        ("RolledBack", "D83B01"),
        ("Deployed", "107C10"),
        ("Approved", "0078D4"),
        ("Switched", "008272"),
        ("Failed", "A4262C"),
        ("Alert", "A4262C"),
    ],
)
def test_notify_teams_colour_per_event(stub: Stub, tmp_path: Path, event_type: str, colour: str) -> None:
    stub.route("/hook", Reply(200))
    notifier(f"{stub.url}/hook", tmp_path / "o.jsonl", "teams").send(event_type, "Prod", "s", {})
    assert json.loads(stub.requests[0].body)["themeColor"] == colour


def test_notify_outbox_queues_before_delivery_and_records_it_after(stub: Stub, tmp_path: Path) -> None:
    stub.route("/hook", Reply(200))
    outbox = tmp_path / "artifacts" / "notifications.jsonl"  # the parent is created on first use
    note = notifier(f"{stub.url}/hook", outbox)
    delivery = note.send("Deployed", "Stage", "1.0.0 serves again", {"version": "1.0.0", "attempt": 1})
    queued, delivered = outbox_lines(outbox)
    assert queued == {
        "state": "queued",
        "target": f"{stub.url}/…",
        "id": delivery.id,
        "event_type": "Deployed",
        "environment": "Stage",
        "summary": "1.0.0 serves again",
        "facts": {"version": "1.0.0", "attempt": "1"},
        "created": queued["created"],
    }
    assert delivered == {
        "state": "delivered",
        "id": delivery.id,
        "event_type": "Deployed",
        "delivery": "delivered",
        "attempts": 1,
        "http_status": 200,
        "error": None,
        "duration_s": delivery.duration_s,
        "target": f"{stub.url}/…",
        "retry_after": [],
    }
    assert delivery.delivered
    # A second notification appends; nothing is rewritten.
    note.send("Alert", "Stage", "second", {})
    assert [line["state"] for line in outbox_lines(outbox)] == ["queued", "delivered", "queued", "delivered"]


def test_notify_server_down_fails_after_all_retries_without_raising(closed_url: str, tmp_path: Path) -> None:
    outbox = tmp_path / "notifications.jsonl"
    delivery = notifier(f"{closed_url}/hook", outbox, retries=2).send("RolledBack", "Prod", "s", FACTS)
    assert (delivery.delivery, delivery.attempts, delivery.http_status) == ("failed", 3, None)
    assert not delivery.delivered
    assert delivery.error is not None
    assert delivery.error == "Connection refused", "the OS's words, not [Errno 111]"
    queued, failed = outbox_lines(outbox)
    assert (queued["state"], queued["id"], queued["summary"]) == ("queued", delivery.id, "s")
    assert (failed["state"], failed["attempts"], failed["error"]) == ("failed", 3, delivery.error)


def test_notify_retries_a_server_error_until_delivered(stub: Stub, tmp_path: Path) -> None:
    stub.route("/hook", Reply(500, b"busy"), Reply(200, b"1"))
    outbox = tmp_path / "notifications.jsonl"
    delivery = notifier(f"{stub.url}/hook", outbox, retries=3).send("Deployed", "Prod", "s", {})
    assert (delivery.delivery, delivery.attempts, delivery.http_status, delivery.error) == (
        "delivered",
        2,
        200,
        None,
    )
    assert stub.paths() == ["/hook", "/hook"]
    assert stub.requests[0].body == stub.requests[1].body  # the same message, resent
    assert [line["state"] for line in outbox_lines(outbox)] == ["queued", "delivered"]


@pytest.mark.parametrize(("status", "attempts", "delivery"), [(400, 1, "failed"), (429, 2, "delivered")])
def test_notify_client_error_is_not_retried_but_429_is(
    stub: Stub, tmp_path: Path, status: int, attempts: int, delivery: str
) -> None:
    stub.route("/hook", Reply(status, b"no"), Reply(200, b"1"))
    outbox = tmp_path / "notifications.jsonl"
    result = notifier(f"{stub.url}/hook", outbox, retries=3).send("Deployed", "Prod", "s", {})
    assert (result.delivery, result.attempts) == (delivery, attempts)
    assert stub.paths() == ["/hook"] * attempts
    if delivery == "failed":
        assert (result.http_status, result.error) == (400, "HTTP 400")
    assert [line["state"] for line in outbox_lines(outbox)] == ["queued", delivery]


def test_notify_target_never_shows_the_webhook_path(stub: Stub, tmp_path: Path) -> None:
    token = "webhookb2-T0KEN-5e1f"
    path = f"/webhookb2/{token}/IncomingWebhook/abc"
    stub.route(path, Reply(200))
    outbox = tmp_path / "notifications.jsonl"
    note = notifier(f"{stub.url}{path}", outbox)
    assert note.target == f"{stub.url}/…"
    delivery = note.send("RolledBack", "Prod", "s", FACTS)
    assert delivery.target == f"{stub.url}/…"
    assert stub.paths() == [path]  # it was sent to the full URL
    text = outbox.read_text(encoding="utf-8")
    assert len(text.splitlines()) == 2
    assert token not in text
    assert "IncomingWebhook" not in text


def test_notify_redacts_secrets_in_summary_and_facts(stub: Stub, tmp_path: Path) -> None:
    env = Environment(
        name="Prod", kind="remote", source=tmp_path / "Prod.toml", secrets=frozenset({"s3cr3t"})
    )
    stub.route("/hook", Reply(200))
    outbox = tmp_path / "notifications.jsonl"
    note = notifier(f"{stub.url}/hook", outbox, redact=env.redact)
    note.send("Alert", "Prod", "login with s3cr3t failed", {"password": "s3cr3t", "tries": 3})
    body = json.loads(stub.requests[0].body)
    assert body["summary"] == "login with *** failed"
    assert body["facts"] == {"password": "***", "tries": "3"}
    queued = outbox_lines(outbox)[0]
    assert (queued["summary"], queued["facts"]) == (
        "login with *** failed",
        {"password": "***", "tries": "3"},
    )
    assert "s3cr3t" not in outbox.read_text(encoding="utf-8")


def test_notify_unknown_event_type_raises_and_sends_nothing(stub: Stub, tmp_path: Path) -> None:
    outbox = tmp_path / "notifications.jsonl"
    with pytest.raises(ValueError, match=r"^unknown notification event type") as info:
        notifier(f"{stub.url}/hook", outbox).send("Exploded", "Prod", "s", {})
    assert str(info.value) == (
        'unknown notification event type "Exploded" '
        "(known: RolledBack, Deployed, Approved, Switched, Failed, Alert)"
    )
    assert not outbox.exists()
    assert stub.requests == []


def test_notify_without_a_webhook_records_a_failed_delivery(tmp_path: Path) -> None:
    outbox = tmp_path / "notifications.jsonl"
    note = notifier("", outbox)
    assert note.target == "(not configured)"
    assert note.reachable() == (-1, 0.0, "no webhook_url configured")
    delivery = note.send("Deployed", "Prod", "s", {})
    assert (delivery.delivery, delivery.attempts, delivery.http_status, delivery.error) == (
        "failed",
        0,
        None,
        "no webhook_url configured",
    )
    assert [(line["state"], line["target"]) for line in outbox_lines(outbox)] == [
        ("queued", "(not configured)"),
        ("failed", "(not configured)"),
    ]


@pytest.mark.parametrize(("status", "detail"), [(404, "HTTP 404"), (200, "HTTP 200"), (405, "HTTP 405")])
def test_notify_reachable_counts_any_http_answer(
    stub: Stub, tmp_path: Path, status: int, detail: str
) -> None:
    if status != 404:
        stub.route("/", Reply(status))
    reached, latency_ms, said = notifier(f"{stub.url}/hook/T0KEN", tmp_path / "o.jsonl").reachable()
    assert (reached, said) == (status, detail)
    assert latency_ms > 0
    [seen] = stub.requests
    assert (seen.method, seen.path) == ("GET", "/")  # the root, never the webhook itself
    assert not (tmp_path / "o.jsonl").exists()


def test_notify_reachable_closed_port(closed_url: str, tmp_path: Path) -> None:
    status, latency_ms, detail = notifier(f"{closed_url}/hook", tmp_path / "o.jsonl").reachable()
    assert status == -1
    assert latency_ms >= 0
    assert "refused" in detail.lower()


def test_notify_unknown_format_lists_the_known_ones(tmp_path: Path, closed_url: str) -> None:
    with pytest.raises(DriverError) as info:
        Notifier(f"{closed_url}/hook", "email", tmp_path / "o.jsonl")
    assert str(info.value) == 'unknown notify format "email" (known: generic, slack, teams, teams-workflow)'


def test_notify_target_never_shows_credentials_or_path(tmp_path: Path) -> None:
    notifier = Notifier(
        "https://svc:hunter2@hooks.corp.example:8443/webhook/tok3n", "generic", tmp_path / "o.jsonl"
    )
    assert notifier.target == "https://hooks.corp.example:8443/…"


def test_a_rollback_that_failed_while_the_site_answers_is_an_alert(tmp_path: Path) -> None:
    from fixtures.rollback import RollbackRecorder
    from plugins.state import RunbookRun, RunOptions

    env = Environment(name="Prod", kind="remote", source=tmp_path / "Prod.toml")
    run = RunbookRun(env, RunOptions(evidence_dir=tmp_path), tmp_path)
    sent: list[tuple[str, str, dict[str, object]]] = []

    def notify(event_type: str, summary: str, **facts: object) -> Any:
        sent.append((event_type, summary, facts))

    RollbackRecorder(run, notify).restore_failed("traffic could not be sent back to blue: router said no")
    assert sent == [
        (
            "Alert",
            "ROLLBACK FAILED on Prod: traffic could not be sent back to blue: router said no. "
            "Act now: the release still serves.",
            {"severity": "critical", "rollback": "failed"},
        )
    ]
    assert run.site_down is None, "the site answers: not a SITE DOWN"
