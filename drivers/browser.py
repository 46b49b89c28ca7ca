"""Browser verb (DR-AXE, DR-E2E): one WebDriver session that every page of a run shares.

Backends, like the other drivers: `local` drives a Chromium or Chrome on this machine through its
chromedriver, both found on disk (`[browser] chrome` / `chromedriver`, then RUNBOOK_CHROME /
RUNBOOK_CHROMEDRIVER, then PATH and the usual install places) so that Selenium Manager never runs and nothing is
downloaded; `remote` drives a browser on a Selenium Grid (`--selenium-remote URL` or `[browser] remote`).
`[browser] kind = "edge"` makes it Microsoft Edge with msedgedriver (the same Chromium flags, under
`ms:edgeOptions`; `[browser] chrome` / `chromedriver`, then RUNBOOK_EDGE / RUNBOOK_MSEDGEDRIVER, then msedge /
microsoft-edge and msedgedriver on PATH and Edge's install folders; on a Grid, a node with MicrosoftEdge). Either
way the driver's path is given to Selenium explicitly, which is what keeps Selenium Manager from running.

Both get the same capabilities: headless, `[browser] window`, the scope flags below and the other built-in
flags (BROWSER_ARGS), then `[browser] args` after them (checked by `check_browser_args`: flags only, none of
the runbook's own). A local session adds `--no-sandbox` itself when it runs as root on Linux; a remote one
cannot know who runs the node's Chromium, so a node that runs it as root needs `--no-sandbox` in `[browser]
args` (ROOT_SAFE_ARGS lists the flags to give), and a start that fails the way a sandbox refused by root fails
("Chrome instance exited") says so. `[browser] chrome` / `chromedriver` are paths on this machine and are not
sent to a Grid: where Chromium is on a node is the node's own configuration (its stereotype's
`goog:chromeOptions.binary`, which a Selenium 4 node puts in every session it starts, over the client's).

A local session runs headless on a fresh profile directory that `quit()` removes, also after a failed start;
the session is a context manager so that a caller cannot forget it. Plain Python, no pytest: the fixture turns
`BrowserUnavailable` into a "tool missing" skip (which the gate turns into a failure) and any other
`DriverError` into a failure.

Scope: given `allowed_hosts` (the probes' `[scope] allowed_hosts`), the browser itself cannot reach any other
host. Chromium starts with `--host-resolver-rules="MAP * ~NOTFOUND, EXCLUDE <each allowed host>"`: every other
name, and every other IP literal too (127.0.0.2 included), fails to resolve inside the browser, so no request to
it is ever sent, whether a navigation, a redirect (HTTP, meta refresh, script), a sub-resource, a fetch or a
WebSocket; WebRTC, which bypasses the resolver for UDP, is held to proxied UDP (none). These are command-line
flags, so they travel in the capabilities to a Selenium Grid as well. Tried and rejected: a PAC script
(Chromium never asks it about loopback addresses, and `<-loopback>` does not apply to PAC) and the DevTools
`Network.setBlockedURLs` (it blocks sub-resources but let redirected navigations through, and a Grid session
has no CDP through Selenium's client). What the page tried is read from the performance log: `open()` fails
with `LeftScope` ("left scope: URL") when the page ended outside the allowed hosts, and every blocked request
goes to `on_blocked` for the journal.

Orphans: a local browser keeps a record of its processes and profile (drivers.reaper) from its start until
`quit()`, so that `reap_orphans` can stop what a killed runner left. `check_browser_tools` is PRE's look at
the tools before anything is touched: the binaries found and of one major version, or the Grid ready.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Self
from urllib.parse import urlsplit

from drivers import reaper
from drivers.base import ActionResult, DriverError, Registry, quoted, timed
from drivers.config import Browser

if TYPE_CHECKING:
    from selenium.webdriver.chrome.options import Options as ChromeOptions
    from selenium.webdriver.remote.webdriver import WebDriver

__all__ = [
    "BACKENDS",
    "ROOT_SAFE_ARGS",
    "BlockedRequest",
    "BrowserSession",
    "BrowserToolCheck",
    "BrowserUnavailable",
    "LeftScope",
    "LocalChromium",
    "Navigation",
    "RemoteBrowser",
    "ScopeGuard",
    "browser_session",
    "check_browser_args",
    "check_browser_settings",
    "check_browser_tools",
    "find_chrome",
    "find_chromedriver",
]

CHROME_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
CHROMEDRIVER_NAMES = ("chromedriver",)

# Where Chrome installs itself when it is not on PATH (it never is on Windows).
_WINDOWS_CHROME = (
    ("PROGRAMFILES", r"Google\Chrome\Application\chrome.exe"),
    ("PROGRAMFILES(X86)", r"Google\Chrome\Application\chrome.exe"),
    ("LOCALAPPDATA", r"Google\Chrome\Application\chrome.exe"),
)
_MAC_CHROME = ("/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",)

INSTALL_HINT = (
    "install Chromium and its driver (Debian/Ubuntu: `sudo apt-get install chromium chromium-driver`); "
    "on Windows install Google Chrome and the ChromeDriver of the same version, then give their paths in "
    "[browser] chrome / chromedriver or in RUNBOOK_CHROME / RUNBOOK_CHROMEDRIVER; or run the browser rows on a "
    "Selenium Grid with --selenium-remote URL"
)

EDGE_NAMES = ("msedge", "microsoft-edge", "microsoft-edge-stable")
MSEDGEDRIVER_NAMES = ("msedgedriver",)
# Where Edge is on every Windows PC (it is not on PATH there either), and on a Mac that installed it.
_WINDOWS_EDGE = (
    ("PROGRAMFILES(X86)", r"Microsoft\Edge\Application\msedge.exe"),
    ("PROGRAMFILES", r"Microsoft\Edge\Application\msedge.exe"),
    ("LOCALAPPDATA", r"Microsoft\Edge\Application\msedge.exe"),
)
_MAC_EDGE = ("/Applications/Microsoft Edge.app/Contents/MacOS/Microsoft Edge",)
MSEDGEDRIVER_DOWNLOAD = "https://developer.microsoft.com/microsoft-edge/tools/webdriver/"
EDGE_INSTALL_HINT = (
    "Edge needs msedgedriver of the same major version as Edge, which the runbook never downloads: see Edge's "
    f"version at edge://version, download that msedgedriver from {MSEDGEDRIVER_DOWNLOAD} (win64 on a Windows "
    "PC), unzip it, and give its path in [browser] chromedriver or RUNBOOK_MSEDGEDRIVER, or put msedgedriver on "
    "PATH (Edge itself: [browser] chrome or RUNBOOK_EDGE, else msedge / microsoft-edge on PATH and Edge's "
    'install folders); or use [browser] kind = "chrome", or run the browser rows on a Selenium Grid with '
    "--selenium-remote URL"
)


@dataclass(frozen=True)
class BrowserKind:
    """`[browser] kind`: which browser and which driver, where to look for them, and how to say so."""

    name: str  # chrome | edge
    label: str  # in the operator's sentences
    browser_names: tuple[str, ...]  # on PATH
    browser_env: str
    install_places: tuple[tuple[str, str], ...]  # (environment variable of a folder, path below it)
    mac_places: tuple[str, ...]
    driver: str  # the driver's name, on PATH and in sentences
    driver_env: str
    vendor: str  # the capabilities' prefix: goog:chromeOptions, ms:edgeOptions
    grid_names: tuple[str, ...]  # a Grid node's stereotype browserName for this kind (lower case)
    install_hint: str


KINDS: dict[str, BrowserKind] = {
    "chrome": BrowserKind(
        "chrome", "Chromium or Chrome", CHROME_NAMES, "RUNBOOK_CHROME", _WINDOWS_CHROME, _MAC_CHROME,
        "chromedriver", "RUNBOOK_CHROMEDRIVER", "goog", ("chrome", "chromium"), INSTALL_HINT,
    ),
    "edge": BrowserKind(
        "edge", "Microsoft Edge", EDGE_NAMES, "RUNBOOK_EDGE", _WINDOWS_EDGE, _MAC_EDGE,
        "msedgedriver", "RUNBOOK_MSEDGEDRIVER", "ms", ("microsoftedge", "msedge"), EDGE_INSTALL_HINT,
    ),
}  # fmt: skip


def browser_kind(settings: Browser) -> BrowserKind:
    """The kind `[browser] kind` names (the environment loader allowed only these)."""
    return KINDS[settings.kind]


# Every local and remote session: headless, and nothing that phones home from an internal network.
BROWSER_ARGS = (
    "--headless=new",
    "--disable-gpu",
    # Containers give /dev/shm 64 MB; Chromium's renderer crashes on it under load.
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    # No keyring prompt that would hang a desktop session on Linux.
    "--password-store=basic",
    # The probes go direct (drivers.probe); the browser must see the same service, not a proxy's view of it.
    "--no-proxy-server",
)


# What a Grid node that runs Chromium as root needs in [browser] args (README "Selenium Grid"): the sandbox
# refuses root, and the rest keep a headless node from crashing on a small /dev/shm or calling home.
ROOT_SAFE_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)

# Flags that [browser] args may not give: the runbook sets them itself, and a later copy would win.
_RESERVED_ARGS = {
    "--host-resolver-rules": "the scope block of [scope] allowed_hosts",
    "--webrtc-ip-handling-policy": "the scope block of [scope] allowed_hosts",
    "--proxy-server": "direct connections, as the probes make them",
    "--proxy-pac-url": "direct connections, as the probes make them",
    "--proxy-auto-detect": "direct connections, as the probes make them",
    "--user-data-dir": "the fresh profile it creates and removes",
    "--remote-debugging-port": "chromedriver's connection to the browser",
    "--remote-debugging-pipe": "chromedriver's connection to the browser",
    "--window-size": "[browser] window",
}


def check_browser_args(args: Iterable[object]) -> list[str]:
    """The problems of [browser] args, in words: each must be one browser flag, and none of the runbook's own."""
    problems = []
    for i, arg in enumerate(args):
        where = f"[browser] args[{i}] = {quoted(arg)}"
        if not isinstance(arg, str) or not arg.startswith("--") or len(arg) < 3 or arg != arg.strip():
            problems.append(
                f'{where}: not a browser flag (give each flag as its own string beginning with "--", such as '
                '"--no-sandbox"); the browser would open anything else as a page'
            )
            continue
        name = arg.partition("=")[0].lower()
        if name in _RESERVED_ARGS:
            problems.append(
                f"{where}: the runbook sets {name} itself ({_RESERVED_ARGS[name]}); leave it out of [browser] args"
            )
    return problems


def check_browser_settings(settings: Browser, remote_url: str = "") -> list[str]:
    """Preflight's look at [browser] (and the Grid's address): the window, the args, the URL. No tool is run."""
    problems = []
    try:
        parse_window(settings.window)
    except DriverError as exc:
        problems.append(str(exc))
    problems += check_browser_args(settings.args)
    if remote_url:
        try:
            _check_grid_url(remote_url)
        except DriverError as exc:
            problems.append(str(exc))
    return problems


class BrowserUnavailable(DriverError):
    """The browser or its driver is not installed where the runbook looks: a "tool missing" row."""


@dataclass(frozen=True)
class BlockedRequest:
    """A request of the page to a host outside the allowed hosts, which the browser did not send."""

    url: str
    # What the page wanted: Document (a navigation or a frame), Image, Script, Fetch, WebSocket, ...
    resource: str
    document_url: str  # the page that asked for it (for a navigation: where it was going)
    error: str = ""  # the browser's own word for it, net::ERR_NAME_NOT_RESOLVED when the block held
    sent: bool = False  # True only when an answer came back: the block did NOT hold

    @property
    def host(self) -> str:
        return (urlsplit(self.url).hostname or "").lower()

    def describe(self) -> str:
        what = "SENT despite the scope block" if self.sent else "blocked"
        return f"{self.resource.lower()} {self.url} ({what})"


# Schemes whose requests leave the machine; data:, blob:, chrome: and the like do not.
_NETWORK_SCHEMES = ("http", "https", "ws", "wss")
# A host name or an IP literal as urlsplit gives it (IPv6 without brackets); nothing that could change a rule.
_HOST_RE = re.compile(r"[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?|[0-9a-f:.]*:[0-9a-f:.]*")


class ScopeGuard:
    """[scope] allowed_hosts for the browser: the flags that block every other host, and what was blocked."""

    def __init__(self, hosts: Iterable[str]) -> None:
        wanted = sorted({h.strip().lower().removeprefix("[").removesuffix("]") for h in hosts} - {""})
        bad = [h for h in wanted if not _HOST_RE.fullmatch(h)]
        if bad:
            raise DriverError(
                f"[scope] allowed_hosts: {', '.join(f'"{h}"' for h in bad)} is not a host name or an IP address "
                "(give bare names such as mcms-stage.corp.example, without scheme, port, path or wildcard)"
            )
        self.hosts = tuple(wanted)

    def allows(self, url: str) -> bool:
        parts = urlsplit(url)
        if parts.scheme not in _NETWORK_SCHEMES:
            return True
        return (parts.hostname or "").lower() in self.hosts

    def describe(self) -> str:
        return ", ".join(self.hosts) or "none"

    def args(self) -> list[str]:
        # Chromium's own resolver answers "not found" for every host but these, IP literals included: a
        # request that cannot be resolved is never sent. Hosts are matched whatever the port.
        rules = ", ".join(["MAP * ~NOTFOUND", *(f"EXCLUDE {h}" for h in self.hosts)])
        return [
            f"--host-resolver-rules={rules}",
            # WebRTC sends STUN over UDP to IP literals without asking the resolver; "proxied UDP only" with no
            # proxy means none at all (measured: 0 packets to 127.0.0.2 with this flag, 4 without).
            "--webrtc-ip-handling-policy=disable_non_proxied_udp",
        ]

    def left_scope(self, url: str, final_url: str, blocked: Iterable[BlockedRequest] = ()) -> LeftScope:
        """The failure of a page that ended on `final_url`, outside the allowed hosts."""
        host = (urlsplit(final_url).hostname or "").lower()
        others = [b for b in blocked if b.url != final_url]
        also = ""
        if others:
            shown = "; ".join(b.describe() for b in others[:3])
            also = f"; it also asked for {len(others)} other off-scope address(es): {shown}" + (
                "; ..." if len(others) > 3 else ""
            )
        return LeftScope(
            f"left scope: {final_url} (opening {url}; host {host} is outside [scope] allowed_hosts: "
            f"{self.describe()}); the browser did not send that request and nothing on that page was checked{also}",
            url=url,
            final_url=final_url,
            blocked=tuple(blocked),
        )

    def blocked_in(self, entries: Iterable[Mapping[str, Any]]) -> list[BlockedRequest]:
        """The off-scope requests in a stretch of chromedriver's performance log, in the order they were made."""
        seen: dict[tuple[str, str], dict[str, Any]] = {}
        by_id: dict[str, list[tuple[str, str]]] = {}
        errors: dict[str, str] = {}
        answered: set[tuple[str, str]] = set()
        for entry in entries:
            try:
                message = json.loads(entry["message"])["message"]
                method, params = message["method"], message["params"]
            except (KeyError, TypeError, ValueError):
                continue
            if method == "Network.requestWillBeSent":
                url = str(params["request"]["url"])
                resource, document = str(params.get("type") or "Other"), str(params.get("documentURL") or "")
            elif method == "Network.webSocketCreated":
                url, resource, document = str(params["url"]), "WebSocket", ""
            elif method == "Network.loadingFailed":
                errors[str(params.get("requestId"))] = str(params.get("errorText") or "")
                continue
            elif method == "Network.responseReceived":
                answered.add((str(params.get("requestId")), str(params["response"]["url"])))
                continue
            else:
                continue
            if self.allows(url):
                continue
            key = (str(params.get("requestId")), url)
            if key not in seen:
                seen[key] = {"url": url, "resource": resource, "document_url": document}
                by_id.setdefault(key[0], []).append(key)
        blocked: dict[tuple[str, str, str], BlockedRequest] = {}
        for key, data in seen.items():
            # Only the last URL of a redirect chain can have failed; the earlier ones were answered (by a redirect).
            last = by_id[key[0]][-1] == key
            request = BlockedRequest(
                **data, error=errors.get(key[0], "") if last else "", sent=key in answered
            )
            # Chromium retries a navigation that failed to resolve: the same request again is not news.
            same = (request.url, request.resource, request.document_url)
            if same not in blocked or (request.sent and not blocked[same].sent):
                blocked[same] = request
        return list(blocked.values())


class LeftScope(DriverError):
    """The page ended on a host outside the allowed hosts: the browser blocked it and the page is not checked."""

    def __init__(
        self, message: str, *, url: str, final_url: str, blocked: tuple[BlockedRequest, ...] = ()
    ) -> None:
        super().__init__(message)
        self.url = url
        self.final_url = final_url
        self.blocked = blocked


@dataclass(frozen=True)
class Navigation:
    """What a page load ended on: the address after redirects and the document's HTTP status (0 = unknown)."""

    url: str
    final_url: str
    status: int
    title: str
    load_s: float
    blocked: tuple[BlockedRequest, ...] = ()  # off-scope requests of the page, not sent

    @property
    def redirected(self) -> bool:
        return urlsplit(self.url).path.rstrip("/") != urlsplit(self.final_url).path.rstrip("/")


def parse_window(window: str) -> tuple[int, int]:
    """[browser] window "1280x1024" -> (1280, 1024)."""
    width, sep, height = window.lower().partition("x")
    if not (sep and width.strip().isdigit() and height.strip().isdigit()):
        raise DriverError(
            f'[browser] window: expected WIDTHxHEIGHT such as "1280x1024", got {quoted(window)}'
        )
    size = int(width), int(height)
    if min(size) < 200:
        raise DriverError(
            f"[browser] window: {quoted(window)} is too small to lay a page out (at least 200x200)"
        )
    return size


def _configured_path(label: str, value: str, hint: str = INSTALL_HINT) -> Path:
    path = Path(value).expanduser()
    if not path.is_file():
        raise BrowserUnavailable(f"{label} = {quoted(value)}: no such file; {hint}")
    return path


def _on_path(names: tuple[str, ...], environ: Mapping[str, str]) -> Path | None:
    search = environ.get("PATH", os.defpath)
    for name in names:
        found = shutil.which(name, path=search)
        if found:
            return Path(found)
    return None


def _configured_or_on_path(
    key: str,
    configured: str,
    envvar: str,
    names: tuple[str, ...],
    environ: Mapping[str, str],
    hint: str = INSTALL_HINT,
) -> Path | None:
    """The environment file's value, else the environment variable's, else the first of `names` on PATH."""
    if configured:
        return _configured_path(key, configured, hint)
    if environ.get(envvar):
        return _configured_path(envvar, environ[envvar], hint)
    return _on_path(names, environ)


def find_chrome(settings: Browser, environ: Mapping[str, str] | None = None) -> Path:
    """The browser binary of `[browser] kind`: [browser] chrome, RUNBOOK_CHROME (RUNBOOK_EDGE), PATH, then the
    browser's usual install places."""
    environ = os.environ if environ is None else environ
    kind = browser_kind(settings)
    found = _configured_or_on_path(
        "[browser] chrome", settings.chrome, kind.browser_env, kind.browser_names, environ, kind.install_hint
    )
    if found is not None:
        return found
    places = [Path(environ[var]) / rel for var, rel in kind.install_places if environ.get(var)]
    places += [Path(p) for p in kind.mac_places]
    for place in places:
        if place.is_file():
            return place
    short = "Edge" if kind.name == "edge" else "Chrome"
    raise BrowserUnavailable(
        f"no {kind.label} found (looked at [browser] chrome, {kind.browser_env}, PATH for "
        f"{', '.join(kind.browser_names)}, and {short}'s install folders); {kind.install_hint}"
    )


def find_chromedriver(settings: Browser, environ: Mapping[str, str] | None = None) -> Path:
    """The driver binary of `[browser] kind` (chromedriver, msedgedriver): [browser] chromedriver,
    RUNBOOK_CHROMEDRIVER (RUNBOOK_MSEDGEDRIVER), then PATH. Never downloaded."""
    environ = os.environ if environ is None else environ
    kind = browser_kind(settings)
    found = _configured_or_on_path(
        "[browser] chromedriver",
        settings.chromedriver,
        kind.driver_env,
        (kind.driver,),
        environ,
        kind.install_hint,
    )
    if found is not None:
        return found
    raise BrowserUnavailable(
        f"no {kind.driver} found (looked at [browser] chromedriver, {kind.driver_env} and PATH); {kind.install_hint}"
    )


def _first_line(exc: BaseException) -> str:
    text = getattr(exc, "msg", None) or str(exc) or type(exc).__name__
    return next((line.strip() for line in str(text).splitlines() if line.strip()), type(exc).__name__)


BlockedListener = Callable[[list[BlockedRequest]], None]


class BrowserSession(ABC):
    """One browser for the whole run. `start()` and `quit()` return the actions the journal records.

    `allowed_hosts` None leaves the browser unconfined (the project's own tests of other things); the runbook
    always passes the probes' allowed hosts. `on_blocked` is told of every off-scope request as it is found.
    """

    backend: ClassVar[str]

    def __init__(
        self,
        settings: Browser,
        remote_url: str = "",
        environ: Mapping[str, str] | None = None,
        *,
        allowed_hosts: Iterable[str] | None = None,
        source: str = "",
    ) -> None:
        self.settings = settings
        self.kind = browser_kind(settings)
        self.remote_url = remote_url
        self.environ = os.environ if environ is None else environ
        # The environment file, for the operator's messages ("add ... to [browser] args in <source>").
        self.source = source or "the environment file"
        self.window = parse_window(settings.window)
        problems = check_browser_args(settings.args)
        if problems:
            raise DriverError("; ".join(problems))
        self.scope = ScopeGuard(allowed_hosts) if allowed_hosts is not None else None
        self.on_blocked: BlockedListener | None = None
        self.blocked: list[BlockedRequest] = []  # every off-scope request of the session, in order
        self._performance_log = self.scope is not None
        self._driver: WebDriver | None = None
        self.info: dict[str, Any] = {"backend": self.backend}
        if self.scope is not None:
            self.info["allowed_hosts"] = list(self.scope.hosts)
        if settings.args:
            self.info["args"] = list(settings.args)

    # --- life cycle ---------------------------------------------------------------------------------
    def start(self) -> ActionResult:
        """Start the browser; BrowserUnavailable when it is not installed, DriverError when it will not start."""
        if self._driver is not None:
            raise DriverError("the browser session is already started")
        action = ActionResult("browser.start", self.target)
        with timed(action):
            options = self._options()
            try:
                driver = self._create(options)
            except BaseException as exc:  # an interrupted start must not leave its profile behind either
                self._cleanup()
                if isinstance(exc, DriverError) or not isinstance(exc, Exception):
                    raise
                # Selenium raises many kinds; all of them mean "did not start".
                raise DriverError(f"{self.target}: the browser did not start: {_first_line(exc)}") from exc
            self._driver = driver
            try:
                timeout = self.settings.page_timeout_s
                driver.set_page_load_timeout(timeout)
                # axe-core runs as an async script; a big page takes seconds, a hung one must not take forever.
                driver.set_script_timeout(timeout)
            except Exception as exc:  # quit what did start, then say why
                self.quit()
                raise DriverError(
                    f"{self.target}: the browser started but refused its timeouts: {_first_line(exc)}"
                ) from exc
        caps = driver.capabilities
        self.info |= {
            "browser": caps.get("browserName"),
            "browser_version": caps.get("browserVersion"),
            # chromedriver: {"chrome": {"chromedriverVersion"}}; msedgedriver: {"msedge": {"msedgedriverVersion"}}
            "driver_version": str(
                (caps.get("msedge" if self.kind.name == "edge" else "chrome") or {}).get(
                    f"{self.kind.driver}Version", ""
                )
            ).split(" ")[0]
            or None,
        }
        action.target = self.target
        action.result = "started"
        action.detail = dict(self.info)
        return action

    def quit(self) -> ActionResult:
        """Quit the browser and remove what it left on disk; never raises (it runs in finalizers)."""
        action = ActionResult("browser.quit", self.target, detail={"backend": self.backend})
        with timed(action):
            if self._driver is not None:
                self._blocked_quietly()  # what the last page asked for is still in the log: record it first
            driver, self._driver = self._driver, None
            if driver is not None:
                try:
                    driver.quit()
                    action.result = "quit"
                except Exception as exc:  # noqa: BLE001 - a crashed browser must still have its profile removed
                    action.result = "quit failed"
                    action.detail["error"] = _first_line(exc)
            else:
                action.result = "not running"
            action.detail |= self._cleanup()
        return action

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.quit()

    @property
    def running(self) -> bool:
        return self._driver is not None

    @property
    def driver(self) -> WebDriver:
        if self._driver is None:
            raise DriverError("the browser is not started")
        return self._driver

    # --- what the checks do with it -----------------------------------------------------------------
    def open(self, url: str) -> Navigation:
        """Load `url` and wait for the document; a timeout or a dead browser is a DriverError.

        With a scope: `url` itself must be in scope (else nothing is loaded), and a page that ends outside it
        (a redirect, a meta refresh, a script) raises LeftScope; the off-scope requests the page made are in
        `Navigation.blocked` and went to `on_blocked`.
        """
        driver = self.driver
        scope = self.scope
        if scope is not None and not scope.allows(url):
            host = urlsplit(url).hostname or ""
            raise DriverError(
                f"{url}: host {host} is outside [scope] allowed_hosts ({scope.describe()}); nothing was sent"
            )
        started = time.perf_counter()
        try:
            driver.get(url)
        except Exception as exc:
            # A redirect to a blocked host ends the load with an error page: that is the browser leaving scope.
            blocked = self._blocked_quietly()
            final_url = self._current_url_quietly()
            if scope is not None:
                if final_url and not scope.allows(final_url):
                    raise scope.left_scope(url, final_url, blocked) from exc
                navigation = next((b for b in blocked if b.resource == "Document"), None)
                if navigation is not None:
                    raise scope.left_scope(url, navigation.url, blocked) from exc
            raise DriverError(
                f"{url}: the page did not load within {self.settings.page_timeout_s:g} s ({_first_line(exc)})"
            ) from exc
        try:
            final_url = driver.current_url
            blocked = self.take_blocked()
            if scope is not None and not scope.allows(final_url):
                raise scope.left_scope(url, final_url, blocked)
            status = driver.execute_script(
                # Chromium reports the document's HTTP status here (109+); other browsers leave it undefined.
                "const n = performance.getEntriesByType('navigation')[0];"
                "return n && n.responseStatus ? n.responseStatus : 0;"
            )
            final_url, title = driver.current_url, driver.title
        except DriverError:
            raise
        except Exception as exc:
            raise DriverError(
                f"{url}: the page did not load within {self.settings.page_timeout_s:g} s ({_first_line(exc)})"
            ) from exc
        if scope is not None and not scope.allows(final_url):  # it went on while the status was read
            raise scope.left_scope(url, final_url, blocked + self._blocked_quietly())
        return Navigation(
            url, final_url, int(status or 0), title, round(time.perf_counter() - started, 4), tuple(blocked)
        )

    def take_blocked(self) -> list[BlockedRequest]:
        """The off-scope requests the browser made since the last look (told to `on_blocked` too)."""
        if self.scope is None or not self._performance_log:
            return []
        driver = self.driver
        try:
            # The plain WebDriver command, so that it works the same on a Grid (get_log is Chrome-only).
            entries = driver.execute("getLog", {"type": "performance"})["value"]
        except Exception as exc:  # noqa: BLE001 - a Grid without the log still blocks; it only cannot tell what
            self._performance_log = False
            self.info["performance_log"] = (
                f"not available ({_first_line(exc)}): blocked requests are not listed"
            )
            return []
        blocked = self.scope.blocked_in(entries or [])
        if blocked:
            self.blocked.extend(blocked)
            if self.on_blocked is not None:
                self.on_blocked(blocked)
        return blocked

    def check_scope(self) -> list[BlockedRequest]:
        """Where the browser is now: LeftScope when it shows a page outside the allowed hosts (a click, a form,
        a late redirect took it there); else the off-scope requests since the last look."""
        blocked = self.take_blocked()
        if self.scope is None:
            return blocked
        final_url = self.driver.current_url
        if not self.scope.allows(final_url):
            raise self.scope.left_scope(final_url, final_url, blocked)
        return blocked

    def _blocked_quietly(self) -> list[BlockedRequest]:
        try:
            return self.take_blocked()
        except Exception:  # noqa: BLE001 - the load already failed; its own error is the one to report
            return []

    def _current_url_quietly(self) -> str:
        try:
            return str(self.driver.current_url)
        except Exception:  # noqa: BLE001 - as above
            return ""

    def screenshot_png(self) -> bytes:
        return self.driver.get_screenshot_as_png()

    def page_source(self) -> str:
        return self.driver.page_source

    # --- backends -----------------------------------------------------------------------------------
    @property
    @abstractmethod
    def target(self) -> str:
        """Where the browser runs, in the journal's words."""

    @abstractmethod
    def _create(self, options: ChromeOptions) -> WebDriver: ...

    def _cleanup(self) -> dict[str, Any]:
        return {}

    def _options(self) -> ChromeOptions:
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.edge.options import Options as EdgeOptions

        # Edge is a Chromium: the same flags, under ms:edgeOptions (browserName MicrosoftEdge).
        options: ChromeOptions = EdgeOptions() if self.kind.name == "edge" else Options()  # type: ignore[assignment]
        for arg in BROWSER_ARGS:
            options.add_argument(arg)
        options.add_argument("--window-size={},{}".format(*self.window))
        if self.scope is not None:
            for arg in self.scope.args():
                options.add_argument(arg)
            # Network events only (no page or timeline events): what each page asked for, read at every open().
            options.set_capability(f"{self.kind.vendor}:loggingPrefs", {"performance": "ALL"})
            options.add_experimental_option("perfLoggingPrefs", {"enableNetwork": True, "enablePage": False})
        return options

    def _add_configured_args(self, options: ChromeOptions) -> None:
        """[browser] args, after every flag of the runbook's own (a backend calls it last)."""
        for arg in self.settings.args:
            if arg not in options.arguments:
                options.add_argument(arg)


BACKENDS: Registry[BrowserSession] = Registry("browser backend")


@BACKENDS.register("local")
class LocalChromium(BrowserSession):
    """Chromium or Chrome on this machine, headless, on a fresh profile directory removed at quit."""

    backend = "local"

    def __init__(
        self,
        settings: Browser,
        remote_url: str = "",
        environ: Mapping[str, str] | None = None,
        *,
        allowed_hosts: Iterable[str] | None = None,
        source: str = "",
    ) -> None:
        super().__init__(settings, remote_url, environ, allowed_hosts=allowed_hosts, source=source)
        self.chrome: Path | None = None
        self.chromedriver: Path | None = None
        self.profile_dir: Path | None = None
        self.record: reaper.BrowserRecord | None = None  # what a killed run would leave (drivers.reaper)

    @property
    def target(self) -> str:
        version = self.info.get("browser_version")
        name = self.info.get("browser") or (self.chrome.name if self.chrome else "chromium")
        return f"{name}{' ' + str(version) if version else ''} (local{', ' + str(self.chrome) if self.chrome else ''})"

    def _create(self, options: ChromeOptions) -> WebDriver:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service as ChromeService
        from selenium.webdriver.chromium.service import ChromiumService
        from selenium.webdriver.edge.service import Service as EdgeService

        edge = self.kind.name == "edge"
        Service: type[ChromiumService] = EdgeService if edge else ChromeService
        self.chrome = find_chrome(self.settings, self.environ)
        self.chromedriver = find_chromedriver(self.settings, self.environ)
        # A fresh profile per run: no cookie, cache or session of an earlier run leaks into this one's checks.
        self.profile_dir = Path(tempfile.mkdtemp(prefix=reaper.PROFILE_PREFIX))
        # On record before anything starts: a run killed during the start leaves at least its profile to reap.
        self._write_record(reaper.BrowserRecord.new(reaper.state_dir(self.environ), self.profile_dir))
        options.binary_location = str(self.chrome)
        options.add_argument(f"--user-data-dir={self.profile_dir}")
        if _needs_no_sandbox():
            options.add_argument("--no-sandbox")
        self._add_configured_args(options)
        self.info |= {
            "binary": str(self.chrome),
            "driver": str(self.chromedriver),
            "profile_dir": str(self.profile_dir),
        }
        record = self.record

        class RecordedService(Service):  # type: ignore[misc,valid-type]
            """chromedriver (msedgedriver) on record the moment it exists: a runner killed during the start leaves nothing that
            the next run cannot find (Chromium descends from it)."""

            def _start_process(self, path: str) -> None:
                super()._start_process(path)
                if record is not None and self.process is not None:
                    with contextlib.suppress(Exception):
                        record.with_driver(self.process.pid, [path, *self.command_line_args()]).write()

            def send_remote_shutdown_command(self) -> None:
                # Selenium's own shutdown request uses urllib's default opener, which honours HTTP_PROXY: a
                # corporate proxy would get (and could delay) a request for chromedriver on loopback.
                direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                with contextlib.suppress(OSError):
                    direct.open(f"{self.service_url}/shutdown", timeout=10).close()
                for _ in range(30):
                    if not self.is_connectable():
                        break
                    time.sleep(0.1)

        # An explicit driver path is what keeps Selenium Manager (which downloads drivers) from running.
        service = RecordedService(executable_path=str(self.chromedriver))
        # The WebDriver connection goes direct: an HTTP_PROXY from the environment must not sit between the
        # runbook and a chromedriver on loopback. Chrome() takes no ClientConfig, so this (deprecated) option
        # is the only way to say so.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            options.ignore_local_proxy_environment_variables()
        if edge:
            driver: WebDriver = webdriver.Edge(service=service, options=options)  # type: ignore[arg-type]
        else:
            driver = webdriver.Chrome(service=service, options=options)
        if self.record is not None and service.process is not None:
            try:
                self._write_record(self.record.with_driver(service.process.pid))
            except Exception as exc:  # noqa: BLE001 - chromedriver gone already: the start fails on its own
                self.info["orphan_record"] = f"{self.record.path}, without its processes ({_first_line(exc)})"
        return driver

    def _write_record(self, record: reaper.BrowserRecord) -> None:
        try:
            record.write()
        except OSError as exc:
            # A read-only checkout must not stop a recovery; it only loses the record of this browser.
            self.info["orphan_record"] = f"not written ({exc}): a killed run would leave this browser running"
            return
        self.record = record
        self.info["orphan_record"] = str(record.path)

    def _cleanup(self) -> dict[str, Any]:
        record, self.record = self.record, None
        detail: dict[str, Any] = {}
        if record is not None:
            # After a clean quit nothing is left; after a crashed or refused quit, the recorded ones are stopped.
            stopped, problems = reaper.stop_processes(record.processes)
            if stopped:
                detail["stopped_leftovers"] = stopped
            if problems:
                detail["leftover_problems"] = problems
            else:
                record.remove()
        profile, self.profile_dir = self.profile_dir, None
        if profile is None:
            return detail
        # Windows keeps a quit browser's files locked for a moment: it retries briefly before giving up.
        removed, problem = reaper.remove_profile(str(profile))
        if problem:
            detail["profile_problem"] = problem
        return detail | {"profile_dir": str(profile), "profile_removed": removed or not profile.exists()}


@BACKENDS.register("remote")
class RemoteBrowser(BrowserSession):
    """A Chrome on a Selenium Grid (remote WebDriver); the Grid owns its profile."""

    backend = "remote"

    def __init__(
        self,
        settings: Browser,
        remote_url: str = "",
        environ: Mapping[str, str] | None = None,
        *,
        allowed_hosts: Iterable[str] | None = None,
        source: str = "",
    ) -> None:
        _check_grid_url(remote_url)
        super().__init__(settings, remote_url, environ, allowed_hosts=allowed_hosts, source=source)

    @property
    def target(self) -> str:
        version = self.info.get("browser_version")
        return f"{self.info.get('browser') or 'chrome'}{' ' + str(version) if version else ''} on {self.remote_url}"

    def _create(self, options: ChromeOptions) -> WebDriver:
        from selenium import webdriver
        from selenium.webdriver.common.proxy import Proxy, ProxyType
        from selenium.webdriver.remote.client_config import ClientConfig

        # [browser] chrome is a path on this machine: the node knows where its own Chromium is (its stereotype's
        # goog:chromeOptions.binary, which the node puts over the client's anyway).
        self._add_configured_args(options)
        # Direct to the Grid, like every probe: the Grid is on the internal network, not behind HTTP_PROXY.
        config = ClientConfig(self.remote_url, proxy=Proxy({"proxyType": ProxyType.DIRECT}))
        try:
            return webdriver.Remote(command_executor=self.remote_url, options=options, client_config=config)
        except Exception as exc:
            hint = self._start_hint(str(getattr(exc, "msg", None) or exc))
            if hint is None:
                raise
            raise DriverError(
                f"{self.target}: the browser did not start: {_first_line(exc).rstrip('.')}; {hint}"
            ) from exc

    def _start_hint(self, error: str) -> str | None:
        """What the operator can do when the node's Chromium exited at once: as root, it refuses its sandbox."""
        if not _CHROME_EXITED_RE.search(error):
            return None
        if "--no-sandbox" not in self.settings.args:
            flags = ", ".join(quoted(a) for a in ROOT_SAFE_ARGS)
            return (
                "the Grid's node started Chromium and it exited at once, which is what Chromium does when the node "
                "runs it as root without --no-sandbox: add the root-safe flags to [browser] args in "
                f"{self.source} (args = [{flags}]), or run the node as a user other than root"
            )
        return (
            "the Grid's node started Chromium and it exited at once although [browser] args has --no-sandbox; "
            "the node's log says why (start the Grid with --log-level FINE), and the node's chromedriver must "
            "be of the browser's major version"
        )


# chromedriver's words for a browser that died while starting (a sandbox refused as root, a missing library).
_CHROME_EXITED_RE = re.compile(
    r"chrome instance exited|devtoolsactiveport file doesn't exist|chrome failed to start|chrome (?:has )?crashed",
    re.IGNORECASE,
)


def _needs_no_sandbox() -> bool:
    # Chromium's sandbox refuses to run as root on Linux; everywhere else it stays on.
    return sys.platform.startswith("linux") and hasattr(os, "geteuid") and os.geteuid() == 0


def _check_grid_url(remote_url: str) -> None:
    parts = urlsplit(remote_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DriverError(
            f"--selenium-remote / [browser] remote: expected an http(s) URL of a Selenium Grid, got {quoted(remote_url)}"
        )
    if parts.username is not None or parts.password is not None:
        # The Grid's address is written to the journal and the report: it must carry no secret.
        raise DriverError(
            "--selenium-remote / [browser] remote: give the Grid's address without user:password@ (it is written "
            "to the evidence)"
        )


def browser_session(
    settings: Browser,
    remote_url: str = "",
    environ: Mapping[str, str] | None = None,
    *,
    allowed_hosts: Iterable[str] | None = None,
    source: str = "",
) -> BrowserSession:
    """The session for this run: remote when a Grid URL is given, else the local browser.

    `allowed_hosts`: the hosts the browser may reach ([scope] allowed_hosts); None = unconfined. `source`: the
    environment file, named in the operator's messages.
    """
    backend = BACKENDS.get("remote" if remote_url else "local")
    return backend(settings, remote_url, environ, allowed_hosts=allowed_hosts, source=source)


# --- PRE: are the tools there? -------------------------------------------------------------------------
VERSION_TIMEOUT_S = 5.0
GRID_TIMEOUT_S = 3.0
_VERSION_RE = re.compile(r"\b(\d+)\.(\d+)\.(\d+)\.(\d+)\b")
# Chrome on Windows prints nothing for --version (it would open a window); its version is the name of the
# folder beside chrome.exe.
_VERSION_DIR_RE = re.compile(r"\d+\.\d+\.\d+\.\d+")


@dataclass
class BrowserToolCheck:
    """What PRE learns about the browser tools: the problems (operator words, with the fix) and what was found."""

    backend: str
    problems: list[str] = field(default_factory=list)
    browser: str = ""  # binary path, or the Grid URL
    browser_version: str = ""
    driver: str = ""
    driver_version: str = ""
    duration_s: float = 0.0
    answered: bool = False  # remote: the Grid answered /status (whatever it said)
    driver_name: str = "chromedriver"  # msedgedriver for [browser] kind = "edge"

    @property
    def ok(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        if self.backend == "remote":
            where = f"Selenium Grid {self.browser}"
            return f"{where}: ready" if self.ok else "; ".join(self.problems)
        found = f"{self.browser} {self.browser_version or '(version unknown)'} with {self.driver_name} {self.driver_version or '(version unknown)'}"
        return found if self.ok else "; ".join(self.problems)


def check_browser_tools(
    settings: Browser, remote_url: str = "", environ: Mapping[str, str] | None = None
) -> BrowserToolCheck:
    """PRE's check of the browser rows' tools, before anything is touched; fast (a few `--version` calls).

    Local: the browser and chromedriver are found (as the session finds them) and their major versions match.
    Remote: the Grid answers `<remote_url>/status` with ready true. Nothing is downloaded or started.
    """
    started = time.perf_counter()
    kind = browser_kind(settings)
    if remote_url:
        check = BrowserToolCheck("remote", browser=remote_url, driver_name=kind.driver)
        _check_grid(check, remote_url, kind)
    else:
        check = BrowserToolCheck("local", driver_name=kind.driver)
        _check_local(check, settings, os.environ if environ is None else environ)
    check.duration_s = round(time.perf_counter() - started, 4)
    return check


def _check_local(check: BrowserToolCheck, settings: Browser, environ: Mapping[str, str]) -> None:
    try:
        chrome = find_chrome(settings, environ)
        check.browser = str(chrome)
    except BrowserUnavailable as exc:
        check.problems.append(str(exc))
        chrome = None
    try:
        chromedriver = find_chromedriver(settings, environ)
        check.driver = str(chromedriver)
    except BrowserUnavailable as exc:
        check.problems.append(str(exc))
        chromedriver = None
    if chrome is None or chromedriver is None:
        return
    with ThreadPoolExecutor(max_workers=2) as pool:  # two short commands at once: half the wait
        browser_future = pool.submit(_browser_version, chrome)
        driver_future = pool.submit(_command_version, chromedriver)
        (check.browser_version, browser_problem) = browser_future.result()
        (check.driver_version, driver_problem) = driver_future.result()
    check.problems += [p for p in (browser_problem, driver_problem) if p]
    if check.browser_version and check.driver_version:
        browser_major, driver_major = (v.split(".")[0] for v in (check.browser_version, check.driver_version))
        if browser_major != driver_major and browser_kind(settings).name == "edge":
            check.problems.append(
                f"the browser {chrome} is version {check.browser_version} but msedgedriver {chromedriver} is "
                f"{check.driver_version}: msedgedriver drives only its own major version ({browser_major} here); "
                f"download the msedgedriver of Edge's version from {MSEDGEDRIVER_DOWNLOAD} and point "
                "[browser] chromedriver / RUNBOOK_MSEDGEDRIVER at it"
            )
        elif browser_major != driver_major:
            check.problems.append(
                f"the browser {chrome} is version {check.browser_version} but chromedriver {chromedriver} is "
                f"{check.driver_version}: chromedriver drives only its own major version ({browser_major} here); "
                "install the ChromeDriver of the browser's version (Debian/Ubuntu: `sudo apt-get install "
                "chromium chromium-driver` updates both together) or point [browser] chromedriver / "
                "RUNBOOK_CHROMEDRIVER at the matching one"
            )


def _browser_version(chrome: Path) -> tuple[str, str | None]:
    if sys.platform == "win32":
        versions = sorted(
            (tuple(int(n) for n in p.name.split(".")), p.name)
            for p in chrome.parent.iterdir()
            if p.is_dir() and _VERSION_DIR_RE.fullmatch(p.name)
        )
        if versions:
            return versions[-1][1], None
        return "", (
            f"cannot tell the version of {chrome}: no version folder beside it (Chrome keeps one such as "
            "120.0.6099.110 next to chrome.exe); reinstall Chrome or give [browser] chrome the chrome.exe of an "
            "installed Chrome"
        )
    return _command_version(chrome)


def _command_version(binary: Path) -> tuple[str, str | None]:
    """`binary --version` -> its version; stdout only (Debian's chromium wrapper warns on stderr)."""
    try:
        done = subprocess.run(
            [str(binary), "--version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=VERSION_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return (
            "",
            f"`{binary} --version` did not answer within {VERSION_TIMEOUT_S:g} s; check that {binary} is a browser or chromedriver that runs here",
        )
    except OSError as exc:
        return "", f"`{binary} --version` could not run ({exc.strerror or exc}); {INSTALL_HINT}"
    found = _VERSION_RE.search(done.stdout)
    if found is None:
        said = next((ln.strip() for ln in done.stdout.splitlines() if ln.strip()), "nothing")
        return (
            "",
            f'`{binary} --version` printed "{said}", not a version number (exit code {done.returncode}); {INSTALL_HINT}',
        )
    return found.group(0), None


def _check_grid(check: BrowserToolCheck, remote_url: str, kind: BrowserKind = KINDS["chrome"]) -> None:
    try:
        _check_grid_url(remote_url)
    except DriverError as exc:
        check.problems.append(str(exc))
        return
    status_url = remote_url.rstrip("/") + "/status"
    fix = "start the Grid (or its node with Chrome), or correct --selenium-remote / [browser] remote"
    # Straight to the Grid, like the WebDriver connection itself: no HTTP proxy between.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(status_url, timeout=GRID_TIMEOUT_S) as response:
            body = response.read(1_000_000)
    except urllib.error.HTTPError as exc:
        check.problems.append(
            f"Selenium Grid {remote_url}: {status_url} answered HTTP {exc.code}, so this is not a Grid's address; {fix}"
        )
        return
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        check.problems.append(
            f"Selenium Grid {remote_url} does not answer ({status_url}: {getattr(reason, 'strerror', None) or reason}); {fix}"
        )
        return
    check.answered = True
    try:
        value = json.loads(body)["value"]
        ready, message = value["ready"], str(value.get("message") or "")
    except (ValueError, KeyError, TypeError):
        check.problems.append(
            f"Selenium Grid {remote_url}: {status_url} did not answer with a Grid status (JSON with value.ready); {fix}"
        )
        return
    if ready is not True:
        said = f" (it says: {message})" if message else ""
        check.problems.append(
            f"Selenium Grid {remote_url} is not ready{said}: no node can take a Chrome session now; wait for a "
            "node with Chrome to register, or start one"
        )
        return
    _check_grid_nodes(check, remote_url, value.get("nodes") if isinstance(value, dict) else None, kind)


def _check_grid_nodes(
    check: BrowserToolCheck, remote_url: str, nodes: object, kind: BrowserKind = KINDS["chrome"]
) -> None:
    """A ready Grid must also have a Chrome slot on a node that is up: a request for Chrome on a Grid without
    one would wait in its queue until the Grid's session request timeout (5 minutes by default)."""
    if not isinstance(nodes, list):
        return  # a Grid 3 hub or a stand-in that lists no nodes: ready is all it says
    offered: set[str] = set()
    chrome_versions: set[str] = set()
    for node in nodes:
        if not isinstance(node, dict) or str(node.get("availability", "UP")).upper() != "UP":
            continue
        for slot in node.get("slots") or []:
            stereotype = slot.get("stereotype") if isinstance(slot, dict) else None
            if not isinstance(stereotype, dict):
                continue
            name = str(stereotype.get("browserName") or "")
            offered.add(name)
            if name.lower() in kind.grid_names:
                chrome_versions.add(str(stereotype.get("browserVersion") or ""))
    if chrome_versions:
        check.browser_version = ", ".join(sorted(v for v in chrome_versions if v))
        return
    has = (
        f"its nodes that are up offer {', '.join(sorted(n for n in offered if n))}"
        if offered
        else "no node is up"
    )
    wanted = (
        "Microsoft Edge (browserName MicrosoftEdge)"
        if kind.name == "edge"
        else "Chrome or Chromium (browserName chrome)"
    )
    check.problems.append(
        f"Selenium Grid {remote_url} is ready but {has}: the browser rows need a node with {wanted}; start one, "
        "or point --selenium-remote / [browser] remote at a Grid that has one"
    )
