"""DR-AXE throughput: ``python -m benchmarks.axe_scan [--pages 10] [--starts 3]``.

Starts an embedded Lab (1.1.0, clean) and measures, with the real Chromium and axe-core:

- browser start cost: ``BrowserSession.start()`` (chromedriver + headless Chromium on a fresh profile) and
  ``quit()`` (profile removed), median over ``--starts`` sessions;
- pages per second with one reused browser over ``--pages`` page scans (the Lab's six HTML pages in turn,
  logged in), scan only (load + inject + run axe) and as DR-AXE does it (plus screenshot and JSON evidence);
- what a browser per page would cost instead, from the two figures above.

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from drivers.axe import AxeRunner, page_slug
from drivers.browser import BrowserSession, browser_session
from drivers.config import Axe, Browser
from drivers.e2e import Portal
from lab import Lab

LAB_PAGES = ["/", "/login", "/dashboard", "/items", "/items/new", "/swagger/index.html"]


def start_costs(starts: int, base: str) -> tuple[list[float], list[float], list[float]]:
    """Start, first page scan of the fresh browser (cold renderer), and quit, per session."""
    start_s, cold_s, quit_s = [], [], []
    for _ in range(starts):
        session = browser_session(Browser())
        start_s.append(session.start().duration_s)
        try:
            cold_s.append(scan_pages(session, base, 1, None)[0])
        finally:
            quit_s.append(session.quit().duration_s)
    return start_s, cold_s, quit_s


def scan_pages(
    session: BrowserSession, base: str, pages: int, evidence: Path | None
) -> tuple[float, list[float]]:
    """Total seconds and per-page seconds for `pages` scans; with `evidence`, also screenshot + JSON."""
    runner = AxeRunner(Axe().tags)
    per_page = []
    started = time.perf_counter()
    for i in range(pages):
        page = LAB_PAGES[i % len(LAB_PAGES)]
        t0 = time.perf_counter()
        session.open(base + page)
        scan = runner.scan(session.driver, page)
        if evidence is not None:
            slug = f"{i:02d}_{page_slug(page)}"
            (evidence / f"{slug}.png").write_bytes(session.screenshot_png())
            scan.write(evidence / f"{slug}.json")
        per_page.append(time.perf_counter() - t0)
    return time.perf_counter() - started, per_page


def ms(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:7.1f} ms (min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f}, n={len(values)})"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pages", type=int, default=10)
    parser.add_argument("--starts", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="axe-bench-") as tmp:
        root = Path(tmp)
        lab = Lab(root / "lab")
        lab.start()
        try:
            start_s, cold_s, quit_s = start_costs(args.starts, lab.public_url)
            evidence = root / "evidence"
            evidence.mkdir()
            with browser_session(Browser()) as session:
                base = lab.public_url
                Portal(session, base).sign_in("operator", "operator-lab")
                warm_total, warm = scan_pages(session, base, args.pages, None)
                full_total, full = scan_pages(session, base, args.pages, evidence)
        finally:
            lab.stop()
    start_med = statistics.median(start_s)
    print(f"browser start (chromedriver + headless Chromium)  {ms(start_s)}")
    print(f"browser quit (profile removed)                    {ms(quit_s)}")
    print(f"first page scan of a fresh browser (cold)         {ms(cold_s)}")
    print(
        f"scan only, one reused browser                     {args.pages / warm_total:5.1f} pages/s   per page {ms(warm)}"
    )
    print(
        f"scan + screenshot + JSON (as DR-AXE)              {args.pages / full_total:5.1f} pages/s   per page {ms(full)}"
    )
    per_browser = start_med + statistics.median(cold_s) + statistics.median(quit_s)
    print(f"a browser per page instead would take             {per_browser * 1000:7.1f} ms per page "
          f"({1 / per_browser:4.1f} pages/s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
