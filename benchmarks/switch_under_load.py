"""Blue/Green switch under load, against the embedded Lab (loopback only, bounded in count and time).

1. 50 concurrent keep-alive clients on the public address while traffic is switched blue -> green -> blue
   (a release and its rollback), cycle after cycle, until at least --requests requests were sent: prints
   requests sent, requests failed (target 0), how many each slot served, and how long each switch took
   (SwitchResult.duration_s, the control API round trip).
2. Time to restore: green built to degrade after the switch, the real Monitor at --interval; from the
   monitor's detection to blue serving the public address again (target <= one interval + 0.2 s).
3. Router overhead: median latency of sequential keep-alive GET /health direct to blue and through the router.
4. Degradation onset: green built with green-degrades-after-switch (degrade 3 s after the first request through
   the router), polled every 20 ms after the switch: seconds from the first routed request to the first 500.

    python -m benchmarks.switch_under_load [--requests 10000] [--clients 50] [--interval 1.0]

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

from drivers.monitor import Monitor, MonitorResult
from drivers.probe import Prober
from lab import CURRENT, Lab, httpc

MAX_SECONDS = 120.0  # hard bound on the load phase, whatever the request target


def started_bluegreen_lab(root: Path, *faults: str) -> Lab:
    lab = Lab(root, faults=faults, topology="bluegreen")
    lab.start()
    green = lab.node("green")
    green.deploy(lab.package(CURRENT))
    green.start()
    return lab


class Client(threading.Thread):
    def __init__(self, url: str, stop: threading.Event, budget: list[int], lock: threading.Lock) -> None:
        super().__init__(daemon=True)
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.stop, self.budget, self.lock = stop, budget, lock
        self.sent = 0
        self.failed = 0
        self.versions: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()

    def run(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
        while not self.stop.is_set():
            with self.lock:
                if self.budget[0] <= 0:
                    return
                self.budget[0] -= 1
            self.sent += 1
            try:
                conn.request("GET", "/health")
                response = conn.getresponse()
                body = response.read()
                if response.status != 200:
                    self.failed += 1
                    self.errors[f"HTTP {response.status}"] += 1
                else:
                    self.versions[str(json.loads(body)["version"])] += 1
            except (OSError, http.client.HTTPException, ValueError) as exc:
                self.failed += 1
                self.errors[type(exc).__name__] += 1
                conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
        conn.close()


def load_through_switches(lab: Lab, requests: int, clients: int) -> None:
    stop, lock, budget = threading.Event(), threading.Lock(), [requests]
    workers = [Client(lab.public_url, stop, budget, lock) for _ in range(clients)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    cycles = 0
    switch_s: list[float] = []
    while any(w.is_alive() for w in workers) and time.perf_counter() - started < MAX_SECONDS:
        time.sleep(0.5)
        switch_s.append(lab.router.switch("green").duration_s)
        time.sleep(0.5)
        switch_s.append(lab.router.switch("blue").duration_s)  # the rollback
        cycles += 1
    stop.set()
    for worker in workers:
        worker.join(timeout=10)
    elapsed = time.perf_counter() - started
    sent = sum(w.sent for w in workers)
    failed = sum(w.failed for w in workers)
    versions = sum((w.versions for w in workers), Counter())
    errors = sum((w.errors for w in workers), Counter())
    print(f"switch under load: {clients} clients, {cycles} release+rollback cycles in {elapsed:.1f} s")
    print(f"  requests sent      {sent}  ({sent / elapsed:.0f}/s)")
    print(f"  requests failed    {failed}  (target 0){'  ' + dict(errors).__repr__() if errors else ''}")
    print(f"  served by version  {dict(versions)}  (1.0.0 = blue, {CURRENT} = green)")
    if switch_s:
        ms = [s * 1000 for s in switch_s]
        print(
            f"  switch duration    median {statistics.median(ms):.1f} ms, max {max(ms):.1f} ms "
            f"(n={len(ms)}, under load)"
        )
    print(f"  router stats       {lab.router.stats()}")


def time_to_restore(root: Path, interval: float) -> None:
    lab = started_bluegreen_lab(root, "green-degrades-after-switch")
    try:
        blue_version = "1.0.0"
        restored: list[float] = []

        def on_breach(result: MonitorResult) -> None:
            assert result.detected_at is not None
            lab.router.switch("blue")
            prober = Prober(["127.0.0.1"], timeout_s=1, retries=0)
            while True:
                probe = prober.get("health", lab.public_url + "/health")
                body = probe.json()
                if probe.status == 200 and isinstance(body, dict) and body.get("version") == blue_version:
                    restored.append(time.monotonic() - result.detected_at)
                    return
                time.sleep(0.005)

        lab.router.switch("green")
        monitor = Monitor(
            Prober(["127.0.0.1"], timeout_s=interval, retries=0),
            lab.public_url + "/health",
            duration_s=30,
            interval_s=interval,
            sla_p95_ms=800,
            max_error_rate=0.01,
            alert_after_failures=2,
            expect_version=CURRENT,
            on_breach=on_breach,
        )
        result = monitor.run()
        print(f"time to restore (monitor interval {interval:g} s, alert after 2 failures):")
        print(f"  breach             {result.breach}")
        if restored:
            print(
                f"  detection -> blue serving the public address: {restored[0]:.3f} s (target <= {interval + 0.2:.1f} s)"
            )
    finally:
        lab.stop()


def degradation_onset(root: Path) -> None:
    lab = started_bluegreen_lab(root, "green-degrades-after-switch")
    try:
        lab.router.switch("green")
        first_routed = time.monotonic()
        onset = None
        statuses: Counter[int] = Counter()
        while time.monotonic() - first_routed < 30:
            status = httpc.get(lab.public_url + "/health", timeout=5).status
            statuses[status] += 1
            if status == 500:
                onset = time.monotonic() - first_routed
                break
            time.sleep(0.02)
        print("degradation onset (green-degrades-after-switch, fault: 3 s after the first routed request):")
        shown = "never within 30 s" if onset is None else f"{onset:.3f} s"
        print(f"  first routed request -> first 500: {shown}  (statuses seen {dict(statuses)})")
    finally:
        lab.stop()


def router_overhead(lab: Lab, count: int = 2000) -> None:
    def median_ms(url: str) -> float:
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=5)
        samples = []
        for _ in range(count):
            start = time.perf_counter()
            conn.request("GET", "/health")
            conn.getresponse().read()
            samples.append((time.perf_counter() - start) * 1000)
        conn.close()
        return statistics.median(samples)

    direct = median_ms(lab.node("blue").url)
    routed = median_ms(lab.public_url)
    print(f"router overhead ({count} sequential keep-alive GET /health each):")
    print(
        f"  direct to blue {direct:.2f} ms, through the router {routed:.2f} ms, overhead {routed - direct:.2f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="switch-bench-") as tmp:
        lab = started_bluegreen_lab(Path(tmp) / "load")
        try:
            load_through_switches(lab, args.requests, args.clients)
            router_overhead(lab)
        finally:
            lab.stop()
        time_to_restore(Path(tmp) / "restore", args.interval)
        degradation_onset(Path(tmp) / "onset")
    return 0


if __name__ == "__main__":
    sys.exit(main())
