"""drivers/probe.py in plain Python: scope, retries, redirects, the smoke checks and timeouts, against the
loopback HTTP stub (tests/http_stub.py)."""

from __future__ import annotations

import time

import pytest

from drivers.config import Service
from drivers.probe import Prober, ScopeError, SmokeCheck, smoke_checks
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
