"""drivers/probe.py in plain Python: scope, retries, redirects, the smoke checks and timeouts, against the
loopback HTTP stub (tests/http_stub.py)."""

from __future__ import annotations

import time

import pytest

from drivers.config import Service
from drivers.probe import Prober, ProbeResult, ScopeError, SmokeCheck, smoke_checks, stop_verdict
from tests.http_stub import Reply, Stub, json_reply


def prober(retries: int = 0, timeout_s: float = 2.0) -> Prober:
    return Prober(["127.0.0.1"], timeout_s=timeout_s, retries=retries, retry_delay_s=0.01)


def test_probe_refuses_a_host_outside_scope_before_sending(stub: Stub) -> None:
    stub.route("/health", Reply(200, b"ok"))
    url = stub.url.replace("127.0.0.1", "localhost") + "/health"
    with pytest.raises(ScopeError) as info:
        prober().get("health", url)
    assert str(info.value) == (
        f'{url}: host "localhost" is outside [scope] allowed_hosts (127.0.0.1); nothing was sent'
    )
    with pytest.raises(ScopeError) as info:
        Prober([]).get("health", f"{stub.url}/health")
    assert str(info.value) == (
        f'{stub.url}/health: host "127.0.0.1" is outside [scope] allowed_hosts (none); nothing was sent'
    )
    assert stub.requests == []
    # The same server, in scope, does answer: the refusal above was the scope, not the network.
    assert prober().get("health", f"{stub.url}/health").status == 200
    assert stub.paths() == ["/health"]


def test_probe_scope_is_case_insensitive(stub: Stub) -> None:
    stub.route("/", Reply(200))
    result = Prober(["LocalHost"], retries=0).get("root", stub.url.replace("127.0.0.1", "LOCALHOST") + "/")
    assert result.status == 200


def test_probe_closed_port_is_refused_after_all_retries(closed_url: str) -> None:
    result = prober(retries=2).get("health", f"{closed_url}/health")
    assert result.status == -1
    assert result.refused
    assert result.error == "connection refused"
    assert result.attempts == 3
    assert (result.headers, result.body) == ({}, b"")
    assert result.journal_data() == {
        "name": "health",
        "url": f"{closed_url}/health",
        "status": -1,
        "latency_ms": result.latency_ms,
        "error": "connection refused",
        "attempts": 3,
    }


@pytest.mark.parametrize(("retries", "status", "attempts"), [(2, 200, 3), (1, 503, 2), (5, 200, 3)])
def test_probe_retries_transient_answers_and_stops_at_the_first_good_one(
    stub: Stub, retries: int, status: int, attempts: int
) -> None:
    stub.route("/health", Reply(503, b"starting"), Reply(503, b"starting"), Reply(200, b"ok"))
    result = prober(retries=retries).get("health", f"{stub.url}/health")
    assert (result.status, result.attempts, result.error) == (status, attempts, None)
    assert stub.paths() == ["/health"] * attempts


def test_probe_does_not_retry_a_plain_server_error(stub: Stub) -> None:
    stub.route("/health", Reply(500, b"boom"), Reply(200, b"ok"))
    result = prober(retries=3).get("health", f"{stub.url}/health")
    assert (result.status, result.attempts, result.body) == (500, 1, b"boom")
    assert stub.paths() == ["/health"]


def test_probe_reports_a_redirect_without_following_it(stub: Stub) -> None:
    stub.route("/old", Reply(302, b"", {"Location": "/new"}))
    stub.route("/new", Reply(200, b"new"))
    result = prober(retries=2).get("old", f"{stub.url}/old")
    assert result.status == 302
    assert result.headers["location"] == "/new"
    assert result.attempts == 1
    assert stub.paths() == ["/old"]


@pytest.mark.parametrize(
    ("reply", "passed"),
    [
        (Reply(401, b"", {"WWW-Authenticate": "Negotiate"}), True),
        (Reply(401, b"", {"WWW-Authenticate": "negotiate, Basic realm=x"}), True),
        (Reply(401, b"", {"WWW-Authenticate": "Basic realm=x"}), False),
        (Reply(401), False),
        (Reply(200), True),
        (Reply(403, b"", {"WWW-Authenticate": "Negotiate"}), False),
    ],
)
def test_probe_kerberos_check_wants_a_negotiate_challenge(stub: Stub, reply: Reply, passed: bool) -> None:
    stub.route("/auth/negotiate", reply)
    result = prober().get("kerberos", f"{stub.url}/auth/negotiate")
    assert result.status == reply.status
    assert SmokeCheck("kerberos", "/auth/negotiate").passed(result) is passed
    # The other checks want exactly 200, challenge or not.
    assert SmokeCheck("health", "/auth/negotiate").passed(result) is (reply.status == 200)


def test_probe_smoke_checks_follow_the_service_paths(stub: Stub) -> None:
    checks = smoke_checks(Service())
    assert checks == [
        SmokeCheck("health", "/health"),
        SmokeCheck("swagger", "/swagger/index.html"),
        SmokeCheck("kerberos", "/auth/negotiate"),
    ]
    assert [c.expectation for c in checks] == ["200", "200", "401 with WWW-Authenticate: Negotiate, or 200"]
    custom = smoke_checks(Service(health_path="/hc", swagger_path="/docs", kerberos_path="/krb"))
    assert [c.path for c in custom] == ["/hc", "/docs", "/krb"]

    stub.route("/health", json_reply(200, {"status": "Healthy", "version": "1.1.0"}))
    stub.route("/swagger/index.html", Reply(200, b"<html>swagger</html>"))
    stub.route("/auth/negotiate", Reply(401, b"", {"WWW-Authenticate": "Negotiate"}))
    results = prober().smoke(stub.url, checks)
    assert [(r.name, r.url, r.status) for r in results] == [
        ("health", f"{stub.url}/health", 200),
        ("swagger", f"{stub.url}/swagger/index.html", 200),
        ("kerberos", f"{stub.url}/auth/negotiate", 401),
    ]
    assert all(check.passed(result) for check, result in zip(checks, results, strict=True))
    assert results[0].json() == {"status": "Healthy", "version": "1.1.0"}


@pytest.mark.parametrize("body", [b"<html>Healthy</html>", b"\xff\xfe not utf-8", b""])
def test_probe_json_of_a_non_json_body_is_none(stub: Stub, body: bytes) -> None:
    stub.route("/health", Reply(200, body))
    result = prober().get("health", f"{stub.url}/health")
    assert result.body == body
    assert result.json() is None


@pytest.mark.parametrize(
    ("body", "version"),
    [
        (b'{"status": "Healthy", "version": "1.1.0"}', "1.1.0"),
        (b'{"version": 2}', "2"),
        (b'{"status": "Healthy"}', None),
        (b'{"version": null}', None),
        (b'["1.1.0"]', None),
        (b"1.1.0", None),
        (b"", None),
    ],
)
def test_the_reported_version_is_a_json_objects_version_as_text(body: bytes, version: str | None) -> None:
    assert (
        ProbeResult("health", "http://127.0.0.1:1/health", 200, 1.0, body=body).reported_version() == version
    )


@pytest.mark.parametrize("status", [200, 500])
def test_probe_body_is_capped(stub: Stub, status: int) -> None:
    big = bytes(i % 251 for i in range(Prober.MAX_BODY + 4096))
    stub.route("/big", Reply(status, big))
    result = prober().get("big", f"{stub.url}/big")
    assert result.status == status
    assert len(result.body) == Prober.MAX_BODY
    assert result.body == big[: Prober.MAX_BODY]


def test_probe_a_server_that_does_not_answer_in_time_is_refused_as_timed_out(stub: Stub) -> None:
    stub.route("/health", Reply(200, b"late", delay_s=1.0))
    start = time.perf_counter()
    result = prober(retries=0, timeout_s=0.3).get("health", f"{stub.url}/health")
    elapsed = time.perf_counter() - start
    assert (result.status, result.error, result.attempts) == (-1, "timed out", 1)
    # The status already proves the timeout fired (the reply would be a 200); the ceiling only catches a hang.
    assert 0.3 <= elapsed < 3.0
    assert result.latency_ms >= 300
    assert stub.paths() == ["/health"]


def test_url_at_keeps_a_path_prefix_of_the_base() -> None:
    from drivers.probe import url_at

    assert url_at("https://host/mcms", "/health") == "https://host/mcms/health"
    assert url_at("https://host/mcms/", "health") == "https://host/mcms/health"
    assert (
        url_at("http://127.0.0.1:8080", "/swagger/index.html") == "http://127.0.0.1:8080/swagger/index.html"
    )


# -- RB-2: does anything still serve after stop_site? ---------------------------------------------------

URL = "http://127.0.0.1:8080/health"
NGINX_502 = (
    b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center>"
)
HTTP_SYS_503 = b"<HTML><HEAD><TITLE>Service Unavailable</TITLE></HEAD><BODY><h2>Service Unavailable</h2>"
STILL = "the site still answers after stop_site: HTTP {} at " + URL
HINT = " (stopped means a refused connection, or a 502, 503 or 504 from what is in front of the service)"
STOP_CASES = [
    # id, status, error, headers, body, stopped, sentence
    ("refused", -1, "connection refused", {}, b"", True,
     "the public address refuses the connection: nothing listens there any more"),
    ("timed-out", -1, "timed out", {}, b"", True,
     "the public address does not answer (timed out): nothing serves there"),
    ("502-nginx", 502, None, {"server": "nginx"}, NGINX_502, True,
     "the public address answers 502 from the proxy in front (Server: nginx): nothing serves behind it"),
    ("502-router-json", 502, None, {}, b'{"error": "bad gateway", "backend": "blue"}', True,
     "the public address answers 502 from the proxy in front: nothing serves behind it"),
    ("503-http-sys", 503, None, {"server": "Microsoft-HTTPAPI/2.0"}, HTTP_SYS_503, True,
     "the public address answers 503 from what is in front of the service (Server: Microsoft-HTTPAPI/2.0), not "
     "from the service itself (HTTP.sys answers so when the app pool is stopped, a proxy when no server is "
     "available): nothing serves behind it"),
    ("504", 504, None, {"server": "Microsoft-IIS/10.0"}, b"<html>504 Gateway Timeout</html>", True,
     "the public address answers 504 from the proxy in front (Server: Microsoft-IIS/10.0): the node behind it "
     "does not answer"),
    ("200-health", 200, None, {}, b'{"status": "Healthy", "version": "1.1.0"}', False,
     STILL.format(200) + ", a health answer of the service itself (Healthy, version 1.1.0)" + HINT),
    ("200-page", 200, None, {}, b"<html>MCMS</html>", False, STILL.format(200) + HINT),
    ("500", 500, None, {}, b"<html>Internal Server Error</html>", False, STILL.format(500) + HINT),
    ("404", 404, None, {"server": "Microsoft-HTTPAPI/2.0"}, b"Not Found", False, STILL.format(404) + HINT),
    # The service itself answers 503 on its health endpoint while it runs Unhealthy: it is up, not stopped.
    ("503-own-json", 503, None, {}, b'{"status": "Unhealthy", "version": "1.1.0", "components": {}}', False,
     STILL.format(503) + ", a health answer of the service itself (Unhealthy, version 1.1.0)" + HINT),
    ("503-own-text", 503, None, {"server": "Kestrel"}, b"Unhealthy", False,
     STILL.format(503) + ", a health answer of the service itself (Unhealthy)" + HINT),
    # A proxy passes on what the node said: a 502 that carries the node's own health answer is the node's.
    ("502-own-json", 502, None, {"server": "nginx"}, b'{"version": "1.1.0"}', False,
     STILL.format(502) + ", a health answer of the service itself (version 1.1.0)" + HINT),
]  # fmt: skip


@pytest.mark.parametrize(
    ("status", "error", "headers", "body", "stopped", "sentence"), [c[1:] for c in STOP_CASES],
    ids=[c[0] for c in STOP_CASES],
)  # fmt: skip
def test_stop_verdict_counts_no_connection_or_a_front_answer_and_nothing_the_service_says(
    status: int, error: str | None, headers: dict[str, str], body: bytes, stopped: bool, sentence: str
) -> None:
    verdict = stop_verdict(ProbeResult("health", URL, status, 1.0, error=error, headers=headers, body=body))
    assert (verdict.stopped, verdict.sentence) == (stopped, sentence)


def test_stop_verdict_of_real_probes(stub: Stub, closed_url: str) -> None:
    """The same decision on what a probe really reads back: header names lower-cased, the body as sent."""
    stub.route("/gone", Reply(502, NGINX_502, {"Server": "nginx/1.22.1", "Content-Type": "text/html"}))
    stub.route("/sick", json_reply(503, {"status": "Unhealthy", "version": "1.0.0"}))
    gone = stop_verdict(prober().get("health", f"{stub.url}/gone"))
    assert gone == stop_verdict(
        ProbeResult("health", URL, 502, 1.0, headers={"server": "nginx/1.22.1"}, body=NGINX_502)
    )
    assert gone.stopped
    assert "answers 502 from the proxy in front (Server: nginx/1.22.1)" in gone.sentence
    sick = stop_verdict(prober().get("health", f"{stub.url}/sick"))
    assert not sick.stopped
    assert sick.sentence.startswith(
        f"the site still answers after stop_site: HTTP 503 at {stub.url}/sick, a health"
    )
    refused = stop_verdict(prober().get("health", f"{closed_url}/health"))
    assert refused.stopped
    assert refused.sentence == "the public address refuses the connection: nothing listens there any more"
