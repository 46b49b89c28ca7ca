"""Monitoring after the switch (playbook §7, BG-4): probe the public address every interval for a duration.

Records each probe's latency and outcome; computes p50/p95/max latency and the error rate; fires the alert after
`alert_after_failures` consecutive failed checks (playbook: 2). The alert is a breach: the monitor stops at once
and calls `on_breach`, so that traffic can go back to blue within one probe interval. p95 and the error rate are
judged over the whole window.

With `[monitor.metrics]` the monitor also evaluates the metric queries every interval, beside the probe: each
round starts in its own thread at the probe's tick (so a slow query API never delays a probe), and its result is
judged the moment it arrives. A metric outside its threshold for `alert_after_failures` consecutive evaluations is a
breach handled exactly like the probe's (`on_alert`, then `on_breach` at once); its sentence names the query, the
value and the threshold. A round still running at the next tick is not doubled: that tick's round is skipped and
counted.
"""

from __future__ import annotations

import csv
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from drivers.config import MetricQuery
from drivers.metrics import Evaluation, MetricsEvaluator, threshold_words, value_words
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
class MetricSample:
    ts: str
    offset_s: float
    metric: str
    value: float | None  # None = no data or not evaluated
    ok: bool
    detail: str  # the evaluation in words
    duration_ms: float


@dataclass
class MetricSeries:
    """One query's evaluations over the window, with its threshold (for the report's chart)."""

    name: str
    query: str
    max: float
    min: float
    unit: str
    no_data: str
    samples: list[MetricSample] = field(default_factory=list)
    max_consecutive_failures: int = 0

    def summary(self) -> dict[str, object]:
        values = [s.value for s in self.samples if s.value is not None and math.isfinite(s.value)]
        last = self.samples[-1] if self.samples else None
        return {
            "query": self.query,
            "unit": self.unit,
            # JSON has no Infinity: an absent bound is None here and "no threshold" in words.
            "max": None if math.isinf(self.max) else self.max,
            "min": None if math.isinf(self.min) else self.min,
            "threshold": threshold_words_of(self),
            "no_data": self.no_data,
            "evaluations": len(self.samples),
            "failed": sum(not s.ok for s in self.samples),
            "max_consecutive_failures": self.max_consecutive_failures,
            "highest": max(values) if values else None,
            "lowest": min(values) if values else None,
            "last": last.detail if last else "not evaluated",
        }


def threshold_words_of(series: MetricSeries) -> str:
    return threshold_words(MetricQuery(series.query, series.max, series.min, series.unit, series.no_data))


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
    metrics: dict[str, MetricSeries] = field(default_factory=dict)
    metric_rounds_skipped: int = 0  # ticks whose round was skipped: the previous one was still running
    breach_source: str | None = None  # "probe", "metric NAME" or "window" (p95 / error rate at the end)
    interrupted: bool = False  # the window was cut short on request (`stop`, e.g. the operator's Ctrl-C)

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
            "breach_source": self.breach_source,
            "metrics": {name: m.summary() for name, m in self.metrics.items()},
            "metric_rounds_skipped": self.metric_rounds_skipped,
            "interrupted": self.interrupted,
        }

    def metrics_event(self) -> dict[str, object]:
        """Each metric's summary and its evaluations as [offset_s, value, ok, detail], for the monitor's result
        event (the report charts them beside the probe latency). An infinite value travels as None: JSON has
        no Infinity; its detail keeps it in words."""
        event: dict[str, object] = {}
        for name, m in self.metrics.items():
            samples = [
                [
                    s.offset_s,
                    s.value if s.value is not None and math.isfinite(s.value) else None,
                    s.ok,
                    s.detail,
                ]
                for s in m.samples
            ]
            event[name] = {**m.summary(), "samples": samples}
        return event

    def metric_samples(self) -> list[MetricSample]:
        return sorted(
            (s for m in self.metrics.values() for s in m.samples), key=lambda s: (s.offset_s, s.metric)
        )

    def write_metrics_csv(self, path: Path) -> None:
        """Every metric evaluation (artifacts/metrics.csv, beside monitor.csv): time, metric, value, ok, detail."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["ts", "offset_s", "metric", "value", "ok", "duration_ms", "detail"])
            for s in self.metric_samples():
                value = "" if s.value is None else repr(s.value)
                writer.writerow(
                    [s.ts, f"{s.offset_s:.3f}", s.metric, value, int(s.ok), f"{s.duration_ms:.2f}", s.detail]
                )

    def write_csv(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["ts", "offset_s", "status", "latency_ms", "ok", "error"])
            for s in self.samples:
                writer.writerow(
                    [s.ts, f"{s.offset_s:.3f}", s.status, f"{s.latency_ms:.2f}", int(s.ok), s.error or ""]
                )


STOP_POLL_S = 0.05  # how often a wait looks at `Monitor.stop`


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
        metrics: MetricsEvaluator | None = None,
        stop: threading.Event | None = None,
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
        self.metrics = metrics if metrics is not None and metrics.config.queries else None
        # Set from outside (the operator's Ctrl-C): the window ends at the next wait, within STOP_POLL_S, or
        # after the probe in flight; an interrupted window is not judged (no breach), the caller decides.
        self.stop = stop if stop is not None else threading.Event()
        self._consecutive = 0

    def _ok(self, result: ProbeResult) -> tuple[bool, str | None]:
        if result.status != 200:
            return False, result.error or f"HTTP {result.status}"
        if self.expect_version is not None:
            body = result.json()
            version = body.get("version") if isinstance(body, dict) else None
            if version != self.expect_version:
                return False, f"serves {version}, expected {self.expect_version}"
        return True, None

    def _start_round(self, results: queue.Queue[tuple[float, str, list[Evaluation]]]) -> threading.Thread:
        evaluator = self.metrics
        assert evaluator is not None

        def work() -> None:
            began, ts = time.monotonic(), datetime.now(UTC).isoformat(timespec="milliseconds")
            results.put((began, ts, evaluator.round()))

        thread = threading.Thread(target=work, name="monitor-metrics", daemon=True)
        thread.start()
        return thread

    def _judge_round(
        self,
        result: MonitorResult,
        start: float,
        began: float,
        ts: str,
        evaluations: list[Evaluation],
        failures: dict[str, int],
    ) -> bool:
        """Record one round (stamped with the time it started); True when a metric has now failed
        `alert_after_failures` times in a row."""
        breached: tuple[Evaluation, int] | None = None
        for ev in evaluations:
            series = result.metrics[ev.name]
            series.samples.append(
                MetricSample(ts, round(began - start, 3), ev.name, ev.value, ev.ok, ev.words, ev.duration_ms)
            )
            grace = self.metrics.config.no_data_grace_s if self.metrics is not None else 0.0
            if not ev.ok and ev.no_data and began - start < grace:
                series.samples[-1].detail = f"{ev.words} (no_data_grace_s = {grace:g}: not a failure yet)"
                continue
            failures[ev.name] = 0 if ev.ok else failures[ev.name] + 1
            series.max_consecutive_failures = max(series.max_consecutive_failures, failures[ev.name])
            if breached is None and failures[ev.name] >= self.alert_after_failures:
                breached = (ev, failures[ev.name])
        if breached is None:
            return False
        ev, count = breached
        series = result.metrics[ev.name]
        times = f"{count} consecutive evaluations"
        if ev.error is not None:
            what = f"could not be evaluated in {times} (last: {ev.error})"
        elif ev.value is None:
            what = f"had no data in {times} (no_data = {series.no_data})"
        else:
            bound = "the maximum of " + value_words(series.max, series.unit)
            if ev.value < series.min:
                bound = "the minimum of " + value_words(series.min, series.unit)
            side = "below" if ev.value < series.min else "above"
            what = f"was {value_words(ev.value, series.unit)}, {side} {bound}, in {times}"
        result.alert_fired = True
        result.detected_at = time.monotonic()
        result.breach_source = f"metric {ev.name}"
        result.breach = f"metric {ev.name} {what} (query: {ev.query})"
        return True

    def _probe(self, result: MonitorResult, start: float) -> str | None:
        """One probe, recorded; the breach sentence once `alert_after_failures` probes failed in a row."""
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
        self._consecutive = 0 if ok else self._consecutive + 1
        result.max_consecutive_failures = max(result.max_consecutive_failures, self._consecutive)
        if self._consecutive < self.alert_after_failures:
            return None
        return f"{self._consecutive} consecutive failed checks of {self.url} (last: {error})"

    def _judge_window(self, result: MonitorResult) -> None:
        """At the end of a window without an alert: p95 against the SLA, then the error rate."""
        p95 = result.percentile(95)
        if p95 > self.sla_p95_ms:
            result.breach = f"p95 latency {p95:.0f} ms is over the SLA of {self.sla_p95_ms:.0f} ms"
        elif result.error_rate > self.max_error_rate:
            result.breach = (
                f"error rate {result.error_rate:.1%} is over the maximum of {self.max_error_rate:.1%}"
            )
        if result.breach is not None:
            result.detected_at = time.monotonic()
            result.breach_source = "window"

    def _new_result(self) -> MonitorResult:
        result = MonitorResult(self.url, self.duration_s, self.interval_s)
        if self.metrics is not None:
            for name, q in self.metrics.config.queries.items():
                query = self.metrics.queries[name]
                result.metrics[name] = MetricSeries(name, query, q.max, q.min, q.unit, q.no_data)
        return result

    def _next_round(
        self, rounds: queue.Queue[tuple[float, str, list[Evaluation]]], until: float
    ) -> tuple[float, str, list[Evaluation]] | None:
        """The next metric round to arrive before `until` (monotonic); None at `until` or once `stop` is set
        (looked at every STOP_POLL_S, so a Ctrl-C never waits for the end of an interval)."""
        while True:
            left = until - time.monotonic()
            try:
                return rounds.get(timeout=max(0.0, min(left, STOP_POLL_S)))
            except queue.Empty:
                if left <= STOP_POLL_S or self.stop.is_set():
                    return None

    def run(self) -> MonitorResult:
        result = self._new_result()
        evaluator = self.metrics
        failures = dict.fromkeys(result.metrics, 0)
        rounds: queue.Queue[tuple[float, str, list[Evaluation]]] = queue.Queue()
        in_flight: threading.Thread | None = None
        start = time.monotonic()
        due = start
        self._consecutive = 0

        def drain(until: float, *, last: bool = False) -> bool:
            """Judge metric rounds as they arrive until `until` (monotonic), or until the round in flight is
            judged when `last`; True on a breach."""
            nonlocal in_flight
            while True:
                arrived = self._next_round(rounds, until)
                if arrived is None:
                    return False
                began, ts, evaluations = arrived
                in_flight = None
                if self._judge_round(result, start, began, ts, evaluations, failures):
                    return True
                if last:
                    return False

        breached = False
        while not breached and not self.stop.is_set():
            if evaluator is not None:
                if in_flight is None or not in_flight.is_alive():
                    in_flight = self._start_round(rounds)
                else:
                    result.metric_rounds_skipped += 1
            probe_breach = self._probe(result, start)
            if probe_breach is not None:
                result.alert_fired, result.detected_at = True, time.monotonic()
                result.breach_source, result.breach = "probe", probe_breach
                breached = True
            elif drain(time.monotonic()):  # a round that finished during the probe
                breached = True
            else:
                due += self.interval_s
                if due - start > self.duration_s + 1e-9:
                    # The last round started with the last probe: its result still counts (bounded by timeout_s).
                    if evaluator is not None and in_flight is not None:
                        breached = drain(time.monotonic() + evaluator.config.timeout_s + 1.0, last=True)
                    break
                breached = drain(due)
        return self._conclude(result, breached)

    def _conclude(self, result: MonitorResult, breached: bool) -> MonitorResult:
        """The end of the window: an alert, the window's own judgement, the breach handler; a window cut short by
        `stop` is not judged (no breach): the caller decides what an interruption means."""
        if self.stop.is_set() and not breached:
            result.interrupted = True
            return result
        if breached and self.on_alert is not None:
            self.on_alert(result)
        if result.breach is None:
            self._judge_window(result)
        if result.breach is not None and self.on_breach is not None:
            self.on_breach(result)
        return result
