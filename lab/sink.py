"""Webhook sink: stands in for the Teams/Slack incoming webhook that deploy notifications go to.

``python sink.py --host 127.0.0.1 --port N --log-dir DIR`` accepts POSTed JSON on any path and appends one
line per notification to ``DIR/notifications_<YYYY-MM-DD>.jsonl`` (local date): the notification log.
``GET /`` answers 200 (the reachability check of the preconditions); ``GET /received`` lists what arrived.
Standalone and standard library only: it runs as its own process, from any working directory.
"""

from __future__ import annotations

import argparse
import json
import signal
import socketserver
import sys
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

MAX_BODY = 1024 * 1024
# Only what helps read a delivery afterwards; credentials and signatures never reach the log.
KEPT_HEADERS = (
    "content-type",
    "user-agent",
    "x-event-type",
    "x-request-id",
    "x-mcms-event",
    "x-mcms-environment",
)


def log(message: str) -> None:
    stamp = datetime.now().astimezone().isoformat(timespec="milliseconds")
    sys.stderr.write(f"{stamp} sink {message}\n")
    sys.stderr.flush()


class SinkServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = sys.platform != "win32"

    def __init__(self, address: tuple[str, int], log_dir: Path) -> None:
        self.log_dir = log_dir
        self.lock = threading.Lock()
        super().__init__(address, SinkHandler)

    def server_bind(self) -> None:
        # Skip HTTPServer's FQDN lookup: it can stall start-up on a slow DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def record(self, entry: dict[str, Any]) -> Path:
        day = datetime.now().astimezone().strftime("%Y-%m-%d")
        path = self.log_dir / f"notifications_{day}.jsonl"
        line = json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n"
        with self.lock, path.open("a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
        return path

    def received(self) -> list[Any]:
        entries: list[Any] = []
        with self.lock:
            for path in sorted(self.log_dir.glob("notifications_*.jsonl")):
                for line in path.read_text(encoding="utf-8").splitlines():
                    if line.strip():
                        entries.append(json.loads(line))
        return entries


class SinkHandler(BaseHTTPRequestHandler):
    server: SinkServer
    server_version = "WebhookSink"
    sys_version = ""

    def version_string(self) -> str:
        # No Python or OS version in the Server header: scanners rightly report that as a leak.
        return self.server_version

    protocol_version = "HTTP/1.1"

    def _reply(self, status: int, data: Any) -> None:
        body = json.dumps(data, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/":
            self._reply(200, {"ok": True, "service": "webhook-sink"})
        elif path == "/received":
            self._reply(200, self.server.received())
        else:
            self._reply(404, {"ok": False, "error": "not found"})

    def do_POST(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True
            self._reply(413, {"ok": False, "error": "body missing or too large"})
            return
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            self._reply(400, {"ok": False, "error": "body is not JSON"})
            return
        entry = {
            "received_at": datetime.now().astimezone().isoformat(timespec="milliseconds"),
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items() if k.lower() in KEPT_HEADERS},
            "body": body,
        }
        self.server.record(entry)
        self._reply(200, {"ok": True})

    def log_message(self, format: str, *args: Any) -> None:
        log(f"{self.address_string()} {format % args}")


class _Shutdown(BaseException):
    """Raised by the stop signal handler. A BaseException, like KeyboardInterrupt: socketserver's
    ``except Exception`` around request handling would otherwise swallow a signal that lands mid-accept."""


def _raise_shutdown(signum: int, frame: FrameType | None) -> None:
    raise _Shutdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Webhook sink for deploy notifications")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    args.log_dir.mkdir(parents=True, exist_ok=True)
    try:
        server = SinkServer((args.host, args.port), args.log_dir)
    except OSError as exc:
        log(f"cannot listen on {args.host}:{args.port}: {exc}")
        return 2
    for name in ("SIGTERM", "SIGINT", "SIGBREAK"):
        signum = getattr(signal, name, None)
        if signum is not None:
            signal.signal(signum, _raise_shutdown)
    log(f"listening on http://{args.host}:{args.port}, writing to {args.log_dir}")
    try:
        server.serve_forever(poll_interval=0.5)
    except (_Shutdown, KeyboardInterrupt):
        log("stopping")
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
