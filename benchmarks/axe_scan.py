"""DR-AXE throughput: ``python -m benchmarks.axe_scan [--pages 10] [--starts 3] [--remote [URL]]``.

Starts an embedded Lab (1.1.0, clean) and measures, with the real Chromium and axe-core:

- browser start cost: ``BrowserSession.start()`` (chromedriver + headless Chromium on a fresh profile) and
  ``quit()`` (profile removed), median over ``--starts`` sessions;
- pages per second with one reused browser over ``--pages`` page scans (the Lab's six HTML pages in turn,
  logged in), scan only (load + inject + run axe) and as DR-AXE does it (plus screenshot and JSON evidence);
- what a browser per page would cost instead, from the two figures above.

The backends are measured interleaved (a start of each in turn, then a page of each in turn), so that a busy
machine weighs on all of them alike; pages/s is pages over the sum of their scan times.

``--remote`` measures the same pages again through a Selenium Grid and prints local vs Grid: with no URL it
starts a Grid 4 standalone itself on a free loopback port (tests/grid.py: the jar `make grid` fetched, this
machine's Chromium and chromedriver; stopped by PID with its process tree afterwards), with a URL it uses that
Grid. Remote sessions carry ``--remote-arg`` flags as [browser] args (default: the root-safe flags,
drivers.browser.ROOT_SAFE_ARGS, which a node that runs Chromium as root needs).

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from drivers.axe import AxeRunner, page_slug
from drivers.browser import ROOT_SAFE_ARGS, BrowserSession, browser_session
from drivers.config import Axe, Browser
from drivers.e2e import Portal
from lab import Lab

LAB_PAGES = ["/", "/login", "/dashboard", "/items", "/items/new", "/swagger/index.html"]
START_GRID = "start"  # --remote without a URL: start a Grid here


def scan_page(session: BrowserSession, runner: AxeRunner, base: str, i: int, evidence: Path | None) -> float:
    """Seconds for the i-th page scan (the Lab's pages in turn); with `evidence`, also screenshot + JSON."""
    page = LAB_PAGES[i % len(LAB_PAGES)]
    t0 = time.perf_counter()
    session.open(base + page)
    scan = runner.scan(session.driver, page)
    if evidence is not None:
        slug = f"{i:02d}_{page_slug(page)}"
        (evidence / f"{slug}.png").write_bytes(session.screenshot_png())
        scan.write(evidence / f"{slug}.json")
    return time.perf_counter() - t0


def ms(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:7.1f} ms (min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f}, n={len(values)})"


@dataclass
class Backend:
    """One way to run the browser (local, or a Grid) and its figures over the same pages."""

    label: str
    settings: Browser
    remote_url: str = ""
    start_s: list[float] = field(default_factory=list)
    cold_s: list[float] = field(default_factory=list)
    quit_s: list[float] = field(default_factory=list)
    warm: list[float] = field(default_factory=list)  # per page, scan only
    full: list[float] = field(default_factory=list)  # per page, as DR-AXE does it

    def session(self) -> BrowserSession:
        return browser_session(self.settings, self.remote_url)

    @property
    def warm_rate(self) -> float:
        return len(self.warm) / sum(self.warm)

    @property
    def full_rate(self) -> float:
        return len(self.full) / sum(self.full)

    def print(self) -> None:
        start_med = statistics.median(self.start_s)
        print(f"[{self.label}]")
        print(f"browser start (chromedriver + headless Chromium)  {ms(self.start_s)}")
        print(f"browser quit (profile removed)                    {ms(self.quit_s)}")
        print(f"first page scan of a fresh browser (cold)         {ms(self.cold_s)}")
        print(
            f"scan only, one reused browser                     {self.warm_rate:5.1f} pages/s   per page {ms(self.warm)}"
        )
        print(
            f"scan + screenshot + JSON (as DR-AXE)              {self.full_rate:5.1f} pages/s   per page {ms(self.full)}"
        )
        per_browser = start_med + statistics.median(self.cold_s) + statistics.median(self.quit_s)
        print(f"a browser per page instead would take             {per_browser * 1000:7.1f} ms per page "
              f"({1 / per_browser:4.1f} pages/s)")  # fmt: skip


def measure(backends: list[Backend], base: str, root: Path, pages: int, starts: int) -> None:
    """Every figure of every backend, interleaved (one start of each in turn, one page of each in turn), so
    that the machine's load at any moment weighs on all of them alike."""
    runner = AxeRunner(Axe().tags)
    for _ in range(starts):
        for b in backends:
            session = b.session()
            b.start_s.append(session.start().duration_s)
            try:
                b.cold_s.append(scan_page(session, runner, base, 0, None))
            finally:
                b.quit_s.append(session.quit().duration_s)
    with contextlib.ExitStack() as stack:
        sessions = [stack.enter_context(b.session()) for b in backends]
        for session in sessions:
            Portal(session, base).sign_in("operator", "operator-lab")
        evidence = [root / f"evidence-{n}" for n in range(len(backends))]
        for folder in evidence:
            folder.mkdir()
        for i in range(pages):
            for b, session in zip(backends, sessions, strict=True):
                b.warm.append(scan_page(session, runner, base, i, None))
        for i in range(pages):
            for b, session, folder in zip(backends, sessions, evidence, strict=True):
                b.full.append(scan_page(session, runner, base, i, folder))


@contextlib.contextmanager
def grid_at(remote: str, root: Path) -> Iterator[tuple[str, str]]:
    """(URL, how it came): the given Grid, or one started here for the run and stopped by PID afterwards."""
    if remote != START_GRID:
        yield remote, "given"
        return
    import pytest

    from tests.grid import new_grid  # the project's own Grid starter (needs the jar `make grid` fetched)

    try:
        grid = new_grid(root / "grid").start()
    except (pytest.skip.Exception, pytest.fail.Exception) as exc:  # a tool missing, said as tests say it
        raise SystemExit(f"--remote: cannot start a Grid here: {exc.msg}") from None
    try:
        yield grid.url, f"started here in {grid.start_s:.1f} s (Selenium Grid standalone, {grid.jar.name})"
    finally:
        left = grid.stop()
        print(f"Grid stopped by PID; processes left: {len(left)}{': ' + '; '.join(left) if left else ''}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pages", type=int, default=10)
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument(
        "--remote",
        nargs="?",
        const=START_GRID,
        default="",
        metavar="URL",
        help="also measure through a Selenium Grid: this URL, or (no URL) a Grid started here",
    )
    parser.add_argument(
        "--remote-arg",
        action="append",
        default=None,
        metavar="FLAG",
        help="a browser flag for the remote sessions (repeatable; default: the root-safe flags)",
    )
    args = parser.parse_args(argv)
    remote_settings = Browser(args=list(args.remote_arg or ROOT_SAFE_ARGS))
    backends = [Backend("local", Browser())]
    grid_said = ""
    with tempfile.TemporaryDirectory(prefix="axe-bench-") as tmp:
        root = Path(tmp)
        lab = Lab(root / "lab")
        lab.start()
        try:
            base = lab.public_url
            with contextlib.ExitStack() as stack:
                if args.remote:
                    url, grid_said = stack.enter_context(grid_at(args.remote, root))
                    backends.append(Backend(f"Grid {url}", remote_settings, url))
                measure(backends, base, root, args.pages, args.starts)
        finally:
            lab.stop()
    for b in backends:
        b.print()
    if len(backends) == 2:
        local, grid = backends
        print(f"Grid: {grid_said}; remote [browser] args: {' '.join(remote_settings.args)}")
        print(f"local vs Grid, the same {args.pages} pages, scan only:      {local.warm_rate:5.1f} vs {grid.warm_rate:5.1f} pages/s "
              f"(Grid {grid.warm_rate / local.warm_rate:.2f}x)")  # fmt: skip
        print(f"local vs Grid, the same {args.pages} pages, as DR-AXE does: {local.full_rate:5.1f} vs {grid.full_rate:5.1f} pages/s "
              f"(Grid {grid.full_rate / local.full_rate:.2f}x)")  # fmt: skip
        print(f"local vs Grid, browser start (median):         {statistics.median(local.start_s) * 1000:7.1f} vs "
              f"{statistics.median(grid.start_s) * 1000:7.1f} ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
