"""PRE's browser tool check: ``python -m benchmarks.preflight_browser [--runs 5] [--remote URL]``.

Times `drivers.browser.check_browser_tools` as PRE calls it: the browser and chromedriver found on disk and
their major versions compared (`<binary> --version`, both at once), or a Grid's `/status` with `--remote`.
Prints each run, the median and the worst (the target is under 3 s); asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics

from drivers.browser import check_browser_tools
from drivers.config import Browser


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--remote", default="", help="a Selenium Grid URL instead of the local browser")
    args = parser.parse_args()
    times = []
    for n in range(1, args.runs + 1):
        check = check_browser_tools(Browser(), args.remote)
        times.append(check.duration_s)
        print(f"run {n}: {check.duration_s:.3f} s - {check.describe()}")
    print(
        f"browser tool check ({'remote' if args.remote else 'local'}): median {statistics.median(times):.3f} s, "
        f"worst {max(times):.3f} s over {len(times)} runs (target: under 3 s)"
    )


if __name__ == "__main__":
    main()
