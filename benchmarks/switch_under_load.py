"""Blue/Green switch under load, against the embedded Lab (loopback only, bounded in count and time).

`--router builtin` (default) puts the Lab's own reverse proxy on the public address and switches it through its
control API; `--router nginx` puts Debian's nginx there (lab/nginx.py) and switches it with the nginx router
driver (drivers/nginx.py: include file written atomically, nginx -t, reload, confirmed once the new workers took
it and the old ones stopped accepting).

1. --clients concurrent keep-alive clients (default 50) on the public address while traffic is switched
   blue -> green -> blue (a release and its rollback), cycle after cycle, until at least --cycles cycles ran
   (default 20) and at least --requests requests were sent (default 10,000): prints requests sent, requests
   failed (target 0), how many each slot served, and how long each switch took (the builtin: the control API
   round trip; nginx: the driver's whole switch, write + nginx -t + reload + confirmation).
   The clients do what every HTTP client does with a keep-alive connection: a GET sent on a REUSED connection
   that the server closed before any byte of an answer is sent once more on a fresh connection (counted as
   "resent", never hidden). nginx closes its idle keep-alive connections when a reload retires the old workers;
   the builtin router never does. Any other error, and any status but 200, is a failed request.
2. Time to restore: green built to degrade after the switch, the real Monitor at --interval; from the
   monitor's detection to blue serving the public address again (target <= one interval + 0.2 s).
3. Router overhead: median latency of sequential keep-alive GET /health direct to blue and through the router.
4. Degradation onset: green built with green-degrades-after-switch (degrade 3 s after the first request through
   the router), polled every 20 ms after the switch: seconds from the first routed request to the first 500.

    python -m benchmarks.switch_under_load [--router builtin|nginx] [--requests 10000] [--clients 50]
        [--cycles 20] [--dwell 0.25] [--interval 1.0]

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
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from drivers.config import load_environment
from drivers.monitor import Monitor, MonitorResult
from drivers.probe import Prober
from drivers.router import router_driver
from lab import CURRENT, Lab, httpc

MAX_SECONDS = 180.0  # hard bound on the load phase, whatever the request and cycle targets
ROOT = Path(__file__).resolve().parents[1]

Switch = Callable[[str], float]  # switch the public address to a slot; seconds the switch took


def started_bluegreen_lab(root: Path, *faults: str, router: str = "builtin") -> Lab:
    lab = Lab(root, faults=faults, topology="bluegreen", router=router)
    lab.start()
    if router == "nginx" and lab.router_kind != "nginx":
        lab.stop()
        raise SystemExit(f"--router nginx: {lab.router_note}")
    green = lab.node("green")
    green.deploy(lab.package(CURRENT))
    green.start()
    return lab


def switcher(lab: Lab) -> Switch:
    """How this Lab's public address is switched: its control API, or the nginx router driver."""
    if lab.nginx is None:
        return lambda slot: lab.router.switch(slot).duration_s
    env = load_environment(ROOT / "environments" / "LabNginx.toml", environ={})
    env = env.with_lab_endpoints(
        lab.public_url,
        {slot: node.url for slot, node in lab.slots.items()},
        lab.webhook_url,
        lab.packages_dir,
        router="nginx",
        nginx=lab.nginx.settings(),
    )
    driver = router_driver("nginx", env, {"lab": lab, "root": ROOT})
    return lambda slot: driver.switch(slot).duration_s


class Client(threading.Thread):
    def __init__(self, url: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.stop = stop
        self.sent = 0
        self.failed = 0
        self.resent = 0
        self.versions: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=5)

    def _get(self, conn: http.client.HTTPConnection) -> tuple[int, bytes]:
        conn.request("GET", "/health")
        response = conn.getresponse()
        return response.status, response.read()

    def run(self) -> None:
        conn, reused = self._connect(), False
        while not self.stop.is_set():
            self.sent += 1
            try:
                try:
                    status, body = self._get(conn)
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    if not reused:
                        raise
                    # A reused keep-alive connection the server had closed: no answer began, so send it again.
                    self.resent += 1
                    conn.close()
                    conn = self._connect()
                    status, body = self._get(conn)
                reused = True
                if status != 200:
                    self.failed += 1
                    self.errors[f"HTTP {status}"] += 1
                else:
                    self.versions[str(json.loads(body)["version"])] += 1
            except (OSError, http.client.HTTPException, ValueError) as exc:
                self.failed += 1
                self.errors[type(exc).__name__] += 1
                conn.close()
                conn, reused = self._connect(), False
        conn.close()


def load_through_switches(
    lab: Lab, switch: Switch, requests: int, clients: int, min_cycles: int, dwell: float
) -> None:
    stop = threading.Event()
    workers = [Client(lab.public_url, stop) for _ in range(clients)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    cycles = 0
    switch_s: list[float] = []
    while (cycles < min_cycles or sum(w.sent for w in workers) < requests) and (
        time.perf_counter() - started < MAX_SECONDS
    ):
        time.sleep(dwell)
        switch_s.append(switch("green"))
        time.sleep(dwell)
        switch_s.append(switch("blue"))  # the rollback
        cycles += 1
    time.sleep(dwell)  # requests after the last rollback, too
    stop.set()
    for worker in workers:
        worker.join(timeout=10)
    elapsed = time.perf_counter() - started
    sent = sum(w.sent for w in workers)
    failed = sum(w.failed for w in workers)
    resent = sum(w.resent for w in workers)
    versions = sum((w.versions for w in workers), Counter())
    errors = sum((w.errors for w in workers), Counter())
    router = "nginx" if lab.nginx is not None else "builtin router"
    print(
        f"switch under load ({router}): {clients} clients, {cycles} release+rollback cycles "
        f"({len(switch_s)} switches) in {elapsed:.1f} s"
    )
    print(f"  requests sent      {sent}  ({sent / elapsed:.0f}/s)")
    print(f"  requests failed    {failed}  (target 0){'  ' + dict(errors).__repr__() if errors else ''}")
    print(f"  resent             {resent}  (GET sent again on a fresh connection: the reused one was closed)")
    print(f"  served by version  {dict(versions)}  (1.0.0 = blue, {CURRENT} = green)")
    if switch_s:
        ms = [s * 1000 for s in switch_s]
        print(
            f"  switch duration    median {statistics.median(ms):.1f} ms, max {max(ms):.1f} ms "
            f"(n={len(ms)}, under load)"
        )
    if lab.nginx is None:
        print(f"  router stats       {lab.router.stats()}")


def time_to_restore(root: Path, interval: float, router: str) -> None:
    lab = started_bluegreen_lab(root, "green-degrades-after-switch", router=router)
    try:
        switch = switcher(lab)
        blue_version = "1.0.0"
        restored: list[float] = []
        switched: list[float] = []

        def on_breach(result: MonitorResult) -> None:
            assert result.detected_at is not None
            switched.append(switch("blue"))
            prober = Prober(["127.0.0.1"], timeout_s=1, retries=0)
            while True:
                probe = prober.get("health", lab.public_url + "/health")
                body = probe.json()
                if probe.status == 200 and isinstance(body, dict) and body.get("version") == blue_version:
                    restored.append(time.monotonic() - result.detected_at)
                    return
                time.sleep(0.005)

        switch("green")
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
        print(f"time to restore ({router}, monitor interval {interval:g} s, alert after 2 failures):")
        print(f"  breach             {result.breach}")
        if restored:
            print(
                f"  detection -> blue serving the public address: {restored[0]:.3f} s "
                f"(target <= {interval + 0.2:.1f} s; the switch itself {switched[0]:.3f} s)"
            )
    finally:
        lab.stop()


def degradation_onset(root: Path, router: str) -> None:
    lab = started_bluegreen_lab(root, "green-degrades-after-switch", router=router)
    try:
        switcher(lab)("green")
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
        print(
            f"degradation onset ({router}, green-degrades-after-switch, fault: 3 s after the first routed request):"
        )
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
    router = "nginx" if lab.nginx is not None else "the router"
    print(f"router overhead ({count} sequential keep-alive GET /health each):")
    print(
        f"  direct to blue {direct:.2f} ms, through {router} {routed:.2f} ms, overhead {routed - direct:.2f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--router", choices=("builtin", "nginx"), default="builtin")
    parser.add_argument("--requests", type=int, default=10_000, help="at least this many requests")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--cycles", type=int, default=20, help="at least this many switch + rollback cycles")
    parser.add_argument("--dwell", type=float, default=0.25, help="seconds between two switches")
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="switch-bench-") as tmp:
        lab = started_bluegreen_lab(Path(tmp) / "load", router=args.router)
        try:
            load_through_switches(lab, switcher(lab), args.requests, args.clients, args.cycles, args.dwell)
            router_overhead(lab)
        finally:
            lab.stop()
        time_to_restore(Path(tmp) / "restore", args.interval, args.router)
        degradation_onset(Path(tmp) / "onset", args.router)
    return 0


if __name__ == "__main__":
    sys.exit(main())
