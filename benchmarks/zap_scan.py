"""DR-ZAP figure: wall time of the builtin engine's scan of the embedded Lab, clean and with the
insecure-headers release. Prints figures; asserts nothing.

    python -m benchmarks.zap_scan [--runs 5]

Target on the 2-core reference machine: builtin scan of the Lab (Lab.toml limits: max_pages 30, max_depth 3)
<= 2 s. Scan throughput is reported as pages per second.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from drivers.config import Zap, load_environment
from drivers.zap import BuiltinScanner, ScanResult
from lab import PREVIOUS_STABLE, Lab, build_package

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 2.0


def scan_times(scanner: BuiltinScanner, url: str, runs: int) -> tuple[list[float], ScanResult]:
    times: list[float] = []
    result: ScanResult | None = None
    for _ in range(runs):
        started = time.perf_counter()
        result = scanner.scan(url)
        times.append(time.perf_counter() - started)
    assert result is not None
    return times, result


def describe(name: str, times: list[float], result: ScanResult) -> str:
    ms = [t * 1000 for t in times]
    median = statistics.median(times)
    verdict = "within" if median <= TARGET_S else "OVER"
    return (
        f"{name:<32} median {median * 1000:7.1f} ms (min {min(ms):.1f}, max {max(ms):.1f}, n={len(ms)}); "
        f"{len(result.pages)} pages, {len(result.alerts)} alert types, "
        f"{len(result.pages) / median:.0f} pages/s; {verdict} the {TARGET_S:g} s target"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    lab_zap = load_environment(ROOT / "environments" / "Lab.toml").zap
    settings = Zap(engine="builtin", max_pages=lab_zap.max_pages, max_depth=lab_zap.max_depth)
    scanner = BuiltinScanner(settings, ["127.0.0.1"])
    with tempfile.TemporaryDirectory(prefix="zap-bench-") as tmp:
        root = Path(tmp)
        lab = Lab(root / "lab")
        lab.start()
        try:
            clean = scan_times(scanner, lab.public_url, args.runs)
            node = lab.node("blue")
            node.stop()
            node.deploy(build_package(PREVIOUS_STABLE, root / "packages", faults=["insecure-headers"]))
            node.start()
            faulty = scan_times(scanner, lab.public_url, args.runs)
        finally:
            lab.stop()
    print(describe("builtin scan, clean Lab", *clean))
    print(describe("builtin scan, insecure-headers", *faulty))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
