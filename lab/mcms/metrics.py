"""The portal's /metrics in Prometheus' text exposition format (0.0.4), standard library only.

No slot label: the slot is the scrape target's label (the Lab's ``prometheus-targets.json`` gives each slot's
address ``slot="blue"`` or ``slot="green"``), as a Prometheus that scrapes IIS hosts labels them by target.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Request duration buckets, in seconds (the Prometheus client libraries' defaults)."""


def number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def labels(pairs: Mapping[str, str]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{key}="{escape(str(val))}"' for key, val in pairs.items()) + "}"


def family(
    name: str, kind: str, help_text: str, samples: Iterable[tuple[Mapping[str, str], float]]
) -> list[str]:
    """One metric family: its HELP and TYPE lines, then one line per sample."""
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines += [f"{name}{labels(pairs)} {number(value)}" for pairs, value in samples]
    return lines


class HttpMetrics:
    """Requests counted by method, path (the route, not the raw URL) and status code, and a duration histogram.
    Handler threads observe concurrently."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = {}
        self._buckets = [0] * len(BUCKETS)
        self._count = 0
        self._sum = 0.0

    def observe(self, method: str, path: str, code: int, seconds: float) -> None:
        with self._lock:
            key = (method, path, str(code))
            self._requests[key] = self._requests.get(key, 0) + 1
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    self._buckets[i] += 1
            self._count += 1
            self._sum += seconds

    def render(self) -> list[str]:
        with self._lock:
            requests = sorted(self._requests.items())
            buckets, count, total = list(self._buckets), self._count, self._sum
        lines = family(
            "mcms_http_requests_total",
            "counter",
            "HTTP requests served, by method, route and status code (scrapes of /metrics not counted).",
            (({"method": m, "path": p, "code": c}, n) for (m, p, c), n in requests),
        )
        name = "mcms_http_request_duration_seconds"
        lines += [
            f"# HELP {name} Time from reading the request to writing the response, in seconds.",
            f"# TYPE {name} histogram",
        ]
        lines += [f'{name}_bucket{{le="{bound:g}"}} {n}' for bound, n in zip(BUCKETS, buckets, strict=True)]
        lines += [
            f'{name}_bucket{{le="+Inf"}} {count}',
            f"{name}_sum {number(total)}",
            f"{name}_count {count}",
        ]
        return lines
