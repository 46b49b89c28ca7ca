"""User-flow verb (DR-E2E): page objects of the MCMS portal, and the external regression command.

Page objects (`Portal`, `LoginPage`, `DashboardPage`, `NewItemPage`, `ItemsPage`) know the portal's markup
(the ids `served-version`, `worker-status`, `queue-depth`, the table `items-table`, the login and item forms
with their anti-forgery hidden field, which a real form submit carries by itself); the runbook's steps say
what to do with them. A page that does not show what it should is a `PortalError` that says what was seen.

The external regression command (`[e2e] command`, e.g. the playbook's `npm run test:regression`) runs through
the shared runner of drivers.commands: an argv list (no shell) with a timeout that kills its whole process
tree; its output goes to a file and its JUnit XML (`[e2e] junit`) is read back. A command that is not
installed is `CommandMissing` ("tool missing"); `check_regression_command` is PRE's check for it.
Plain Python, no pytest.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import urlsplit
from xml.etree import ElementTree as ET

from drivers.base import DriverError, quoted
from drivers.browser import BrowserSession, Navigation
from drivers.commands import CommandMissing, CommandResult, resolve_program, run_argv
from drivers.config import E2E
from drivers.probe import url_at

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement

__all__ = [
    "CommandMissing",
    "CommandResult",
    "DashboardPage",
    "ItemRow",
    "ItemsPage",
    "JUnitCase",
    "JUnitSummary",
    "LoginPage",
    "NewItemPage",
    "Portal",
    "PortalError",
    "check_regression_command",
    "fill_placeholders",
    "read_junit",
    "run_command",
    "wait_until",
]


# Selenium's locator strategies (the values of its `By`), named here so that importing this module does not
# import Selenium: the plugins load it at every pytest start-up.
ID, CSS, TAG = "id", "css selector", "tag name"


class PortalError(DriverError):
    """A portal page did not do or show what the flow expects; the message says what was seen."""


def wait_until[T](
    check: Callable[[], tuple[bool, T]], timeout_s: float, what: str, interval_s: float = 0.2
) -> T:
    """Poll `check` (-> (done, last seen value)) until done, bounded by `timeout_s`; PortalError on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        done, seen = check()
        if done:
            return seen
        if time.monotonic() >= deadline:
            raise PortalError(f"{what}: not within {timeout_s:g} s (last seen: {seen})")
        time.sleep(interval_s)


# --- page objects -------------------------------------------------------------------------------------
class PortalPage:
    path: ClassVar[str] = "/"

    def __init__(self, browser: BrowserSession, base_url: str, timeout_s: float = 10.0) -> None:
        self.browser = browser
        self.base_url = base_url
        self.timeout_s = timeout_s

    @property
    def driver(self) -> WebDriver:
        return self.browser.driver

    def url(self, path: str | None = None) -> str:
        return url_at(self.base_url, path or self.path)

    def open(self) -> Navigation:
        nav = self.browser.open(self.url())
        if nav.status >= 400:
            raise PortalError(f"{nav.url}: answered HTTP {nav.status} ({quoted(nav.title)})")
        return nav

    def current_path(self) -> str:
        base = urlsplit(self.base_url).path.rstrip("/")
        return urlsplit(self.driver.current_url).path.removeprefix(base) or "/"

    def element(self, by: str, value: str, what: str) -> WebElement:
        """The element, or a PortalError that says which one is missing on which page."""
        from selenium.common.exceptions import NoSuchElementException

        try:
            return self.driver.find_element(by, value)
        except NoSuchElementException:
            raise PortalError(
                f"{self.driver.current_url}: no {what} on the page {quoted(self.driver.title)}"
            ) from None

    def text(self, element_id: str) -> str:
        return str(self.element(ID, element_id, f"element #{element_id}").text).strip()

    def alert(self) -> str:
        """The page's error alerts; empty while the browser is between two pages."""
        from selenium.common.exceptions import StaleElementReferenceException

        try:
            alerts = self.driver.find_elements(CSS, "[role=alert]")
            return " ".join(str(a.text).strip() for a in alerts)
        except StaleElementReferenceException:
            return ""

    def wait_for_path(self, path: str, what: str) -> None:
        """Wait until the browser shows `path` (a form post answers with a redirect); an alert ends it early."""

        def arrived() -> tuple[bool, str]:
            alert = self.alert()
            return self.current_path() == path or bool(alert), alert or self.driver.current_url

        seen = wait_until(arrived, self.timeout_s, what, interval_s=0.05)
        if self.current_path() != path:
            raise PortalError(f"{what}: the page says {quoted(seen)} ({self.driver.current_url})")

    def submit(self, form_action: str) -> None:
        """Click the form's submit button and wait until the answer has replaced the page and finished loading.

        Without this, a check made right after the click can see the blank document between the two pages
        (no form, no alert) and read it as the answer. The old page is marked with a window property: a new
        document has a new window object, so the mark is gone once the answer is there.
        """
        from selenium.common.exceptions import WebDriverException

        selector = f'form[action="{form_action}"] button[type=submit]'
        button = self.element(CSS, selector, f"submit button of the form {form_action}")
        self.driver.execute_script("window.__runbookFormPage = true;")
        button.click()

        def replaced() -> tuple[bool, str]:
            try:
                state = self.driver.execute_script(
                    "return window.__runbookFormPage === true ? 'old' : document.readyState;"
                )
            except WebDriverException as exc:  # mid-navigation the browser may refuse to run a script
                return False, f"navigating ({exc.msg or type(exc).__name__})"
            return state == "complete", f"the answer is {state}"

        wait_until(replaced, self.timeout_s, f"the answer to the form {form_action}", interval_s=0.02)

    def fill(self, element_id: str, value: str) -> None:
        field_ = self.element(ID, element_id, f"form field #{element_id}")
        field_.clear()
        field_.send_keys(value)


class LoginPage(PortalPage):
    path = "/login"

    @staticmethod
    def is_shown(driver: WebDriver) -> bool:
        """A login form is on screen: where a page behind the login redirects an anonymous browser."""
        return bool(driver.find_elements(CSS, "form input[type=password]"))

    def log_in(self, user: str, password: str) -> str:
        """Submit the form that is on screen (its hidden `next` says where to land); return the landing path."""
        if not self.is_shown(self.driver):
            raise PortalError(
                f"{self.driver.current_url}: no login form on the page ({quoted(self.driver.title)})"
            )
        self.fill("user", user)
        self.fill("password", password)
        self.submit("/login")

        def left_login() -> tuple[bool, str]:
            alert = self.alert()
            return not self.is_shown(self.driver) or bool(alert), alert or self.driver.current_url

        seen = wait_until(left_login, self.timeout_s, f"log in as {user}", interval_s=0.05)
        if self.is_shown(self.driver):
            raise PortalError(f"log in as {user} refused: {seen}")
        return self.current_path()


class DashboardPage(PortalPage):
    path = "/dashboard"

    @property
    def served_version(self) -> str:
        return self.text("served-version")

    @property
    def worker_status(self) -> str:
        return self.text("worker-status")

    @property
    def queue_depth(self) -> int:
        text = self.text("queue-depth")
        try:
            return int(text)
        except ValueError:
            raise PortalError(
                f"{self.driver.current_url}: queue depth is not a number: {quoted(text)}"
            ) from None


@dataclass(frozen=True)
class ItemRow:
    id: int
    name: str
    status: str


class ItemsPage(PortalPage):
    path = "/items"

    def rows(self) -> list[ItemRow]:
        tables = self.driver.find_elements(ID, "items-table")
        if not tables:
            raise PortalError(
                f"{self.driver.current_url}: no items table (#items-table) on {quoted(self.driver.title)}"
            )
        rows = []
        for tr in tables[0].find_elements(CSS, "tbody tr"):
            cells = [str(td.text).strip() for td in tr.find_elements(TAG, "td")]
            if len(cells) == 3 and cells[0].isdigit():
                rows.append(ItemRow(int(cells[0]), cells[1], cells[2]))
        return rows

    def find(self, name: str) -> ItemRow | None:
        return next((row for row in self.rows() if row.name == name), None)


class NewItemPage(PortalPage):
    path = "/items/new"

    def create(self, name: str) -> None:
        """Fill in and submit the form; the portal answers with the items page."""
        self.fill("name", name)
        self.submit("/items/new")
        self.wait_for_path(ItemsPage.path, f"create item {quoted(name)}")


class Portal:
    """The portal at one address, seen through one browser."""

    def __init__(self, browser: BrowserSession, base_url: str, timeout_s: float = 10.0) -> None:
        self.browser = browser
        self.base_url = base_url
        self.login = LoginPage(browser, base_url, timeout_s)
        self.dashboard = DashboardPage(browser, base_url, timeout_s)
        self.items = ItemsPage(browser, base_url, timeout_s)
        self.new_item = NewItemPage(browser, base_url, timeout_s)

    def sign_in(self, user: str, password: str) -> str:
        """Open the dashboard; log in when it asks; return the path the browser landed on."""
        self.dashboard.open()
        if LoginPage.is_shown(self.browser.driver):
            return self.login.log_in(user, password)
        return self.dashboard.current_path()

    def signed_in_as(self) -> str | None:
        links = self.browser.driver.find_elements(CSS, 'nav a[href$="/logout"]')
        if not links:
            return None
        return str(links[0].text).removeprefix("Sign out").strip() or "?"

    def sign_out(self) -> None:
        links = self.browser.driver.find_elements(CSS, 'nav a[href$="/logout"]')
        if not links:
            raise PortalError(f"{self.browser.driver.current_url}: no Sign out link: not signed in")
        links[0].click()
        self.dashboard.wait_for_path("/", "sign out")


# --- the external regression command ------------------------------------------------------------------
def fill_placeholders(argv: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """Replace {name} for the known names only; any other brace stays as written (a JSON argument, a glob)."""
    out = []
    for arg in argv:
        filled = arg
        for name, value in values.items():
            filled = filled.replace("{" + name + "}", value)
        out.append(filled)
    return out


def _as_is(text: str) -> str:
    return text


def run_command(
    argv: Sequence[str],
    *,
    cwd: Path,
    timeout_s: float,
    output_path: Path,
    env: Mapping[str, str] | None = None,
    tail_lines: int = 40,
    tail_chars: int = 4000,
    redact: Callable[[str], str] = _as_is,
) -> CommandResult:
    """Run the command, stdout and stderr together into `output_path`, bounded by `timeout_s`.

    The shared runner (drivers.commands.run_argv): no shell, the whole process tree killed at the timeout.
    The caller redacts the output file it keeps; `redact` also applies to the returned tail.
    """
    return run_argv(
        argv,
        timeout_s=timeout_s,
        redact=redact,
        cwd=cwd,
        env=env,
        output_path=output_path,
        verb="[e2e] command",
        tail_lines=tail_lines,
        tail_chars=tail_chars,
    )


def check_regression_command(
    settings: E2E, *, root: Path, source: str, environ: Mapping[str, str] | None = None
) -> str | None:
    """PRE's tool check for DR-E2E's regression part: why `[e2e] command` cannot be started, or None.

    Its program (argv[0]) is looked up as the run will (PATH, or a path relative to `root`, the directory it
    runs in); the text says what was searched and how to get the program. No command configured: None.
    """
    if not settings.command:
        return None
    try:
        resolve_program(settings.command[0], cwd=root, environ=environ, what=f"{source}: [e2e] command")
    except CommandMissing as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class JUnitCase:
    suite: str
    classname: str
    name: str
    outcome: str  # failure | error
    message: str


@dataclass
class JUnitSummary:
    source: str
    tests: int = 0
    failures: int = 0
    errors: int = 0
    skipped: int = 0
    failed: list[JUnitCase] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.failures == 0 and self.errors == 0

    def describe(self) -> str:
        return f"{self.tests} tests, {self.failures} failures, {self.errors} errors, {self.skipped} skipped"


def read_junit(path: Path) -> JUnitSummary:
    """Read a JUnit XML report (<testsuites> or one <testsuite>); DriverError naming the file when it is not one."""
    try:
        # The file is written by the operator's own regression command, not by an outside party.
        root = ET.parse(path).getroot()  # noqa: S314
    except (OSError, ET.ParseError) as exc:
        raise DriverError(f"[e2e] junit {path}: not a readable JUnit XML file ({exc})") from None
    if root.tag not in ("testsuites", "testsuite"):
        raise DriverError(f"[e2e] junit {path}: expected <testsuites> or <testsuite>, got <{root.tag}>")
    summary = JUnitSummary(str(path))
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    for suite in suites:
        suite_name = suite.get("name", "")
        for case in suite.findall("testcase"):
            summary.tests += 1
            failure, error = case.find("failure"), case.find("error")
            node = failure if failure is not None else error
            if node is None:
                summary.skipped += case.find("skipped") is not None
                continue
            if node is failure:
                summary.failures += 1
            else:
                summary.errors += 1
            text = (node.get("message") or node.text or "").strip()
            summary.failed.append(
                JUnitCase(
                    suite_name,
                    case.get("classname", ""),
                    case.get("name", ""),
                    "failure" if node is failure else "error",
                    text.splitlines()[0] if text else "",
                )
            )
    return summary
