"""One slot of a remote environment's service, on loopback: /health with its version, Swagger, Kerberos challenge."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--slot", required=True)
    args = parser.parse_args()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/health":
                self._send(200, json.dumps({"status": "Healthy", "version": args.version, "slot": args.slot}),
                           "application/json")  # fmt: skip
            elif path == "/swagger/index.html":
                self._send(200, "<!doctype html><title>Swagger UI</title>", "text/html")
            elif path == "/auth/negotiate":
                self._send(401, "", "text/plain", {"WWW-Authenticate": "Negotiate"})
            elif path == "/":
                self._send(
                    200, f"<!doctype html><html lang=en><title>MCMS {args.version}</title>", "text/html"
                )
            else:
                self._send(404, "not found", "text/plain")

        def _send(self, status: int, body: str, ctype: str, headers: dict[str, str] | None = None) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
