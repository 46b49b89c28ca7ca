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

    def reported_version(self) -> str | None:
        """The version the body reports (a JSON object's "version", as text), or None: a health endpoint's."""
        body = self.json()
        if isinstance(body, dict) and body.get("version") is not None:
            return str(body["version"])
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


# What answers for a service that is not there: a gateway that cannot reach it (502) or not in time (504), or
# something with nobody to hand the request to (503). stop_verdict explains why 503 counts, and when it does not.
FRONT_STATUSES = frozenset({502, 503, 504})
# The words of a health endpoint (ASP.NET Core's HealthStatus; the MCMS service reports them in "status").
HEALTH_WORDS = frozenset({"healthy", "degraded", "unhealthy"})


@dataclass(frozen=True)
class StopVerdict:
    """What the public address showed after stop_site: whether nothing serves there any more, as a sentence."""

    stopped: bool
    sentence: str


def stop_verdict(result: ProbeResult) -> StopVerdict:
    """Whether a probe of the health endpoint, sent after stop_site (RB-2), shows that the service no longer serves.

    Stopped is:
    - no connection at all (status -1: refused, reset or timed out): nothing listens at the address;
    - a 502 or a 504: a gateway's own words (nginx, IIS ARR, a load balancer in front of the node), saying it
      got no answer from the node behind it, or none in time;
    - a 503, the normal IIS picture: HTTP.sys itself answers 503 for a site whose application pool is stopped
      (no worker process takes the request), and a proxy answers 503 when no server of its farm or upstream is
      available. But 503 is also what the MCMS service answers on its health endpoint while it runs Unhealthy
      (the Lab's service does, ASP.NET Core health checks do by default): then the service is up and answering,
      not stopped. So a 503, and a 502 or 504 too (a proxy passes on what the node said), counts only when its
      body is not a health answer of the service's own (`own_health_answer`).
    Anything else (200, 401, 404, 500, a redirect) is an answer from something still serving at that address:
    the site has not stopped.
    """
    if result.refused:
        if result.error in (None, "connection refused"):
            return StopVerdict(
                True, "the public address refuses the connection: nothing listens there any more"
            )
        return StopVerdict(True, f"the public address does not answer ({result.error}): nothing serves there")
    own = own_health_answer(result)
    if result.status in FRONT_STATUSES and own is None:
        server = result.headers.get("server", "")
        by = f" (Server: {server})" if server else ""
        if result.status == 503:
            return StopVerdict(
                True,
                f"the public address answers 503 from what is in front of the service{by}, not from the service "
                "itself (HTTP.sys answers so when the app pool is stopped, a proxy when no server is available): "
                "nothing serves behind it",
            )
        behind = "nothing serves behind it" if result.status == 502 else "the node behind it does not answer"
        return StopVerdict(
            True, f"the public address answers {result.status} from the proxy in front{by}: {behind}"
        )
    what = f", a health answer of the service itself ({own})" if own else ""
    return StopVerdict(
        False,
        f"the site still answers after stop_site: HTTP {result.status} at {result.url}{what} (stopped means a "
        "refused connection, or a 502, 503 or 504 from what is in front of the service)",
    )


def own_health_answer(result: ProbeResult) -> str | None:
    """The service's own health answer in the body, in words ("Unhealthy, version 1.1.0"), or None: a JSON
    object reporting a version or a health status, or the bare health word of ASP.NET Core's default writer."""
    body = result.json()
    if isinstance(body, dict):
        status, version = body.get("status"), body.get("version")
        words = [str(status)] if isinstance(status, str) and status.lower() in HEALTH_WORDS else []
        words += [f"version {version}"] if version is not None else []
        return ", ".join(words) or None
    text = body if isinstance(body, str) else result.body.decode("utf-8", "replace")
    return text.strip() if text.strip().lower() in HEALTH_WORDS else None


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
