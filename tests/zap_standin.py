"""A stand-in for a ZAP daemon's API, for the project's own tests (ZAP itself needs Java and cannot be installed
on the build machines).

It answers exactly the calls drivers.zap makes, with the response shapes ZAP documents for its JSON API
(`{"version": ...}`, `{"Result": "OK"}`, `{"scan": "0"}`, `{"status": "100"}`, `{"recordsToScan": "0"}`,
`{"alerts": [...]}` with ZAP's per-instance alert fields as strings, `/OTHER/core/other/htmlreport/` as HTML)
and ZAP's API errors (HTTP 400 with `{"code": "bad_api_key", "message": ...}`). It also answers requests in
the proxy form zapv2 uses by default (`GET http://zap/JSON/...`). Behaviours a test needs: a passive scan
queue that drains slowly (or never), a spider that never finishes, a daemon that never becomes ready.

In-process: `with ZapStandin(alerts=[...]) as zap: ... zap.url ... zap.calls`.
As a fake `zap.sh` (started by drivers.zap from `[zap] path`):
    python tests/zap_standin.py -daemon -host 127.0.0.1 -port 8090 -config api.key=KEY [--never-ready]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

VERSION = "2.16.0"


@dataclass
class Call:
    method: str
    path: str  # /JSON/core/view/version/
    params: dict[str, str]
    api_key: str | None


@dataclass
class StandinState:
    api_key: str = "standin-key"
    alerts: list[dict[str, Any]] = field(default_factory=list)
    # recordsToScan answers, one per poll; the last one repeats (so [5] never drains).
    records_to_scan: list[int] = field(default_factory=lambda: [0])
    spider_polls: int | None = 2  # status polls until 100 (None: never finishes)
    spider_urls: list[str] = field(default_factory=list)
    hang: bool = False  # accept connections, never answer (a daemon that never becomes ready)
    calls: list[Call] = field(default_factory=list)
    spider_started: dict[str, int] = field(default_factory=dict)  # scanId -> status polls so far
    spider_stopped: set[str] = field(default_factory=set)
    record_polls: int = 0
    shutdown_requested: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


def alert(
    plugin_id: str,
    name: str,
    risk: str,
    url: str,
    *,
    alert_ref: str = "",
    confidence: str = "Medium",
    param: str = "",
    evidence: str = "",
    cweid: str = "-1",
    wascid: str = "-1",
) -> dict[str, Any]:
    """One alert as ZAP's core/view/alerts returns it (one entry per instance, every field a string)."""
    return {
        "sourceid": "3", "other": "", "method": "GET", "evidence": evidence, "pluginId": plugin_id,
        "cweid": cweid, "confidence": confidence, "sourceMessageId": 1, "wascid": wascid,
        "description": f"{name} (stand-in)", "messageId": "1", "inputVector": "", "url": url, "tags": {},
        "reference": "", "solution": "Fix it.", "alert": name, "param": param, "attack": "", "name": name,
        "risk": risk, "id": "0", "alertRef": alert_ref or plugin_id,
    }  # fmt: skip


Handler = Callable[[StandinState, dict[str, str]], Any]


def _version(state: StandinState, params: dict[str, str]) -> Any:
    return {"version": VERSION}


def _ok(state: StandinState, params: dict[str, str]) -> Any:
    return {"Result": "OK"}


def _access_url(state: StandinState, params: dict[str, str]) -> Any:
    if "url" not in params:
        return 400, {"code": "missing_parameter", "message": "Missing Parameter (url)"}
    return {
        "accessUrl": [{"id": "1", "requestHeader": f"GET {params['url']} HTTP/1.1", "responseHeader": ""}]
    }


def _spider_scan(state: StandinState, params: dict[str, str]) -> Any:
    scan_id = str(len(state.spider_started))
    state.spider_started[scan_id] = 0
    return {"scan": scan_id}


def _spider_status(state: StandinState, params: dict[str, str]) -> Any:
    scan_id = params.get("scanId", "")
    if scan_id not in state.spider_started:
        return 400, {"code": "does_not_exist", "message": "Does Not Exist (scanId)"}
    state.spider_started[scan_id] += 1
    polls = state.spider_polls
    done = scan_id in state.spider_stopped or (polls is not None and state.spider_started[scan_id] >= polls)
    return {"status": "100" if done else str(min(99, 10 * state.spider_started[scan_id]))}


def _spider_stop(state: StandinState, params: dict[str, str]) -> Any:
    state.spider_stopped.add(params.get("scanId", ""))
    return {"Result": "OK"}


def _spider_results(state: StandinState, params: dict[str, str]) -> Any:
    return {"results": list(state.spider_urls)}


def _records_to_scan(state: StandinState, params: dict[str, str]) -> Any:
    schedule = state.records_to_scan
    value = schedule[min(state.record_polls, len(schedule) - 1)]
    state.record_polls += 1
    return {"recordsToScan": str(value)}


def _alerts(state: StandinState, params: dict[str, str]) -> Any:
    base = params.get("baseurl", "")
    matching = [a for a in state.alerts if str(a["url"]).startswith(base)]
    start = int(params.get("start", "0") or 0)
    count = int(params.get("count", "0") or 0)
    return {"alerts": matching[start : start + count] if count else matching[start:]}


def _shutdown(state: StandinState, params: dict[str, str]) -> Any:
    state.shutdown_requested.set()
    return {"Result": "OK"}


ROUTES: dict[str, Handler] = {
    "/JSON/core/view/version/": _version,
    "/JSON/core/action/newSession/": _ok,
    "/JSON/core/action/accessUrl/": _access_url,
    "/JSON/spider/action/scan/": _spider_scan,
    "/JSON/spider/view/status/": _spider_status,
    "/JSON/spider/action/stop/": _spider_stop,
    "/JSON/spider/view/results/": _spider_results,
    "/JSON/pscan/view/recordsToScan/": _records_to_scan,
    "/JSON/core/view/alerts/": _alerts,
    "/JSON/core/action/shutdown/": _shutdown,
}
HTML_REPORT = "<!DOCTYPE html><html><head><title>ZAP Scanning Report</title></head><body><h1>ZAP Scanning Report</h1>{rows}</body></html>"


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        state = self.server.state
        if state.hang:
            time.sleep(30)  # never answers; the client's timeout must end the wait, not this
            self.close_connection = True
            return
        split = urlsplit(self.path)  # "/JSON/..." or, through zapv2's proxy form, "http://zap/JSON/..."
        params = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            body = self.rfile.read(length).decode("utf-8", "replace")
            params.update({k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()})
        key = self.headers.get("X-ZAP-API-Key") or params.pop("apikey", None)
        with state.lock:
            state.calls.append(Call(self.command, split.path, dict(params), key))
            if key != state.api_key:
                self._json(400, {"code": "bad_api_key", "message": "Bad API Key"})
                return
            if split.path == "/OTHER/core/other/htmlreport/":
                rows = "".join(f"<p>{a['pluginId']} {a['name']}: {a['url']}</p>" for a in state.alerts)
                self._send(200, HTML_REPORT.format(rows=rows).encode(), "text/html; charset=UTF-8")
                return
            route = ROUTES.get(split.path)
            if route is None:
                self._json(400, {"code": "bad_view", "message": f"Bad View ({split.path})"})
                return
            answer = route(state, params)
        status, data = answer if isinstance(answer, tuple) else (200, answer)
        self._json(status, data)
        if split.path == "/JSON/core/action/shutdown/":
            threading.Thread(target=self.server.shutdown, daemon=True).start()

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data).encode(), "application/json; charset=UTF-8")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the calls are recorded in the state."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: StandinState) -> None:
        self.state = state
        super().__init__(address, _Handler)


class ZapStandin:
    """The stand-in daemon in a thread of the test process."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **state: Any) -> None:
        self.state = StandinState(**state)
        self._server = _Server((host, port), self.state)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host if isinstance(host, str) else host.decode()}:{port}"

    @property
    def calls(self) -> list[Call]:
        return self.state.calls

    def paths(self) -> list[str]:
        """The API paths called, in order, without the /JSON/ or /OTHER/ prefix: "core/view/version"."""
        return [c.path.strip("/").split("/", 1)[1] for c in self.calls]

    def __enter__(self) -> ZapStandin:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def main(argv: Sequence[str] | None = None) -> int:
    """Play `zap.sh -daemon -host H -port P -config api.key=K` (other ZAP options are accepted and ignored)."""
    parser = argparse.ArgumentParser(prog="zap.sh (stand-in)")
    parser.add_argument("-daemon", action="store_true")
    parser.add_argument("-host", default="127.0.0.1")
    parser.add_argument("-port", type=int, default=8080)
    parser.add_argument("-config", action="append", default=[])
    parser.add_argument("--never-ready", action="store_true", help="start, but never open the API port")
    args, _ = parser.parse_known_args(argv)
    if args.never_ready:
        time.sleep(120)  # like a JVM that never finishes starting; the runbook's start_timeout_s must end it
        return 1
    key = next((c.split("=", 1)[1] for c in args.config if c.startswith("api.key=")), "")
    state = StandinState(
        api_key=key,
        alerts=[alert("10038", "Content Security Policy (CSP) Header Not Set", "Medium", "http://127.0.0.1/",
                      alert_ref="10038-1", confidence="High", cweid="693", wascid="15")],
        records_to_scan=[2, 1, 0],
    )  # fmt: skip
    server = _Server((args.host, args.port), state)
    print(f"ZAP stand-in {VERSION} listening on {args.host}:{args.port}", flush=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    # Bounded: a stand-in nobody stops exits by itself.
    state.shutdown_requested.wait(timeout=120)
    time.sleep(0.2)  # let the shutdown answer go out
    server.shutdown()
    server.server_close()
    print("ZAP stand-in stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
