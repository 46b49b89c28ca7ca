"""How fast the embedded Lab comes up: ``python -m benchmarks.lab_start [runs]``.

Prints the median (and range) of ``Lab.start()`` over fresh roots, and of a node's spawn-to-healthy time
(``Node.start()``) and of the full single-node redeploy (stop, deploy, start) that a rollback drill does.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from lab import CURRENT, PREVIOUS_STABLE, Lab


def lab_start_times(root: Path, runs: int) -> list[float]:
    times = []
    for i in range(runs):
        lab = Lab(root / f"start-{i}")
        started = time.perf_counter()
        lab.start()
        times.append(time.perf_counter() - started)
        lab.stop()
    return times


def node_times(root: Path, runs: int) -> tuple[list[float], list[float], list[float]]:
    """Spawn-to-healthy, stop, and whole redeploy (stop + deploy + start) of node blue."""
    healthy, stops, redeploys = [], [], []
    lab = Lab(root / "node")
    lab.start()
    try:
        node = lab.node("blue")
        for i in range(runs):
            version = PREVIOUS_STABLE if i % 2 == 0 else CURRENT
            started = time.perf_counter()
            node.stop()
            stopped = time.perf_counter()
            node.deploy(lab.package(version))
            healthy.append(node.start())
            redeploys.append(time.perf_counter() - started)
            stops.append(stopped - started)
    finally:
        lab.stop()
    return healthy, stops, redeploys


def describe(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"{name:<34} median {statistics.median(ms):7.1f} ms   (min {min(ms):.1f}, max {max(ms):.1f}, n={len(ms)})"


def main(argv: list[str]) -> int:
    runs = int(argv[0]) if argv else 5
    with tempfile.TemporaryDirectory(prefix="lab-bench-") as tmp:
        root = Path(tmp)
        starts = lab_start_times(root, runs)
        healthy, stops, redeploys = node_times(root, runs)
    print(describe("Lab.start()", starts))
    print(describe("Node.start() spawn-to-healthy", healthy))
    print(describe("Node.stop() (web, then worker)", stops))
    print(describe("redeploy (stop + deploy + start)", redeploys))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
