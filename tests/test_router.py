"""The Lab router (lab/router.py) as a real process on loopback, in front of tiny stdlib backends in this test.

The backends echo what reached them, so the tests see exactly what the router forwards; each names its slot.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from lab import LabError, RouterClient, httpc, procs
from lab.supervisor import ROUTER_SCRIPT

pytestmark = pytest.mark.lab
BIG = bytes(range(256)) * 4096  # 1 MiB
HANG_S = 30.0  # a held request is let go by the test; this bound only ends a hung test


# -- a tiny backend ----------------------------------------------------------------------------------


class EchoServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = sys.platform != "win32"

    def __init__(self, slot: str, port: int) -> None:
        self.slot = slot
        self.let_go = threading.Event()  # ends the requests held on /held
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", port), EchoHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.lock:
            self.open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.lock:
            self.open.discard(request)
        super().shutdown_request(request)

    def hang_up_all(self) -> None:
        """Closes the keep-alive connections too, as a stopped process would."""
        with self.lock:
            conns = list(self.open)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class EchoHandler(BaseHTTPRequestHandler):
    server: EchoServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.served_here = 0  # requests on this connection

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: bytes, headers: tuple[tuple[str, str], ...] = ()) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _any(self) -> None:
        self.served_here += 1
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        slot = self.server.slot
        if path == "/flaky" and self.served_here > 1:
            self.close_connection = True  # hangs up on a reused connection without a byte of answer
            return
        if path == "/held":
            self.server.let_go.wait(HANG_S)
        if path == "/missing":
            self._reply(
                404, b'{"error": "no such thing"}', (("Content-Type", "application/json"), ("X-Test", "kept"))
            )
        elif path == "/redirect":
            self._reply(
                302, b"moved", (("Location", "/elsewhere?x=1"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"))
            )
        elif path == "/big":
            self._reply(200, BIG, (("Content-Type", "application/octet-stream"),))
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"first;", b"second;" * 1000, b"third"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/truncated":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b"only ten..")
            self.close_connection = True  # dies mid-body
        elif path == "/close-delimited":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"until the connection closes")
            self.close_connection = True
        else:
            echo = {
                "slot": slot,
                "method": self.command,
                "target": self.path,
                "headers": [[k, v] for k, v in self.headers.items()],
                "body": body.decode("latin-1"),
            }
            self._reply(200, json.dumps(echo).encode(), (("Content-Type", "application/json"),))

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_PURGE = _any


class Backend:
    def __init__(self, slot: str, port: int | None = None) -> None:
        self.slot = slot
        self.port = port or procs.free_port()
        self.server = EchoServer(slot, self.port)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.server.hang_up_all()
        self.thread.join(5)


class Router:
    """lab/router.py as its own process."""

    def __init__(
        self,
        tmp: Path,
        backends: dict[str, str],
        active: str = "blue",
        port: int | None = None,
        control_port: int | None = None,
    ) -> None:
        self.port = port or procs.free_port()
        self.control_port = control_port or procs.free_port()
        self.state_file = tmp / "router" / "state.json"
        argv = procs.python_argv(
            ROUTER_SCRIPT,
            "--port",
            str(self.port),
            "--control-port",
            str(self.control_port),
            *[arg for name, url in backends.items() for arg in ("--backend", f"{name}={url}")],
            "--active",
            active,
            "--state-file",
            str(self.state_file),
        )
        self.log = tmp / "router.log"
        self.process = procs.spawn("router", argv, self.log)
        self.control = RouterClient(f"http://127.0.0.1:{self.control_port}")
        procs.wait_http(
            f"{self.control.control_url}/active", 10, lambda r: r.status == 200, watch=[self.process]
        )

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def stop(self) -> None:
        procs.stop_pid(self.process.pid, 10)


@pytest.fixture
def blue() -> Iterator[Backend]:
    backend = Backend("blue")
    yield backend
    backend.stop()


@pytest.fixture
def green() -> Iterator[Backend]:
    backend = Backend("green")
    yield backend
    backend.stop()


@pytest.fixture
def router(tmp_path: Path, blue: Backend, green: Backend) -> Iterator[Router]:
    running = Router(tmp_path, {"blue": blue.url, "green": green.url})
    yield running
    running.stop()


def fetch(
    conn: http.client.HTTPConnection,
    method: str,
    target: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[http.client.HTTPResponse, bytes]:
    conn.request(method, target, body=body, headers=headers or {})
    resp = conn.getresponse()
    return resp, resp.read()


def settled(router: Router) -> dict[str, Any]:
    """The router's counters once no request is in flight: a client has its whole answer a moment before
    the router's thread counts it."""
    deadline = time.monotonic() + 5
    while True:
        stats = router.control.stats()
        if not any(stats["in_flight"].values()) or time.monotonic() > deadline:
            return stats
        time.sleep(0.01)


def echo_of(data: bytes) -> dict[str, Any]:
    echo: dict[str, Any] = json.loads(data)
    echo["header_map"] = {k.lower(): v for k, v in echo["headers"]}
    return echo


# -- proxying ----------------------------------------------------------------------------------------


def test_forwards_methods_targets_bodies_and_headers_on_one_keep_alive_connection(router: Router) -> None:
    conn = router.connection()
    try:
        resp, data = fetch(
            conn,
            "GET",
            "/echo/a%20b?x=1&y=%C3%A9&x=2",
            headers={
                "X-Custom": "kept",
                "Cookie": "mcms_session=abc",
                "Connection": "keep-alive, X-Hop",
                "X-Hop": "dropped",
                "Keep-Alive": "timeout=5",
                "TE": "trailers",
                "X-Forwarded-For": "203.0.113.9",
                "Via": "1.0 corporate-proxy",
            },
        )
        assert resp.status == 200
        sock = conn.sock
        echo = echo_of(data)
        seen = echo["header_map"]
        assert echo["method"] == "GET"
        assert echo["target"] == "/echo/a%20b?x=1&y=%C3%A9&x=2"
        assert seen["x-custom"] == "kept"
        assert seen["cookie"] == "mcms_session=abc"
        assert seen["host"] == f"127.0.0.1:{router.port}"
        assert seen["x-forwarded-host"] == f"127.0.0.1:{router.port}"
        assert seen["x-forwarded-proto"] == "http"
        assert seen["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
        assert seen["via"] == "1.0 corporate-proxy, 1.1 mcms-lab-router"
        assert not {"x-hop", "keep-alive", "te", "connection"} & set(seen)
        assert resp.getheader("Via") == "1.1 mcms-lab-router"
        assert resp.getheader("X-Lab-Slot") == "blue"

        for method in ("POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PURGE"):
            payload = json.dumps({"method": method, "text": "é" * 3}).encode()
            resp, data = fetch(
                conn, method, "/api/items?via=router", payload, {"Content-Type": "application/json"}
            )
            echo = echo_of(data)
            assert (resp.status, echo["method"], echo["target"]) == (200, method, "/api/items?via=router")
            assert echo["body"].encode("latin-1") == payload
            assert echo["header_map"]["content-length"] == str(len(payload))
            assert echo["header_map"]["content-type"] == "application/json"
            assert echo["header_map"]["via"] == "1.1 mcms-lab-router"

        # A chunked request body reaches the backend de-chunked, with a Content-Length.
        conn.request("POST", "/upload", body=iter([b"abc", b"", b"defgh"]), encode_chunked=True)
        resp = conn.getresponse()
        echo = echo_of(resp.read())
        assert echo["body"] == "abcdefgh"
        assert echo["header_map"]["content-length"] == "8"
        assert "transfer-encoding" not in echo["header_map"]

        resp, data = fetch(conn, "HEAD", "/echo")
        assert (resp.status, data) == (200, b"")
        assert int(resp.getheader("Content-Length") or 0) > 0
        assert conn.sock is sock, "the client connection was not kept alive"
    finally:
        conn.close()
    stats = settled(router)
    assert stats["requests"] == {"blue": 9, "green": 0}
    assert stats["router_errors"] == 0


def test_statuses_redirects_and_bodies_pass_through_unchanged(router: Router, blue: Backend) -> None:
    conn = router.connection()
    direct = http.client.HTTPConnection("127.0.0.1", blue.port, timeout=10)
    try:
        for target in ("/missing", "/redirect", "/big", "/chunked", "/close-delimited"):
            want, want_body = fetch(direct, "GET", target)
            got, got_body = fetch(conn, "GET", target)
            assert (got.status, got.reason, got_body) == (want.status, want.reason, want_body), target
            for name in ("Content-Type", "Location", "X-Test", "Server"):
                assert got.getheader(name) == want.getheader(name), (target, name)
            assert got.getheader("Date")  # the backend's, passed through
            assert got.msg.get_all("Set-Cookie") == want.msg.get_all("Set-Cookie")
            if target == "/big":
                assert got.getheader("Content-Length") == str(len(BIG))
            if target in ("/chunked", "/close-delimited"):
                # Backend framing is not the client's: both reach an HTTP/1.1 client chunked and kept alive.
                assert got.getheader("Transfer-Encoding") == "chunked"
                assert not got.will_close
            direct.close()  # /close-delimited closed it; start every comparison fresh
    finally:
        conn.close()
        direct.close()

    # An HTTP/1.0 client gets a close-delimited body where the length is not known in advance.
    with socket.create_connection(("127.0.0.1", router.port), timeout=10) as raw:
        raw.sendall(b"GET /chunked HTTP/1.0\r\nHost: lab\r\n\r\n")
        reply = b""
        while chunk := raw.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"Transfer-Encoding" not in head
    assert body == b"first;" + b"second;" * 1000 + b"third"
    assert settled(router)["router_errors"] == 0


def test_a_reused_backend_connection_found_closed_is_retried_once_on_a_fresh_one(router: Router) -> None:
    conn = router.connection()
    try:
        assert fetch(conn, "GET", "/flaky")[0].status == 200
        # The router reuses its pooled connection; the backend hangs up on it without answering.
        resp, data = fetch(conn, "GET", "/flaky")
        assert resp.status == 200, data
    finally:
        conn.close()
    stats = settled(router)
    assert stats["retries"] == 1
    assert stats["router_errors"] == 0
    assert stats["requests"]["blue"] == 2


def test_a_backend_dying_mid_body_is_never_passed_off_as_a_whole_answer(router: Router) -> None:
    conn = router.connection()
    try:
        conn.request("GET", "/truncated")
        resp = conn.getresponse()
        assert resp.status == 200  # the head was already on its way
        with pytest.raises(http.client.IncompleteRead):
            resp.read()
    finally:
        conn.close()
    stats = settled(router)
    assert stats["errors"]["blue"] == 1
    assert "broke off" in router.log.read_text(encoding="utf-8")


# -- switching ---------------------------------------------------------------------------------------


def test_switch_under_load_is_atomic_and_drops_nothing(router: Router) -> None:
    clients, switch_count, between_s = 20, 7, 0.4  # about 3 s of traffic
    stop = threading.Event()
    failures: list[str] = []
    served: list[tuple[float, float, str]] = []  # (monotonic time sent, time answered, slot that answered)
    lock = threading.Lock()

    def client(n: int) -> None:
        conn = router.connection()
        mine: list[tuple[float, float, str]] = []
        try:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    resp, data = fetch(conn, "GET", f"/load?client={n}")
                    slot = json.loads(data)["slot"] if resp.status == 200 else None
                except (OSError, http.client.HTTPException, ValueError) as exc:
                    with lock:
                        failures.append(f"client {n}: {exc!r}")
                    conn.close()
                    continue
                if slot is None or resp.getheader("X-Lab-Slot") != slot:
                    with lock:
                        failures.append(f"client {n}: HTTP {resp.status} {data[:200]!r}")
                    continue
                mine.append((sent, time.monotonic(), slot))
        finally:
            conn.close()
            with lock:
                served.extend(mine)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    switches: list[tuple[float, float, str]] = []  # (asked at, answered at, new active slot)
    try:
        time.sleep(0.3)
        target = "green"
        for _ in range(switch_count):
            asked = time.monotonic()
            result = router.control.switch(target)
            switches.append((asked, time.monotonic(), result.active))
            assert (result.active, result.previous) == (target, "blue" if target == "green" else "green")
            target = "blue" if target == "green" else "green"
            time.sleep(between_s)
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
    assert not failures, failures[:5]
    assert len(served) > 20 * len(switches), "too little traffic to prove anything"
    # Atomic: a request sent after a switch was answered, and answered before the next switch was asked,
    # hit the new slot (one answered later may have reached the router after the next switch).
    for (_, answered, slot), (next_asked, _, _) in zip(
        switches, [*switches[1:], (float("inf"), 0, "")], strict=True
    ):
        window = [s for sent, done, s in served if answered < sent and done < next_asked]
        assert window, "no request between two switches"
        assert set(window) == {slot}, f"after the switch to {slot}: {sorted(set(window))}"
    stats = settled(router)
    assert stats["router_errors"] == 0
    assert stats["errors"] == {"blue": 0, "green": 0}
    assert stats["requests"]["blue"] > 0
    assert stats["requests"]["green"] > 0
    assert sum(stats["requests"].values()) == len(served)
    assert stats["switches"] == len(switches)
    assert stats["generation"] == len(switches)


def test_a_request_in_flight_finishes_on_the_slot_it_started_on(router: Router, blue: Backend) -> None:
    """Ordering, not duration: blue holds the first request until the test lets it go, so the switch and
    the next request (answered by green) provably happen while it is still in flight."""
    outcome: dict[str, Any] = {}

    def held() -> None:
        conn = router.connection()
        try:
            resp, data = fetch(conn, "GET", "/held")
            outcome.update(
                status=resp.status, slot=json.loads(data)["slot"], let_go=blue.server.let_go.is_set()
            )
        finally:
            conn.close()

    thread = threading.Thread(target=held)
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while router.control.stats()["in_flight"]["blue"] != 1:
            assert time.monotonic() < deadline, "the held request never reached blue"
            time.sleep(0.01)
        switched = router.control.switch("green")  # a switch that waited for blue would time out here
        assert (switched.active, switched.previous) == ("green", "blue")
        conn = router.connection()
        try:
            resp, data = fetch(conn, "GET", "/after")
            assert (resp.status, json.loads(data)["slot"]) == (200, "green")
        finally:
            conn.close()
        assert router.control.stats()["in_flight"] == {"blue": 1, "green": 0}
        assert not outcome, "the held request was answered before the test let it go"
    finally:
        blue.server.let_go.set()
        thread.join(10)
    assert outcome == {"status": 200, "slot": "blue", "let_go": True}
    stats = settled(router)
    assert stats["requests"] == {"blue": 1, "green": 1}
    assert stats["router_errors"] == 0


def test_a_down_backend_is_a_502_naming_it_and_a_restarted_one_is_served_again(
    tmp_path: Path, blue: Backend
) -> None:
    dead_port = procs.free_port()  # nothing listens there
    router = Router(tmp_path, {"blue": blue.url, "green": f"http://127.0.0.1:{dead_port}"})
    try:
        conn = router.connection()
        assert fetch(conn, "GET", "/x")[0].status == 200
        router.control.switch("green")
        resp, data = fetch(conn, "GET", "/x")
        assert resp.status == 502
        assert resp.getheader("Content-Type", "").startswith("application/json")
        assert json.loads(data) == {"error": "bad gateway", "backend": "green"}
        assert resp.getheader("X-Lab-Slot") == "green"
        router.control.switch("blue")
        assert fetch(conn, "GET", "/x")[0].status == 200

        # Blue's process goes away (its keep-alive connections too) and comes back on the same port.
        blue.stop()
        resp, data = fetch(conn, "GET", "/x")
        assert (resp.status, json.loads(data)["backend"]) == (502, "blue")
        restarted = Backend("blue", blue.port)
        try:
            resp, data = fetch(conn, "GET", "/x")
            assert resp.status == 200, data
        finally:
            restarted.stop()
        conn.close()
        stats = settled(router)
        assert stats["errors"] == {"blue": 1, "green": 1}
        assert stats["router_errors"] == 2
        assert stats["requests"] == {"blue": 3, "green": 0}
        assert "Connection" in router.log.read_text(encoding="utf-8")  # refused connects are logged
    finally:
        router.stop()


def test_control_api_rejects_unknown_slots_and_bad_requests(
    router: Router, blue: Backend, green: Backend
) -> None:
    with pytest.raises(LabError, match=r"unknown slot 'purple'; known slots: blue, green"):
        router.control.switch("purple")
    base = router.control.control_url
    conn = http.client.HTTPConnection("127.0.0.1", router.control_port, timeout=5)
    try:
        for body in (b"not json", b'{"slot": "green"}', b'{"to": 1}'):
            resp, data = fetch(conn, "POST", "/switch", body, {"Content-Type": "application/json"})
            assert resp.status == 400
            assert "blue, green" in json.loads(data)["error"]
        resp, _ = fetch(conn, "GET", "/switch")
        assert resp.status == 405
        resp, _ = fetch(conn, "GET", "/nothing")
        assert resp.status == 404
    finally:
        conn.close()
    # Nothing of that changed the router: it still reports the backends this test started, at base.
    answer = httpc.get(f"{base}/active")
    assert answer.status == 200
    state = answer.json()
    assert state["active"] == "blue"
    assert state["generation"] == 0
    assert state["backends"] == {"blue": blue.url, "green": green.url}
    same = router.control.switch("blue")
    assert (same.active, same.previous, same.generation) == ("blue", "blue", 0)

    # The control API never listens beyond loopback.
    refused = subprocess.run(
        procs.python_argv(
            ROUTER_SCRIPT,
            "--port",
            str(procs.free_port()),
            "--control-host",
            "0.0.0.0",
            "--control-port",
            str(procs.free_port()),
            "--backend",
            "blue=http://127.0.0.1:1",
        ),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert refused.returncode == 2
    assert "loopback only" in refused.stderr


def test_the_active_slot_survives_a_router_restart(tmp_path: Path, blue: Backend, green: Backend) -> None:
    backends = {"blue": blue.url, "green": green.url}
    first = Router(tmp_path, backends)
    try:
        switched = first.control.switch("green")
        assert (switched.active, switched.generation) == ("green", 1)
    finally:
        first.stop()
    saved = json.loads(first.state_file.read_text(encoding="utf-8"))
    assert (saved["active"], saved["generation"]) == ("green", 1)
    # Same ports, same argv (which still says --active blue): the state file wins.
    second = Router(tmp_path, backends, port=first.port, control_port=first.control_port)
    try:
        state = second.control.state()
        assert (state["active"], state["generation"], state["switched_at"]) == (
            "green",
            1,
            switched.switched_at,
        )
        conn = second.connection()
        try:
            assert json.loads(fetch(conn, "GET", "/who")[1])["slot"] == "green"
        finally:
            conn.close()
    finally:
        second.stop()
