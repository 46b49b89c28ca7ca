"""What the Lab router costs: ``python -m benchmarks.router_overhead [sequential] [seconds] [clients]``.

Starts a Blue/Green Lab and prints, for GET /health over one keep-alive connection, the median latency
directly to blue and through the router and their difference (the router's overhead); then the requests per
second that concurrent keep-alive clients get through the router, with the failures and router-made errors
seen meanwhile. Defaults: 2,000 sequential requests, 5 s, 50 clients.
"""

from __future__ import annotations

import http.client
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from lab import Lab


def _connection(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)


def sequential_latencies(url: str, count: int) -> list[float]:
    """Seconds per GET /health, one after the other on a single keep-alive connection (after a warm-up)."""
    conn = _connection(url)
    times = []
    try:
        for i in range(count + 50):
            started = time.perf_counter()
            conn.request("GET", "/health")
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise RuntimeError(f"{url}/health answered {resp.status}")
            if i >= 50:
                times.append(time.perf_counter() - started)
    finally:
        conn.close()
    return times


def concurrent_rate(url: str, clients: int, seconds: float) -> tuple[int, int, float]:
    """(requests answered 200, failures, elapsed seconds) for ``clients`` keep-alive clients hammering url."""
    stop = threading.Event()
    counts = [0] * clients
    failures = [0] * clients
    ready = threading.Barrier(clients + 1)

    def client(n: int) -> None:
        conn = _connection(url)
        ready.wait()
        try:
            while not stop.is_set():
                try:
                    conn.request("GET", "/health")
                    resp = conn.getresponse()
                    resp.read()
                except (OSError, http.client.HTTPException):
                    failures[n] += 1
                    conn.close()
                    continue
                if resp.status == 200:
                    counts[n] += 1
                else:
                    failures[n] += 1
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    ready.wait()
    started = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(30)
    return sum(counts), sum(failures), time.perf_counter() - started


def main(argv: list[str]) -> int:
    count = int(argv[0]) if argv else 2000
    seconds = float(argv[1]) if len(argv) > 1 else 5.0
    clients = int(argv[2]) if len(argv) > 2 else 50
    with tempfile.TemporaryDirectory(prefix="router-bench-") as tmp:
        lab = Lab(Path(tmp), topology="bluegreen")
        lab.start()
        try:
            direct = sequential_latencies(lab.node("blue").url, count)
            routed = sequential_latencies(lab.public_url, count)
            before = lab.router.stats()
            ok, failed, elapsed = concurrent_rate(lab.public_url, clients, seconds)
            after = lab.router.stats()
        finally:
            lab.stop()
    direct_ms = statistics.median(direct) * 1000
    routed_ms = statistics.median(routed) * 1000
    p95 = statistics.quantiles(routed, n=20)[-1] * 1000
    print(f"GET /health, {count} sequential keep-alive requests")
    print(f"  direct to blue      median {direct_ms:7.3f} ms")
    print(f"  through the router  median {routed_ms:7.3f} ms   (p95 {p95:.3f} ms)")
    print(f"  router overhead     median {routed_ms - direct_ms:7.3f} ms")
    print(f"GET /health through the router, {clients} concurrent keep-alive clients for {elapsed:.1f} s")
    print(f"  {ok / elapsed:8.0f} requests/s   ({ok} answered 200, {failed} failed)")
    print(f"  router-made errors: {after['router_errors'] - before['router_errors']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
