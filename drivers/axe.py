"""Accessibility verb (DR-AXE): run axe-core in the browser, judge its violations, keep its result.

axe-selenium-python 3.0.0 injects axe-core (4.10.2, carried in the package) and runs it; `[axe] script` may
point at a newer axe.min.js, which is injected instead. The version that actually ran is the one axe reports
(`testEngine.version`), so that is what the evidence records.

The gate: a violation fails when its impact is in `[axe] fail_on`, unless the baseline (`[axe] baseline`)
accepts it and the acceptance has not expired. Baseline file, one accepted finding a line, tab-separated:

    # rule<TAB>page<TAB>expires (YYYY-MM-DD)<TAB>reason
    color-contrast<TAB>/dashboard<TAB>2026-12-31<TAB>brand colours change with the Q4 redesign (TICKET-123)

`page` is a page path of `[axe] pages` or `*` for every page; an entry holds through its expiry date. A
malformed line is a `BaselineError` naming the file and the line. Plain Python, no pytest.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drivers.base import DriverError, quoted

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

__all__ = [
    "BUNDLED_SCRIPT",
    "IMPACTS",
    "AxeFinding",
    "AxeRunner",
    "AxeScan",
    "AxeTally",
    "Baseline",
    "BaselineEntry",
    "BaselineError",
    "Judgement",
    "gate_message",
    "judge",
    "load_baseline",
    "page_slug",
    "parse_baseline",
    "unused_entries",
]

IMPACTS = ("critical", "serious", "moderate", "minor")


def _bundled_script() -> Path:
    import axe_selenium_python

    return Path(axe_selenium_python.__file__).parent / "node_modules" / "axe-core" / "axe.min.js"


BUNDLED_SCRIPT = _bundled_script()


@dataclass(frozen=True)
class AxeFinding:
    """One violated rule on one page, as the findings table and the journal show it."""

    rule: str
    impact: str
    page: str
    nodes: int
    help: str
    help_url: str
    targets: tuple[str, ...] = ()


@dataclass
class AxeScan:
    """One page's scan: the axe-core result object exactly as axe returned it (it carries url and testEngine)."""

    page: str
    url: str
    result: dict[str, Any]
    duration_s: float
    script: str

    @property
    def engine_version(self) -> str:
        return str(self.result.get("testEngine", {}).get("version", "unknown"))

    @property
    def findings(self) -> list[AxeFinding]:
        return [
            AxeFinding(
                rule=str(v.get("id")),
                impact=str(v.get("impact") or "minor"),
                page=self.page,
                nodes=len(v.get("nodes") or []),
                help=str(v.get("help", "")),
                help_url=str(v.get("helpUrl", "")),
                targets=tuple(" ".join(map(str, n.get("target") or [])) for n in (v.get("nodes") or [])[:5]),
            )
            for v in self.result.get("violations") or []
        ]

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path


class AxeRunner:
    """Injects axe-core into the current page and runs the configured rule tags."""

    def __init__(self, tags: Sequence[str], script: Path | None = None) -> None:
        self.tags = list(tags)
        self.script = script or BUNDLED_SCRIPT
        if not self.script.is_file():
            raise DriverError(
                f"[axe] script = {quoted(str(self.script))}: no such file (an axe.min.js of axe-core)"
            )

    @property
    def options(self) -> dict[str, Any]:
        return {"runOnly": {"type": "tag", "values": self.tags}}

    def scan(self, driver: WebDriver, page: str) -> AxeScan:
        """Run axe on what the browser shows now (the caller has loaded `page`)."""
        import time

        from axe_selenium_python import Axe

        axe = Axe(driver, script_url=str(self.script))
        started = time.perf_counter()
        try:
            axe.inject()
            # JSON, not the Python repr that Axe.run would otherwise paste into the script.
            result = axe.run(options=json.dumps(self.options))
        except Exception as exc:
            message = next(
                (ln for ln in str(getattr(exc, "msg", None) or exc).splitlines() if ln.strip()), ""
            )
            raise DriverError(f"{page}: axe-core did not run ({type(exc).__name__}: {message})") from exc
        if not isinstance(result, dict) or "violations" not in result or "testEngine" not in result:
            raise DriverError(f"{page}: axe-core returned no result object (got {type(result).__name__})")
        return AxeScan(
            page,
            str(result.get("url", "")),
            result,
            round(time.perf_counter() - started, 4),
            str(self.script),
        )


_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


def page_slug(page: str) -> str:
    """A file name for a page path that works on Windows too: "/" -> "index", "/items/new" -> "items_new"."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", page.strip("/")).strip("._") or "index"
    return f"page_{slug}" if slug.split(".")[0].lower() in _RESERVED else slug


# --- the baseline of accepted findings ------------------------------------------------------------------
class BaselineError(ValueError):
    """A malformed baseline file: names the file, the line and what was expected."""


_RULE = re.compile(r"[a-z0-9][a-z0-9-]*")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class BaselineEntry:
    rule: str
    page: str
    expires: date
    reason: str
    source: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"

    def covers(self, finding: AxeFinding) -> bool:
        return self.rule == finding.rule and self.page in ("*", finding.page)

    def expired(self, today: date) -> bool:
        # The entry holds through its expiry date and stops holding the day after.
        return today > self.expires

    def describe(self) -> str:
        return f"{self.rule} on {self.page} until {self.expires.isoformat()} ({self.where}: {self.reason})"


@dataclass(frozen=True)
class Baseline:
    source: str = ""
    entries: tuple[BaselineEntry, ...] = ()

    def entry_for(self, finding: AxeFinding) -> BaselineEntry | None:
        # An entry for the page itself wins over a "*" entry for every page.
        matches = sorted((e for e in self.entries if e.covers(finding)), key=lambda e: e.page == "*")
        return matches[0] if matches else None


def _baseline_error(source: str, line: int, expected: str) -> BaselineError:
    return BaselineError(f"{source}:{line}: {expected}")


def parse_baseline(text: str, source: str) -> Baseline:
    entries: list[BaselineEntry] = []
    seen: dict[tuple[str, str], int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        bad = functools.partial(_baseline_error, source, number)
        fields = line.split("\t")
        if len(fields) != 4:
            raise bad(
                f"expected 4 tab-separated fields rule<TAB>page<TAB>expires (YYYY-MM-DD)<TAB>reason, "
                f"got {len(fields)}: {quoted(line.strip())}"
            )
        rule, page, expires_text, reason = (f.strip() for f in fields)
        if not _RULE.fullmatch(rule):
            raise bad(f"rule: expected an axe-core rule id such as color-contrast, got {quoted(rule)}")
        if page != "*" and not page.startswith("/"):
            raise bad(
                f'page: expected a page path starting with "/" (as in [axe] pages) or "*", got {quoted(page)}'
            )
        try:
            if not _DATE.fullmatch(expires_text):
                raise ValueError(expires_text)
            expires = date.fromisoformat(expires_text)
        except ValueError:
            raise bad(f"expires: expected a date YYYY-MM-DD, got {quoted(expires_text)}") from None
        if not reason:
            raise bad("reason: say why the finding is accepted (a ticket, an owner); it is empty")
        if (rule, page) in seen:
            raise bad(f"{rule} on {page} is already accepted on line {seen[rule, page]}")
        seen[rule, page] = number
        entries.append(BaselineEntry(rule, page, expires, reason, source, number))
    return Baseline(source, tuple(entries))


def load_baseline(path: Path) -> Baseline:
    try:
        # utf-8-sig: a file saved by Windows Notepad starts with a byte-order mark.
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise BaselineError(f"{path}: cannot read the [axe] baseline file ({exc.strerror or exc})") from None
    return parse_baseline(text, str(path))


# --- the gate ------------------------------------------------------------------------------------------
FAILS, ACCEPTED, EXPIRED, BELOW = "fails", "accepted", "expired", "below fail_on"


@dataclass(frozen=True)
class Judgement:
    finding: AxeFinding
    verdict: str  # fails | accepted | expired | below fail_on
    entry: BaselineEntry | None = None

    @property
    def fails_gate(self) -> bool:
        return self.verdict in (FAILS, EXPIRED)

    def explain(self) -> str:
        f = self.finding
        nodes = f"{f.nodes} element{'s' if f.nodes != 1 else ''}"
        text = f"{f.rule} ({f.impact}, {nodes}) on {f.page}: {f.help} {f.help_url}".rstrip()
        if self.verdict == EXPIRED and self.entry is not None:
            text += (
                f"; its acceptance EXPIRED on {self.entry.expires.isoformat()} ({self.entry.where}: "
                f"{self.entry.reason}): fix it, or renew the entry with a new date and reason"
            )
        elif self.verdict == ACCEPTED and self.entry is not None:
            text += f"; accepted until {self.entry.expires.isoformat()} ({self.entry.where})"
        return text


def judge(
    findings: Iterable[AxeFinding], fail_on: Iterable[str], baseline: Baseline, today: date
) -> list[Judgement]:
    major = set(fail_on)
    judgements = []
    for finding in findings:
        entry = baseline.entry_for(finding)
        if finding.impact not in major:
            verdict = BELOW
        elif entry is None:
            verdict = FAILS
        else:
            verdict = EXPIRED if entry.expired(today) else ACCEPTED
        judgements.append(Judgement(finding, verdict, entry))
    return judgements


def gate_message(page: str, judgements: Sequence[Judgement], fail_on: Sequence[str]) -> str | None:
    """None when the page passes; else a first line naming every failing rule, then one line per finding."""
    failing = [j for j in judgements if j.fails_gate]
    if not failing:
        return None
    rules = ", ".join(
        f"{j.finding.rule} ({j.finding.impact}{', acceptance expired' if j.verdict == EXPIRED else ''})"
        for j in failing
    )
    head = f"{page}: {len(failing)} accessibility violation{'s' if len(failing) != 1 else ''} with impact {'/'.join(fail_on)}: {rules}"
    return "\n".join([head, *("  - " + j.explain() for j in failing)])


def unused_entries(
    baseline: Baseline, judgements: Iterable[Judgement], scanned_pages: Iterable[str]
) -> list[BaselineEntry]:
    """Entries that matched no finding on the pages this run scanned: candidates for removal."""
    used = {j.entry for j in judgements if j.entry is not None}
    pages = set(scanned_pages)
    return [e for e in baseline.entries if e not in used and (e.page == "*" or e.page in pages)]


@dataclass
class AxeTally:
    """Every page's judgements of a run, for the findings table and the review of the baseline."""

    judgements: list[Judgement] = field(default_factory=list)
    pages: list[str] = field(default_factory=list)
    engines: set[str] = field(default_factory=set)
