"""The Lab router (lab/router.py) as a real process on loopback, in front of stand-in backends; and the command
router driver (drivers/router.py), which checks that a switch took.

The backends are the loopback HTTP stub (tests/http_stub.py). They echo what reached them, so the tests see
exactly what the router forwards; each names its slot.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.base import DriverError
from drivers.config import Environment
from drivers.router import router_driver
from lab import LabError, RouterClient, httpc, procs
from lab.supervisor import ROUTER_SCRIPT
from tests.driver_env import command_env
from tests.http_stub import Reply, Seen, Stub, json_reply

pytestmark = pytest.mark.lab
BIG = bytes(range(256)) * 4096  # 1 MiB
HANG_S = 30.0  # a held request is let go by the test; this bound only ends a hung test


# -- a stand-in backend: the shared stub, kept alive ---------------------------------------------------

EDGE_CASES = {  # what a backend answers that a router must pass through unchanged, or survive
    "/missing": Reply(
        404, b'{"error": "no such thing"}', (("Content-Type", "application/json"), ("X-Test", "kept"))
    ),
    "/redirect": Reply(
        302, b"moved", (("Location", "/elsewhere?x=1"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"))
    ),
    "/big": Reply(200, BIG, {"Content-Type": "application/octet-stream"}),
    "/chunked": Reply(200, chunks=(b"first;", b"second;" * 1000, b"third")),
    "/truncated": Reply(200, b"only ten..", length=100),  # dies mid-body
    "/close-delimited": Reply(200, b"until the connection closes", close_delimited=True),
}


class Backend:
    """A slot: the loopback stub (tests/http_stub.py) speaking HTTP/1.1 with keep-alive, echoing every request
    as JSON that names the slot, except the EDGE_CASES, /held (answered once the test lets it go) and /flaky."""

    def __init__(self, slot: str, port: int = 0) -> None:
        self.slot = slot
        self.let_go = threading.Event()  # ends the requests held on /held
        self.stub = Stub(port=port, keep_alive=True)
        self.stub.otherwise_fn(self.echo)
        self.stub.route_fn("/held", self.held)
        self.stub.route_fn("/flaky", self.flaky)
        for path, reply in EDGE_CASES.items():
            self.stub.route(path, reply)

    @property
    def port(self) -> int:
        return self.stub.port

    @property
    def url(self) -> str:
        return self.stub.url

    def stop(self) -> None:
        """Stops serving and closes the keep-alive connections too, as a stopped process would."""
        self.stub.stop()

    def echo(self, seen: Seen) -> Reply:
        return json_reply(
            200,
            {
                "slot": self.slot,
                "method": seen.method,
                "target": seen.path,
                "headers": [[k, v] for k, v in seen.headers.items()],
                "body": seen.body.decode("latin-1"),
            },
        )

    def held(self, seen: Seen) -> Reply:
        self.let_go.wait(HANG_S)
        return self.echo(seen)

    def flaky(self, seen: Seen) -> Reply:
        """Hangs up on a reused connection without a byte of answer."""
        return Reply(hang_up=True) if seen.on_connection > 1 else self.echo(seen)


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
            outcome.update(status=resp.status, slot=json.loads(data)["slot"], let_go=blue.let_go.is_set())
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
        blue.let_go.set()
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


# -- the command router driver (drivers/router.py) ---------------------------------------------------


def router_env(tmp_path: Path, closed_url: str, active: str, after_switch: str) -> Environment:
    """A router whose `active` prints `active` until `switch` ran, then `after_switch`."""
    state = tmp_path / "router-state.txt"
    state.write_text(active)
    py = Path(sys.executable).as_posix()
    commands = {
        "active": [py, "-c", f"print(open({str(state)!r}).read())"],
        "switch": [py, "-c", f"open({str(state)!r}, 'w').write({after_switch!r})", "{slot}"],
    }
    env = command_env(tmp_path, closed_url, commands)
    return dataclasses.replace(env, drivers=dataclasses.replace(env.drivers, router="command"))


def test_a_switch_to_the_live_slot_is_an_error(tmp_path: Path, closed_url: str) -> None:
    router = router_driver("command", router_env(tmp_path, closed_url, "green", "green"), {})
    with pytest.raises(DriverError, match=r"^switch to green refused: green is already the live slot"):
        router.switch("green")
    assert (tmp_path / "router-state.txt").read_text() == "green"


def test_a_switch_the_router_does_not_take_is_an_error(tmp_path: Path, closed_url: str) -> None:
    router = router_driver("command", router_env(tmp_path, closed_url, "blue", "blue"), {})
    with pytest.raises(
        DriverError, match=r"^switched traffic from blue to green, but the router now reports blue"
    ):
        router.switch("green")
    ok = router_driver("command", router_env(tmp_path, closed_url, "blue", "green"), {})
    action = ok.switch("green")
    assert (action.detail["from"], action.detail["live_after"]) == ("blue", "green")
