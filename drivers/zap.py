"""Security scan verb (DR-ZAP): one scanner interface, two engines behind a registry.

- `zap`: a real ZAP daemon through its API client (PyPI `zaproxy`, module `zapv2`). It connects to
  `[zap] api_url` with the API key, or, when nothing answers there and `[zap] path` is set, starts
  `zap.sh -daemon` (`zap.bat` on Windows), waits (bounded) until its API answers and stops it by PID
  afterwards. Then, like zap-baseline: new session, access the target, spider it for at most `spider_minutes`,
  wait (bounded, polled) until the passive scan queue is empty, fetch the alerts for the target's base URL and
  ZAP's own HTML report.
- `builtin`: for machines without Java or ZAP. A same-origin crawl from the base URL (GET only, no cookies,
  no proxy; `max_pages`, `max_depth`, and `spider_minutes` as a time bound) and the passive checks of
  drivers.zap_passive, which carry ZAP's plugin ids, names and risks: a SUBSET of ZAP's passive rules.

Both return a `ScanResult` whose alerts have ZAP's shape. Scope is checked first, in the base class: a target
outside `[scope] allowed_hosts` is refused before any request is sent, to the target or to ZAP.
Plain Python, no pytest import. Every wait is bounded in time and every request has a timeout.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urldefrag, urlencode, urljoin, urlsplit

from drivers.base import DriverError, Registry, plain_error, quoted
from drivers.commands import CommandError, CommandMissing, kill_tree, resolve_program, start_process
from drivers.config import Zap
from drivers.probe import Prober, ScopeError
from drivers.zap_alerts import (
    RISKS,
    AlertInstance,
    ScanResult,
    ZapAlert,
    confidence_code,
    group_alerts,
    risk_code,
)
from drivers.zap_passive import HtmlFacts, Message, parse_html, rule_list, scan_message

__all__ = [
    "SCANNERS",
    "BuiltinScanner",
    "ScanResult",
    "Scanner",
    "ScannerMissing",
    "ScopeError",
    "ZapApiError",
    "ZapDaemonScanner",
    "ZapError",
    "ZapUnreachable",
    "builtin_rules",
    "check_zap_available",
    "target_slug",
    "zap_scanner",
]

USER_AGENT = "mcms-dr-runbook/1 (DR-ZAP builtin)"


class ZapError(DriverError):
    """The scan could not be done; the message says what, where, and what was seen."""


class ScannerMissing(ZapError):
    """No scanner to run: no ZAP daemon answers and none can be started. The runbook reports "tool missing"."""


class ZapUnreachable(ZapError):
    """Nothing accepts connections at the ZAP API address."""


class ZapNotAnswering(ZapError):
    """Something accepts connections at the ZAP API address but does not answer in time."""


class ZapApiError(ZapError):
    """ZAP answered with an API error (its JSON {"code", "message"})."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


def target_slug(target: str) -> str:
    """A file name for a target URL: host, port and path (http://127.0.0.1:8080/mcms -> 127.0.0.1_8080_mcms)."""
    parts = urlsplit(target)
    raw = "_".join(p for p in (parts.hostname or "target", str(parts.port or ""), parts.path.strip("/")) if p)
    return "".join(c if c.isalnum() or c in "-." else "_" for c in raw)[:120]


class Scanner(ABC):
    """One security scan of one target; backends say how, the base class enforces scope and times it."""

    engine: ClassVar[str]

    def __init__(
        self,
        settings: Zap,
        allowed_hosts: Iterable[str],
        *,
        timeout_s: float = 5.0,
        ca_file: str = "",
        workdir: Path | None = None,
        poll_s: float = 1.0,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self.ca_file = ca_file
        self.workdir = workdir
        self.poll_s = poll_s
        self.environ = os.environ if environ is None else environ
        # The probe verb's scope rule, shared: one definition of "in scope" for probes and scans.
        self._scope = Prober(allowed_hosts, timeout_s=timeout_s, ca_file=ca_file)

    def check_scope(self, url: str) -> None:
        self._scope.check_scope(url)

    def scan(self, target: str) -> ScanResult:
        """Scan `target` (its base URL); ScopeError before anything is sent when its host is out of scope."""
        self.check_scope(target)
        started = time.perf_counter()
        result = self._scan(target)
        result.duration_s = round(time.perf_counter() - started, 3)
        return result

    @abstractmethod
    def _scan(self, target: str) -> ScanResult:
        """Run the scan; the target is already known to be in scope."""

    @abstractmethod
    def describe(self, result: ScanResult | None = None) -> str:
        """Which engine ran, in plain words for the report."""

    def rules_checked(self) -> list[str]:
        """The alert types this engine is limited to, for the report; empty = whatever the engine runs."""
        return []


SCANNERS: Registry[Scanner] = Registry("[zap] engine")


def zap_scanner(engine: str, settings: Zap, allowed_hosts: Iterable[str], **options: Any) -> Scanner:
    return SCANNERS.get(engine)(settings, allowed_hosts, **options)


# --- builtin: crawl + passive checks --------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect is an exchange of its own (its headers are checked too); its target is queued like a link.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def builtin_rules() -> list[str]:
    """The alert types the builtin engine checks, one per alert reference: `10020-1 Missing ... (Medium)`."""
    return [
        f"{r.alert_ref} {r.name} ({RISKS[r.riskcode]})" + (", HTTPS only" if r.https_only else "")
        for r in rule_list()
    ]


@SCANNERS.register("builtin")
class BuiltinScanner(Scanner):
    """Same-origin crawl from the base URL with ZAP-compatible passive checks; needs neither Java nor ZAP."""

    engine = "builtin"
    MAX_BODY = 1024 * 1024

    def __init__(self, settings: Zap, allowed_hosts: Iterable[str], **options: Any) -> None:
        super().__init__(settings, allowed_hosts, **options)
        context = ssl.create_default_context(cafile=self.ca_file or None)
        # No proxy (an operator's HTTP_PROXY must not see or alter what is scanned) and no redirects followed.
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context), _NoRedirect()
        )

    def describe(self, result: ScanResult | None = None) -> str:
        return (
            "builtin: the runbook's own passive checks, not ZAP. It is a SUBSET of ZAP's passive scan rules: "
            f"only the {len(rule_list())} ZAP alert types listed below were checked; ZAP's other passive rules "
            'and all of its active rules were NOT. Set [zap] engine = "zap" to run the full ZAP baseline.'
        )

    def rules_checked(self) -> list[str]:
        return builtin_rules()

    def _scan(self, target: str) -> ScanResult:
        base = target if urlsplit(target).path else target.rstrip("/") + "/"
        s = self.settings
        max_pages = s.max_pages if s.spider_minutes > 0 else 1
        deadline = time.monotonic() + s.spider_minutes * 60
        queue: deque[tuple[str, int]] = deque([(base, 0)])
        seen = {base}
        pages: list[str] = []
        alerts: list[ZapAlert] = []
        notes: list[str] = []
        stopped = False
        while queue and len(pages) < max_pages:
            if pages and time.monotonic() >= deadline:
                stopped = True
                notes.append(
                    f"crawl stopped at [zap] spider_minutes = {s.spider_minutes:g}; {len(queue)} URLs left"
                )
                break
            url, depth = queue.popleft()
            self.check_scope(url)
            msg = self._fetch(url)
            if isinstance(msg, str):
                if not pages:
                    raise ZapError(f"cannot scan {target}: GET {url}: {msg}")
                notes.append(f"GET {url}: {msg}")
                continue
            pages.append(url)
            facts = parse_html(msg.text()) if msg.is_html and msg.body else HtmlFacts()
            alerts.extend(scan_message(msg, facts))
            if depth >= s.max_depth:
                continue
            links = [*facts.links, *([msg.header("Location") or ""] if msg.is_redirect else [])]
            for link in links:
                found = self._same_origin(base, url, link)
                if found is not None and found not in seen:
                    seen.add(found)
                    queue.append((found, depth + 1))
        if queue and len(pages) >= max_pages:
            notes.append(f"crawl stopped at [zap] max_pages = {max_pages}; {len(queue)} URLs left")
        return ScanResult(
            "builtin",
            target,
            group_alerts(alerts),
            pages,
            engine_version=f"builtin passive checks ({len(rule_list())} ZAP alert types)",
            notes=notes,
            spider_stopped=stopped,
        )

    @staticmethod
    def _same_origin(base: str, page: str, link: str) -> str | None:
        """The absolute URL of `link` when it is on the base URL's origin and under its path; else None."""
        link = link.strip()
        if not link or link.startswith(("javascript:", "mailto:", "data:", "tel:")):
            return None
        url, _ = urldefrag(urljoin(page, link))
        b, u = urlsplit(base), urlsplit(url)
        if u.scheme not in ("http", "https") or u.scheme != b.scheme:
            return None
        default = 443 if u.scheme == "https" else 80
        if (u.hostname, u.port or default) != (b.hostname, b.port or default):
            return None
        prefix = b.path.rstrip("/")
        if prefix and not (u.path == prefix or u.path.startswith(prefix + "/")):
            return None
        return url

    def _fetch(self, url: str) -> Message | str:
        """GET one URL: the exchange, or why there was none (a string)."""
        sent = (("User-Agent", USER_AGENT), ("Accept", "text/html,application/xhtml+xml,*/*;q=0.8"))
        request = urllib.request.Request(url, headers=dict(sent))
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                body = response.read(self.MAX_BODY)
                status, reason, headers = response.status, response.reason, response.headers
        except urllib.error.HTTPError as exc:  # 3xx (not followed), 4xx and 5xx are answers to check too
            body = exc.read(self.MAX_BODY) if exc.fp is not None else b""
            status, reason, headers = exc.code, str(exc.reason), exc.headers
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason_obj = getattr(exc, "reason", exc)
            if isinstance(reason_obj, ConnectionRefusedError):
                return "connection refused"
            if isinstance(reason_obj, TimeoutError):
                return f"timed out after {self.timeout_s:g} s"
            return str(reason_obj) or type(reason_obj).__name__
        return Message(url, "GET", status, reason or "", tuple(headers.items()), body, sent)


# --- zap: a ZAP daemon through zapv2 ------------------------------------------------------------------


class _Reply:
    """The two things zapv2 reads from a response: .json() and .text."""

    def __init__(self, status: int, body: bytes) -> None:
        self.status_code = status
        self.content = body

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class ZapClient:
    """zapv2's API client (PyPI `zaproxy`) with the transport an unattended recovery needs.

    zapv2 sends every call through `requests` with no timeout (a hung daemon would hang the run), addressed to
    http://zap/ through ZAP as a proxy (which an operator's proxy settings, or Windows' "bypass local
    addresses", can divert). All of zapv2's calls go through its `_request_api`; this client replaces that one
    method on its zapv2 instance, keeping zapv2's API (core, spider, pscan...) and how it builds each call, and
    sends the same call straight to the daemon's address (which ZAP serves too) with a timeout, the key only
    in the X-ZAP-API-Key header, and ZAP's API errors raised (zapv2 would return the error code as a value).
    """

    MAX_RESPONSE = 256 * 1024 * 1024

    def __init__(self, api_url: str, api_key: str, timeout_s: float) -> None:
        from zapv2 import (
            ZAPv2,
        )  # imported when the zap engine runs: `requests` stays out of pytest's start-up

        parts = urlsplit(api_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ZapError(f"[zap] api_url: expected an http(s) URL, got {quoted(api_url)}")
        self.api_url = api_url.rstrip("/")
        self.timeout_s = timeout_s
        self._parts = parts
        self._api_key = api_key
        self.calls: list[str] = []  # the API paths called, in order (evidence and tests)
        self.zap: Any = ZAPv2(apikey=api_key or None)
        self.zap._request_api = self._request_api

    @property
    def core(self) -> Any:
        return self.zap.core

    @property
    def spider(self) -> Any:
        return self.zap.spider

    @property
    def pscan(self) -> Any:
        return self.zap.pscan

    def _request_api(
        self, url: str, query: Mapping[str, Any] | None = None, method: str = "GET", body: Any = None
    ) -> _Reply:
        if not url.startswith("http://zap/"):
            raise ValueError(f"not a ZAP API URL: {url}")  # as zapv2: the key only ever goes to the API
        path = url.removeprefix("http://zap")
        self.calls.append(path)
        params = urlencode({k: v for k, v in (query or {}).items() if v is not None}, doseq=True)
        target = self._parts.path.rstrip("/") + path + (f"?{params}" if params else "")
        headers = {"Accept": "application/json, text/html;q=0.9", "User-Agent": USER_AGENT}
        if self._api_key:
            headers["X-ZAP-API-Key"] = self._api_key
        data = urlencode(body).encode("ascii") if isinstance(body, Mapping) else body
        if data is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn_type = (
            http.client.HTTPSConnection if self._parts.scheme == "https" else http.client.HTTPConnection
        )
        conn = conn_type(self._parts.hostname or "", self._parts.port, timeout=self.timeout_s)
        try:
            conn.request(method, target, body=data, headers=headers)
            response = conn.getresponse()
            content = response.read(self.MAX_RESPONSE)
        except ConnectionRefusedError:
            raise ZapUnreachable(f"nothing answers at {self.api_url} (connection refused)") from None
        except TimeoutError:
            raise ZapNotAnswering(
                f"{self.api_url} accepted the connection but did not answer {path} within {self.timeout_s:g} s"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            raise ZapUnreachable(f"cannot reach the ZAP API at {self.api_url}: {exc}") from None
        finally:
            conn.close()
        if response.status >= 400:
            raise self._api_error(path, response.status, content)
        return _Reply(response.status, content)

    def _api_error(self, path: str, status: int, content: bytes) -> ZapApiError:
        try:
            error = json.loads(content)
            code, message = str(error.get("code", "")), str(error.get("message", ""))
        except (ValueError, AttributeError):
            code, message = "", content[:200].decode("utf-8", "replace")
        if code == "bad_api_key":
            return ZapApiError(
                f"ZAP at {self.api_url} refused the API key ({code}: {message}): set [zap] api_key "
                '(usually "${ZAP_API_KEY}") to the key the daemon was started with (-config api.key=...)',
                code,
            )
        return ZapApiError(f"ZAP API {path} at {self.api_url}: HTTP {status} {code}: {message}".strip(), code)


def _api_key(settings: Zap, environ: Mapping[str, str]) -> str:
    return settings.api_key or environ.get("ZAP_API_KEY", "")


def _port(api_url: str) -> int:
    parts = urlsplit(api_url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def _no_zap(settings: Zap, why: str) -> str:
    """No daemon answers and none can be started: what the operator can do about it."""
    return (
        f"no ZAP daemon answers at {settings.api_url} ({why}) and [zap] path is not set: start one "
        f"(zap.sh -daemon -host 127.0.0.1 -port {_port(settings.api_url)} -config api.key=$ZAP_API_KEY, or "
        "ZAP's container image), or install ZAP (https://www.zaproxy.org/download/) and set [zap] path to "
        'zap.sh / zap.bat, or use engine = "builtin"'
    )


def _zap_executable(settings: Zap) -> Path:
    path = Path(settings.path).expanduser()
    if path.is_dir():  # the ZAP installation directory
        path = path / ("zap.bat" if sys.platform == "win32" else "zap.sh")
    if not path.is_file():
        raise ScannerMissing(
            f"[zap] path {settings.path}: no such file (expected zap.sh, zap.bat or ZAP's directory; "
            "ZAP: https://www.zaproxy.org/download/)"
        )
    return path


def check_zap_available(
    settings: Zap, *, timeout_s: float = 2.0, environ: Mapping[str, str] | None = None
) -> str | None:
    """PRE's tool check for DR-ZAP: why the scan could not run, in the operator's words, or None.

    builtin needs nothing. zap: a daemon answers at [zap] api_url (asked for its version, bounded by
    `timeout_s`), or, when nothing answers there, [zap] path names a ZAP to start. Nothing is started here.
    """
    if settings.engine != "zap":
        return None
    environ = os.environ if environ is None else environ
    problem: str | None = None
    try:
        client = ZapClient(settings.api_url, _api_key(settings, environ), timeout_s)
        _value("core/view/version", client.core.version)
    except ImportError:
        problem = (
            "the ZAP API client (PyPI zaproxy) is not installed: pip install -r requirements.txt, "
            'or use [zap] engine = "builtin"'
        )
    except ZapUnreachable as exc:
        problem = _no_zap(settings, str(exc)) if not settings.path else _zap_path_problem(settings)
    except ZapNotAnswering as exc:
        problem = f"{exc}: is something other than ZAP listening there? Check [zap] api_url"
    except ZapError as exc:
        problem = str(exc)
    return problem


def _zap_path_problem(settings: Zap) -> str | None:
    """Why the ZAP of [zap] path could not be started, or None."""
    try:
        executable = _zap_executable(settings)
        resolve_program(str(executable), cwd=executable.parent, what="[zap] path")
    except (ScannerMissing, CommandMissing) as exc:
        return f"no ZAP daemon answers at {settings.api_url} and {exc}"
    return None


def _value(call: str, value: Any) -> Any:
    """zapv2 returns the first value of ZAP's JSON object; a wrong shape means it was not ZAP that answered."""
    if value is None:
        raise ZapError(f"ZAP API {call}: empty answer")
    return value


@dataclass
class _Daemon:
    """A ZAP this scan started: stopped by its PID (and the processes it started) when the scan ends."""

    proc: subprocess.Popen[bytes]
    executable: Path
    log: Path
    key: str

    def tail(self, lines: int = 8) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no output)"
        return " | ".join(text.strip().splitlines()[-lines:]) or "(no output)"

    def stop(self, client: ZapClient | None) -> None:
        if self.proc.poll() is None and client is not None:
            client.timeout_s = 5.0
            try:
                client.core.shutdown()  # a clean exit first: ZAP closes its session database
            except ZapError:
                pass  # not answering (never became ready): nothing to wait for, stop it by PID below
            else:
                _wait(self.proc, 15.0)
        if self.proc.poll() is None:
            # zap.sh / zap.bat start Java as a child: stop the whole tree of the PID we started, nothing else.
            kill_tree(self.proc)


def _wait(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout_s)


@SCANNERS.register("zap")
class ZapDaemonScanner(Scanner):
    """A ZAP daemon through its API, the zap-baseline way (spider, then passive scan only: no attacks)."""

    engine = "zap"
    API_TIMEOUT_S = 120.0  # alerts and the HTML report of a large site take a while
    PROBE_TIMEOUT_S = 5.0  # "is a ZAP there?" must not hang the run
    ALERTS_PAGE = 1000
    MAX_ALERT_PAGES = 200

    def describe(self, result: ScanResult | None = None) -> str:
        version = result.engine_version if result and result.engine_version else "ZAP"
        s = self.settings
        return (
            f"zap: {version} daemon at {s.api_url} (zap-baseline style: new session, spider up to "
            f"{s.spider_minutes:g} min, then ZAP's passive scan rules as enabled in that daemon; no active scan)."
        )

    def _api_key(self) -> str:
        return _api_key(self.settings, self.environ)

    def _scan(self, target: str) -> ScanResult:
        with self._session() as (client, version, notes):
            result = self._baseline(client, target)
            result.engine_version = f"ZAP {version}"
            result.notes[:0] = notes
            return result

    @contextmanager
    def _session(self) -> Iterator[tuple[ZapClient, str, list[str]]]:
        """A client for a daemon that answers: the one at api_url, or one started from [zap] path."""
        s = self.settings
        client = ZapClient(s.api_url, self._api_key(), self.PROBE_TIMEOUT_S)
        version = ""
        daemon: _Daemon | None = None
        try:
            version = str(_value("core/view/version", client.core.version))
        except ZapUnreachable as exc:
            if not s.path:
                raise ScannerMissing(_no_zap(s, str(exc))) from None
            daemon = self._start_daemon()
        except ZapNotAnswering as exc:
            raise ZapError(
                f"{exc}: is something other than ZAP listening there? Check [zap] api_url"
            ) from None
        if daemon is None:
            client.timeout_s = self.API_TIMEOUT_S
            yield client, version, []
            return
        client = ZapClient(s.api_url, daemon.key, self.PROBE_TIMEOUT_S)
        try:
            version = self._wait_ready(client, daemon)
            client.timeout_s = self.API_TIMEOUT_S
            started = f"started ZAP {version} from {daemon.executable} (PID {daemon.proc.pid}); stopped after the scan"
            yield client, version, [started]
        finally:
            daemon.stop(client)

    def _port(self) -> int:
        return _port(self.settings.api_url)

    def _executable(self) -> Path:
        return _zap_executable(self.settings)

    def _start_daemon(self) -> _Daemon:
        executable = self._executable()
        host = urlsplit(self.settings.api_url).hostname or "127.0.0.1"
        # A daemon we start gets a key even when none is configured: its API must never run open.
        key = self._api_key() or secrets.token_urlsafe(24)
        argv = [
            str(executable),
            "-daemon",
            "-host",
            host,
            "-port",
            str(self._port()),
            "-config",
            f"api.key={key}",
        ]
        workdir = self.workdir or Path.cwd()
        workdir.mkdir(parents=True, exist_ok=True)
        log = workdir / "zap-daemon.log"
        with log.open("ab") as out:
            out.write(
                f"starting {executable} -daemon -host {host} -port {self._port()} (API key not shown)\n".encode()
            )
            out.flush()
            try:
                proc = start_process(
                    argv,
                    cwd=executable.parent,
                    env=None,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    what="[zap] path",
                )
            except CommandError as exc:  # "[zap] path: cannot start .../zap.sh: Permission denied"
                raise ZapError(str(exc)) from None
        return _Daemon(proc, executable, log, key)

    def _wait_ready(self, client: ZapClient, daemon: _Daemon) -> str:
        timeout = self.settings.start_timeout_s
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            code = daemon.proc.poll()
            if code is not None:
                raise ZapError(
                    f"ZAP started from {daemon.executable} exited with code {code} before its API answered at "
                    f"{self.settings.api_url}; its output: {daemon.tail()}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ZapError(
                    f"ZAP started from {daemon.executable} (PID {daemon.proc.pid}) did not answer its API at "
                    f"{self.settings.api_url} within {timeout:g} s ([zap] start_timeout_s); last: {last}; "
                    f"its output: {daemon.tail()}"
                )
            client.timeout_s = max(0.2, min(self.PROBE_TIMEOUT_S, remaining))
            try:
                return str(_value("core/view/version", client.core.version))
            except (ZapUnreachable, ZapNotAnswering) as exc:
                last = str(exc)
            time.sleep(max(0.0, min(0.5, deadline - time.monotonic())))

    def _baseline(self, client: ZapClient, target: str) -> ScanResult:
        s = self.settings
        try:
            client.core.new_session()
            client.core.access_url(url=target, followredirects=True)
            pages, stopped = [target], False
            if s.spider_minutes > 0:
                pages, stopped = self._spider(client, target)
            self._wait_passive(client)
            raw = self._alerts(client, target)
            report = client.core.htmlreport()
        except (ValueError, TypeError, KeyError) as exc:
            raise ZapError(f"unexpected answer from ZAP at {s.api_url}: {plain_error(exc)}") from None
        notes = [f"spider stopped at [zap] spider_minutes = {s.spider_minutes:g}"] if stopped else []
        return ScanResult(
            "zap", target, group_alerts(_from_api(a) for a in raw), pages,
            report_html=str(report), notes=notes, spider_stopped=stopped,
        )  # fmt: skip

    def _spider(self, client: ZapClient, target: str) -> tuple[list[str], bool]:
        scan_id = str(
            _value("spider/action/scan", client.spider.scan(url=target, recurse=True, subtreeonly=True))
        )
        if not scan_id.isdigit():
            raise ZapError(f"ZAP did not start its spider on {target}: {scan_id}")
        deadline = time.monotonic() + self.settings.spider_minutes * 60
        stopped = False
        while int(client.spider.status(scan_id)) < 100:
            if time.monotonic() >= deadline:
                client.spider.stop(scan_id)
                stopped = True
                break
            time.sleep(max(0.0, min(self.poll_s, deadline - time.monotonic())))
        results = client.spider.results(scan_id)
        return ([str(u) for u in results] if isinstance(results, list) else [target]), stopped

    def _wait_passive(self, client: ZapClient) -> None:
        timeout = self.settings.passive_timeout_s
        deadline = time.monotonic() + timeout
        while (left := int(client.pscan.records_to_scan)) > 0:
            if time.monotonic() >= deadline:
                raise ZapError(
                    f"ZAP's passive scan still had {left} records to scan after {timeout:g} s "
                    "([zap] passive_timeout_s): the alerts would be incomplete, so the gate cannot pass"
                )
            time.sleep(max(0.0, min(self.poll_s, deadline - time.monotonic())))

    def _alerts(self, client: ZapClient, target: str) -> list[Mapping[str, Any]]:
        alerts: list[Mapping[str, Any]] = []
        for page in range(self.MAX_ALERT_PAGES):
            batch = client.core.alerts(baseurl=target, start=page * self.ALERTS_PAGE, count=self.ALERTS_PAGE)
            if not isinstance(batch, list):
                raise ZapError(f"ZAP API core/view/alerts: expected a list, got {quoted(str(batch)[:80])}")
            alerts.extend(batch)
            if len(batch) < self.ALERTS_PAGE:
                return alerts
        raise ZapError(
            f"more than {self.ALERTS_PAGE * self.MAX_ALERT_PAGES} alerts for {target}: not a baseline"
        )


def _from_api(raw: Mapping[str, Any]) -> ZapAlert:
    """One alert of ZAP's API (core/view/alerts: one per instance, strings) as a ZapAlert."""
    plugin_id = str(raw.get("pluginId", ""))
    instance = AlertInstance(
        uri=str(raw.get("url", "")),
        method=str(raw.get("method", "")),
        param=str(raw.get("param", "")),
        attack=str(raw.get("attack", "")),
        evidence=str(raw.get("evidence", "")),
        otherinfo=str(raw.get("other", "")),
    )
    return ZapAlert(
        plugin_id=plugin_id,
        alert_ref=str(raw.get("alertRef") or plugin_id),
        name=str(raw.get("name") or raw.get("alert", "")),
        riskcode=risk_code(str(raw.get("risk", ""))),
        confidence=confidence_code(str(raw.get("confidence", ""))),
        desc=str(raw.get("description", "")),
        solution=str(raw.get("solution", "")),
        reference=str(raw.get("reference", "")),
        cweid=int(raw.get("cweid") or -1),
        wascid=int(raw.get("wascid") or -1),
        instances=(instance,),
    )
