"""Probe verb: HTTP checks of the service, like the playbook's run-smoke.ps1.

A refused or failed connection is a result (status -1 with the error), never an exception: the playbook's §4
reads "every probe refused" as "the service is fully stopped". Hosts outside the environment's scope are
refused before any request is sent.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from drivers.base import quoted
from drivers.config import Service

REFUSED = -1


def url_at(base_url: str, path: str) -> str:
    """base_url + path, keeping a path prefix of the base (https://host/mcms + /health -> .../mcms/health)."""
    return base_url.rstrip("/") + "/" + path.lstrip("/")


class ScopeError(ValueError):
    """A probe or scan was asked to touch a host outside `[scope] allowed_hosts`."""


@dataclass(frozen=True)
class SmokeCheck:
    """One row of the smoke script: which path, and which answers count as up."""

    name: str
    path: str

    def passed(self, result: ProbeResult) -> bool:
        if self.name == "kerberos":
            # Unauthenticated, a Negotiate challenge means the auth endpoint is up.
            challenge = result.headers.get("www-authenticate", "")
            return result.status == 200 or (result.status == 401 and "negotiate" in challenge.lower())
        return result.status == 200

    @property
    def expectation(self) -> str:
        if self.name == "kerberos":
            return "401 with WWW-Authenticate: Negotiate, or 200"
        return "200"


def smoke_checks(service: Service) -> list[SmokeCheck]:
    """Playbook §8 DR-SMOKE: Health 200, Swagger 200, and the Kerberos endpoint answering."""
    return [
        SmokeCheck("health", service.health_path),
        SmokeCheck("swagger", service.swagger_path),
        SmokeCheck("kerberos", service.kerberos_path),
    ]


@dataclass
class ProbeResult:
    name: str
    url: str
    status: int
    latency_ms: float
    error: str | None = None
    attempts: int = 1
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def refused(self) -> bool:
        return self.status == REFUSED

    def json(self) -> Any:
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None

    def journal_data(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "status": self.status,
            "latency_ms": self.latency_ms,
            "error": self.error,
            "attempts": self.attempts,
        }


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A probe reports what the URL itself answers; a redirect is an answer, not something to follow.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Prober:
    """Sends bounded, scoped HTTP probes. Thread-safe: it holds no per-request state."""

    MAX_BODY = 256 * 1024

    def __init__(
        self,
        allowed_hosts: Iterable[str],
        timeout_s: float = 5.0,
        retries: int = 2,
        retry_delay_s: float = 0.2,
        ca_file: str = "",
    ) -> None:
        self.allowed_hosts = {h.lower() for h in allowed_hosts}
        self.timeout_s = timeout_s
        self.retries = retries
        self.retry_delay_s = retry_delay_s
        context = ssl.create_default_context(cafile=ca_file or None)
        # Internal services are reached directly: a corporate HTTP proxy must not sit between the
        # runbook and the node it is restoring.
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context), _NoRedirect()
        )

    def check_scope(self, url: str) -> None:
        host = (urlsplit(url).hostname or "").lower()
        if host not in self.allowed_hosts:
            allowed = ", ".join(sorted(self.allowed_hosts)) or "none"
            raise ScopeError(
                f"{url}: host {quoted(host)} is outside [scope] allowed_hosts ({allowed}); nothing was sent"
            )

    def get(self, name: str, url: str, *, retries: int | None = None) -> ProbeResult:
        """GET `url`; retry transient failures (refused, reset, timeout, 502-504) a bounded number of times."""
        self.check_scope(url)
        retries = self.retries if retries is None else retries
        result = self._once(name, url)
        attempt = 1
        while attempt <= retries and (result.refused or result.status in (502, 503, 504)):
            time.sleep(self.retry_delay_s * attempt)
            attempt += 1
            result = self._once(name, url)
        result.attempts = attempt
        return result

    def smoke(self, base_url: str, checks: Iterable[SmokeCheck]) -> list[ProbeResult]:
        return [self.get(check.name, url_at(base_url, check.path)) for check in checks]

    def _once(self, name: str, url: str) -> ProbeResult:
        request = urllib.request.Request(url, headers={"User-Agent": "mcms-dr-runbook/1", "Accept": "*/*"})
        start = time.perf_counter()
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                body = response.read(self.MAX_BODY)
                status, headers = response.status, response.headers
        except urllib.error.HTTPError as exc:  # 4xx/5xx/3xx are answers, not errors
            body = exc.read(self.MAX_BODY) if exc.fp is not None else b""
            status, headers = exc.code, exc.headers
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            return ProbeResult(name, url, REFUSED, _ms(start), error=_describe(reason))
        return ProbeResult(
            name,
            url,
            status,
            _ms(start),
            headers={k.lower(): v for k, v in headers.items()},
            body=body,
        )


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


def _describe(reason: object) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, TimeoutError):
        return "timed out"
    text = str(reason) or type(reason).__name__
    return text.removeprefix("<urlopen error ").removesuffix(">")
