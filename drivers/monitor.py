"""Monitoring after the switch (playbook §7, BG-4): probe the public address every interval for a duration.

Records each probe's latency and outcome; computes p50/p95/max latency and the error rate; fires the alert after
`alert_after_failures` consecutive failed checks (playbook: 2). The alert is a breach: the monitor stops at once
and calls `on_breach`, so that traffic can go back to blue within one probe interval. p95 and the error rate are
judged over the whole window.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from drivers.probe import Prober, ProbeResult


@dataclass
class Sample:
    ts: str
    offset_s: float
    status: int
    latency_ms: float
    ok: bool
    error: str | None


@dataclass
class MonitorResult:
    url: str
    duration_s: float
    interval_s: float
    samples: list[Sample] = field(default_factory=list)
    alert_fired: bool = False
    breach: str | None = None
    detected_at: float | None = None  # time.monotonic() when the breach was detected
    max_consecutive_failures: int = 0

    @property
    def latencies(self) -> list[float]:
        return sorted(s.latency_ms for s in self.samples)

    def percentile(self, p: float) -> float:
        values = self.latencies
        if not values:
            return 0.0
        rank = max(1, math.ceil(p / 100 * len(values)))  # nearest rank
        return values[rank - 1]

    @property
    def error_rate(self) -> float:
        return sum(not s.ok for s in self.samples) / len(self.samples) if self.samples else 0.0

    def summary(self) -> dict[str, object]:
        return {
            "url": self.url,
            "probes": len(self.samples),
            "p50_ms": self.percentile(50),
            "p95_ms": self.percentile(95),
            "max_ms": self.latencies[-1] if self.samples else 0.0,
            "error_rate": round(self.error_rate, 4),
            "max_consecutive_failures": self.max_consecutive_failures,
            "alert_fired": self.alert_fired,
            "breach": self.breach,
        }

    def write_csv(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["ts", "offset_s", "status", "latency_ms", "ok", "error"])
            for s in self.samples:
                writer.writerow(
                    [s.ts, f"{s.offset_s:.3f}", s.status, f"{s.latency_ms:.2f}", int(s.ok), s.error or ""]
                )


class Monitor:
    def __init__(
        self,
        prober: Prober,
        url: str,
        *,
        duration_s: float,
        interval_s: float,
        sla_p95_ms: float,
        max_error_rate: float,
        alert_after_failures: int,
        expect_version: str | None = None,
        on_sample: Callable[[Sample], None] | None = None,
        on_alert: Callable[[MonitorResult], None] | None = None,
        on_breach: Callable[[MonitorResult], None] | None = None,
    ) -> None:
        self.prober = prober
        self.url = url
        self.duration_s = duration_s
        self.interval_s = interval_s
        self.sla_p95_ms = sla_p95_ms
        self.max_error_rate = max_error_rate
        self.alert_after_failures = alert_after_failures
        self.expect_version = expect_version
        self.on_sample = on_sample
        self.on_alert = on_alert
        self.on_breach = on_breach

    def _ok(self, result: ProbeResult) -> tuple[bool, str | None]:
        if result.status != 200:
            return False, result.error or f"HTTP {result.status}"
        if self.expect_version is not None:
            body = result.json()
            version = body.get("version") if isinstance(body, dict) else None
            if version != self.expect_version:
                return False, f"serves {version}, expected {self.expect_version}"
        return True, None

    def run(self) -> MonitorResult:
        result = MonitorResult(self.url, self.duration_s, self.interval_s)
        start = time.monotonic()
        due = start
        consecutive = 0
        while True:
            probe = self.prober.get("monitor", self.url, retries=0)
            ok, error = self._ok(probe)
            sample = Sample(
                ts=datetime.now(UTC).isoformat(timespec="milliseconds"),
                offset_s=round(time.monotonic() - start, 3),
                status=probe.status,
                latency_ms=probe.latency_ms,
                ok=ok,
                error=error,
            )
            result.samples.append(sample)
            if self.on_sample is not None:
                self.on_sample(sample)
            consecutive = 0 if ok else consecutive + 1
            result.max_consecutive_failures = max(result.max_consecutive_failures, consecutive)
            if consecutive >= self.alert_after_failures:
                result.alert_fired = True
                result.detected_at = time.monotonic()
                result.breach = f"{consecutive} consecutive failed checks of {self.url} (last: {error})"
                if self.on_alert is not None:
                    self.on_alert(result)
                break
            due += self.interval_s
            if due - start > self.duration_s + 1e-9:
                break
            time.sleep(max(0.0, due - time.monotonic()))
        if result.breach is None:
            p95 = result.percentile(95)
            if p95 > self.sla_p95_ms:
                result.breach = f"p95 latency {p95:.0f} ms is over the SLA of {self.sla_p95_ms:.0f} ms"
            elif result.error_rate > self.max_error_rate:
                result.breach = (
                    f"error rate {result.error_rate:.1%} is over the maximum of {self.max_error_rate:.1%}"
                )
            if result.breach is not None:
                result.detected_at = time.monotonic()
        if result.breach is not None and self.on_breach is not None:
            self.on_breach(result)
        return result
