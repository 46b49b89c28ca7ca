"""The Lab's router: a reverse proxy on the public address in front of the blue and green slots.

``python router.py --host 127.0.0.1 --port P --control-port C --backend blue=http://127.0.0.1:B
--backend green=http://127.0.0.1:G --active blue --state-file F`` stands in for the load balancer (or IIS ARR
farm) that the playbook's BG-4 switches. Standalone and standard library only: it runs as its own process.

Traffic (port P): every request goes to the ACTIVE backend, read once when the request starts, so a request in
flight finishes on the slot it started on while new ones go to the new slot. Method, path, query, body and
end-to-end headers pass through; hop-by-hop headers do not. The router adds ``X-Forwarded-For``,
``X-Forwarded-Proto``, ``X-Forwarded-Host`` and ``Via: 1.1 mcms-lab-router`` towards the backend, and ``Via``
plus ``X-Lab-Slot: <slot>`` (the slot that served it) on the response. Clients get HTTP/1.1 keep-alive; each
backend has a pool of keep-alive connections, and a request whose reused connection turns out closed before any
response byte is sent once more on a fresh connection. A backend that cannot be reached gets a 502 (504 on a
timeout) with ``{"error": "bad gateway", "backend": "<slot>"}``: an outage the monitor must see.

Control (port C, loopback only): ``GET /active``, ``POST /switch`` with ``{"to": "<slot>"}``, ``GET /stats``.
A switch is written to the state file before it takes effect, so a restarted router comes back on the same
slot (the file wins over ``--active``, which only names the slot of a router without a state file).

Only errors, switches and start/stop are logged (to stderr): one line per request would slow it under load.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import ipaddress
import json
import os
import re
import select
import signal
import socket
import socketserver
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

ROUTER_NAME = "mcms-lab-router"
SLOT_HEADER = "X-Lab-Slot"
MAX_REQUEST_BODY = 32 * 1024 * 1024  # request bodies are buffered (a retry must be able to resend them)
CHUNK = 64 * 1024
MAX_IDLE_PER_BACKEND = 64
CONNECT_TIMEOUT_S = 5.0
CLIENT_IDLE_TIMEOUT_S = 120.0
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Replaced by the router's own values (X-Forwarded-For is appended to instead), or reframed by it.
_REPLACED = frozenset(
    {"content-length", "expect", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-for"}
)
_DIGITS = re.compile(r"[0-9]{1,18}")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_SLOT_NAME = re.compile(r"[a-z][a-z0-9-]{0,31}")
_RETRYABLE = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)  # RemoteDisconnected included


def log(message: str) -> None:
    stamp = datetime.now().astimezone().isoformat(timespec="milliseconds")
    sys.stderr.write(f"{stamp} router {message}\n")
    sys.stderr.flush()


def now_iso() -> str:
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


def _clean(value: str) -> str:
    # Folded (obs-fold) header values keep their line breaks when parsed: never let one reach a header line.
    return value.replace("\r", " ").replace("\n", " ")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _connection_tokens(headers: Any) -> set[str]:
    tokens: set[str] = set()
    for value in headers.get_all("Connection") or ():
        tokens.update(t.strip().lower() for t in str(value).split(",") if t.strip())
    return tokens


if hasattr(select, "poll"):

    def _readable(sock: socket.socket) -> bool:
        poller = select.poll()  # no FD_SETSIZE limit, unlike select() on POSIX
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))

else:

    def _readable(sock: socket.socket) -> bool:
        return bool(select.select([sock], [], [], 0)[0])


# -- backends --------------------------------------------------------------------------------------


class Upstream:
    """One keep-alive connection to a backend; requests are written in one send (no Nagle stalls)."""

    __slots__ = ("sock",)

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    @classmethod
    def connect(cls, host: str, port: int, timeout: float) -> Upstream:
        sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S)
        sock.settimeout(timeout)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(sock)

    def exchange(self, method: str, data: bytes) -> http.client.HTTPResponse:
        self.sock.sendall(data)
        resp = http.client.HTTPResponse(self.sock, method=method)
        try:
            resp.begin()
        except BaseException:
            resp.close()
            raise
        return resp

    def idle_but_closed(self) -> bool:
        # An idle keep-alive connection has nothing to read; readable means EOF (or junk): not reusable.
        try:
            return _readable(self.sock)
        except (OSError, ValueError):
            return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class Backend:
    def __init__(self, name: str, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/") or parts.query:
            raise ValueError(f"backend {name}: expected http://host:port, got {url!r}")
        self.name = name
        self.url = url.rstrip("/")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.timeout = timeout
        self._idle: deque[Upstream] = deque()
        self._lock = threading.Lock()

    def _take_idle(self) -> Upstream | None:
        while True:
            with self._lock:
                if not self._idle:
                    return None
                conn = self._idle.pop()  # most recently used first: least likely to have been closed
            if not conn.idle_but_closed():
                return conn
            conn.close()

    def release(self, conn: Upstream) -> None:
        with self._lock:
            if len(self._idle) < MAX_IDLE_PER_BACKEND:
                self._idle.append(conn)
                return
        conn.close()

    def close_idle(self) -> None:
        with self._lock:
            idle, self._idle = list(self._idle), deque()
        for conn in idle:
            conn.close()

    def exchange(
        self, method: str, data: bytes, on_retry: Callable[[], None]
    ) -> tuple[Upstream, http.client.HTTPResponse]:
        """Send one request; ONE retry on a fresh connection when a reused one turns out closed."""
        conn = self._take_idle()
        reused = conn is not None
        while True:
            if conn is None:
                conn = Upstream.connect(self.host, self.port, self.timeout)
            try:
                return conn, conn.exchange(method, data)
            except _RETRYABLE:
                conn.close()
                if not reused:
                    raise
                # The backend closed this idle connection (restart, idle timeout) before answering anything.
                on_retry()
                conn, reused = None, False
            except BaseException:
                conn.close()
                raise


# -- routing state ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Active:
    slot: str
    generation: int
    switched_at: str


class Stats:
    def __init__(self, slots: list[str]) -> None:
        self._lock = threading.Lock()
        self.started_at = now_iso()
        self.requests = dict.fromkeys(slots, 0)
        self.errors = dict.fromkeys(slots, 0)
        self.in_flight = dict.fromkeys(slots, 0)
        self.retries = 0
        self.rejected = 0
        self.client_aborts = 0
        self.switches = 0

    def begin(self, slot: str) -> None:
        with self._lock:
            self.in_flight[slot] += 1

    def end(self, slot: str, outcome: str) -> None:
        with self._lock:
            self.in_flight[slot] -= 1
            if outcome == "ok":
                self.requests[slot] += 1
            elif outcome == "client-gone":
                self.requests[slot] += 1
                self.client_aborts += 1
            else:
                self.errors[slot] += 1

    def add(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": dict(self.requests),
                "errors": dict(self.errors),
                "router_errors": sum(self.errors.values()),
                "in_flight": dict(self.in_flight),
                "retries": self.retries,
                "rejected": self.rejected,
                "client_aborts": self.client_aborts,
                "switches": self.switches,
                "started_at": self.started_at,
            }


class Router:
    def __init__(self, backends: dict[str, Backend], active: str, state_file: Path | None) -> None:
        if active not in backends:
            raise ValueError(f"--active {active!r} is not a backend ({', '.join(backends)})")
        self.backends = backends
        self.state_file = state_file
        self.stats = Stats(list(backends))
        self._switch_lock = threading.Lock()
        self.active = self._load(active)  # read without a lock: one attribute read is atomic
        self._persist(self.active)

    def _load(self, default: str) -> Active:
        fresh = Active(default, 0, now_iso())
        if self.state_file is None:
            return fresh
        try:
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return fresh
        except (OSError, ValueError) as exc:
            log(f"ignoring unreadable state file {self.state_file}: {exc}")
            return fresh
        slot = data.get("active") if isinstance(data, dict) else None
        if slot not in self.backends:
            log(f"state file {self.state_file} names slot {slot!r}, not a backend: starting on {default}")
            return fresh
        try:
            return Active(
                str(slot), int(data.get("generation", 0)), str(data.get("switched_at") or now_iso())
            )
        except (TypeError, ValueError):
            return Active(str(slot), 0, now_iso())

    def _persist(self, active: Active) -> None:
        if self.state_file is None:
            return
        data = {
            "active": active.slot,
            "generation": active.generation,
            "switched_at": active.switched_at,
            "backends": {name: b.url for name, b in self.backends.items()},
        }
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_name(f".{self.state_file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        for attempt in range(20):
            try:
                os.replace(tmp, self.state_file)
                return
            except PermissionError:
                # Windows refuses to replace a file that someone is reading at this very moment.
                if attempt == 19:
                    raise
                time.sleep(0.05)

    def describe(self) -> dict[str, Any]:
        active = self.active
        return {
            "active": active.slot,
            "backends": {name: b.url for name, b in self.backends.items()},
            "switched_at": active.switched_at,
            "generation": active.generation,
        }

    def switch(self, to: str) -> tuple[Active, Active]:
        """Persist, then flip: requests that already read the old slot finish there."""
        if to not in self.backends:
            raise KeyError(to)
        with self._switch_lock:
            previous = self.active
            if previous.slot == to:
                return previous, previous
            new = Active(to, previous.generation + 1, now_iso())
            self._persist(new)
            self.active = new
            self.stats.add("switches")
        log(f"switched traffic {previous.slot} -> {to} (generation {new.generation})")
        return new, previous


# -- servers ---------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default 5 drops connections when 50 clients connect at once
    # On Windows SO_REUSEADDR lets a second server steal a bound port; exclusive use is the safe equivalent.
    allow_reuse_address = sys.platform != "win32"

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], router: Router
    ) -> None:
        self.router = router
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)

    def server_bind(self) -> None:
        if sys.platform == "win32":
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
        # HTTPServer.server_bind resolves the FQDN, which can stall start-up for seconds on a corporate DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return  # a client that went away is not the router's error
        log(f"error serving {client_address}: {exc!r}")


class _JsonAnswers(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = ROUTER_NAME
    sys_version = ""

    def version_string(self) -> str:
        return self.server_version

    def answer(self, status: int, data: Any, extra: tuple[tuple[str, str], ...] = ()) -> None:
        body = json.dumps(data, indent=2).encode("utf-8") + b"\n"
        lines = [
            f"{self.protocol_version} {status} {_phrase(status)}",
            f"Date: {formatdate(usegmt=True)}",
            f"Server: {ROUTER_NAME}",
            "Content-Type: application/json; charset=utf-8",
            f"Content-Length: {len(body)}",
            "Cache-Control: no-store",
            *(f"{k}: {v}" for k, v in extra),
        ]
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head if self.command == "HEAD" else head + body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # Malformed requests (bad request line, too many headers): the client's error, answered in JSON.
        self.close_connection = True
        self.answer(code, {"error": message or HTTPStatus(code).phrase})

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """No line per request: too slow under load. Errors and switches are logged."""

    def log_message(self, format: str, *args: Any) -> None:
        log(f"{self.address_string()} {format % args}")


class ProxyHandler(_JsonAnswers):
    timeout = CLIENT_IDLE_TIMEOUT_S  # an idle keep-alive client is let go after this
    disable_nagle_algorithm = True

    def handle_one_request(self) -> None:
        """BaseHTTPRequestHandler's, with every method proxied instead of dispatched to do_<METHOD>."""
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline = self.request_version = self.command = ""
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            self.proxy()
        except (TimeoutError, ConnectionError):
            self.close_connection = True  # the client went quiet or away

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        self.server.router.stats.add("rejected")
        super().send_error(code, message, explain)

    # -- request

    def proxy(self) -> None:
        router = self.server.router
        if self.command == "CONNECT":
            self.send_error(HTTPStatus.METHOD_NOT_ALLOWED, "CONNECT is not supported by this router")
            return
        body = self._read_body()
        if body is None:
            return
        active = router.active  # read ONCE: this request stays on this slot whatever switches meanwhile
        slot = active.slot
        backend = router.backends[slot]
        data = self._upstream_request(body)
        router.stats.begin(slot)
        outcome = "error"
        try:
            try:
                conn, resp = backend.exchange(self.command, data, lambda: router.stats.add("retries"))
            except TimeoutError as exc:
                log(f"{self.command} {self._target()} -> {slot}: backend timed out ({exc})")
                self._gateway_error(504, "gateway timeout", slot)
                return
            except (OSError, http.client.HTTPException) as exc:
                log(f"{self.command} {self._target()} -> {slot} ({backend.url}): {type(exc).__name__}: {exc}")
                self._gateway_error(502, "bad gateway", slot)
                return
            outcome = self._relay(backend, conn, resp, slot)
        finally:
            router.stats.end(slot, outcome)

    def _target(self) -> str:
        target = self.path
        if target.startswith(("http://", "https://")):  # absolute-form: the backend gets origin-form
            parts = urlsplit(target)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return target

    def _read_body(self) -> bytes | None:
        """The whole request body (de-chunked), or None when an error was answered."""
        codings = ",".join(self.headers.get_all("Transfer-Encoding") or [])
        encodings = [e.strip().lower() for e in codings.split(",") if e.strip()]
        if encodings:
            if encodings[-1] != "chunked":
                self.send_error(HTTPStatus.BAD_REQUEST, "unsupported Transfer-Encoding")
                return None
            if self.headers.get("Content-Length") is not None:
                self.close_connection = True  # both framings: smuggling territory, do not reuse
            return self._read_chunked()
        length = self._content_length()
        if length is None:
            return None
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            self.close_connection = True  # the client hung up mid-body: nothing to forward
            return None
        return body

    def _content_length(self) -> int | None:
        raw = self.headers.get_all("Content-Length") or []
        if not raw:
            return 0
        values = {v.strip() for v in ",".join(raw).split(",")}
        text = next(iter(values))
        if len(values) != 1 or not _DIGITS.fullmatch(text):
            self.send_error(HTTPStatus.BAD_REQUEST, "invalid Content-Length")
            return None
        if int(text) > MAX_REQUEST_BODY:
            self._too_large()
            return None
        return int(text)

    def _too_large(self) -> None:
        self.send_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body limited to {MAX_REQUEST_BODY} bytes")

    def _read_chunked(self) -> bytes | None:
        parts: list[bytes] = []
        total = 0
        while True:
            size_text = self.rfile.readline(1026).split(b";", 1)[0].strip()
            if not _HEX.fullmatch(size_text):
                self.send_error(HTTPStatus.BAD_REQUEST, "invalid chunked body")
                return None
            size = int(size_text, 16)
            total += size
            if total > MAX_REQUEST_BODY:
                self._too_large()
                return None
            if size == 0:
                break
            chunk = self.rfile.read(size)
            if len(chunk) < size:
                self.close_connection = True
                return None
            parts.append(chunk)
            self.rfile.readline(3)
        while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
            pass  # trailers are dropped
        return b"".join(parts)

    def _upstream_request(self, body: bytes) -> bytes:
        dropped = HOP_BY_HOP | _REPLACED | _connection_tokens(self.headers)
        lines = [f"{self.command} {self._target()} HTTP/1.1"]
        host = self.headers.get("Host")
        if host is None:
            host = f"{self.server.server_name}:{self.server.server_port}"
            lines.append(f"Host: {host}")
        forwarded_for: list[str] = []
        via: list[str] = []
        for name, value in self.headers.items():
            lname = name.lower()
            if lname == "x-forwarded-for":
                forwarded_for.append(_clean(value))
            elif lname == "via":
                via.append(_clean(value))
            elif lname not in dropped:
                lines.append(f"{name}: {_clean(value)}")
        version = self.request_version.removeprefix("HTTP/")
        lines += [
            f"X-Forwarded-For: {', '.join([*forwarded_for, self.client_address[0]])}",
            "X-Forwarded-Proto: http",
            f"X-Forwarded-Host: {_clean(host)}",
            f"Via: {', '.join([*via, f'{version} {ROUTER_NAME}'])}",
        ]
        if body or "Content-Length" in self.headers or "Transfer-Encoding" in self.headers:
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace") + body

    # -- response

    def _gateway_error(self, status: int, error: str, slot: str) -> None:
        self.close_connection = self.close_connection or self.request_version == "HTTP/1.0"
        self.answer(
            status, {"error": error, "backend": slot}, ((SLOT_HEADER, slot), ("Via", f"1.1 {ROUTER_NAME}"))
        )

    def _response_head(self, resp: http.client.HTTPResponse, slot: str) -> tuple[list[str], str, int | None]:
        """Status line and headers for the client, the framing ("none", "length", "chunked", "close")
        and the body length when known."""
        dropped = HOP_BY_HOP | {"content-length"} | _connection_tokens(resp.msg)
        lines = [f"{self.protocol_version} {resp.status} {_clean(resp.reason or _phrase(resp.status))}"]
        via: list[str] = []
        for name, value in resp.msg.items():
            lname = name.lower()
            if lname == "via":
                via.append(_clean(value))
            elif lname not in dropped:
                lines.append(f"{name}: {_clean(value)}")
        version = "1.0" if resp.version == 10 else "1.1"
        lines += [f"Via: {', '.join([*via, f'{version} {ROUTER_NAME}'])}", f"{SLOT_HEADER}: {slot}"]
        length: int | None = None
        if self.command == "HEAD" or resp.status in (204, 304) or resp.status < 200:
            framing = "none"
            declared = resp.msg.get("Content-Length")
            if declared is not None and resp.status >= 200 and resp.status != 204:
                lines.append(f"Content-Length: {_clean(declared)}")
        elif not resp.chunked and resp.length is not None:
            framing, length = "length", resp.length
            lines.append(f"Content-Length: {length}")
        elif self.request_version not in ("HTTP/0.9", "HTTP/1.0"):
            framing = "chunked"
            lines.append("Transfer-Encoding: chunked")
        else:
            framing = "close"
            self.close_connection = True
        if self.close_connection:
            lines.append("Connection: close")
        elif self.request_version == "HTTP/1.0":
            lines.append("Connection: keep-alive")
        return lines, framing, length

    def _relay(self, backend: Backend, conn: Upstream, resp: http.client.HTTPResponse, slot: str) -> str:
        """Stream the backend's response to the client; "ok", "client-gone" or "error"."""
        lines, framing, length = self._response_head(resp, slot)
        pending = ("\r\n".join(lines) + "\r\n\r\n").encode(
            "latin-1", "replace"
        )  # goes out with the first bytes
        sent = 0
        reusable = False
        try:
            while True:
                try:
                    chunk = _read_piece(resp, framing, length, sent)
                except (OSError, http.client.HTTPException) as exc:
                    return self._broken(exc, slot, head_sent=not pending)
                sent += len(chunk)
                last = not chunk or (length is not None and sent >= length)
                if framing == "chunked":
                    out = b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunk else b"0\r\n\r\n"
                else:
                    out = chunk
                try:
                    if pending or out:
                        self.wfile.write(pending + out)
                except OSError:
                    self.close_connection = True
                    return "client-gone"
                pending = b""
                if last:
                    reusable = not resp.will_close and resp.status >= 200  # 1xx: a final answer follows
                    return "ok"
        finally:
            resp.close()
            if reusable:
                backend.release(conn)
            else:
                conn.close()

    def _broken(self, exc: BaseException, slot: str, *, head_sent: bool) -> str:
        log(f"{self.command} {self._target()} -> {slot}: backend response broke off: {exc!r}")
        if head_sent:
            self.close_connection = True  # the client sees a truncated response, never a wrong one
        else:
            self._gateway_error(502, "bad gateway", slot)
        return "error"


def _read_piece(resp: http.client.HTTPResponse, framing: str, length: int | None, sent: int) -> bytes:
    """The next bytes of the backend's body, b"" at its end; IncompleteRead when it ends early."""
    if framing == "none":
        return b""
    want = CHUNK if length is None else min(CHUNK, length - sent)
    if not want:
        return b""
    chunk = resp.read1(want)
    if not chunk and length is not None:
        raise http.client.IncompleteRead(b"", length - sent)
    return chunk


class ControlHandler(_JsonAnswers):
    def _loopback_only(self) -> bool:
        try:
            ok = ipaddress.ip_address(self.client_address[0]).is_loopback
        except ValueError:
            ok = False
        if not ok:
            self.close_connection = True
            self.answer(403, {"error": "the control API answers loopback clients only"})
        return ok

    def do_GET(self) -> None:
        if not self._loopback_only():
            return
        router = self.server.router
        path = urlsplit(self.path).path
        if path == "/active":
            self.answer(200, router.describe())
        elif path == "/stats":
            self.answer(200, router.describe() | router.stats.snapshot())
        elif path == "/":
            self.answer(200, {"endpoints": ["GET /active", 'POST /switch {"to": slot}', "GET /stats"]})
        elif path == "/switch":
            self.answer(405, {"error": 'use POST /switch with {"to": slot}'}, (("Allow", "POST"),))
        else:
            self.answer(404, {"error": f"no resource at {path}"})

    def do_POST(self) -> None:
        if not self._loopback_only():
            return
        router = self.server.router
        path = urlsplit(self.path).path
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= 4096:
            self.close_connection = True
            self.answer(400, {"error": "send a JSON body of at most 4096 bytes with a Content-Length"})
            return
        raw = self.rfile.read(length)
        if path != "/switch":
            self.answer(404, {"error": f"no resource at {path}"})
            return
        known = ", ".join(router.backends)
        try:
            data = json.loads(raw or b"null")
        except ValueError:
            data = None
        to = data.get("to") if isinstance(data, dict) else None
        if not isinstance(to, str):
            self.answer(400, {"error": f'expected {{"to": slot}} with one of the known slots: {known}'})
            return
        try:
            new, previous = router.switch(to)
        except KeyError:
            self.answer(
                400, {"error": f"unknown slot {to!r}; known slots: {known}", "known": list(router.backends)}
            )
            return
        except OSError as exc:
            log(f"switch to {to} not done: cannot write the state file: {exc}")
            self.answer(500, {"error": f"switch not done: cannot write the state file: {exc}"})
            return
        self.answer(
            200,
            {
                "active": new.slot,
                "previous": previous.slot,
                "switched_at": new.switched_at,
                "generation": new.generation,
                "backends": {name: b.url for name, b in router.backends.items()},
            },
        )


# -- process ---------------------------------------------------------------------------------------


class _Shutdown(BaseException):
    """Raised by the stop signal handler; a BaseException so no ``except Exception`` swallows it."""


def _raise_shutdown(signum: int, frame: FrameType | None) -> None:
    raise _Shutdown


def _backend_arg(text: str) -> tuple[str, str]:
    name, sep, url = text.partition("=")
    if not sep or not _SLOT_NAME.fullmatch(name):
        raise argparse.ArgumentTypeError(
            f"expected NAME=http://host:port with a lower-case name, got {text!r}"
        )
    return name, url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The Lab's blue/green router (reverse proxy)")
    parser.add_argument("--host", default="127.0.0.1", help="public address to listen on")
    parser.add_argument("--port", type=int, required=True, help="public port")
    parser.add_argument("--control-host", default="127.0.0.1", help="control API address (loopback only)")
    parser.add_argument("--control-port", type=int, required=True)
    parser.add_argument("--backend", type=_backend_arg, action="append", required=True, metavar="NAME=URL")
    parser.add_argument("--active", help="slot for a router without a state file (default: the first)")
    parser.add_argument("--state-file", type=Path, help="where the active slot is kept across restarts")
    parser.add_argument("--backend-timeout", type=float, default=60.0, help="seconds to wait on a backend")
    args = parser.parse_args(argv)
    try:
        if not ipaddress.ip_address(args.control_host).is_loopback:
            parser.error(f"--control-host {args.control_host}: the control API listens on loopback only")
    except ValueError:
        parser.error(f"--control-host {args.control_host!r} is not an IP address")
    try:
        backends = {name: Backend(name, url, args.backend_timeout) for name, url in args.backend}
        router = Router(backends, args.active or next(iter(backends)), args.state_file)
    except (ValueError, OSError) as exc:
        log(f"cannot start: {exc}")
        return 2
    try:
        public = _Server((args.host, args.port), ProxyHandler, router)
    except OSError as exc:
        log(f"cannot listen on {args.host}:{args.port}: {exc}")
        return 2
    try:
        control = _Server((args.control_host, args.control_port), ControlHandler, router)
    except OSError as exc:
        public.server_close()
        log(f"cannot listen on {args.control_host}:{args.control_port} (control): {exc}")
        return 2
    for name in ("SIGTERM", "SIGINT", "SIGBREAK"):
        signum = getattr(signal, name, None)
        if signum is not None:
            signal.signal(signum, _raise_shutdown)
    control_thread = threading.Thread(
        target=control.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True
    )
    control_thread.start()
    slots = ", ".join(f"{name}={b.url}" for name, b in backends.items())
    log(
        f"listening on {args.host}:{args.port} (control {args.control_host}:{args.control_port}); "
        f"backends {slots}; active {router.active.slot} (generation {router.active.generation})"
    )
    try:
        public.serve_forever(poll_interval=0.5)
    except (_Shutdown, KeyboardInterrupt):
        log("stopping")
    finally:
        # The control server's thread is a daemon: it ends with the process, no need to wait for its poll.
        public.server_close()
        for backend in backends.values():
            backend.close_idle()
    return 0


if __name__ == "__main__":
    sys.exit(main())
