"""Probes and notifications go direct, never through an HTTP proxy (README "Environments").

Every proxy variable of the process environment points at a loopback listener (the HTTP stub of
tests/http_stub.py) that counts the connections it gets (and answers each with 502, as a proxy that cannot
reach the target would). A control request through plain urllib shows that the variables take effect; then
the probe, the notifier and a whole drill must leave the listener with nothing.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from drivers.config import Browser
from drivers.notify import Notifier
from drivers.probe import Prober
from tests.http_stub import Reply, Stub, json_reply

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
BYPASS_VARIABLES = ("NO_PROXY", "no_proxy")


@dataclass(frozen=True)
class CountingProxy:
    """The loopback HTTP stub (tests/http_stub.py) as a proxy that cannot reach any target: it answers every
    request, CONNECT too, with 502, and counts every connection it gets, a request on it or not."""

    stub: Stub

    def requests(self) -> list[str]:
        """The request line of each connection ("" for one that sent no request). The stub speaks HTTP/1.0,
        so a connection carries one request at most."""
        lines = [seen.line for seen in self.stub.requests]
        return lines + [""] * (self.stub.connections - len(lines))


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch, stub: Stub) -> CountingProxy:
    """Every proxy variable set to the counting listener, and no bypass list (urllib would honour it)."""
    stub.otherwise(Reply(502))
    for name in PROXY_VARIABLES:
        monkeypatch.setenv(name, stub.url)
    for name in BYPASS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return CountingProxy(stub)


@pytest.fixture
def service() -> Iterator[Stub]:
    """A loopback service that is healthy and takes notifications (a stub of its own, beside the proxy's)."""
    with Stub() as running:
        running.route("/health", json_reply(200, {"status": "Healthy", "version": "1.1.0"}))
        running.route("/", Reply(200))
        running.route("/hook", json_reply(200, {}))
        yield running


def test_the_proxy_variables_take_effect(proxy: CountingProxy, service: Stub) -> None:
    """The control: a client that honours the environment (urllib's default handlers) does go to the listener.
    (An opener of its own: urlopen's global one would keep this listener's address for later tests.)"""
    with pytest.raises(urllib.error.HTTPError, match="502"):
        urllib.request.build_opener().open(f"{service.url}/health", timeout=5)
    assert proxy.requests() == [f"GET {service.url}/health HTTP/1.1"]
    assert service.paths() == []


def test_probes_go_direct(proxy: CountingProxy, service: Stub) -> None:
    prober = Prober(["127.0.0.1"], timeout_s=2, retries=0)  # made after the variables were set
    result = prober.get("health", f"{service.url}/health")
    assert result.status == 200, result
    assert result.json()["version"] == "1.1.0"
    assert service.paths() == ["/health"]
    assert proxy.requests() == []


def test_notifications_go_direct(proxy: CountingProxy, service: Stub, tmp_path: Path) -> None:
    notifier = Notifier(f"{service.url}/hook", "generic", tmp_path / "outbox.jsonl", retries=0, timeout_s=2)
    assert notifier.reachable()[0] == 200
    delivery = notifier.send("Deployed", "Lab", "1.1.0 deployed", {"version": "1.1.0"})
    assert (delivery.delivery, delivery.http_status) == ("delivered", 200)
    assert service.paths() == ["/", "/hook"]
    assert proxy.requests() == []


@pytest.mark.lab
@pytest.mark.drill
def test_a_drill_sends_nothing_through_the_proxy(proxy: CountingProxy, drill: Any) -> None:
    """A whole rollback drill (its probes, its waits for health, its notifications, the Lab it starts) with
    every proxy variable set: it passes, and the proxy never hears of it. The browser rows are left out here;
    see the next test."""
    d = drill(marker="rollback and not dr_axe and not dr_e2e and not dr_zap", env=dict(os.environ))
    assert d.returncode == 0, d.output
    assert [e["phase"] for e in d.kinds("phase.start")] == [
        "PRE",
        "RB-1",
        "RB-2",
        "RB-3",
        "DR-SMOKE",
        "RB-4",
        "RB-5",
    ]
    assert [(n["data"]["event_type"], n["data"]["delivery"]) for n in d.kinds("notify")] == [
        ("RolledBack", "delivered"),
        ("Deployed", "delivered"),
    ]
    assert len(d.kinds("probe")) >= 5
    assert d.served_version() == "1.0.0"
    assert proxy.requests() == []


@pytest.mark.lab
def test_the_browser_sends_nothing_through_the_proxy(
    proxy: CountingProxy, service: Stub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from drivers.browser import browser_session

    # urlopen builds its global opener, with the proxies of that moment, once per process: start from none,
    # as a fresh runbook process does, so that it sees these variables (restored after the test).
    monkeypatch.setattr(urllib.request, "_opener", None)
    with browser_session(Browser(), allowed_hosts=["127.0.0.1"]) as session:
        assert session.open(f"{service.url}/health").status == 200
    assert "/health" in service.paths()
    assert proxy.requests() == []
