"""Probes and notifications go direct, never through an HTTP proxy (README "Environments").

Every proxy variable of the process environment points at a loopback listener that counts the connections it
gets (and answers each with 502, as a proxy that cannot reach the target would). A control request through
plain urllib shows that the variables take effect; then the probe, the notifier and a whole drill must leave
the listener with nothing.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from drivers.config import Browser
from drivers.notify import Notifier
from drivers.probe import Prober

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
BYPASS_VARIABLES = ("NO_PROXY", "no_proxy")


class CountingProxy:
    """A TCP listener on loopback that records the first bytes of every connection and answers 502."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.seen: list[bytes] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name="counting-proxy", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            with conn:
                conn.settimeout(2)
                try:
                    first = conn.recv(512)
                except OSError:
                    first = b""
                with self._lock:
                    self.seen.append(first)
                with contextlib.suppress(OSError):
                    conn.sendall(
                        b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )

    def requests(self) -> list[str]:
        with self._lock:
            return [first.split(b"\r\n", 1)[0].decode(errors="replace") for first in self.seen]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the serving thread (Linux)
        self.sock.close()
        self._thread.join(timeout=5)


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._reply(b'{"status": "Healthy", "version": "1.1.0"}')

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._reply(b"{}")

    def _reply(self, body: bytes) -> None:
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[CountingProxy]:
    """Every proxy variable set to the counting listener, and no bypass list (urllib would honour it)."""
    listener = CountingProxy()
    for name in PROXY_VARIABLES:
        monkeypatch.setenv(name, listener.url)
    for name in BYPASS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    yield listener
    listener.close()


@pytest.fixture
def service() -> Iterator[tuple[str, list[str]]]:
    """A loopback service: (its URL, the paths it was asked for)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    server.paths = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", server.paths  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_the_proxy_variables_take_effect(proxy: CountingProxy, service: tuple[str, list[str]]) -> None:
    """The control: a client that honours the environment (urllib's default handlers) does go to the listener.
    (An opener of its own: urlopen's global one would keep this listener's address for later tests.)"""
    url, paths = service
    with pytest.raises(urllib.error.HTTPError, match="502"):
        urllib.request.build_opener().open(f"{url}/health", timeout=5)
    assert proxy.requests() == [f"GET {url}/health HTTP/1.1"]
    assert paths == []


def test_probes_go_direct(proxy: CountingProxy, service: tuple[str, list[str]]) -> None:
    url, paths = service
    prober = Prober(["127.0.0.1"], timeout_s=2, retries=0)  # made after the variables were set
    result = prober.get("health", f"{url}/health")
    assert result.status == 200, result
    assert result.json()["version"] == "1.1.0"
    assert paths == ["/health"]
    assert proxy.requests() == []


def test_notifications_go_direct(
    proxy: CountingProxy, service: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, paths = service
    notifier = Notifier(f"{url}/hook", "generic", tmp_path / "outbox.jsonl", retries=0, timeout_s=2)
    assert notifier.reachable()[0] == 200
    delivery = notifier.send("Deployed", "Lab", "1.1.0 deployed", {"version": "1.1.0"})
    assert (delivery.delivery, delivery.http_status) == ("delivered", 200)
    assert paths == ["/", "/hook"]
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
    proxy: CountingProxy, service: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from drivers.browser import browser_session

    # urlopen builds its global opener, with the proxies of that moment, once per process: start from none,
    # as a fresh runbook process does, so that it sees these variables (restored after the test).
    monkeypatch.setattr(urllib.request, "_opener", None)
    url, paths = service
    with browser_session(Browser(), allowed_hosts=["127.0.0.1"]) as session:
        assert session.open(f"{url}/health").status == 200
    assert "/health" in paths
    assert proxy.requests() == []
