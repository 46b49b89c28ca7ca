"""Monitoring from metrics (playbook §7, BG-4), the way Argo Rollouts' analysis reads Prometheus.

`PrometheusClient.query` runs one instant query against a Prometheus-compatible query API
(``GET {url}/api/v1/query?query=...``): direct (never through a proxy from the environment), bounded by the
timeout, with ``Authorization: Bearer`` only when a token is set. Every failure is a `MetricsError` whose message
is a sentence, without the token.

`MetricsEvaluator` evaluates `[monitor.metrics.queries]`: ``{slot}`` and ``{env}`` in a query become the slot
under watch and the environment's name; a scalar or a vector result is judged against the query's `max` / `min`
(a vector of several series by its worst value); an empty result or NaN is "no data", which fails or passes as
the query's `no_data` says; a query that cannot be evaluated (HTTP error, Prometheus error, timeout) is a failed
evaluation, in words.
"""

from __future__ import annotations

import http.client
import json
import math
import ssl
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from drivers.config import MetricQuery, MonitorMetrics

USER_AGENT = "mcms-runbook-monitor"
MAX_BODY = 8 * 1024 * 1024


class MetricsError(Exception):
    """A query could not be evaluated; the message is a sentence for the operator."""


def value_words(value: float, unit: str = "") -> str:
    if math.isinf(value):
        text = "+Inf" if value > 0 else "-Inf"
    else:
        text = f"{value:.4g}" if abs(value) < 1e6 else f"{value:.6g}"
    return f"{text} {unit}".strip()


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    value: float  # NaN stays NaN: the evaluator reads it as no data

    def words(self) -> str:
        inner = ", ".join(f'{k}="{v}"' for k, v in sorted(self.labels.items()) if k != "__name__")
        return "{" + inner + "}" if inner else ""


def _number(raw: Any, where: str) -> float:
    try:
        return float(raw)  # Prometheus sends values as strings: "1.5", "NaN", "+Inf", "-Inf"
    except (TypeError, ValueError):
        raise MetricsError(f"{where}: the value {str(raw)[:40]!r} is not a number") from None


class PrometheusClient:
    """One Prometheus-compatible query API (Prometheus, Thanos, Mimir, VictoriaMetrics, Grafana's proxy)."""

    def __init__(
        self, url: str, *, bearer_token: str = "", timeout_s: float = 5.0, ca_file: str = ""
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise MetricsError(f"the metrics URL {url!r} is not an http(s) URL with a host")
        self.url = url.rstrip("/")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        self.bearer_token = bearer_token
        self.timeout_s = timeout_s
        self.ca_file = ca_file

    def __repr__(self) -> str:  # never the token
        return f"PrometheusClient({self.url!r})"

    @property
    def where(self) -> str:
        return f"the metrics API at {self.url}"

    def _connection(self) -> http.client.HTTPConnection:
        # http.client talks to the host itself: no proxy from HTTP_PROXY / HTTPS_PROXY ever applies.
        if self.scheme == "https":
            context = ssl.create_default_context(cafile=self.ca_file or None)
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout_s, context=context)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)

    def get(self, path: str, params: Mapping[str, str]) -> tuple[int, bytes]:
        """GET prefix+path?params; (status, body). Raises MetricsError when no answer comes in time."""
        target = f"{self.prefix}{path}?{urlencode(params)}"
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if self.bearer_token:
            headers["Authorization"] = f"Bearer {self.bearer_token}"
        deadline = time.monotonic() + self.timeout_s
        conn = self._connection()
        try:
            conn.request("GET", target, headers=headers)
            response = conn.getresponse()
            chunks: list[bytes] = []
            size = 0
            while chunk := response.read(65536):
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_BODY:
                    raise MetricsError(f"{self.where} sent more than {MAX_BODY // (1024 * 1024)} MiB")
                if time.monotonic() > deadline:
                    raise TimeoutError
            return response.status, b"".join(chunks)
        except TimeoutError:
            raise MetricsError(f"{self.where} did not answer within {self.timeout_s:g} s") from None
        except ssl.SSLError as exc:
            raise MetricsError(f"{self.where}: TLS failed ({exc.reason or exc})") from None
        except ConnectionRefusedError:
            raise MetricsError(f"{self.where} refused the connection (nothing listens there)") from None
        except (OSError, http.client.HTTPException) as exc:
            raise MetricsError(f"{self.where} could not be reached: {exc or type(exc).__name__}") from None
        finally:
            conn.close()

    def query(self, promql: str) -> list[Series]:
        """One instant query: a vector's series, or a scalar as one series without labels."""
        status, body = self.get("/api/v1/query", {"query": promql})
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            first = body.decode("utf-8", "replace").strip().splitlines()[:1]
            said = f": {first[0][:200]}" if first else ""
            if status != 200:
                raise MetricsError(f"{self.where} answered HTTP {status}{said}")
            raise MetricsError(f"{self.where} answered HTTP 200 but not with the query API's JSON{said}")
        if data.get("status") != "success":
            error = str(data.get("error") or "no reason given")[:300]
            error_type = f" ({data['errorType']})" if data.get("errorType") else ""
            raise MetricsError(f"{self.where} answered HTTP {status}: the query failed{error_type}: {error}")
        if status != 200:
            raise MetricsError(f"{self.where} answered HTTP {status}")
        result = data.get("data")
        if not isinstance(result, dict):
            raise MetricsError(f"{self.where} answered without data")
        kind, items = result.get("resultType"), result.get("result")
        if kind == "scalar" and isinstance(items, list) and len(items) == 2:
            return [Series({}, _number(items[1], self.where))]
        if kind == "vector" and isinstance(items, list):
            series = []
            for item in items:
                if (
                    not isinstance(item, dict)
                    or not isinstance(item.get("value"), list)
                    or len(item["value"]) != 2
                ):
                    raise MetricsError(f"{self.where} sent a vector sample that is not [time, value]")
                raw = item.get("metric")
                labels: dict[Any, Any] = raw if isinstance(raw, dict) else {}
                series.append(
                    Series({str(k): str(v) for k, v in labels.items()}, _number(item["value"][1], self.where))
                )
            return series
        if kind == "matrix":
            raise MetricsError(
                "the query returns a range vector (a matrix); a threshold needs an instant vector or a scalar: "
                "wrap the range in a function such as rate(...) or max_over_time(...)"
            )
        raise MetricsError(
            f"the query returns a {kind or 'result of no known type'}; expected a vector or a scalar"
        )


@dataclass(frozen=True)
class Evaluation:
    """One query, evaluated once."""

    name: str
    query: str  # with {slot} and {env} filled in
    value: float | None  # the worst value; None = no data or not evaluated
    ok: bool
    words: str  # e.g. "queue_depth = 42 jobs (above the maximum of 5 jobs)"
    error: str | None = None  # the query could not be evaluated
    series: int = 0
    duration_ms: float = 0.0

    @property
    def no_data(self) -> bool:
        return self.value is None and self.error is None


def threshold_words(q: MetricQuery) -> str:
    bounds = []
    if not math.isinf(q.min):
        bounds.append(f"min {value_words(q.min, q.unit)}")
    if not math.isinf(q.max):
        bounds.append(f"max {value_words(q.max, q.unit)}")
    return " and ".join(bounds) or "no threshold"


def expand(query: str, *, slot: str, env: str) -> str:
    """{slot} and {env} only: a PromQL query is full of other braces."""
    return query.replace("{slot}", slot).replace("{env}", env)


def judge(name: str, q: MetricQuery, promql: str, series: list[Series]) -> Evaluation:
    """The worst series against the threshold: the one furthest above max or below min (or, when all are
    within, the closest to a bound). No series, or only NaN, is no data."""
    values = [s for s in series if not math.isnan(s.value)]
    if not values:
        ok = q.no_data == "pass"
        seen = "an empty result" if not series else "NaN only"
        words = f"{name}: no data ({seen}; no_data = {q.no_data}: {'passes' if ok else 'fails'})"
        return Evaluation(name, promql, None, ok, words, series=len(series))

    def excess(s: Series) -> float:
        return max(s.value - q.max, q.min - s.value)

    worst = max(values, key=excess)
    where = f" on {worst.words()}" if len(values) > 1 and worst.words() else ""
    shown = f"{name} = {value_words(worst.value, q.unit)}{where}"
    if worst.value > q.max:
        return Evaluation(name, promql, worst.value, False, f"{shown}, above the maximum of "
                          f"{value_words(q.max, q.unit)}", series=len(series))  # fmt: skip
    if worst.value < q.min:
        return Evaluation(name, promql, worst.value, False, f"{shown}, below the minimum of "
                          f"{value_words(q.min, q.unit)}", series=len(series))  # fmt: skip
    return Evaluation(name, promql, worst.value, True, f"{shown} ({threshold_words(q)})", series=len(series))


class MetricsEvaluator:
    """`[monitor.metrics]` for one slot: every query once per round, in parallel, each bounded by timeout_s."""

    def __init__(
        self, config: MonitorMetrics, *, slot: str, env: str, client: PrometheusClient | None = None
    ) -> None:
        self.config = config
        self.slot = slot
        self.env = env
        self.client = client or PrometheusClient(
            config.url, bearer_token=config.bearer_token, timeout_s=config.timeout_s
        )
        self.queries: dict[str, str] = {
            name: expand(q.query, slot=slot, env=env) for name, q in config.queries.items()
        }

    def evaluate(self, name: str) -> Evaluation:
        q, promql = self.config.queries[name], self.queries[name]
        started = time.perf_counter()
        try:
            series = self.client.query(promql)
        except MetricsError as exc:
            ms = round((time.perf_counter() - started) * 1000, 2)
            return Evaluation(name, promql, None, False, f"{name}: not evaluated: {exc}", error=str(exc),
                              duration_ms=ms)  # fmt: skip
        result = judge(name, q, promql, series)
        ms = round((time.perf_counter() - started) * 1000, 2)
        return Evaluation(
            result.name, result.query, result.value, result.ok, result.words, None, result.series, ms
        )

    def round(self) -> list[Evaluation]:
        """Every query once, concurrently: the round takes as long as the slowest query (at most timeout_s)."""
        names = list(self.config.queries)
        if len(names) == 1:
            return [self.evaluate(names[0])]
        with ThreadPoolExecutor(max_workers=min(8, len(names)), thread_name_prefix="metric") as pool:
            return list(pool.map(self.evaluate, names))
