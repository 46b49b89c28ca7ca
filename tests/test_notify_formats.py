"""The four webhook formats as a real receiver sees them, the facts every notification carries, and Retry-After.

Payloads go to the Lab's own webhook sink (lab/sink.py, started here as its own process on a free loopback port,
stopped by PID) and are read back from what it logged; the checks are the receivers' rules: the Teams Workflows
message with one Adaptive Card 1.4 attachment (the card schema's basics: element types, enumerations, required
properties), the legacy MessageCard, Slack's text + Block Kit, and plain JSON. Retry-After is measured against
the scriptable loopback stub (tests/http_stub.py).
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from drivers.config import Environment
from drivers.notify import FORMATS, Notifier, retry_after_seconds
from fixtures.notify import notice_facts
from lab import procs
from plugins.state import RunbookRun, RunOptions
from tests.http_stub import Reply, Stub

ROOT = Path(__file__).resolve().parents[1]
STANDARD_FACTS = ("Environment", "Versions", "Slots", "Approver", "Outcome", "Report")
SECRET = "s3cr3t-Pa55w0rd-42"
TOKEN = "T0KEN-9f8e7d6c5b4a"

# --- what each receiver accepts ------------------------------------------------------------------------------
_CARD_ELEMENTS = {"TextBlock", "FactSet"}
_TEXT_SIZES = {"Default", "Small", "Medium", "Large", "ExtraLarge"}
_TEXT_WEIGHTS = {"Default", "Lighter", "Bolder"}
_TEXT_COLOURS = {"Default", "Dark", "Light", "Accent", "Good", "Warning", "Attention"}


def check_adaptive_card(card: dict[str, Any]) -> tuple[str, str, dict[str, str]]:
    """The basics of the Adaptive Card schema (adaptivecards.io/schemas/adaptive-card.json) for the elements
    the runbook sends; returns (title, summary, facts)."""
    assert card["type"] == "AdaptiveCard"
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert re.fullmatch(r"1\.[0-5]", card["version"]), "Teams renders Adaptive Cards up to 1.5"
    assert isinstance(card.get("fallbackText", ""), str)
    body = card["body"]
    assert isinstance(body, list)
    assert body
    texts: list[str] = []
    facts: dict[str, str] = {}
    for element in body:
        assert element["type"] in _CARD_ELEMENTS, element
        if element["type"] == "TextBlock":
            assert isinstance(element["text"], str), element
            assert element["text"], element
            assert element.get("size", "Default") in _TEXT_SIZES
            assert element.get("weight", "Default") in _TEXT_WEIGHTS
            assert element.get("color", "Default") in _TEXT_COLOURS
            assert isinstance(element.get("wrap", False), bool)
            texts.append(element["text"])
        else:
            assert isinstance(element["facts"], list)
            assert element["facts"]
            for fact in element["facts"]:
                assert set(fact) == {"title", "value"}, fact
                assert isinstance(fact["title"], str)
                assert isinstance(fact["value"], str)
                facts[fact["title"]] = fact["value"]
    return texts[0], texts[1], facts


def _slack_text(mrkdwn: str) -> str:
    """What Slack shows for mrkdwn text: its three escapes undone."""
    return mrkdwn.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def check_payload(fmt: str, body: dict[str, Any]) -> tuple[str, str, dict[str, str]]:
    """A payload as its receiver requires it; returns (title, summary, facts) as the reader sees them."""
    if fmt == "teams-workflow":
        assert set(body) == {"type", "attachments"}
        assert body["type"] == "message"
        (attachment,) = body["attachments"]
        assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
        assert "contentUrl" in attachment
        assert attachment["contentUrl"] is None
        return check_adaptive_card(attachment["content"])
    if fmt == "teams":
        assert (body["@type"], body["@context"]) == ("MessageCard", "http://schema.org/extensions")
        assert re.fullmatch(r"[0-9A-F]{6}", body["themeColor"])
        assert body["summary"], "a MessageCard needs summary or text"
        (section,) = body["sections"]
        return body["title"], section["activityTitle"], {f["name"]: f["value"] for f in section["facts"]}
    if fmt == "slack":
        assert isinstance(body["text"], str)
        assert body["text"], "text is the notification and the fallback"
        blocks = body["blocks"]
        assert blocks[0]["type"] == "header"
        assert blocks[0]["text"]["type"] == "plain_text"
        assert len(blocks[0]["text"]["text"]) <= 150
        assert blocks[1]["type"] == "section"
        assert blocks[1]["text"]["type"] == "mrkdwn"
        facts: dict[str, str] = {}
        for block in blocks[2:]:
            assert block["type"] in ("section", "context"), block
            if block["type"] == "section":
                assert 1 <= len(block["fields"]) <= 10, "Block Kit allows at most 10 fields per section"
                for field in block["fields"]:
                    assert field["type"] == "mrkdwn"
                    assert len(field["text"]) <= 2000
                    key, _, value = field["text"].partition("\n")
                    facts[_slack_text(key.strip("*"))] = _slack_text(value)
        return blocks[0]["text"]["text"], _slack_text(blocks[1]["text"]["text"]), facts
    assert fmt == "generic"
    assert body["source"] == "mcms-dr-runbook"
    assert datetime.fromisoformat(body["created"]).tzinfo is not None
    assert re.fullmatch(r"[0-9a-f]{12}", body["id"])
    return f"MCMS {body['event_type']}: {body['environment']}", body["summary"], body["facts"]


# --- the Lab's webhook sink, as its own process --------------------------------------------------------------
class Sink:
    def __init__(self, log_dir: Path, port: int | None = None) -> None:
        self.port = port or procs.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = procs.python_argv(
            ROOT / "lab" / "sink.py", "--port", str(self.port), "--log-dir", str(log_dir)
        )
        self.record = procs.spawn("sink", argv, log_dir / "sink.log")
        self.argv = argv
        procs.wait_http(self.url + "/", 10, lambda r: r.status == 200, watch=[self.record])

    def received(self) -> list[dict[str, Any]]:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(self.url + "/received", timeout=5) as response:
            entries: list[dict[str, Any]] = json.load(response)
        return entries

    def stop(self) -> None:
        procs.stop_pid(self.record.pid, 5.0, self.argv)


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sink]:
    running = Sink(tmp_path_factory.mktemp("sink"))
    try:
        yield running
    finally:
        running.stop()


def a_run(tmp_path: Path) -> RunbookRun:
    """A Blue/Green run whose journal knows the versions, the slots, the approver and where traffic went."""
    env = Environment(name="InternalProd", kind="remote", source=tmp_path / "InternalProd.toml",
                      secrets=frozenset({SECRET}))  # fmt: skip
    run = RunbookRun(env, RunOptions(evidence_dir=tmp_path), tmp_path)
    run.flow = "bluegreen"
    run.bundle = tmp_path / "20260101T000000Z_InternalProd_bluegreen"
    run.record("slots", {"live": "blue", "idle": "green", "live_version": "1.0.0", "idle_version": "0.9.0"})
    run.version("from", "1.0.0", "served by the live slot blue")
    run.approval("A. Operator")
    run.record("action", {"name": "switch_traffic", "target": "green", "result": "ok"})
    run.version("to", "1.1.0", "traffic switched to green")
    return run


@pytest.mark.parametrize("fmt", ["teams-workflow", "teams", "slack", "generic"])
def test_each_format_reaches_the_sink_in_the_shape_its_receiver_requires(
    sink: Sink, tmp_path: Path, fmt: str
) -> None:
    run = a_run(tmp_path)
    facts = notice_facts(run, "Switched", {"standby": "blue", "note": f"login with {SECRET}"})
    notifier = Notifier(f"{sink.url}/webhookb2/{TOKEN}/{fmt}", fmt, tmp_path / "o.jsonl", timeout_s=3,
                        redact=run.env.redact)  # fmt: skip
    delivery = notifier.send("Switched", "InternalProd", "traffic switched to green 1.1.0", facts)
    assert delivery.delivered, delivery
    [entry] = [e for e in sink.received() if e["path"].endswith(f"/{fmt}")]
    assert entry["headers"]["content-type"] == "application/json"
    title, summary, seen = check_payload(fmt, entry["body"])
    assert title == "MCMS Switched: InternalProd"
    assert summary == "traffic switched to green 1.1.0"
    assert {k: seen[k] for k in STANDARD_FACTS} == {
        "Environment": "InternalProd",
        "Versions": "1.0.0 -> 1.1.0",
        "Slots": "live blue -> idle green; traffic now on green",
        "Approver": "A. Operator",
        "Outcome": "in progress: no phase failed so far",
        "Report": str(run.bundle / "report.html"),
    }
    assert (seen["Standby"], seen["Note"]) == ("blue", "login with ***")
    raw = json.dumps(entry["body"])
    assert SECRET not in raw, "no secret in what people read"
    assert TOKEN not in raw, "no webhook token in what people read"


def test_every_format_is_checked_here() -> None:
    assert FORMATS.names() == ["generic", "slack", "teams", "teams-workflow"]


def test_a_planned_version_shows_until_the_journal_has_one(tmp_path: Path) -> None:
    env = Environment(name="Stage", kind="remote", source=tmp_path / "Stage.toml")
    run = RunbookRun(env, RunOptions(evidence_dir=tmp_path), tmp_path)
    run.flow = "rollback"
    run.version("from", "1.1.0", "health before acting")
    facts = notice_facts(
        run, "RolledBack", {"version_from": "9.9.9", "version_to": "1.0.0", "approved_by": "-"}
    )
    assert (facts["Versions"], facts["Slots"], facts["Approver"]) == (
        "1.1.0 -> 1.0.0 (planned)",
        "single node",
        "none given",
    )
    assert "Version from" not in facts, "the journal's values, not a copy"
    assert "Approved by" not in facts
    run.version("expected", "1.0.0", "RB-3 deploys it")
    assert notice_facts(run, "Deployed", {})["Versions"] == "1.1.0 -> 1.0.0 (not serving yet)"
    run.version("to", "1.0.0", "deployed and healthy")
    assert notice_facts(run, "Deployed", {"version_to": "7.7.7"})["Versions"] == "1.1.0 -> 1.0.0"


def test_slack_splits_more_than_ten_facts_into_sections(stub: Stub, tmp_path: Path) -> None:
    stub.route("/hook", Reply(200))
    facts = {f"k{n}": f"<v{n}> & more" for n in range(13)}
    Notifier(f"{stub.url}/hook", "slack", tmp_path / "o.jsonl").send("Alert", "Prod", "a <b>", facts)
    body = json.loads(stub.requests[0].body)
    sections = [b for b in body["blocks"] if "fields" in b]
    assert [len(s["fields"]) for s in sections] == [10, 3]
    assert sections[0]["fields"][0]["text"] == "*k0*\n&lt;v0&gt; &amp; more"
    assert body["blocks"][1]["text"]["text"] == "a &lt;b&gt;"
    assert check_payload("slack", body)[1] == "a <b>"


# --- Retry-After --------------------------------------------------------------------------------------------
def test_retry_after_seconds_is_waited_then_delivered(stub: Stub, tmp_path: Path) -> None:
    stub.route("/hook", Reply(429, b"slow down", {"Retry-After": "1"}), Reply(200, b"1"))
    notifier = Notifier(f"{stub.url}/hook", "teams-workflow", tmp_path / "o.jsonl", retries=3, backoff_s=0.01)
    delivery = notifier.send("Deployed", "Prod", "s", {})
    assert (delivery.delivery, delivery.attempts, delivery.http_status) == ("delivered", 2, 200)
    first, second = stub.requests
    waited = second.at - first.at
    assert 0.95 <= waited < 10, f"waited {waited:.3f} s for a Retry-After of 1 s"
    assert delivery.retry_after == [
        {"attempt": 1, "status": 429, "asked_s": 1.0, "waited_s": 1.0, "capped": False, "cap_s": 15.0}
    ]
    delivered = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()][-1]
    assert delivered["retry_after"] == delivery.retry_after, "the wait is in the delivery record"


def test_retry_after_as_an_http_date_on_503(stub: Stub, tmp_path: Path) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)
    stub.route("/hook", Reply(503, b"busy", {"Retry-After": when}), Reply(200))
    delivery = Notifier(f"{stub.url}/hook", "generic", tmp_path / "o.jsonl", backoff_s=0.01).send(
        "Alert", "Prod", "s", {}
    )
    assert delivery.delivered
    waited = stub.requests[1].at - stub.requests[0].at
    (asked,) = delivery.retry_after
    assert 1.0 <= asked["asked_s"] <= 2.0  # an HTTP-date has whole seconds
    assert asked["asked_s"] - 0.05 <= waited < asked["asked_s"] + 1.0


def test_retry_after_beyond_the_cap_is_not_retried_early(stub: Stub, tmp_path: Path) -> None:
    stub.route("/hook", Reply(429, b"", {"Retry-After": "120"}), Reply(200))
    notifier = Notifier(f"{stub.url}/hook", "slack", tmp_path / "o.jsonl", retry_after_cap_s=5.0)
    delivery = notifier.send("Failed", "Prod", "s", {})
    assert (delivery.delivery, delivery.attempts, delivery.http_status) == ("failed", 1, 429)
    assert delivery.duration_s < 1.0, "it did not sit out two minutes"
    assert delivery.retry_after == [
        {"attempt": 1, "status": 429, "asked_s": 120.0, "waited_s": 0.0, "capped": True, "cap_s": 5.0}
    ]
    assert delivery.error == (
        "HTTP 429: the webhook asked to wait 120 s before retrying (Retry-After), more than the cap of 5 s; "
        "not retried early, the notification stays queued for a resend"
    )
    assert len(stub.requests) == 1


@pytest.mark.parametrize(
    ("value", "seconds"), [("7", 7.0), ("0", 0.0), (None, None), ("", None), ("soon", None), ("-3", None)]
)
def test_retry_after_values(value: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(value) == seconds


def test_retry_after_date_in_the_past_is_no_wait() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("Thu, 01 Jan 2026 11:59:00 GMT", now) == 0.0
    assert retry_after_seconds("Thu, 01 Jan 2026 12:00:30 GMT", now) == 30.0
