"""Monitoring from metrics: the Prometheus query client, the evaluation of [monitor.metrics] queries, the monitor
that judges them beside its probes, the Lab's /metrics and the metric-only Lab fault.

The query client and evaluator run against Debian's real Prometheus on loopback (scraping loopback exporters via
file_sd, like the Lab's prometheus-targets.json) and against a loopback stub for the error shapes a real one is
hard to provoke on purpose (a 500 with a text body, a timeout). The drills run a Blue/Green release on the Lab
with a Prometheus that scrapes the Lab's slots.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.config import MetricQuery, MonitorMetrics
from drivers.metrics import Evaluation, MetricsError, MetricsEvaluator, PrometheusClient, Series, judge
from drivers.monitor import Monitor, MonitorResult
from drivers.probe import Prober
from tests.conftest import DrillRunner
from tests.http_stub import Reply, Seen, Stub, json_reply
from tests.prometheus import Prometheus, write_targets
from tests.tools import system_tool

ROOT = Path(__file__).resolve().parents[1]


def vector(*values: tuple[dict[str, str], str]) -> Reply:
    result = [{"metric": labels, "value": [1700000000.0, value]} for labels, value in values]
    return json_reply(200, {"status": "success", "data": {"resultType": "vector", "result": result}})


def queries(**named: MetricQuery) -> MonitorMetrics:
    return MonitorMetrics(url="http://127.0.0.1:1", timeout_s=2.0, queries=dict(named))


# --- the client and the evaluator against a stub: every shape an answer can take --------------------------------


def test_error_shapes_are_sentences(stub: Stub) -> None:
    """400 with Prometheus' error body, 500 with a text body, 200 with something else, a matrix, no answer in
    time: each a MetricsError that says what happened, never a traceback or a repr."""
    client = PrometheusClient(stub.url, timeout_s=0.5)
    cases = [
        (
            json_reply(
                400, {"status": "error", "errorType": "bad_data", "error": 'parse error: unexpected "}"'}
            ),
            [f"the metrics API at {stub.url} answered HTTP 400", "(bad_data)", 'parse error: unexpected "}"'],
        ),
        (Reply(500, b"upstream exploded\nsecond line"), ["answered HTTP 500: upstream exploded"]),
        (
            Reply(200, b"<html>login</html>"),
            ["HTTP 200 but not with the query API's JSON: <html>login</html>"],
        ),
        (
            json_reply(200, {"status": "success", "data": {"resultType": "matrix", "result": []}}),
            ["range vector", "rate(...)"],
        ),
        (Reply(200, b"{}", delay_s=2.0), ["did not answer within 0.5 s"]),
    ]
    for reply, expected in cases:
        stub.otherwise(reply)
        with pytest.raises(MetricsError) as err:
            client.query("up")
        for words in expected:
            assert words in str(err.value), (reply.status, str(err.value))


def test_refused_and_the_evaluation_of_a_failed_query(closed_url: str) -> None:
    """A query API that is not there: a failed evaluation, in words (not a crash of the monitor)."""
    config = MonitorMetrics(url=closed_url, timeout_s=1.0, queries={"q": MetricQuery("up", min=1)})
    (ev,) = MetricsEvaluator(config, slot="green", env="Lab").round()
    assert not ev.ok
    assert ev.value is None
    assert ev.error is not None
    assert "refused the connection" in ev.words
    assert ev.words.startswith("q: not evaluated: the metrics API at ")


def test_direct_bearer_only_when_set_and_placeholders(stub: Stub, monkeypatch: pytest.MonkeyPatch) -> None:
    """The request goes to the API itself even with a proxy in the environment; Authorization: Bearer is sent
    only with a token; {slot} and {env} are filled in, PromQL's own braces left alone."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    stub.otherwise(vector(({}, "1")))
    q = MetricQuery('max(mcms_worker_queue_depth{slot="{slot}",env="{env}"})', max=5)
    with_token = MonitorMetrics(url=stub.url, bearer_token="s3cret-token", queries={"depth": q})
    (ev,) = MetricsEvaluator(with_token, slot="green", env="Lab").round()
    assert ev.ok, ev.words
    assert ev.query == 'max(mcms_worker_queue_depth{slot="green",env="Lab"})'
    seen = stub.requests[-1]
    assert seen.path.startswith("/api/v1/query?query=")
    assert seen.headers["authorization"] == "Bearer s3cret-token"
    without = MonitorMetrics(url=stub.url + "/prom/", queries={"depth": q})
    MetricsEvaluator(without, slot="blue", env="Lab").round()
    seen = stub.requests[-1]
    assert seen.path.startswith("/prom/api/v1/query?query=max%28mcms_worker_queue_depth%7Bslot%3D%22blue%22")
    assert "authorization" not in seen.headers
    assert "s3cret" not in repr(MetricsEvaluator(with_token, slot="blue", env="Lab").client)


def test_judging_values(stub: Stub) -> None:
    """Several series: the worst one is judged and named; empty and NaN are no data (fail or pass by no_data);
    min thresholds; +Inf is a value (above any max)."""
    q = MetricQuery("x", max=5, unit="jobs")
    two = [Series({"slot": "blue"}, 3.0), Series({"slot": "green"}, 9.0)]
    ev = judge("depth", q, "x", two)
    assert (ev.ok, ev.value) == (False, 9.0)
    assert ev.words == 'depth = 9 jobs on {slot="green"}, above the maximum of 5 jobs'
    assert judge("depth", q, "x", [Series({}, 2.0), Series({}, 4.0)]).ok
    low = judge("up", MetricQuery("x", min=1), "x", [Series({"i": "a"}, 1.0), Series({"i": "b"}, 0.0)])
    assert (low.ok, low.value) == (False, 0.0)
    assert "below the minimum of 1" in low.words
    for empty in ([], [Series({}, math.nan)]):
        failed = judge("depth", q, "x", empty)
        assert (failed.ok, failed.value, failed.no_data) == (False, None, True)
        assert "no data" in failed.words
        assert judge("depth", MetricQuery("x", max=5, no_data="pass"), "x", empty).ok
    inf = judge("depth", q, "x", [Series({}, math.inf)])
    assert not inf.ok
    assert "+Inf jobs, above the maximum" in inf.words
    # The same shapes through the client: a NaN sample and a scalar.
    stub.otherwise(vector(({"slot": "green"}, "NaN")))
    (nan,) = MetricsEvaluator(
        queries(d=q), slot="green", env="Lab", client=PrometheusClient(stub.url)
    ).round()
    assert nan.no_data
    assert not nan.ok
    stub.otherwise(
        json_reply(200, {"status": "success", "data": {"resultType": "scalar", "result": [1, "7"]}})
    )
    (scalar,) = MetricsEvaluator(
        queries(d=q), slot="green", env="Lab", client=PrometheusClient(stub.url)
    ).round()
    assert (scalar.value, scalar.ok) == (7.0, False)


# --- the monitor: a metric breach is a breach, and the queries never slow the probes --------------------------------


def _monitor(
    health: Stub, metrics: MonitorMetrics | None, **kw: float
) -> tuple[Monitor, list[MonitorResult]]:
    breaches: list[MonitorResult] = []
    monitor = Monitor(
        Prober(["127.0.0.1"], timeout_s=1.0, retries=0),
        health.url + "/health",
        duration_s=kw.get("duration_s", 5.0),
        interval_s=kw.get("interval_s", 0.2),
        sla_p95_ms=800,
        max_error_rate=0.01,
        alert_after_failures=2,
        on_breach=breaches.append,
        metrics=MetricsEvaluator(metrics, slot="green", env="Lab") if metrics else None,
    )
    return monitor, breaches


def test_a_metric_out_of_threshold_twice_in_a_row_is_a_breach(stub: Stub) -> None:
    """Probes all fine; the metric in threshold, then out once (no alert), back in, then out twice in a row:
    the breach, at once, naming the query, its value and its threshold."""
    with Stub() as prom:
        values = iter(["1", "9", "2", "9", "12"])
        prom.otherwise_fn(lambda seen: vector(({"slot": "green"}, next(values, "12"))))
        stub.route("/health", json_reply(200, {"status": "Healthy"}))
        config = MonitorMetrics(
            url=prom.url, queries={"queue_depth": MetricQuery('max(q{slot="{slot}"})', max=5, unit="jobs")}
        )
        monitor, breaches = _monitor(stub, config)
        result = monitor.run()
    assert [r.breach for r in breaches] == [result.breach]
    assert result.breach == (
        "metric queue_depth was 12 jobs, above the maximum of 5 jobs, in 2 consecutive evaluations "
        '(query: max(q{slot="green"}))'
    )
    assert result.breach_source == "metric queue_depth"
    assert result.alert_fired
    assert all(s.ok for s in result.samples), "the probes found nothing"
    series = result.metrics["queue_depth"]
    assert [s.value for s in series.samples] == [1.0, 9.0, 2.0, 9.0, 12.0]
    assert [s.ok for s in series.samples] == [True, False, True, False, False]
    assert result.samples[-1].offset_s < 1.5, "stopped at the breach, not at the end of the window"
    summary = result.summary()["metrics"]["queue_depth"]  # type: ignore[index]
    assert summary["evaluations"] == 5
    assert summary["highest"] == 12.0
    assert summary["threshold"] == "max 5 jobs"


def test_failed_queries_breach_and_no_data_can_pass(stub: Stub) -> None:
    """A query API that answers errors twice in a row is a breach that says so; a query with no_data = "pass"
    and an empty result never is."""
    with Stub() as prom:

        def answer(seen: Seen) -> Reply:
            if "broken" in seen.path:
                return json_reply(
                    422, {"status": "error", "errorType": "execution", "error": "too many samples"}
                )
            return vector()

        prom.otherwise_fn(answer)
        stub.route("/health", json_reply(200, {"status": "Healthy"}))
        config = MonitorMetrics(url=prom.url, queries={
            "quiet": MetricQuery("absent_metric", max=1, no_data="pass"),
            "broken": MetricQuery("broken", max=1),
        })  # fmt: skip
        result = _monitor(stub, config)[0].run()
    assert result.breach is not None
    assert result.breach.startswith(
        "metric broken could not be evaluated in 2 consecutive evaluations (last: "
    )
    assert "answered HTTP 422: the query failed (execution): too many samples" in result.breach
    assert all(s.ok for s in result.metrics["quiet"].samples)


def test_no_data_within_the_grace_is_not_a_failure_but_a_value_out_of_threshold_is(stub: Stub) -> None:
    """no_data_grace_s: an empty result in the first seconds (the slot not yet scraped) is recorded and not
    counted; once the grace is over, no data counts again; a value out of threshold counts from the start."""
    with Stub() as prom:
        prom.otherwise_fn(lambda seen: vector())
        stub.route("/health", json_reply(200, {"status": "Healthy"}))
        config = MonitorMetrics(
            url=prom.url, no_data_grace_s=0.7, queries={"queue": MetricQuery("q", max=5, unit="jobs")}
        )
        result = _monitor(stub, config)[0].run()
    samples = result.metrics["queue"].samples
    assert result.breach is not None
    assert result.breach.startswith("metric queue had no data in 2 consecutive")
    in_grace = [s for s in samples if s.offset_s < 0.7]
    assert in_grace
    assert all("no_data_grace_s = 0.7: not a failure yet" in s.detail for s in in_grace)
    assert len(samples) == len(in_grace) + 2, "the two evaluations after the grace breach"

    with Stub() as prom:
        prom.otherwise_fn(lambda seen: vector(({"slot": "green"}, "9")))
        config = MonitorMetrics(
            url=prom.url, no_data_grace_s=60, queries={"queue": MetricQuery("q", max=5, unit="jobs")}
        )
        result = _monitor(stub, config)[0].run()
    assert result.breach is not None
    assert "was 9 jobs, above the maximum of 5 jobs" in result.breach
    assert len(result.metrics["queue"].samples) == 2, "a value counts inside the grace"


def test_a_slow_query_api_does_not_slow_the_probes(stub: Stub) -> None:
    """The API answers after 0.7 s with a 0.2 s probe interval: the probes keep their cadence, the rounds that
    would overlap are skipped and counted, and the slow answers still count."""
    with Stub() as prom:
        prom.otherwise(Reply(200, json.dumps({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {}, "value": [0, "1"]}]}}).encode(), {"Content-Type": "application/json"}, delay_s=0.7))  # fmt: skip
        stub.route("/health", json_reply(200, {"status": "Healthy"}))
        config = MonitorMetrics(url=prom.url, timeout_s=2.0, queries={"q": MetricQuery("q", max=5)})
        result = _monitor(stub, config, duration_s=2.0, interval_s=0.2)[0].run()
    assert result.breach is None
    offsets = [s.offset_s for s in result.samples]
    assert len(offsets) == 11
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    assert max(gaps) < 0.45, gaps
    assert result.metric_rounds_skipped >= 5
    assert 2 <= len(result.metrics["q"].samples) <= 4
    assert all(s.ok for s in result.metrics["q"].samples)


def test_a_clean_window_evaluates_every_tick_and_ends_on_time(stub: Stub) -> None:
    """A fast query API in threshold: one evaluation per probe, the last one included, and the window ends when
    the last round is judged, not after waiting out timeout_s."""
    with Stub() as prom:
        prom.otherwise(vector(({}, "1")))
        stub.route("/health", json_reply(200, {"status": "Healthy"}))
        config = MonitorMetrics(url=prom.url, timeout_s=3.0, queries={"q": MetricQuery("q", max=5)})
        monitor, breaches = _monitor(stub, config, duration_s=1.0, interval_s=0.2)
        started = time.monotonic()
        result = monitor.run()
        elapsed = time.monotonic() - started
    assert breaches == []
    assert result.breach is None
    assert len(result.samples) == 6
    assert len(result.metrics["q"].samples) == 6
    assert result.metric_rounds_skipped == 0
    assert elapsed < 1.0 + 3.0, "the end of the window does not wait out the query timeout"
    assert result.summary()["metrics"]["q"]["failed"] == 0  # type: ignore[index]


# --- against the real Prometheus --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """Prometheus scraping two loopback exporters (slots blue and green) found through a file_sd file."""
    work = tmp_path_factory.mktemp("prometheus")
    targets = work / "targets" / "prometheus-targets.json"
    with Stub() as blue, Stub() as green:
        text = "# TYPE mcms_worker_queue_depth gauge\nmcms_worker_queue_depth {}\nweird NaN\n"
        for exporter, depth in ((blue, 3), (green, 9)):
            exporter.route(
                "/metrics", Reply(200, text.format(depth).encode(), {"Content-Type": "text/plain"})
            )
        with Prometheus(work, [targets]) as prom:
            write_targets(targets, {"blue": f"127.0.0.1:{blue.port}", "green": f"127.0.0.1:{green.port}"})
            prom.wait_for("count(mcms_worker_queue_depth) == 2")
            yield prom


def test_real_prometheus_vectors_scalars_and_errors(scraped: Prometheus) -> None:
    """Instant queries against Debian's Prometheus: a vector of two scraped series judged by its worst, the
    slot placeholder selecting one, a scalar, an empty vector and NaN as no data, and a PromQL error in words."""
    client = PrometheusClient(scraped.url, timeout_s=5.0)
    series = client.query("mcms_worker_queue_depth")
    assert sorted((s.labels["slot"], s.value) for s in series) == [("blue", 3.0), ("green", 9.0)]

    def one(query: str, slot: str = "green", **kw: Any) -> Evaluation:
        config = MonitorMetrics(url=scraped.url, queries={"m": MetricQuery(query, **kw)})
        (ev,) = MetricsEvaluator(config, slot=slot, env="Lab").round()
        return ev

    worst = one("mcms_worker_queue_depth", max=5, unit="jobs")
    assert (worst.ok, worst.value) == (False, 9.0)
    assert 'on {instance="127.0.0.1:' in worst.words
    assert 'job="mcms", slot="green"}, above the maximum of 5 jobs' in worst.words
    blue = one('max(mcms_worker_queue_depth{slot="{slot}"})', slot="blue", max=5)
    assert (blue.ok, blue.value) == (True, 3.0)
    scalar = one("scalar(sum(mcms_worker_queue_depth))", max=20)
    assert (scalar.ok, scalar.value) == (True, 12.0)
    empty = one('mcms_worker_queue_depth{slot="purple"}', max=5)
    assert empty.no_data
    assert not empty.ok
    assert one('mcms_worker_queue_depth{slot="purple"}', max=5, no_data="pass").ok
    nan = one("max(weird)", max=5)
    assert nan.no_data
    assert one("0/0", max=5).no_data
    with pytest.raises(MetricsError) as err:
        client.query("sum(mcms_worker_queue_depth")
    assert f"the metrics API at {scraped.url} answered HTTP 400: the query failed (bad_data): " in str(
        err.value
    )
    assert "parse error" in str(err.value)
    with pytest.raises(MetricsError, match="range vector"):
        client.query("mcms_worker_queue_depth[1m]")


# --- the Lab's /metrics and the metric-only fault, end to end ---------------------------------------------------


def metrics_section(prom_url: str, **extra: str) -> str:
    text = (
        f'\n[monitor.metrics]\nurl = "{prom_url}"\ntimeout_s = 2.0\n'
        "[monitor.metrics.queries.queue_depth]\nquery = 'max(mcms_worker_queue_depth{slot=\"{slot}\"})'\n"
        'max = 5\nunit = "jobs"\n'
    )
    for name, body in extra.items():
        text += f"[monitor.metrics.queries.{name}]\n{body}\n"
    return text


def _lab_prometheus(tmp_path: Path) -> Prometheus:
    return Prometheus(tmp_path / "prometheus", [tmp_path / "lab" / "prometheus-targets.json"])


def test_a_breach_only_the_metrics_see_rolls_back(tmp_path: Path) -> None:
    """--lab-fault green-queue-backlog: after the switch green's queue climbs while /health and the pages stay
    200 and fast. Only the metric query sees it: the breach names the metric, traffic is back on blue at once,
    every HTTP probe of the monitor was fine, and the report charts the metric with its threshold."""
    drill = DrillRunner(tmp_path)
    with _lab_prometheus(tmp_path) as prom:
        d = drill(
            "--lab-fault", "green-queue-backlog", marker="bluegreen", keep=False,
            edit_env=lambda text: text + metrics_section(prom.url),
        )  # fmt: skip
        # Prometheus scraped the Lab's slots through the targets file the Lab wrote.
        assert {s["metric"]["slot"] for s in prom.query('up{job="mcms"}')["result"]} == {"blue", "green"}
    assert d.returncode == 1, d.output
    assert d.phase_outcomes()["BG-4"] == "failed"
    (breach,) = [e for e in d.kinds("note") if e["data"]["message"].startswith("monitor breach")]
    words = breach["data"]["message"]
    assert words.startswith("monitor breach: metric queue_depth was "), words
    assert "above the maximum of 5 jobs, in 2 consecutive evaluations" in words
    assert 'max(mcms_worker_queue_depth{slot="green"})' in words
    (rollback,) = [e["data"] for e in d.kinds("rollback") if e["data"].get("result") == "succeeded"]
    assert (rollback["from"], rollback["to"]) == ("1.1.0", "1.0.0")
    assert "metric queue_depth" in rollback["reason"]
    assert rollback["restore_s_from_detection"] < 10
    # At once: the breach is followed by the switch back to blue, with no monitor probe in between.
    (at,) = d.index(lambda e: e["kind"] == "note" and e["data"]["message"].startswith("monitor breach"))
    (back,) = d.actions("switch_traffic", "blue")
    (done,) = d.index(lambda e: e["kind"] == "note" and e["data"]["message"] == "monitoring done")
    assert at < back < done
    probes = list(csv.DictReader((d.bundle / "artifacts" / "monitor.csv").open(encoding="utf-8")))
    assert probes
    assert all(p["ok"] == "1" and p["status"] == "200" for p in probes), "only the metric found it"
    assert not [e for e in d.kinds("finding") if e["data"].get("tool") == "public-watch"]
    rows = list(csv.DictReader((d.bundle / "artifacts" / "metrics.csv").open(encoding="utf-8")))
    assert [r["ok"] for r in rows][-2:] == ["0", "0"]
    assert float(rows[-1]["value"]) > 5
    (result,) = d.kinds("monitor.result")
    assert result["data"]["summary"]["breach_source"] == "metric queue_depth"
    assert result["data"]["metrics"]["queue_depth"]["max"] == 5
    report = (d.bundle / "report.html").read_text(encoding="utf-8")
    section = report[report.index('id="runbook-monitor"') :]
    assert "queue_depth" in section
    assert "max 5 jobs" in section
    assert "Data: artifacts/monitor.csv, artifacts/metrics.csv" in section


def test_a_query_api_that_does_not_answer_fails_pre_before_anything_is_touched(
    drill: DrillRunner, closed_url: str
) -> None:
    """PRE evaluates every query once: no Prometheus at the configured address (or a query it cannot run) fails
    PRE, so BG-1 deploys nothing and blue keeps serving; without this check the release would be deployed,
    switched, and rolled back on "could not be evaluated". (The `drill` fixture stops the Lab it kept.)"""
    d = drill(marker="bluegreen", edit_env=lambda text: text + metrics_section(closed_url))
    assert d.returncode == 1, d.output
    assert d.phase_outcomes()["PRE"] == "failed"
    assert "BG-1" not in d.phase_outcomes() or d.phase_outcomes()["BG-1"] != "passed"
    assert not d.actions("deploy"), "nothing deployed"
    assert not d.actions("switch_traffic"), "nothing switched"
    assert f"[monitor.metrics] at {closed_url}: queue_depth: not evaluated: " in d.output
    assert "nothing was touched" in d.output
    assert d.version_at("public") == "1.0.0"


def test_a_healthy_release_with_metrics_passes(tmp_path: Path) -> None:
    """The same release without the fault, with several queries (queue depth, app pool up, error ratio and p95
    latency from the histogram, the last two passing on no data): the monitoring passes, every evaluation ok."""
    drill = DrillRunner(tmp_path)
    extra = {
        "app_pool_up": "query = 'min(mcms_app_pool_up{slot=\"{slot}\"})'\nmin = 1",
        "error_ratio": (
            'query = \'(sum(rate(mcms_http_requests_total{slot="{slot}",code=~"5.."}[30s])) or vector(0)) / '
            'sum(rate(mcms_http_requests_total{slot="{slot}"}[30s]))\'\nmax = 0.05\nunit = "ratio"\n'
            'no_data = "pass"'
        ),
        "p95_latency": (
            "query = '1000 * histogram_quantile(0.95, sum by (le) "
            '(rate(mcms_http_request_duration_seconds_bucket{slot="{slot}"}[30s])))\'\nmax = 800\nunit = "ms"\n'
            'no_data = "pass"'
        ),
    }
    with _lab_prometheus(tmp_path) as prom:
        d = drill(
            marker="bluegreen", keep=False, edit_env=lambda text: text + metrics_section(prom.url, **extra)
        )
    assert d.returncode == 0, d.output
    (result,) = d.kinds("monitor.result")
    summary = result["data"]["summary"]
    assert summary["breach"] is None
    metrics = result["data"]["metrics"]
    assert set(metrics) == {"queue_depth", "app_pool_up", "error_ratio", "p95_latency"}
    for name, m in metrics.items():
        assert m["evaluations"] >= 5, (name, m)
        assert m["failed"] == 0, (name, m["last"])
    assert metrics["app_pool_up"]["lowest"] == 1.0
    assert metrics["queue_depth"]["highest"] <= 5


def test_lab_metrics_text_is_what_prometheus_scrapes(tmp_path: Path) -> None:
    """The Lab's /metrics on each slot, scraped by Prometheus through the targets file the Lab writes: request
    counts by path and code, the latency histogram, queue depth and app pool state, labelled by slot."""
    from lab import Lab

    with _lab_prometheus(tmp_path) as prom:
        lab = Lab(tmp_path / "lab", topology="bluegreen")
        lab.start()
        try:
            targets = json.loads((tmp_path / "lab" / "prometheus-targets.json").read_text(encoding="utf-8"))
            assert [t["labels"]["slot"] for t in targets] == ["blue", "green"]
            assert targets[0]["targets"] == [f"127.0.0.1:{lab.node('blue').port}"]
            for _ in range(3):
                Prober(["127.0.0.1"], timeout_s=2.0).get("health", lab.public_url + "/health", retries=0)
            Prober(["127.0.0.1"], timeout_s=2.0).get("missing", lab.public_url + "/no/such/page", retries=0)
            counted = prom.wait_for('mcms_http_requests_total{slot="blue",path="other",code="404"}')
            assert counted[0]["value"][1] == "1"
            health = prom.wait_for('mcms_http_requests_total{slot="blue",path="/health",code="200"} >= 3')
            assert health[0]["metric"]["method"] == "GET"
            prom.wait_for('mcms_http_request_duration_seconds_count{slot="blue"} >= 4')
            assert prom.wait_for('mcms_app_pool_up{slot="blue"}')[0]["value"][1] == "1"
            assert prom.wait_for('mcms_app_pool_state{slot="blue",state="Started"}')[0]["value"][1] == "1"
            assert prom.wait_for('mcms_worker_queue_depth{slot="blue"}')[0]["value"][1] == "0"
            down = prom.wait_for('up{slot="green"}')  # nothing deployed on green yet: the target is down
            assert down[0]["value"][1] == "0"
        finally:
            lab.stop()


def test_the_shipped_lab_metrics_environment(tmp_path: Path) -> None:
    """environments/LabMetrics.toml loads with its four queries, and the Prometheus configuration shipped beside
    it is one Prometheus accepts (promtool), reading the targets file the Lab writes into .lab/."""
    from drivers.config import load_environment

    env = load_environment(ROOT / "environments" / "LabMetrics.toml")
    assert env.is_lab
    assert set(env.monitor.metrics.queries) == {"queue_depth", "app_pool_up", "error_ratio", "p95_latency"}
    assert all("{slot}" in q.query for q in env.monitor.metrics.queries.values())
    promtool = Path(system_tool("prometheus")).with_name("promtool")  # Debian's prometheus package has both
    assert promtool.is_file(), f"{promtool} is missing: apt-get install prometheus"
    config = ROOT / "environments" / "LabMetrics.prometheus.yml"
    checked = subprocess.run(
        [str(promtool), "check", "config", str(config)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "../.lab/prometheus-targets.json" in config.read_text(encoding="utf-8")
