"""The `builtin` scan engine of DR-ZAP, for machines without Java or ZAP.

A same-origin crawl from the base URL (GET only, no cookies, no proxy, redirects not followed but queued like
links; `max_pages`, `max_depth`, and `spider_minutes` as a time bound) and the passive checks of
drivers.zap_passive, which carry ZAP's plugin ids, names and risks: a SUBSET of ZAP's passive rules. It
registers itself as engine "builtin" of drivers.zap.SCANNERS.
"""

from __future__ import annotations

import http.client
import ssl
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterable
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit

from drivers.config import Zap
from drivers.zap import SCANNERS, USER_AGENT, Scanner, ZapError
from drivers.zap_alerts import RISKS, ScanResult, ZapAlert, group_alerts
from drivers.zap_passive import HtmlFacts, Message, parse_html, rule_list, scan_message


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
