"""A tiny HTTP client for loopback checks.

http.client rather than urllib: no proxy environment variables apply (an operator's HTTP_PROXY must not
swallow loopback probes) and no redirects are followed, so a 302 to /login is seen as a 302.
"""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class HttpReply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    elapsed_s: float
    url: str = field(default="")

    def header(self, name: str) -> str | None:
        lname = name.lower()
        return next((v for k, v in self.headers if k.lower() == lname), None)

    def header_all(self, name: str) -> list[str]:
        lname = name.lower()
        return [v for k, v in self.headers if k.lower() == lname]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    json_body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> HttpReply:
    """One request on a fresh connection.

    Every transport failure is an OSError (ConnectionRefusedError, TimeoutError, ...): a broken response from
    a server dying mid-answer is raised as ConnectionError, so probes have one kind of failure to handle.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    send_headers = dict(headers or {})
    if json_body is not None:
        body = json.dumps(json_body).encode("utf-8")
        send_headers.setdefault("Content-Type", "application/json")
    conn_type = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = conn_type(parts.hostname, parts.port, timeout=timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    started = time.perf_counter()
    try:
        conn.request(method, target, body=body, headers=send_headers)
        resp = conn.getresponse()
        data = resp.read()
        return HttpReply(resp.status, resp.getheaders(), data, time.perf_counter() - started, url)
    except http.client.HTTPException as exc:
        raise ConnectionError(f"{method} {url}: broken response ({exc!r})") from exc
    finally:
        conn.close()


def get(url: str, *, headers: dict[str, str] | None = None, timeout: float = 5.0) -> HttpReply:
    return request("GET", url, headers=headers, timeout=timeout)
