"""A loopback HTTP server whose answers each test scripts, and that records what it saw (tests share it).

`Stub()` runs a ThreadingHTTPServer on 127.0.0.1 (or another loopback address), on a port of the system's
choosing unless one is asked for; the fixture `stub` (exposed by tests/conftest.py) starts one for a test and
stops it afterwards, and a module-scoped fixture uses `with Stub(...) as stub`. A test scripts the replies
per path (`route`, `route_fn`, and `otherwise` for every other path) and reads back the requests in `requests`.

Every method is answered the same way, HEAD without a body, CONNECT as a proxy is asked (its path is the
`host:port` target). A reply can wait (`delay_s`), carry any headers (repeated ones too), and be framed as the
HTTP edge cases a client or a router must survive: chunked, cut short, delimited by closing the connection, or
no answer at all. With `keep_alive` the server speaks HTTP/1.1 and keeps connections open; stopping it hangs
up on them too, as a stopped process does.
"""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import pytest

Headers = Mapping[str, str] | tuple[tuple[str, str], ...]  # a tuple of pairs for a header sent twice


@dataclass(frozen=True)
class Reply:
    """One answer. Framed by a Content-Length of the body unless `chunks` (sent chunked instead of the body),
    `length` (the Content-Length declared for a body that is cut short; the connection closes after it) or
    `close_delimited` (no length; the connection closes after the body) say otherwise. `hang_up` closes the
    connection without a byte of answer."""

    status: int = 200
    body: bytes = b""
    headers: Headers = ()
    delay_s: float = 0.0
    chunks: tuple[bytes, ...] = ()
    length: int | None = None
    close_delimited: bool = False
    hang_up: bool = False


def json_reply(status: int, data: object) -> Reply:
    return Reply(status, json.dumps(data).encode("utf-8"), {"Content-Type": "application/json"})


@dataclass(frozen=True)
class Seen:
    """One request as the server received it (header names lower-case)."""

    method: str
    path: str  # the request target as sent: with its query, absolute when asked as a proxy
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival
    version: str  # e.g. "HTTP/1.1"
    nth: int  # how many earlier requests the same path had
    on_connection: int  # 1 for the first request on its connection, 2 for the next on the same one, ...

    @property
    def line(self) -> str:
        return f"{self.method} {self.path} {self.version}"


Route = Callable[[Seen], Reply]


class Stub:
    """A server on host:port (port 0: one the system hands out), serving from its creation until `stop()` or
    the end of a `with`: its address, its script and what it saw."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, keep_alive: bool = False) -> None:
        self.requests: list[Seen] = []
        self.connections = 0  # accepted, whether or not a request came on them
        self.stopping = threading.Event()
        self._routes: dict[str, Route] = {}
        self._otherwise: Route = _in_order((Reply(404, b"not found"),))
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server = _Server((host, port), self, keep_alive)  # OSError if the address cannot be bound
        self.host, self.port = host, int(self._server.server_address[1])
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"stub {self.url}",
            daemon=True,
        )
        self._thread.start()

    def route(self, path: str, *replies: Reply) -> None:
        """Answer `path` with `replies` in order; the last one repeats."""
        self.route_fn(path, _in_order(replies))

    def route_fn(self, path: str, route: Route) -> None:
        """Answer `path` with what `route` makes of each request (called on the request's own thread)."""
        self._routes[path] = route

    def otherwise(self, *replies: Reply) -> None:
        """Answer every path without a route with `replies` in order (by default: 404)."""
        self.otherwise_fn(_in_order(replies))

    def otherwise_fn(self, route: Route) -> None:
        self._otherwise = route

    def paths(self) -> list[str]:
        with self._lock:
            return [seen.path for seen in self.requests]

    def first_at(self, path: str) -> float:
        with self._lock:
            return next(seen.at for seen in self.requests if seen.path == path)

    def forget(self) -> None:
        """Start counting afresh: no request or connection seen yet."""
        with self._lock:
            self.requests.clear()
            self._counts.clear()
            self.connections = 0

    def connected(self) -> None:
        with self._lock:
            self.connections += 1

    def answer(self, seen: Seen) -> Reply:
        route = self._routes.get(seen.path, self._otherwise)
        return route(seen)

    def record(
        self, method: str, path: str, version: str, headers: dict[str, str], body: bytes, on_connection: int
    ) -> Seen:
        with self._lock:
            nth = self._counts.get(path, 0)
            self._counts[path] = nth + 1
            seen = Seen(method, path, headers, body, time.monotonic(), version, nth, on_connection)
            self.requests.append(seen)
        return seen

    def stop(self) -> None:
        """Stop serving and hang up on open connections; a second call does nothing."""
        if self.stopping.is_set():
            return
        self.stopping.set()  # cuts short the replies still waiting out a delay
        self._server.shutdown()
        self._server.server_close()
        self._server.hang_up_all()
        self._thread.join(timeout=5)

    def __enter__(self) -> Stub:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _in_order(replies: tuple[Reply, ...]) -> Route:
    return lambda seen: replies[min(seen.nth, len(replies) - 1)]


@pytest.fixture
def stub() -> Iterator[Stub]:
    """A stub on 127.0.0.1 for one test (every path answers 404 until the test routes it)."""
    with Stub() as running:
        yield running


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # a load test's clients connect at once
    allow_reuse_address = sys.platform != "win32"  # a port a test stopped can be served again at once

    def __init__(self, address: tuple[str, int], stub: Stub, keep_alive: bool) -> None:
        self.stub, self.keep_alive = stub, keep_alive
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (getfqdn); nothing here needs it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        self.stub.connected()
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def hang_up_all(self) -> None:
        """Close the connections still open (kept alive, or held by a reply that waits)."""
        with self._open_lock:
            open_now = list(self._open)
        for conn in open_now:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.protocol_version = "HTTP/1.1" if self.server.keep_alive else "HTTP/1.0"
        self.on_connection = 0

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        self.on_connection += 1
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        stub = self.server.stub
        reply = stub.answer(
            stub.record(self.command, self.path, self.request_version, headers, body, self.on_connection)
        )
        if reply.delay_s:
            stub.stopping.wait(reply.delay_s)  # stopping the stub cuts the wait short
        try:
            self._send(reply)
        except OSError:
            self.close_connection = True  # the client gave up (a timeout test)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_PURGE = do_CONNECT = _answer

    def _send(self, reply: Reply) -> None:
        if reply.hang_up:
            self.close_connection = True
            return
        self.send_response(reply.status)
        for name, value in _pairs(reply.headers):
            self.send_header(name, value)
        if reply.chunks:
            self.send_header("Transfer-Encoding", "chunked")
        elif reply.close_delimited:
            self.send_header("Connection", "close")  # also ends this connection after the reply
        else:
            self.send_header("Content-Length", str(len(reply.body) if reply.length is None else reply.length))
        self.end_headers()
        if self.command == "HEAD":
            return
        if reply.chunks:
            for part in reply.chunks:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.wfile.write(reply.body)
        if reply.length is not None and reply.length != len(reply.body):
            self.close_connection = True  # dies mid-body


def _pairs(headers: Headers) -> Iterable[tuple[str, str]]:
    return headers.items() if isinstance(headers, Mapping) else headers
