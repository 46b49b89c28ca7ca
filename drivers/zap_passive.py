"""The builtin engine's passive checks: a SUBSET of ZAP's passive scan rules, for machines without Java or ZAP.

Each check carries the ZAP rule's plugin id, alert reference, name, risk, confidence, CWE and WASC ids, and
fires under the conditions the ZAP rule uses at its default (MEDIUM) alert threshold, so that a finding here
reads the same as the finding ZAP would raise, and a zap-baseline rules file applies to both engines. The
descriptions and solutions are this project's own short wording. Everything not listed in `RULES` (ZAP's other
passive rules, and every active rule) is NOT checked by the builtin engine; the report says so.

Pure functions over one HTTP exchange (`Message`): no I/O here, so every rule is unit-tested on crafted
responses and the crawler (drivers.zap) decides what is fetched.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from urllib.parse import urlsplit

from drivers.zap_alerts import AlertInstance, ZapAlert

__all__ = ["RULES", "HtmlFacts", "Message", "PassiveRule", "parse_html", "scan_message"]

INFO, LOW, MEDIUM, HIGH = 0, 1, 2, 3
CONF_LOW, CONF_MEDIUM, CONF_HIGH = 1, 2, 3


@dataclass(frozen=True)
class PassiveRule:
    """One alert a ZAP passive rule can raise (ZAP's identifiers; this project's wording)."""

    plugin_id: str
    alert_ref: str
    name: str
    riskcode: int
    confidence: int
    cweid: int
    wascid: int
    desc: str
    solution: str
    reference: str = ""
    https_only: bool = False  # ZAP raises it for HTTPS exchanges only

    def alert(self, msg: Message, *, param: str = "", evidence: str = "", otherinfo: str = "") -> ZapAlert:
        instance = AlertInstance(msg.url, msg.method, param=param, evidence=evidence, otherinfo=otherinfo)
        return ZapAlert(
            self.plugin_id,
            self.alert_ref,
            self.name,
            self.riskcode,
            self.confidence,
            self.desc,
            self.solution,
            self.reference,
            self.cweid,
            self.wascid,
            (instance,),
        )


_R = PassiveRule
_COOKIE_SOLN = "Set the attribute on every cookie the application sets."
RULES: dict[str, PassiveRule] = {
    r.alert_ref: r
    for r in (
        _R("10010", "10010", "Cookie No HttpOnly Flag", LOW, CONF_MEDIUM, 1004, 13,
           "A cookie is set without the HttpOnly attribute, so scripts in the page can read it; an injected "
           "script could steal it (session hijacking when it is a session cookie).",
           "Set HttpOnly on every cookie that scripts do not need.",
           "https://owasp.org/www-community/HttpOnly"),
        _R("10011", "10011", "Cookie Without Secure Flag", LOW, CONF_MEDIUM, 614, 13,
           "A cookie set over HTTPS lacks the Secure attribute, so the browser also sends it over plain HTTP.",
           "Set Secure on every cookie of an HTTPS site.", https_only=True),
        _R("10054", "10054-1", "Cookie without SameSite Attribute", LOW, CONF_MEDIUM, 1275, 13,
           "A cookie is set without the SameSite attribute, so the browser sends it with cross-site requests "
           "(cross-site request forgery, cross-site script inclusion, timing attacks).",
           "Set SameSite=Lax or, better, SameSite=Strict. " + _COOKIE_SOLN),
        _R("10054", "10054-2", "Cookie with SameSite Attribute None", LOW, CONF_MEDIUM, 1275, 13,
           "A cookie is set with SameSite=None, so the browser sends it with cross-site requests.",
           "Set SameSite=Lax or, better, SameSite=Strict. " + _COOKIE_SOLN),
        _R("10054", "10054-3", "Cookie with Invalid SameSite Attribute", LOW, CONF_MEDIUM, 1275, 13,
           "A cookie is set with a SameSite value browsers do not know, so it is sent with cross-site requests.",
           "Set SameSite=Lax or, better, SameSite=Strict. " + _COOKIE_SOLN),
        _R("10020", "10020-1", "Missing Anti-clickjacking Header", MEDIUM, CONF_MEDIUM, 1021, 15,
           "The page has neither a Content-Security-Policy with frame-ancestors nor X-Frame-Options, so another "
           "site can frame it (clickjacking).",
           "Send Content-Security-Policy: frame-ancestors 'none' (or 'self'), or X-Frame-Options: DENY "
           "(or SAMEORIGIN), on every page.",
           "https://developer.mozilla.org/en-US/docs/Web/HTTP/Headers/X-Frame-Options"),
        _R("10020", "10020-2", "Multiple X-Frame-Options Header Entries", MEDIUM, CONF_MEDIUM, 1021, 15,
           "The response carries more than one X-Frame-Options header; browsers may not apply any of them.",
           "Send exactly one X-Frame-Options header."),
        _R("10020", "10020-3", "X-Frame-Options Defined via META (Non-compliant with Spec)", MEDIUM,
           CONF_MEDIUM, 1021, 15,
           "X-Frame-Options is set in a META tag, which browsers ignore (RFC 7034).",
           "Send X-Frame-Options as a response header, or use CSP frame-ancestors."),
        _R("10020", "10020-4", "X-Frame-Options Setting Malformed", MEDIUM, CONF_MEDIUM, 1021, 15,
           "X-Frame-Options is present but its value is neither DENY nor SAMEORIGIN.",
           "Use DENY or SAMEORIGIN, or CSP frame-ancestors."),
        _R("10021", "10021", "X-Content-Type-Options Header Missing", LOW, CONF_MEDIUM, 693, 15,
           "X-Content-Type-Options is not set to nosniff, so some browsers may sniff the body and treat it as "
           "another content type than the one declared.",
           "Send X-Content-Type-Options: nosniff with every response.",
           "https://owasp.org/www-community/Security_Headers"),
        _R("10035", "10035-1", "Strict-Transport-Security Header Not Set", LOW, CONF_HIGH, 319, 15,
           "An HTTPS response does not send Strict-Transport-Security, so a browser may still be led to the "
           "plain HTTP site.",
           "Send Strict-Transport-Security with a max-age on every HTTPS response.", https_only=True),
        _R("10035", "10035-2", "Strict-Transport-Security Disabled", LOW, CONF_HIGH, 319, 15,
           "Strict-Transport-Security has max-age=0, which switches the protection off.",
           "Use a max-age greater than zero.", https_only=True),
        _R("10035", "10035-3", "Strict-Transport-Security Multiple Header Entries (Non-compliant with Spec)",
           LOW, CONF_HIGH, 319, 15,
           "More than one Strict-Transport-Security header: only the first is used.",
           "Send exactly one Strict-Transport-Security header.", https_only=True),
        _R("10038", "10038-1", "Content Security Policy (CSP) Header Not Set", MEDIUM, CONF_HIGH, 693, 15,
           "The page sends no Content-Security-Policy, the browser's main defence against cross-site scripting "
           "and data injection.",
           "Send a Content-Security-Policy header with every HTML page.",
           "https://developer.mozilla.org/en-US/docs/Web/HTTP/CSP"),
        _R("10038", "10038-3", "Content Security Policy (CSP) Report-Only Header Found", INFO, CONF_HIGH, 693,
           15,
           "The page sends only Content-Security-Policy-Report-Only: the policy is reported, not enforced.",
           "Enforce the policy with Content-Security-Policy once it is tested."),
        _R("10036", "10036-2", 'Server Leaks Version Information via "Server" HTTP Response Header Field', LOW,
           CONF_HIGH, 497, 13,
           "The Server header names a version, which tells an attacker which known vulnerabilities to try.",
           "Configure the server, load balancer or proxy to send a generic Server header or none."),
        _R("10037", "10037", 'Server Leaks Information via "X-Powered-By" HTTP Response Header Field(s)', LOW,
           CONF_MEDIUM, 497, 13,
           "An X-Powered-By header names the framework behind the site.",
           "Configure the server, load balancer or proxy to drop X-Powered-By headers."),
        _R("10098", "10098", "Cross-Domain Misconfiguration", MEDIUM, CONF_MEDIUM, 264, 14,
           "Access-Control-Allow-Origin: * lets any other site read this response from a visitor's browser.",
           "Allow only the origins that need it, or drop the CORS headers."),
        _R("90022", "90022", "Application Error Disclosure", MEDIUM, CONF_MEDIUM, 550, 13,
           "The response shows an error message (or is an HTTP 500) that may reveal internals of the "
           "application, such as the code or query that failed.",
           "Serve generic error pages; log the details on the server with a reference the user can quote."),
        _R("10015", "10015", "Re-examine Cache-control Directives", INFO, CONF_LOW, 525, 13,
           "Cache-Control does not forbid caching of this HTTPS content; review that nothing sensitive is cached.",
           "For private content send Cache-Control: no-cache, no-store, must-revalidate.", https_only=True),
        _R("10049", "10049-1", "Non-Storable Content", INFO, CONF_MEDIUM, 524, 13,
           "Caches (browsers, proxies) may not store this response.",
           "Nothing to do for private content; public content may be made cacheable for speed."),
        _R("10049", "10049-2", "Storable but Non-Cacheable Content", INFO, CONF_MEDIUM, 524, 13,
           "Caches may store this response but must revalidate it before using it again.",
           "Nothing to do unless the content is sensitive."),
        _R("10049", "10049-3", "Storable and Cacheable Content", INFO, CONF_MEDIUM, 524, 13,
           "Shared caches may store this response and serve it to other users without asking the server.",
           "Check that the response holds nothing personal or sensitive; otherwise send Cache-Control: "
           "no-store (or private)."),
        _R("10063", "10063-1", "Permissions Policy Header Not Set", LOW, CONF_MEDIUM, 693, 15,
           "The page sends no Permissions-Policy, so embedded content may use browser features (camera, "
           "microphone, geolocation...) the site never needs.",
           "Send a Permissions-Policy header that disables the features the site does not use."),
        _R("90004", "90004-1", "Cross-Origin-Resource-Policy Header Missing or Invalid", LOW, CONF_MEDIUM, 693,
           14,
           "Without Cross-Origin-Resource-Policy other origins may load this resource, which side-channel "
           "attacks such as Spectre exploit.",
           "Send Cross-Origin-Resource-Policy: same-origin (or cross-origin for resources meant to be shared)."),
        _R("90004", "90004-2", "Cross-Origin-Embedder-Policy Header Missing or Invalid", LOW, CONF_MEDIUM, 693,
           14,
           "Without Cross-Origin-Embedder-Policy the document may load cross-origin resources that did not opt "
           "in, weakening site isolation.",
           "Send Cross-Origin-Embedder-Policy: require-corp on HTML documents."),
        _R("90004", "90004-3", "Cross-Origin-Opener-Policy Header Missing or Invalid", LOW, CONF_MEDIUM, 693,
           14,
           "Without Cross-Origin-Opener-Policy a cross-origin window that opened this document keeps a handle "
           "on it, weakening site isolation.",
           "Send Cross-Origin-Opener-Policy: same-origin on HTML documents."),
        _R("10202", "10202", "Absence of Anti-CSRF Tokens", MEDIUM, CONF_LOW, 352, 9,
           "An HTML form carries no known anti-CSRF token, so another site may submit it in a visitor's name.",
           "Add a per-session (or per-request) anti-CSRF token to every form and check it on the server.",
           "https://cheatsheetseries.owasp.org/cheatsheets/Cross-Site_Request_Forgery_Prevention_Cheat_Sheet.html"),
    )
}  # fmt: skip

# ZAP's default anti-CSRF token names (Options > Anti-CSRF Tokens); compared case-insensitively.
CSRF_TOKEN_NAMES = (
    "anticsrf", "CSRFToken", "__RequestVerificationToken", "csrfmiddlewaretoken", "authenticity_token",
    "OWASP_CSRFTOKEN", "anoncsrf", "csrf_token", "_csrf", "_csrfSecret", "__csrf_magic", "CSRF", "_token",
    "_csrf_token", "_csrfToken",
)  # fmt: skip
_CSRF_LOWER = frozenset(n.lower() for n in CSRF_TOKEN_NAMES)

# Error signatures of common platforms (a subset of what ZAP's 90022 looks for).
APPLICATION_ERRORS = (
    "Microsoft OLE DB Provider for ODBC Drivers", "Microsoft OLE DB Provider for SQL Server",
    "ODBC SQL Server Driver", "You have an error in your SQL syntax",
    "Unclosed quotation mark before the character string", "java.lang.NumberFormatException",
    "Supplied argument is not a valid PostgreSQL result", "ASP.NET is configured to show verbose error messages",
    "Error Occurred While Processing Request", "Error Diagnostic Information", "Internal Server Error",
    "Microsoft VBScript runtime error", "Microsoft VBScript compilation error", "PHP Parse error",
    "PHP Warning", "PHP Error", "Warning: mysql_query()", "Traceback (most recent call last)",
    "System.Data.SqlClient.SqlException", "JDBC Driver", "ODBC Driver", "Oracle Error",
)  # fmt: skip
_APPLICATION_ERROR_PATTERNS = (
    re.compile(r"ORA-\d{4,5}:\s", re.IGNORECASE),
    re.compile(r"Server Error in '[^']*' Application", re.IGNORECASE),
    re.compile(r"<b>(?:Warning|Fatal error|Parse error)</b>:\s+.*? on line <b>\d+</b>", re.IGNORECASE),
)
# Status codes a cache may store without explicit freshness (RFC 7231 §6.1, "heuristically cacheable").
_HEURISTICALLY_CACHEABLE = frozenset({200, 203, 204, 206, 300, 301, 404, 405, 410, 414, 501})


# --- one HTTP exchange ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """A request the crawler sent and the response it got (headers in order, duplicates kept)."""

    url: str
    method: str
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""
    request_headers: tuple[tuple[str, str], ...] = ()

    def header_all(self, name: str) -> list[str]:
        lname = name.lower()
        return [v for k, v in self.headers if k.lower() == lname]

    def header(self, name: str) -> str | None:
        values = self.header_all(name)
        return values[0] if values else None

    @property
    def content_type(self) -> str:
        return (self.header("Content-Type") or "").lower()

    @property
    def is_html(self) -> bool:
        return "html" in self.content_type

    @property
    def is_text(self) -> bool:
        ctype = self.content_type
        return ctype.startswith("text/") or any(t in ctype for t in ("json", "xml", "javascript", "html"))

    @property
    def is_javascript(self) -> bool:
        return "javascript" in self.content_type or urlsplit(self.url).path.endswith(".js")

    @property
    def is_css(self) -> bool:
        return "text/css" in self.content_type or urlsplit(self.url).path.endswith(".css")

    @property
    def is_image(self) -> bool:
        return self.content_type.startswith("image/")

    @property
    def is_secure(self) -> bool:
        return urlsplit(self.url).scheme == "https"

    @property
    def is_redirect(self) -> bool:
        return 300 <= self.status < 400

    @property
    def is_error(self) -> bool:
        return self.status >= 400

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300

    @property
    def status_line(self) -> str:
        return f"HTTP/1.1 {self.status} {self.reason}".rstrip()

    def text(self) -> str:
        match = re.search(r"charset=([\w.-]+)", self.content_type)
        encoding = match.group(1) if match else "utf-8"
        try:
            return self.body.decode(encoding, "replace")
        except LookupError:
            return self.body.decode("utf-8", "replace")


# --- what an HTML page links to and declares -------------------------------------------------------------


@dataclass
class Form:
    method: str
    action: str
    start_tag: str
    input_names: list[str] = field(default_factory=list)


@dataclass
class HtmlFacts:
    links: list[str] = field(default_factory=list)
    metas: list[tuple[str, str]] = field(default_factory=list)  # (http-equiv lower-cased, content)
    forms: list[Form] = field(default_factory=list)

    def meta(self, http_equiv: str) -> str | None:
        return next((content for name, content in self.metas if name == http_equiv.lower()), None)


_LINK_ATTRS = {
    "a": "href", "area": "href", "link": "href", "script": "src", "img": "src", "iframe": "src",
    "frame": "src", "source": "src",
}  # fmt: skip


class _FactsParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.facts = HtmlFacts()
        self._form: Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k.lower(): (v or "") for k, v in attrs}
        attr = _LINK_ATTRS.get(tag)
        if attr and values.get(attr):
            self.facts.links.append(values[attr])
        if tag == "meta" and values.get("http-equiv"):
            self.facts.metas.append((values["http-equiv"].lower(), values.get("content", "")))
        elif tag == "form":
            method = values.get("method", "get").lower() or "get"
            self._form = Form(method, values.get("action", ""), self.get_starttag_text() or "<form>")
            self.facts.forms.append(self._form)
            # A GET form's action is a page of its own (ZAP's spider follows it); POST forms are never sent.
            if method == "get" and values.get("action"):
                self.facts.links.append(values["action"])
        elif (
            tag in ("input", "select", "textarea", "button") and self._form is not None and values.get("name")
        ):
            self._form.input_names.append(values["name"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None


def parse_html(text: str) -> HtmlFacts:
    parser = _FactsParser()
    try:
        parser.feed(text)
        parser.close()
    except (AssertionError, ValueError):  # a broken page still yields what was parsed before the break
        pass
    return parser.facts


# --- the checks ---------------------------------------------------------------------------------------------

Check = Callable[[Message, HtmlFacts], Iterable[ZapAlert]]


def _cookie(value: str) -> tuple[str, dict[str, str]]:
    """Set-Cookie value -> (name, {attribute lower-cased: value})."""
    first, *rest = value.split(";")
    name = first.split("=", 1)[0].strip()
    attrs: dict[str, str] = {}
    for part in rest:
        key, _, val = part.strip().partition("=")
        if key:
            attrs[key.strip().lower()] = val.strip()
    return name, attrs


def _expired(attrs: dict[str, str]) -> bool:
    # ZAP skips cookies that are being deleted: they carry no value worth protecting.
    max_age = attrs.get("max-age")
    if max_age is not None:
        try:
            return int(max_age) <= 0
        except ValueError:
            return False
    expires = attrs.get("expires")
    if expires:
        try:
            when = parsedate_to_datetime(expires)
        except (TypeError, ValueError):
            return False
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return when < datetime.now(UTC)
    return False


def check_cookies(msg: Message, facts: HtmlFacts) -> Iterable[ZapAlert]:
    for value in msg.header_all("Set-Cookie"):
        name, attrs = _cookie(value)
        if _expired(attrs):
            continue
        evidence = f"Set-Cookie: {name}"
        if "httponly" not in attrs:
            yield RULES["10010"].alert(msg, param=name, evidence=evidence)
        if msg.is_secure and "secure" not in attrs:
            yield RULES["10011"].alert(msg, param=name, evidence=evidence)
        same_site = attrs.get("samesite")
        if same_site is None:
            yield RULES["10054-1"].alert(msg, param=name, evidence=evidence)
        elif same_site.lower() == "none":
            yield RULES["10054-2"].alert(msg, param=name, evidence=evidence)
        elif same_site.lower() not in ("lax", "strict"):
            yield RULES["10054-3"].alert(msg, param=name, evidence=evidence)


def check_anti_clickjacking(msg: Message, facts: HtmlFacts) -> Iterable[ZapAlert]:
    if not msg.is_html or not msg.body or msg.is_redirect or msg.is_error:
        return
    # CSP frame-ancestors takes precedence over X-Frame-Options.
    if any("frame-ancestors" in csp.lower() for csp in msg.header_all("Content-Security-Policy")):
        return
    values = msg.header_all("X-Frame-Options")
    for value in values:
        if "deny" not in value.lower() and "sameorigin" not in value.lower():
            yield RULES["10020-4"].alert(msg, param="x-frame-options", evidence=value)
    if len(values) > 1:
        yield RULES["10020-2"].alert(msg, param="x-frame-options")
    if not values:
        yield RULES["10020-1"].alert(msg, param="x-frame-options")
    meta = facts.meta("X-Frame-Options")
    if meta is not None:
        yield RULES["10020-3"].alert(msg, param="x-frame-options", evidence=meta)


def check_content_type_options(msg: Message, facts: HtmlFacts) -> Iterable[ZapAlert]:
    if not msg.body or msg.is_redirect or msg.is_error:
        return
    values = msg.header_all("X-Content-Type-Options")
    if not values:
        yield RULES["10021"].alert(msg, param="x-content-type-options")
    for value in values:
        if "nosniff" not in value.lower():
            yield RULES["10021"].alert(msg, param="x-content-type-options", evidence=value)


def check_hsts(msg: Message, facts: HtmlFacts) -> Iterable[ZapAlert]:
    if not msg.is_secure:
        return
    values = msg.header_all("Strict-Transport-Security")
    if not values:
        if msg.is_redirect and _same_host_https(msg):
            return  # a redirect to the same HTTPS host is not worth an alert (ZAP: only at LOW threshold)
        yield RULES["10035-1"].alert(msg)
    elif len(values) > 1:
        yield RULES["10035-3"].alert(msg)
    elif re.search(r"\bmax-age\s*=\s*['\"]?\s*0\s*['\"]?\s*(?:;|$)", values[0], re.IGNORECASE):
        yield RULES["10035-2"].alert(msg, evidence=values[0])


def _same_host_https(msg: Message) -> bool:
    location = msg.header("Location") or ""
    target = urlsplit(location)
    if not target.scheme and not target.netloc:
        return True
    source = urlsplit(msg.url)
    return target.scheme == "https" and (target.hostname, target.port) == (source.hostname, source.port)


def check_csp(msg: Message, facts: HtmlFacts) -> Iterable[ZapAlert]:
    if not msg.is_html or msg.is_redirect:
        return
    if not msg.header_all("Content-Security-Policy") and facts.meta("Content-Security-Policy") is None:
        yield RULES["10038-1"].alert(msg)
    if msg.header_all("Content-Security-Policy-Report-Only"):
        yield RULES["10038-3"].alert(msg)


def check_server_version(msg: Message, facts: HtmlFacts) -> Iterable[ZapAlert]:
    for value in msg.header_all("Server"):
        if re.search(r"\d", value):
            yield RULES["10036-2"].alert(msg, evidence=value)


def check_x_powered_by(msg: Message, facts: HtmlFacts) -> Iterable[ZapAlert]:
    values = msg.header_all("X-Powered-By")
    if values:
        others = "".join(f"X-Powered-By: {v}\n" for v in values[1:])
        yield RULES["10037"].alert(msg, evidence=f"X-Powered-By: {values[0]}", otherinfo=others)


def check_cors(msg: Message, facts: HtmlFacts) -> Iterable[ZapAlert]:
    origin = msg.header("Access-Control-Allow-Origin")
    if origin is not None and origin.strip() == "*":
        yield RULES["10098"].alert(msg, evidence="Access-Control-Allow-Origin: *")


def check_application_errors(msg: Message, facts: HtmlFacts) -> Iterable[ZapAlert]:
    if msg.status == 500:
        yield _with_risk(RULES["90022"].alert(msg, evidence=msg.status_line), LOW)
        return
    if msg.status == 404 or not msg.is_text or not msg.body:
        return
    text = msg.text()
    for signature in APPLICATION_ERRORS:
        if signature in text:
            yield RULES["90022"].alert(msg, evidence=signature)
            return
    for pattern in _APPLICATION_ERROR_PATTERNS:
        match = pattern.search(text)
        if match:
            yield RULES["90022"].alert(msg, evidence=match.group(0))
            return


def _with_risk(alert: ZapAlert, riskcode: int) -> ZapAlert:
    # ZAP raises 90022 at Low for a bare HTTP 500, at Medium for an error message in the body.
    return ZapAlert(
        alert.plugin_id, alert.alert_ref, alert.name, riskcode, alert.confidence, alert.desc, alert.solution,
        alert.reference, alert.cweid, alert.wascid, alert.instances,
    )  # fmt: skip


def _directives(msg: Message) -> dict[str, str]:
    directives: dict[str, str] = {}
    for value in msg.header_all("Cache-Control"):
        for part in value.split(","):
            key, _, val = part.strip().partition("=")
            if key:
                directives[key.strip().lower()] = val.strip().strip('"')
    return directives


def check_cache_control(msg: Message, facts: HtmlFacts) -> Iterable[ZapAlert]:
    if not msg.is_secure or not msg.body or msg.method == "POST" or msg.is_image:
        return
    if msg.is_redirect or msg.is_error or not msg.is_text or msg.is_javascript or msg.is_css:
        return
    directives = _directives(msg)
    if not {"no-store", "no-cache", "must-revalidate"} <= directives.keys():
        yield RULES["10015"].alert(
            msg, param="Cache-Control", evidence=", ".join(msg.header_all("Cache-Control"))
        )


def check_cacheability(msg: Message, facts: HtmlFacts) -> Iterable[ZapAlert]:
    """10049, after RFC 7234 §3: may a cache store the response, and may it serve it without revalidating?"""
    directives = _directives(msg)
    request_cc = " ".join(v for k, v in msg.request_headers if k.lower() == "cache-control").lower()
    if msg.method not in ("GET", "HEAD", "POST"):
        yield RULES["10049-1"].alert(msg, evidence=msg.method)
        return
    for directive in ("no-store", "private"):
        if directive in directives or (directive == "no-store" and "no-store" in request_cc):
            yield RULES["10049-1"].alert(msg, evidence=directive)
            return
    explicit: list[str] = [d for d in ("max-age", "s-maxage", "public") if d in directives]
    if msg.header("Expires") is not None:
        explicit.append("Expires")
    if not explicit and msg.status not in _HEURISTICALLY_CACHEABLE:
        yield RULES["10049-1"].alert(msg, evidence=str(msg.status))
        return
    stale = (
        "no-cache" in directives
        or directives.get("max-age") == "0"
        or directives.get("s-maxage") == "0"
        or ("max-age" not in directives and "s-maxage" not in directives and _expired_header(msg))
    )
    if stale:
        evidence = "no-cache" if "no-cache" in directives else "max-age=0"
        yield RULES["10049-2"].alert(msg, evidence=evidence)
        return
    evidence = next((f"{d}={directives[d]}" for d in ("s-maxage", "max-age") if d in directives), "")
    yield RULES["10049-3"].alert(msg, evidence=evidence)


def _expired_header(msg: Message) -> bool:
    expires = msg.header("Expires")
    if expires is None:
        return False
    try:
        when = parsedate_to_datetime(expires)
    except (TypeError, ValueError):
        return True  # an unparseable Expires means "already expired" (RFC 7234 §5.3)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when <= datetime.now(UTC)


def check_permissions_policy(msg: Message, facts: HtmlFacts) -> Iterable[ZapAlert]:
    if not (msg.is_html or msg.is_javascript) or msg.is_redirect:
        return
    if not msg.header_all("Permissions-Policy"):
        yield RULES["10063-1"].alert(msg, param="Permissions-Policy")


def check_site_isolation(msg: Message, facts: HtmlFacts) -> Iterable[ZapAlert]:
    if not msg.is_success:
        return
    corp = [v.strip().lower() for v in msg.header_all("Cross-Origin-Resource-Policy")]
    # A resource shared on purpose through CORS is not expected to restrict its embedders.
    if msg.header("Access-Control-Allow-Origin") is None and (
        not corp or corp[0] not in ("same-origin", "cross-origin")
    ):
        yield RULES["90004-1"].alert(
            msg, param="Cross-Origin-Resource-Policy", evidence=corp[0] if corp else ""
        )
    if not msg.is_html:
        return
    coep = [v.strip().lower() for v in msg.header_all("Cross-Origin-Embedder-Policy")]
    if not coep or coep[0] not in ("require-corp", "credentialless"):
        yield RULES["90004-2"].alert(
            msg, param="Cross-Origin-Embedder-Policy", evidence=coep[0] if coep else ""
        )
    coop = [v.strip().lower() for v in msg.header_all("Cross-Origin-Opener-Policy")]
    if not coop or coop[0] != "same-origin":
        yield RULES["90004-3"].alert(
            msg, param="Cross-Origin-Opener-Policy", evidence=coop[0] if coop else ""
        )


def check_csrf_tokens(msg: Message, facts: HtmlFacts) -> Iterable[ZapAlert]:
    if not msg.is_html:
        return
    for number, form in enumerate(facts.forms, start=1):
        if any(name.lower() in _CSRF_LOWER for name in form.input_names):
            continue
        fields = " ".join(f'"{n}"' for n in form.input_names)
        other = (
            f"No known anti-CSRF token ({', '.join(CSRF_TOKEN_NAMES)}) was found in HTML form "
            f"{number}: [{fields}]."
        )
        yield RULES["10202"].alert(msg, evidence=form.start_tag, otherinfo=other)


CHECKS: tuple[Check, ...] = (
    check_cookies,
    check_anti_clickjacking,
    check_content_type_options,
    check_hsts,
    check_csp,
    check_server_version,
    check_x_powered_by,
    check_cors,
    check_application_errors,
    check_cache_control,
    check_cacheability,
    check_permissions_policy,
    check_site_isolation,
    check_csrf_tokens,
)


def scan_message(msg: Message, facts: HtmlFacts | None = None) -> list[ZapAlert]:
    """Every builtin passive check on one exchange; one alert per instance (drivers.zap groups them)."""
    if facts is None:
        facts = parse_html(msg.text()) if msg.is_html and msg.body else HtmlFacts()
    return [alert for check in CHECKS for alert in check(msg, facts)]


def rule_list() -> list[PassiveRule]:
    """The rules the builtin engine applies, by plugin id: what the report lists as the subset of ZAP."""
    return sorted(RULES.values(), key=lambda r: (int(r.plugin_id), r.alert_ref))
