"""Browser verb (DR-AXE, DR-E2E): one WebDriver session that every page of a run shares.

Backends, like the other drivers: `local` drives a Chromium or Chrome on this machine through its
chromedriver, both found on disk (`[browser] chrome` / `chromedriver`, then RUNBOOK_CHROME /
RUNBOOK_CHROMEDRIVER, then PATH and the usual install places) so that Selenium Manager never runs and nothing is
downloaded; `remote` drives a browser on a Selenium Grid (`--selenium-remote URL` or `[browser] remote`).

A local session runs headless on a fresh profile directory that `quit()` removes, also after a failed start;
the session is a context manager so that a caller cannot forget it. Plain Python, no pytest: the fixture turns
`BrowserUnavailable` into a "tool missing" skip (which the gate turns into a failure) and any other
`DriverError` into a failure.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Self
from urllib.parse import urlsplit

from drivers.base import ActionResult, DriverError, Registry, timed
from drivers.config import Browser

if TYPE_CHECKING:
    from selenium.webdriver.chrome.options import Options as ChromeOptions
    from selenium.webdriver.remote.webdriver import WebDriver

__all__ = [
    "BACKENDS",
    "BrowserSession",
    "BrowserUnavailable",
    "LocalChromium",
    "Navigation",
    "RemoteBrowser",
    "browser_session",
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


class BrowserUnavailable(DriverError):
    """The browser or its driver is not installed where the runbook looks: a "tool missing" row."""


@dataclass(frozen=True)
class Navigation:
    """What a page load ended on: the address after redirects and the document's HTTP status (0 = unknown)."""

    url: str
    final_url: str
    status: int
    title: str
    load_s: float

    @property
    def redirected(self) -> bool:
        return urlsplit(self.url).path.rstrip("/") != urlsplit(self.final_url).path.rstrip("/")


def parse_window(window: str) -> tuple[int, int]:
    """[browser] window "1280x1024" -> (1280, 1024)."""
    width, sep, height = window.lower().partition("x")
    if not (sep and width.strip().isdigit() and height.strip().isdigit()):
        raise DriverError(f'[browser] window: expected WIDTHxHEIGHT such as "1280x1024", got {window!r}')
    size = int(width), int(height)
    if min(size) < 200:
        raise DriverError(f"[browser] window: {window!r} is too small to lay a page out (at least 200x200)")
    return size


def _configured_path(label: str, value: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_file():
        raise BrowserUnavailable(f"{label} = {value!r}: no such file; {INSTALL_HINT}")
    return path


def _on_path(names: tuple[str, ...], environ: Mapping[str, str]) -> Path | None:
    search = environ.get("PATH", os.defpath)
    for name in names:
        found = shutil.which(name, path=search)
        if found:
            return Path(found)
    return None


def _configured_or_on_path(
    key: str, configured: str, envvar: str, names: tuple[str, ...], environ: Mapping[str, str]
) -> Path | None:
    """The environment file's value, else the environment variable's, else the first of `names` on PATH."""
    if configured:
        return _configured_path(key, configured)
    if environ.get(envvar):
        return _configured_path(envvar, environ[envvar])
    return _on_path(names, environ)


def find_chrome(settings: Browser, environ: Mapping[str, str] | None = None) -> Path:
    """The browser binary: [browser] chrome, RUNBOOK_CHROME, PATH, then Chrome's usual install places."""
    environ = os.environ if environ is None else environ
    found = _configured_or_on_path(
        "[browser] chrome", settings.chrome, "RUNBOOK_CHROME", CHROME_NAMES, environ
    )
    if found is not None:
        return found
    places = [Path(environ[var]) / rel for var, rel in _WINDOWS_CHROME if environ.get(var)]
    places += [Path(p) for p in _MAC_CHROME]
    for place in places:
        if place.is_file():
            return place
    raise BrowserUnavailable(
        "no Chromium or Chrome found (looked at [browser] chrome, RUNBOOK_CHROME, PATH for "
        f"{', '.join(CHROME_NAMES)}, and Chrome's install folders); {INSTALL_HINT}"
    )


def find_chromedriver(settings: Browser, environ: Mapping[str, str] | None = None) -> Path:
    """The driver binary: [browser] chromedriver, RUNBOOK_CHROMEDRIVER, then PATH. Never downloaded."""
    environ = os.environ if environ is None else environ
    found = _configured_or_on_path(
        "[browser] chromedriver", settings.chromedriver, "RUNBOOK_CHROMEDRIVER", CHROMEDRIVER_NAMES, environ
    )
    if found is not None:
        return found
    raise BrowserUnavailable(
        f"no chromedriver found (looked at [browser] chromedriver, RUNBOOK_CHROMEDRIVER and PATH); {INSTALL_HINT}"
    )


def _first_line(exc: BaseException) -> str:
    text = getattr(exc, "msg", None) or str(exc) or type(exc).__name__
    return next((line.strip() for line in str(text).splitlines() if line.strip()), type(exc).__name__)


class BrowserSession(ABC):
    """One browser for the whole run. `start()` and `quit()` return the actions the journal records."""

    backend: ClassVar[str]

    def __init__(
        self, settings: Browser, remote_url: str = "", environ: Mapping[str, str] | None = None
    ) -> None:
        self.settings = settings
        self.remote_url = remote_url
        self.environ = os.environ if environ is None else environ
        self.window = parse_window(settings.window)
        self._driver: WebDriver | None = None
        self.info: dict[str, Any] = {"backend": self.backend}

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
            "driver_version": str((caps.get("chrome") or {}).get("chromedriverVersion", "")).split(" ")[0]
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
        """Load `url` and wait for the document; a timeout or a dead browser is a DriverError."""
        driver = self.driver
        started = time.perf_counter()
        try:
            driver.get(url)
            status = driver.execute_script(
                # Chromium reports the document's HTTP status here (109+); other browsers leave it undefined.
                "const n = performance.getEntriesByType('navigation')[0];"
                "return n && n.responseStatus ? n.responseStatus : 0;"
            )
            final_url, title = driver.current_url, driver.title
        except Exception as exc:
            raise DriverError(
                f"{url}: the page did not load within {self.settings.page_timeout_s:g} s ({_first_line(exc)})"
            ) from exc
        return Navigation(url, final_url, int(status or 0), title, round(time.perf_counter() - started, 4))

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

        options = Options()
        for arg in BROWSER_ARGS:
            options.add_argument(arg)
        options.add_argument("--window-size={},{}".format(*self.window))
        return options


BACKENDS: Registry[BrowserSession] = Registry("browser backend")


@BACKENDS.register("local")
class LocalChromium(BrowserSession):
    """Chromium or Chrome on this machine, headless, on a fresh profile directory removed at quit."""

    backend = "local"

    def __init__(
        self, settings: Browser, remote_url: str = "", environ: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(settings, remote_url, environ)
        self.chrome: Path | None = None
        self.chromedriver: Path | None = None
        self.profile_dir: Path | None = None

    @property
    def target(self) -> str:
        version = self.info.get("browser_version")
        name = self.info.get("browser") or (self.chrome.name if self.chrome else "chromium")
        return f"{name}{' ' + str(version) if version else ''} (local{', ' + str(self.chrome) if self.chrome else ''})"

    def _create(self, options: ChromeOptions) -> WebDriver:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.chrome = find_chrome(self.settings, self.environ)
        self.chromedriver = find_chromedriver(self.settings, self.environ)
        # A fresh profile per run: no cookie, cache or session of an earlier run leaks into this one's checks.
        self.profile_dir = Path(tempfile.mkdtemp(prefix="runbook-browser-"))
        options.binary_location = str(self.chrome)
        options.add_argument(f"--user-data-dir={self.profile_dir}")
        if _needs_no_sandbox():
            options.add_argument("--no-sandbox")
        self.info |= {
            "binary": str(self.chrome),
            "driver": str(self.chromedriver),
            "profile_dir": str(self.profile_dir),
        }
        # An explicit driver path is what keeps Selenium Manager (which downloads drivers) from running.
        service = Service(executable_path=str(self.chromedriver))
        # The WebDriver connection goes direct: an HTTP_PROXY from the environment must not sit between the
        # runbook and a chromedriver on loopback. Chrome() takes no ClientConfig, so this (deprecated) option
        # is the only way to say so.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            options.ignore_local_proxy_environment_variables()
        return webdriver.Chrome(service=service, options=options)

    def _cleanup(self) -> dict[str, Any]:
        profile, self.profile_dir = self.profile_dir, None
        if profile is None:
            return {}
        # Windows keeps a quit browser's files locked for a moment: retry briefly before giving up.
        for attempt in range(20):
            shutil.rmtree(profile, ignore_errors=True)
            if not profile.exists():
                break
            time.sleep(0.05 * (attempt + 1))
        return {"profile_dir": str(profile), "profile_removed": not profile.exists()}


@BACKENDS.register("remote")
class RemoteBrowser(BrowserSession):
    """A Chrome on a Selenium Grid (remote WebDriver); the Grid owns its profile."""

    backend = "remote"

    def __init__(
        self, settings: Browser, remote_url: str = "", environ: Mapping[str, str] | None = None
    ) -> None:
        parts = urlsplit(remote_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise DriverError(
                f"--selenium-remote / [browser] remote: expected an http(s) URL of a Selenium Grid, got {remote_url!r}"
            )
        super().__init__(settings, remote_url, environ)

    @property
    def target(self) -> str:
        version = self.info.get("browser_version")
        return f"{self.info.get('browser') or 'chrome'}{' ' + str(version) if version else ''} on {self.remote_url}"

    def _create(self, options: ChromeOptions) -> WebDriver:
        from selenium import webdriver
        from selenium.webdriver.common.proxy import Proxy, ProxyType
        from selenium.webdriver.remote.client_config import ClientConfig

        # Direct to the Grid, like every probe: the Grid is on the internal network, not behind HTTP_PROXY.
        config = ClientConfig(self.remote_url, proxy=Proxy({"proxyType": ProxyType.DIRECT}))
        return webdriver.Remote(command_executor=self.remote_url, options=options, client_config=config)


def _needs_no_sandbox() -> bool:
    # Chromium's sandbox refuses to run as root on Linux; everywhere else it stays on.
    return sys.platform.startswith("linux") and hasattr(os, "geteuid") and os.geteuid() == 0


def browser_session(
    settings: Browser, remote_url: str = "", environ: Mapping[str, str] | None = None
) -> BrowserSession:
    """The session for this run: remote when a Grid URL is given, else the local browser."""
    backend = BACKENDS.get("remote" if remote_url else "local")
    return backend(settings, remote_url, environ)
