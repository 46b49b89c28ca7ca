"""The drivers in plain Python: environment file, probe, notify, packages, command deploy, registry.

No mocks of the code under test: HTTP goes to real servers on 127.0.0.1 started here, files live in tmp_path,
and the command deploy driver runs real Python subprocesses that log their argv.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import re
import socketserver
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from drivers.base import ActionResult, DriverError, Registry
from drivers.config import ConfigError, Environment, Service, load_environment
from drivers.deploy import DEPLOY_DRIVERS, CommandDeployDriver, deploy_driver
from drivers.notify import Notifier
from drivers.packages import Package, PackageError, find_packages, version_key
from drivers.probe import Prober, ScopeError, SmokeCheck, smoke_checks
from drivers.router import router_driver

# -- a loopback HTTP server whose answers each test scripts ----------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


def json_reply(status: int, data: object) -> Reply:
    return Reply(status, json.dumps(data).encode("utf-8"), {"Content-Type": "application/json"})


@dataclass(frozen=True)
class Seen:
    """One request as the server received it (header names lower-case)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


Route = Callable[[int], Reply]  # gets how many earlier requests the same path had


class Stub:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.requests: list[Seen] = []
        self.stopping = threading.Event()
        self._routes: dict[str, Route] = {}
        self._lock = threading.Lock()

    def route(self, path: str, *replies: Reply) -> None:
        """Answer `path` with `replies` in order; the last one repeats."""
        self._routes[path] = lambda n: replies[min(n, len(replies) - 1)]

    def route_fn(self, path: str, route: Route) -> None:
        self._routes[path] = route

    def paths(self) -> list[str]:
        with self._lock:
            return [seen.path for seen in self.requests]

    def first_at(self, path: str) -> float:
        with self._lock:
            return next(seen.at for seen in self.requests if seen.path == path)

    def answer(self, seen: Seen) -> Reply:
        with self._lock:
            count = sum(1 for earlier in self.requests if earlier.path == seen.path)
            self.requests.append(seen)
            route = self._routes.get(seen.path)
        return route(count) if route is not None else Reply(404, b"not found")


class _Server(ThreadingHTTPServer):
    stub: Stub

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (getfqdn); nothing here needs it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        stub = self.server.stub
        reply = stub.answer(Seen(self.command, self.path, headers, body, time.monotonic()))
        if reply.delay_s:
            stub.stopping.wait(reply.delay_s)  # the finalizer cuts the wait short
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
        except OSError:
            pass  # the client gave up (a timeout test)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[Stub]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.stub = Stub(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield server.stub
    server.stub.stopping.set()
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


# -- drivers/config.py -----------------------------------------------------------------------------


def write_env(tmp_path: Path, text: str, name: str = "Stage.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def config_error(path: Path, environ: Mapping[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_environment(path, environ={} if environ is None else environ)
    return info.value


def test_config_substitutes_vars_inside_longer_strings_and_collects_them_as_secrets(tmp_path: Path) -> None:
    path = write_env(
        tmp_path,
        """
        name = "Stage"
        [service]
        base_url = "https://${MCMS_HOST}.corp.example"
        [notify]
        webhook_url = "https://hooks.example/webhookb2/${MCMS_TOKEN}/IncomingWebhook"
        """,
    )
    env = load_environment(path, environ={"MCMS_HOST": "mcms-stage", "MCMS_TOKEN": "tok-8f3a"})
    assert env.name == "Stage"
    assert env.kind == "remote"
    assert not env.is_lab
    assert env.source == path
    assert env.service.base_url == "https://mcms-stage.corp.example"
    assert env.notify.webhook_url == "https://hooks.example/webhookb2/tok-8f3a/IncomingWebhook"
    assert env.secrets == frozenset({"mcms-stage", "tok-8f3a"})
    assert env.unset == {}
    assert env.present == frozenset({"service", "notify"})
    assert env.redact(f"POST {env.notify.webhook_url} for {env.service.base_url}") == (
        "POST https://hooks.example/webhookb2/***/IncomingWebhook for https://***.corp.example"
    )


def test_config_redact_replaces_the_longest_secret_first(tmp_path: Path) -> None:
    path = write_env(
        tmp_path,
        """
        name = "Stage"
        [service]
        ca_file = "${SHORT}"
        [paths]
        timeline_dir = "${LONG}"
        """,
    )
    env = load_environment(path, environ={"SHORT": "pass", "LONG": "pass-word-42"})
    assert env.secrets == frozenset({"pass", "pass-word-42"})
    # Shortest first would leave "***-word-42" behind.
    assert env.redact("a=pass-word-42 b=pass c=none") == "a=*** b=*** c=none"


def test_config_empty_var_counts_as_unset_and_is_no_secret(tmp_path: Path) -> None:
    path = write_env(tmp_path, 'name = "Stage"\n[notify]\nwebhook_url = "${MCMS_WEBHOOK_URL}"\n')
    env = load_environment(path, environ={"MCMS_WEBHOOK_URL": ""})
    assert env.unset == {"[notify] webhook_url": "MCMS_WEBHOOK_URL"}
    assert env.secrets == frozenset()
    assert env.notify.webhook_url == ""


def test_config_unset_var_is_an_error_only_for_a_flow_that_uses_its_section(tmp_path: Path) -> None:
    path = write_env(
        tmp_path,
        """
        name = "Prod"
        kind = "remote"
        [service]
        base_url = "https://mcms-prod.corp.example"
        [notify]
        webhook_url = "${MCMS_WEBHOOK_URL}"
        format = "teams"
        """,
    )
    env = load_environment(path, environ={})
    assert env.unset == {"[notify] webhook_url": "MCMS_WEBHOOK_URL"}
    assert env.notify.webhook_url == ""
    env.require("matrix", frozenset({"DR-SMOKE"}))  # no error
    with pytest.raises(ConfigError) as info:
        env.require("rollback", frozenset())
    assert info.value.key == "[notify] webhook_url"
    assert str(info.value).splitlines() == [
        f"{path}: [notify] webhook_url: ${{MCMS_WEBHOOK_URL}} is not set in the process environment "
        "(set MCMS_WEBHOOK_URL before the run)",
        f"{path}: [paths]: required for the rollback flow outside the Lab: log_dirs (playbook §3.4) and "
        "timeline_dir (§9) on this machine",
    ]


def test_config_unset_var_in_a_list_item_belongs_to_its_section(tmp_path: Path) -> None:
    path = write_env(
        tmp_path,
        """
        name = "Stage"
        [service]
        base_url = "https://mcms-stage.corp.example"
        [axe]
        pages = ["/", "/${PAGE}"]
        """,
    )
    env = load_environment(path, environ={})
    assert env.unset == {"[axe] pages[1]": "PAGE"}
    env.require("matrix", frozenset({"DR-SMOKE"}))
    with pytest.raises(ConfigError) as info:
        env.require("matrix", frozenset({"DR-AXE"}))
    assert info.value.key == "[axe] pages[1]"


def test_config_unset_var_in_the_name_is_an_error_at_load(tmp_path: Path) -> None:
    path = write_env(tmp_path, 'name = "${ENV_NAME}"\n')
    error = config_error(path)
    assert (error.key, error.expected) == (
        "name",
        "${ENV_NAME} is not set in the process environment (set ENV_NAME before the run)",
    )


def test_config_sections_used_by_each_flow(tmp_path: Path) -> None:
    env = load_environment(write_env(tmp_path, 'name = "Stage"\n'), environ={})
    base = {"service", "scope", "lab", "paths", "matrix"}
    assert env.sections_used("matrix", frozenset({"DR-SMOKE"})) == base
    assert env.sections_used("matrix", frozenset({"DR-AXE", "DR-ZAP", "DR-E2E"})) == base | {
        "axe",
        "zap",
        "e2e",
        "browser",
    }
    assert env.sections_used("rollback", frozenset()) == base | {"packages", "drivers", "notify"}
    assert env.sections_used("bluegreen", frozenset()) == base | {
        "packages",
        "drivers",
        "notify",
        "slots",
        "monitor",
        "approval",
    }


def test_config_remote_needs_a_base_url(tmp_path: Path) -> None:
    env = load_environment(write_env(tmp_path, 'name = "Stage"\n'), environ={})
    with pytest.raises(ConfigError) as info:
        env.require("matrix", frozenset({"DR-SMOKE"}))
    assert str(info.value) == (
        f"{env.source}: [service] base_url: required: the public address of the service"
    )


def test_config_lab_must_not_set_base_url(tmp_path: Path) -> None:
    path = write_env(tmp_path, 'name = "Lab"\nkind = "lab"\n[service]\nbase_url = "http://127.0.0.1:8080"\n')
    error = config_error(path)
    assert error.key == "[service] base_url"
    assert error.expected == (
        'must be left out when kind = "lab": the embedded Lab chooses its own addresses'
    )


def test_config_with_lab_endpoints_fills_the_lab_addresses(tmp_path: Path) -> None:
    env = load_environment(write_env(tmp_path, 'name = "Lab"\nkind = "lab"\n'), environ={})
    assert env.is_lab
    filled = env.with_lab_endpoints(
        "http://127.0.0.1:5001",
        {"blue": "http://127.0.0.1:5002", "green": "http://127.0.0.1:5003"},
        "http://127.0.0.1:5004/hook",
        tmp_path / "offline",
    )
    assert filled.service.base_url == "http://127.0.0.1:5001"
    assert (filled.slots.blue, filled.slots.green) == ("http://127.0.0.1:5002", "http://127.0.0.1:5003")
    assert filled.notify.webhook_url == "http://127.0.0.1:5004/hook"
    assert filled.packages.dir == str(tmp_path / "offline")
    assert filled.service.health_path == "/health"
    assert env.service.base_url == ""  # the original is unchanged


@pytest.mark.parametrize(
    ("snippet", "key", "expected"),
    [
        ('[monitor]\ninterval_s = "5"', "[monitor] interval_s", "expected a number, got a string '5'"),
        ("[service]\ntimeout_s = true", "[service] timeout_s", "expected a number, got a boolean True"),
        ("[service]\nretries = true", "[service] retries", "expected a whole number, got a boolean True"),
        ("[service]\nretries = 1.5", "[service] retries", "expected a whole number, got a number 1.5"),
        (
            '[approval]\nrequired = "yes"',
            "[approval] required",
            "expected a boolean (true or false), got a string 'yes'",
        ),
        ("[monitor]\nmax_error_rate = 2", "[monitor] max_error_rate", "expected a number <= 1, got 2.0"),
        ("[monitor]\ninterval_s = 0.01", "[monitor] interval_s", "expected a number >= 0.05, got 0.01"),
        ("[notify]\nretries = -1", "[notify] retries", "expected a number >= 0, got -1"),
        ('[axe]\npages = ["/", 3]', "[axe] pages[1]", "expected a string, got a whole number 3"),
        ('[axe]\npages = "/"', "[axe] pages", "expected a list of strings, got a string"),
        (
            '[axe]\nfail_on = ["critical", "fatal"]',
            "[axe] fail_on[1]",
            "expected one of 'critical', 'serious', 'moderate', 'minor', got 'fatal'",
        ),
        (
            '[notify]\nformat = "email"',
            "[notify] format",
            "expected one of 'teams', 'slack', 'generic', got 'email'",
        ),
        (
            '[drivers.command]\nstop_site = "Stop-Site.ps1"',
            "[drivers.command] stop_site",
            "expected a list of strings, got a string",
        ),
        (
            '[service]\nurl = "https://x.corp.example"',
            "[service] url",
            "unknown key (known: base_url, health_path, swagger_path, kerberos_path, timeout_s, retries, "
            "ca_file)",
        ),
        ('service = "https://x.corp.example"', "service", "expected a table [service], got a string"),
        ('kind = "prod"', "kind", 'expected "lab" or "remote", got "prod"'),
        (
            '[slots]\nblue = "ftp://blue.corp.example"',
            "[slots] blue",
            "expected an http(s) URL with a host, got 'ftp://blue.corp.example'",
        ),
    ],
)
def test_config_errors_name_the_key_and_what_was_expected(
    tmp_path: Path, snippet: str, key: str, expected: str
) -> None:
    path = write_env(tmp_path, f'name = "Stage"\n{snippet}\n')
    error = config_error(path)
    assert (error.source, error.key, error.expected) == (str(path), key, expected)
    assert str(error) == f"{path}: {key}: {expected}"


def test_config_missing_name(tmp_path: Path) -> None:
    error = config_error(write_env(tmp_path, 'kind = "remote"\n'))
    assert str(error) == f"{tmp_path / 'Stage.toml'}: name: required: expected a string"


def test_config_bad_url_error_does_not_show_the_secret_in_it(tmp_path: Path) -> None:
    # The scheme is forgotten around a ${VAR}: the error must still not print the token.
    path = write_env(tmp_path, 'name = "Stage"\n[notify]\nwebhook_url = "hooks.example/${MCMS_TOKEN}"\n')
    error = config_error(path, {"MCMS_TOKEN": "tok-8f3a"})
    assert error.key == "[notify] webhook_url"
    assert error.expected == "expected an http(s) URL with a host, got 'hooks.example/***'"
    assert "tok-8f3a" not in str(error)
    whole = write_env(tmp_path, 'name = "Stage"\n[notify]\nwebhook_url = "${MCMS_URL}"\n', "Whole.toml")
    error = config_error(whole, {"MCMS_URL": "hooks.example/tok-8f3a"})
    assert error.expected == "expected an http(s) URL with a host, got ${...}"


def test_config_invalid_toml(tmp_path: Path) -> None:
    error = config_error(write_env(tmp_path, 'name = "Stage\n'))
    assert error.key == ""
    assert error.expected.startswith("not valid TOML: ")
    assert str(error).startswith(f"{tmp_path / 'Stage.toml'}: not valid TOML: ")


def test_config_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    reason = os.strerror(errno.EACCES if sys.platform == "win32" else errno.EISDIR)  # reading a directory
    error = config_error(tmp_path)
    assert error.key == ""
    assert str(error) == f"{tmp_path}: cannot read the environment file ({reason})"


# -- drivers/probe.py ------------------------------------------------------------------------------


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


# -- drivers/notify.py -----------------------------------------------------------------------------

FACTS = {"from": "1.1.0", "to": "1.0.0", "operator": "jdoe"}


def outbox_lines(outbox: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in outbox.read_text(encoding="utf-8").splitlines()]


def notifier(url: str, outbox: Path, fmt: str = "generic", retries: int = 2, **kw: Any) -> Notifier:
    return Notifier(url, fmt, outbox, timeout_s=2.0, retries=retries, backoff_s=0.01, **kw)


@pytest.mark.parametrize("fmt", ["generic", "teams", "slack"])
def test_notify_posts_the_body_of_each_format(stub: Stub, tmp_path: Path, fmt: str) -> None:
    stub.route("/hook", Reply(200, b"1"))
    delivery = notifier(f"{stub.url}/hook", tmp_path / "notifications.jsonl", fmt).send(
        "RolledBack", "InternalProd", "rolled back to 1.0.0", FACTS
    )
    assert (delivery.delivery, delivery.attempts, delivery.http_status) == ("delivered", 1, 200)
    [seen] = stub.requests
    assert (seen.method, seen.path, seen.headers["content-type"]) == ("POST", "/hook", "application/json")
    body = json.loads(seen.body)
    if fmt == "generic":
        assert body == {
            "source": "mcms-dr-runbook",
            "id": delivery.id,
            "event_type": "RolledBack",
            "environment": "InternalProd",
            "summary": "rolled back to 1.0.0",
            "facts": FACTS,
            "created": body["created"],
        }
        assert datetime.fromisoformat(body["created"]).tzinfo == UTC
    elif fmt == "teams":
        assert body == {
            "@type": "MessageCard",
            "@context": "http://schema.org/extensions",
            "themeColor": "D83B01",
            "summary": "rolled back to 1.0.0",
            "title": "MCMS RolledBack: InternalProd",
            "sections": [
                {
                    "activityTitle": "rolled back to 1.0.0",
                    "facts": [
                        {"name": "from", "value": "1.1.0"},
                        {"name": "to", "value": "1.0.0"},
                        {"name": "operator", "value": "jdoe"},
                    ],
                }
            ],
        }
    else:
        assert body == {
            "text": "MCMS RolledBack (InternalProd): rolled back to 1.0.0\n"
            "*from*: 1.1.0\n*to*: 1.0.0\n*operator*: jdoe"
        }


@pytest.mark.parametrize(
    ("event_type", "colour"),
    [("RolledBack", "D83B01"), ("Deployed", "107C10"), ("Approved", "0078D4"), ("Alert", "A4262C")],
)
def test_notify_teams_colour_per_event(stub: Stub, tmp_path: Path, event_type: str, colour: str) -> None:
    stub.route("/hook", Reply(200))
    notifier(f"{stub.url}/hook", tmp_path / "o.jsonl", "teams").send(event_type, "Prod", "s", {})
    assert json.loads(stub.requests[0].body)["themeColor"] == colour


def test_notify_outbox_queues_before_delivery_and_records_it_after(stub: Stub, tmp_path: Path) -> None:
    stub.route("/hook", Reply(200))
    outbox = tmp_path / "artifacts" / "notifications.jsonl"  # the parent is created on first use
    note = notifier(f"{stub.url}/hook", outbox)
    delivery = note.send("Deployed", "Stage", "1.0.0 serves again", {"version": "1.0.0", "attempt": 1})
    queued, delivered = outbox_lines(outbox)
    assert queued == {
        "state": "queued",
        "target": f"{stub.url}/…",
        "id": delivery.id,
        "event_type": "Deployed",
        "environment": "Stage",
        "summary": "1.0.0 serves again",
        "facts": {"version": "1.0.0", "attempt": "1"},
        "created": queued["created"],
    }
    assert delivered == {
        "state": "delivered",
        "id": delivery.id,
        "event_type": "Deployed",
        "delivery": "delivered",
        "attempts": 1,
        "http_status": 200,
        "error": None,
        "duration_s": delivery.duration_s,
        "target": f"{stub.url}/…",
    }
    assert delivery.delivered
    # A second notification appends; nothing is rewritten.
    note.send("Alert", "Stage", "second", {})
    assert [line["state"] for line in outbox_lines(outbox)] == ["queued", "delivered", "queued", "delivered"]


def test_notify_server_down_fails_after_all_retries_without_raising(closed_url: str, tmp_path: Path) -> None:
    outbox = tmp_path / "notifications.jsonl"
    delivery = notifier(f"{closed_url}/hook", outbox, retries=2).send("RolledBack", "Prod", "s", FACTS)
    assert (delivery.delivery, delivery.attempts, delivery.http_status) == ("failed", 3, None)
    assert not delivery.delivered
    assert delivery.error is not None
    assert "refused" in delivery.error.lower()
    queued, failed = outbox_lines(outbox)
    assert (queued["state"], queued["id"], queued["summary"]) == ("queued", delivery.id, "s")
    assert (failed["state"], failed["attempts"], failed["error"]) == ("failed", 3, delivery.error)


def test_notify_retries_a_server_error_until_delivered(stub: Stub, tmp_path: Path) -> None:
    stub.route("/hook", Reply(500, b"busy"), Reply(200, b"1"))
    outbox = tmp_path / "notifications.jsonl"
    delivery = notifier(f"{stub.url}/hook", outbox, retries=3).send("Deployed", "Prod", "s", {})
    assert (delivery.delivery, delivery.attempts, delivery.http_status, delivery.error) == (
        "delivered",
        2,
        200,
        None,
    )
    assert stub.paths() == ["/hook", "/hook"]
    assert stub.requests[0].body == stub.requests[1].body  # the same message, resent
    assert [line["state"] for line in outbox_lines(outbox)] == ["queued", "delivered"]


@pytest.mark.parametrize(("status", "attempts", "delivery"), [(400, 1, "failed"), (429, 2, "delivered")])
def test_notify_client_error_is_not_retried_but_429_is(
    stub: Stub, tmp_path: Path, status: int, attempts: int, delivery: str
) -> None:
    stub.route("/hook", Reply(status, b"no"), Reply(200, b"1"))
    outbox = tmp_path / "notifications.jsonl"
    result = notifier(f"{stub.url}/hook", outbox, retries=3).send("Deployed", "Prod", "s", {})
    assert (result.delivery, result.attempts) == (delivery, attempts)
    assert stub.paths() == ["/hook"] * attempts
    if delivery == "failed":
        assert (result.http_status, result.error) == (400, "HTTP 400")
    assert [line["state"] for line in outbox_lines(outbox)] == ["queued", delivery]


def test_notify_target_never_shows_the_webhook_path(stub: Stub, tmp_path: Path) -> None:
    token = "webhookb2-T0KEN-5e1f"
    path = f"/webhookb2/{token}/IncomingWebhook/abc"
    stub.route(path, Reply(200))
    outbox = tmp_path / "notifications.jsonl"
    note = notifier(f"{stub.url}{path}", outbox)
    assert note.target == f"{stub.url}/…"
    delivery = note.send("RolledBack", "Prod", "s", FACTS)
    assert delivery.target == f"{stub.url}/…"
    assert stub.paths() == [path]  # it was sent to the full URL
    text = outbox.read_text(encoding="utf-8")
    assert len(text.splitlines()) == 2
    assert token not in text
    assert "IncomingWebhook" not in text


def test_notify_redacts_secrets_in_summary_and_facts(stub: Stub, tmp_path: Path) -> None:
    env = Environment(
        name="Prod", kind="remote", source=tmp_path / "Prod.toml", secrets=frozenset({"s3cr3t"})
    )
    stub.route("/hook", Reply(200))
    outbox = tmp_path / "notifications.jsonl"
    note = notifier(f"{stub.url}/hook", outbox, redact=env.redact)
    note.send("Alert", "Prod", "login with s3cr3t failed", {"password": "s3cr3t", "tries": 3})
    body = json.loads(stub.requests[0].body)
    assert body["summary"] == "login with *** failed"
    assert body["facts"] == {"password": "***", "tries": "3"}
    queued = outbox_lines(outbox)[0]
    assert (queued["summary"], queued["facts"]) == (
        "login with *** failed",
        {"password": "***", "tries": "3"},
    )
    assert "s3cr3t" not in outbox.read_text(encoding="utf-8")


def test_notify_unknown_event_type_raises_and_sends_nothing(stub: Stub, tmp_path: Path) -> None:
    outbox = tmp_path / "notifications.jsonl"
    with pytest.raises(ValueError, match=r"^unknown notification event type") as info:
        notifier(f"{stub.url}/hook", outbox).send("Exploded", "Prod", "s", {})
    assert str(info.value) == (
        'unknown notification event type "Exploded" (known: RolledBack, Deployed, Approved, Alert)'
    )
    assert not outbox.exists()
    assert stub.requests == []


def test_notify_without_a_webhook_records_a_failed_delivery(tmp_path: Path) -> None:
    outbox = tmp_path / "notifications.jsonl"
    note = notifier("", outbox)
    assert note.target == "(not configured)"
    assert note.reachable() == (-1, 0.0, "no webhook_url configured")
    delivery = note.send("Deployed", "Prod", "s", {})
    assert (delivery.delivery, delivery.attempts, delivery.http_status, delivery.error) == (
        "failed",
        0,
        None,
        "no webhook_url configured",
    )
    assert [(line["state"], line["target"]) for line in outbox_lines(outbox)] == [
        ("queued", "(not configured)"),
        ("failed", "(not configured)"),
    ]


@pytest.mark.parametrize(("status", "detail"), [(404, "HTTP 404"), (200, "HTTP 200"), (405, "HTTP 405")])
def test_notify_reachable_counts_any_http_answer(
    stub: Stub, tmp_path: Path, status: int, detail: str
) -> None:
    if status != 404:
        stub.route("/", Reply(status))
    reached, latency_ms, said = notifier(f"{stub.url}/hook/T0KEN", tmp_path / "o.jsonl").reachable()
    assert (reached, said) == (status, detail)
    assert latency_ms > 0
    [seen] = stub.requests
    assert (seen.method, seen.path) == ("GET", "/")  # the root, never the webhook itself
    assert not (tmp_path / "o.jsonl").exists()


def test_notify_reachable_closed_port(closed_url: str, tmp_path: Path) -> None:
    status, latency_ms, detail = notifier(f"{closed_url}/hook", tmp_path / "o.jsonl").reachable()
    assert status == -1
    assert latency_ms >= 0
    assert "refused" in detail.lower()


def test_notify_unknown_format_lists_the_known_ones(tmp_path: Path, closed_url: str) -> None:
    with pytest.raises(DriverError) as info:
        Notifier(f"{closed_url}/hook", "email", tmp_path / "o.jsonl")
    assert str(info.value) == 'unknown notify format "email" (known: generic, slack, teams)'


# -- drivers/packages.py ---------------------------------------------------------------------------


def make_package(directory: Path, version: str, content: bytes | None = None, sha: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"MCMS_Setup_{version}.zip"
    data = content if content is not None else f"package {version}".encode()
    path.write_bytes(data)
    if sha:
        digest = hashlib.sha256(data).hexdigest()
        (directory / f"{path.name}.sha256").write_text(f"{digest}  {path.name}\n", encoding="utf-8")
    return path


def test_packages_sorted_by_numeric_version_ignoring_other_files(tmp_path: Path) -> None:
    offline = tmp_path / "offline"
    for version in ("1.9.0", "1.10.0", "1.2", "0.9.12"):
        make_package(offline, version)
    (offline / "notes.txt").write_text("x", encoding="utf-8")
    (offline / "MCMS_Setup_beta.zip").write_bytes(b"x")
    (offline / "MCMS_Setup_2.0.0.tar.gz").write_bytes(b"x")
    (offline / "Other_Setup_9.0.0.zip").write_bytes(b"x")
    (offline / "MCMS_Setup_9.0.0.zip").mkdir()  # a directory, not a package
    found = find_packages(offline)
    assert found.directory == offline
    assert [p.version for p in found.packages] == ["1.10.0", "1.9.0", "1.2", "0.9.12"]
    assert found.latest == Package("1.10.0", offline / "MCMS_Setup_1.10.0.zip")
    assert found.previous_stable() == Package("1.9.0", offline / "MCMS_Setup_1.9.0.zip")
    assert found.previous_stable("0.9.12").path == offline / "MCMS_Setup_0.9.12.zip"
    assert found.latest.key == (1, 10, 0)
    assert version_key("1.10.0") > version_key("1.9.0")


def test_packages_pinned_previous_stable(tmp_path: Path) -> None:
    offline = tmp_path / "offline"
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        make_package(offline, version)
    found = find_packages(offline)
    assert found.previous_stable("1.0.0").version == "1.0.0"
    with pytest.raises(PackageError) as info:
        found.previous_stable("0.9.0")
    assert str(info.value) == (
        f"{offline}: previous stable 0.9.0 is pinned in [packages] previous_stable, "
        "but MCMS_Setup_0.9.0.zip is not there (have: 1.2.0, 1.1.0, 1.0.0)"
    )


def test_packages_need_two_for_a_rollback(tmp_path: Path) -> None:
    offline = tmp_path / "offline"
    make_package(offline, "1.1.0")
    found = find_packages(offline)
    assert found.latest.version == "1.1.0"
    with pytest.raises(PackageError) as info:
        found.previous_stable()
    assert str(info.value) == (
        f"{offline}: a rollback needs a previous stable package below the latest 1.1.0; "
        "found only 1 package(s)"
    )


def test_packages_empty_directory(tmp_path: Path) -> None:
    found = find_packages(tmp_path)
    assert found.packages == ()
    with pytest.raises(PackageError) as info:
        _ = found.latest
    assert str(info.value) == f"{tmp_path}: no MCMS_Setup_<version>.zip packages"
    with pytest.raises(PackageError) as info:
        found.previous_stable()
    assert str(info.value) == f"{tmp_path}: no MCMS_Setup_<version>.zip packages"
    with pytest.raises(PackageError) as info:
        found.previous_stable("1.0.0")
    assert str(info.value).endswith("but MCMS_Setup_1.0.0.zip is not there (have: none)")


def test_packages_directory_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(PackageError) as info:
        find_packages(missing)
    assert str(info.value) == f"{missing}: the offline package directory does not exist"
    assert isinstance(info.value, DriverError)


def test_package_verify_ok(tmp_path: Path) -> None:
    path = make_package(tmp_path, "1.0.0", b"zip bytes")
    assert Package("1.0.0", path).verify() == hashlib.sha256(b"zip bytes").hexdigest()
    # A bare upper-case digest (Get-FileHash style) is accepted too.
    (tmp_path / "MCMS_Setup_1.0.0.zip.sha256").write_text(
        hashlib.sha256(b"zip bytes").hexdigest().upper(), encoding="utf-8"
    )
    assert Package("1.0.0", path).verify() == hashlib.sha256(b"zip bytes").hexdigest()


def test_package_verify_mismatch_names_both_digests(tmp_path: Path) -> None:
    path = make_package(tmp_path, "1.0.0", b"original")
    path.write_bytes(b"tampered")
    actual, expected = hashlib.sha256(b"tampered").hexdigest(), hashlib.sha256(b"original").hexdigest()
    with pytest.raises(PackageError) as info:
        Package("1.0.0", path).verify()
    assert str(info.value) == (
        f"MCMS_Setup_1.0.0.zip: sha256 mismatch: the file hashes to {actual}, "
        f"MCMS_Setup_1.0.0.zip.sha256 says {expected}"
    )


def test_package_verify_without_sha256_file(tmp_path: Path) -> None:
    path = make_package(tmp_path, "1.0.0", sha=False)
    with pytest.raises(PackageError) as info:
        Package("1.0.0", path).verify()
    assert str(info.value) == (
        "MCMS_Setup_1.0.0.zip: no MCMS_Setup_1.0.0.zip.sha256 beside it, so it cannot be verified"
    )


@pytest.mark.parametrize(
    ("text", "shown"),
    [("not-a-digest  MCMS_Setup_1.0.0.zip\n", "not-a-digest  MCMS_Setup_1.0.0.zip"), ("", "")],
)
def test_package_verify_malformed_sha256_file(tmp_path: Path, text: str, shown: str) -> None:
    path = make_package(tmp_path, "1.0.0")
    path.with_name(path.name + ".sha256").write_text(text, encoding="utf-8")
    with pytest.raises(PackageError) as info:
        Package("1.0.0", path).verify()
    assert (
        str(info.value)
        == f"MCMS_Setup_1.0.0.zip.sha256: expected a sha256 hex digest, found {json.dumps(shown)}"
    )


# -- drivers/deploy.py: the command backend --------------------------------------------------------

RECORDER = """\
import json
import sys

with open(sys.argv[1], "a", encoding="utf-8") as log:
    log.write(json.dumps(sys.argv[2:]) + "\\n")
"""

FAILER = """\
import sys

print("deploying")
sys.stderr.write("step 1 ok\\nstep 2 ok\\nAccess denied: C:/inetpub/mcms\\nDeploy-CamService failed\\n")
sys.exit(3)
"""

VERSION = """\
import json
import sys

with open(sys.argv[1], "a", encoding="utf-8") as log:
    log.write(json.dumps(sys.argv[2:]) + "\\n")
print("reading C:/inetpub/mcms/version.txt")
print("1.0.0")
"""


@dataclass
class Scripts:
    """Small Python scripts in tmp_path that the argv templates run; they log their argv as JSON lines."""

    dir: Path

    def __post_init__(self) -> None:
        for name, text in (("recorder", RECORDER), ("failer", FAILER), ("version", VERSION)):
            (self.dir / f"{name}.py").write_text(text, encoding="utf-8")
        (self.dir / "sleeper.py").write_text("import time\n\ntime.sleep(5)\n", encoding="utf-8")

    @property
    def log(self) -> Path:
        return self.dir / "calls.jsonl"

    def argv(self, script: str, *args: str) -> list[str]:
        python = Path(sys.executable).as_posix()
        return [python, (self.dir / f"{script}.py").as_posix(), self.log.as_posix(), *args]

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def scripts(tmp_path: Path) -> Scripts:
    directory = tmp_path / "scripts"
    directory.mkdir()
    return Scripts(directory)


def command_env(
    tmp_path: Path, base_url: str, commands: Mapping[str, list[str]], start_timeout_s: float = 5.0
) -> Environment:
    lines = [
        'name = "Stage"',
        'kind = "remote"',
        "[service]",
        f'base_url = "{base_url}"',
        "[drivers]",
        'deploy = "command"',
        f"start_timeout_s = {start_timeout_s}",
        "[drivers.command]",
        # A JSON array of strings is a TOML array too.
        *(f"{verb} = {json.dumps(argv)}" for verb, argv in commands.items()),
    ]
    return load_environment(write_env(tmp_path, "\n".join(lines) + "\n"), environ={})


def command_driver(env: Environment) -> CommandDeployDriver:
    driver = deploy_driver("command", env, Prober(["127.0.0.1"], timeout_s=1.0, retries=0), {})
    assert isinstance(driver, CommandDeployDriver)
    return driver


def standard_commands(scripts: Scripts) -> dict[str, list[str]]:
    return {
        "stop_site": scripts.argv("recorder", "stop_site", "{env}", "{slot}"),
        "recycle_pool": scripts.argv("recorder", "recycle_pool", "{env}", "{slot}"),
        "deploy": scripts.argv("recorder", "deploy", "--env={env}", "{slot}", "{version}", "{package}"),
        "start_site": scripts.argv("recorder", "start_site", "{env}", "{slot}", "{version}"),
    }


def test_command_deploy_fills_the_placeholders(tmp_path: Path, scripts: Scripts, closed_url: str) -> None:
    env = command_env(tmp_path, closed_url, standard_commands(scripts))
    package = make_package(tmp_path / "offline", "1.0.0")
    action = command_driver(env).deploy(Package("1.0.0", package), "blue")
    assert scripts.calls() == [["deploy", "--env=Stage", "blue", "1.0.0", str(package)]]
    assert (action.name, action.target, action.result) == ("deploy", "blue", "ok")
    assert action.detail == {
        "argv": [*scripts.argv("recorder"), "deploy", "--env=Stage", "blue", "1.0.0", str(package)],
        "exit_code": 0,
        "output_tail": "",
        "stdout": "",
    }
    assert action.duration_s > 0


def test_command_stop_site_runs_stop_then_recycle(tmp_path: Path, scripts: Scripts, closed_url: str) -> None:
    env = command_env(tmp_path, closed_url, standard_commands(scripts))
    steps = command_driver(env).stop_site("active")
    assert [(s.name, s.target, s.result, s.detail["exit_code"]) for s in steps] == [
        ("stop_site", "active", "ok", 0),
        ("recycle_pool", "active", "ok", 0),
    ]
    assert scripts.calls() == [["stop_site", "Stage", "active"], ["recycle_pool", "Stage", "active"]]


def test_command_stop_site_without_recycle_pool(tmp_path: Path, scripts: Scripts, closed_url: str) -> None:
    commands = standard_commands(scripts)
    del commands["recycle_pool"]
    steps = command_driver(command_env(tmp_path, closed_url, commands)).stop_site("green")
    assert [s.name for s in steps] == ["stop_site"]
    assert scripts.calls() == [["stop_site", "Stage", "green"]]


def test_command_nonzero_exit_raises_with_code_and_stderr_tail(
    tmp_path: Path, scripts: Scripts, closed_url: str
) -> None:
    commands = {**standard_commands(scripts), "deploy": scripts.argv("failer", "{package}")}
    driver = command_driver(command_env(tmp_path, closed_url, commands))
    with pytest.raises(DriverError) as info:
        driver.deploy(Package("1.0.0", tmp_path / "MCMS_Setup_1.0.0.zip"), "active")
    assert re.fullmatch(
        r"\[drivers\.command\] deploy exit code 3 after [0-9.]+ s: "
        r"step 2 ok \| Access denied: C:/inetpub/mcms \| Deploy-CamService failed",
        str(info.value),
    ), str(info.value)


def test_command_missing_executable(tmp_path: Path, scripts: Scripts, closed_url: str) -> None:
    commands = {**standard_commands(scripts), "stop_site": ["mcms-no-such-tool-4242", "{slot}"]}
    driver = command_driver(command_env(tmp_path, closed_url, commands))
    with pytest.raises(DriverError) as info:
        driver.stop_site("active")
    assert str(info.value).startswith(
        "[drivers.command] stop_site: mcms-no-such-tool-4242 not found on PATH (searched PATH: "
    ), str(info.value)
    assert scripts.calls() == []  # recycle_pool did not run after the failed stop


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX execute permission")
def test_command_file_that_cannot_be_executed_is_a_driver_error(
    tmp_path: Path, scripts: Scripts, closed_url: str
) -> None:
    script = tmp_path / "Stop-Site.sh"
    script.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    script.chmod(0o644)  # forgot chmod +x
    commands = {**standard_commands(scripts), "stop_site": [script.as_posix(), "{slot}"]}
    driver = command_driver(command_env(tmp_path, closed_url, commands))
    with pytest.raises(DriverError) as info:
        driver.stop_site("active")
    assert str(info.value).startswith(
        f"[drivers.command] stop_site: {script.as_posix()} is not executable: give it execute permission"
    ), str(info.value)


def test_command_bad_placeholder_names_the_known_ones(
    tmp_path: Path, scripts: Scripts, closed_url: str
) -> None:
    commands = {**standard_commands(scripts), "deploy": scripts.argv("recorder", "deploy", "{nope}")}
    env = command_env(tmp_path, closed_url, commands)
    with pytest.raises(DriverError) as info:
        command_driver(env).deploy(Package("1.0.0", tmp_path / "p.zip"), "active")
    assert str(info.value) == (
        "[drivers.command] deploy[4]: unknown placeholder {nope} (allowed here: {env} {slot} {version} {package})"
    )
    assert scripts.calls() == []


def test_command_verb_without_template(tmp_path: Path, scripts: Scripts, closed_url: str) -> None:
    env = command_env(tmp_path, closed_url, standard_commands(scripts))
    with pytest.raises(DriverError) as info:
        command_driver(env).run("current_version", "active")
    assert str(info.value) == f"{env.source}: [drivers.command] current_version: no argv template configured"


def test_command_still_running_after_the_timeout(tmp_path: Path, scripts: Scripts, closed_url: str) -> None:
    commands = {**standard_commands(scripts), "stop_site": scripts.argv("sleeper")}
    env = command_env(tmp_path, closed_url, commands)
    # The timeout comes from the environment file: [drivers.timeouts] stop_site.
    env = dataclasses.replace(env, drivers=dataclasses.replace(env.drivers, timeouts={"stop_site": 0.5}))
    driver = command_driver(env)
    start = time.perf_counter()
    with pytest.raises(DriverError) as info:
        driver.stop_site("active")
    assert str(info.value).startswith(
        "[drivers.command] stop_site timed out after 0.5 s (process tree killed)"
    )
    assert time.perf_counter() - start < 4


def test_command_current_version_from_the_template(tmp_path: Path, scripts: Scripts, stub: Stub) -> None:
    commands = {
        **standard_commands(scripts),
        "current_version": scripts.argv("version", "current_version", "{slot}"),
    }
    stub.route("/health", json_reply(200, {"version": "9.9.9"}))
    driver = command_driver(command_env(tmp_path, stub.url, commands))
    assert driver.current_version("blue") == "1.0.0"
    assert scripts.calls() == [["current_version", "blue"]]
    assert stub.requests == []  # the template answered; the health endpoint was not asked


def test_command_current_version_from_health_without_template(
    tmp_path: Path, scripts: Scripts, stub: Stub, closed_url: str
) -> None:
    stub.route("/health", json_reply(200, {"status": "Healthy", "version": "1.1.0"}))
    driver = command_driver(command_env(tmp_path, stub.url, standard_commands(scripts)))
    assert driver.current_version("active") == "1.1.0"
    assert stub.paths() == ["/health"]
    assert scripts.calls() == []
    down = command_driver(command_env(tmp_path, closed_url, standard_commands(scripts)))
    assert down.current_version("active") is None


def test_command_start_site_waits_until_healthy_on_the_version(
    tmp_path: Path, scripts: Scripts, stub: Stub
) -> None:
    healthy: list[int] = []  # the request numbers answered 200

    def health(n: int) -> Reply:
        if n == 0 or time.monotonic() - stub.first_at("/health") < 0.3:
            return json_reply(503, {"status": "Starting"})
        healthy.append(n)
        return json_reply(200, {"status": "Healthy", "version": "1.0.0"})

    stub.route_fn("/health", health)
    limit = 5.0
    driver = command_driver(
        command_env(tmp_path, stub.url, standard_commands(scripts), start_timeout_s=limit)
    )
    action = driver.start_site("active", "1.0.0")
    assert isinstance(action, ActionResult)
    assert (action.name, action.target, action.result) == ("start_site", "active", "ok")
    assert set(action.detail) == {"version", "healthy_after_s"}
    assert action.detail["version"] == "1.0.0"
    # It waited for health (0.3 s of 503s) and stopped at the first healthy answer: that answer was the last
    # request. The limit only catches a wait that ran into [drivers] start_timeout_s.
    assert 0.3 <= action.detail["healthy_after_s"] < limit
    paths = stub.paths()
    assert healthy == [len(paths) - 1]
    assert action.duration_s >= action.detail["healthy_after_s"]
    assert scripts.calls() == [["start_site", "Stage", "active", "1.0.0"]]
    assert len(paths) >= 3
    assert set(paths) == {"/health"}


@pytest.mark.parametrize(
    ("reply", "last"),
    [
        (json_reply(503, {"status": "Starting"}), "HTTP 503, version None"),
        (json_reply(200, {"status": "Healthy", "version": "1.1.0"}), "HTTP 200, version 1.1.0"),
    ],
)
def test_command_start_site_gives_up_after_start_timeout(
    tmp_path: Path, scripts: Scripts, stub: Stub, reply: Reply, last: str
) -> None:
    stub.route("/health", reply)
    driver = command_driver(command_env(tmp_path, stub.url, standard_commands(scripts), start_timeout_s=0.5))
    start = time.perf_counter()
    with pytest.raises(DriverError) as info:
        driver.start_site("active", "1.0.0")
    elapsed = time.perf_counter() - start
    assert str(info.value) == (
        f"active node not healthy on 1.0.0 within 0.5 s ({stub.url}/health: last answer {last})"
    )
    assert 0.5 <= elapsed < 10.0  # bounded by start_timeout_s; the ceiling only catches a hang
    assert scripts.calls() == [["start_site", "Stage", "active", "1.0.0"]]


def test_command_start_site_refused_until_timeout(tmp_path: Path, scripts: Scripts, closed_url: str) -> None:
    driver = command_driver(
        command_env(tmp_path, closed_url, standard_commands(scripts), start_timeout_s=0.5)
    )
    with pytest.raises(DriverError) as info:
        driver.start_site("active", "1.0.0")
    assert str(info.value) == (
        f"active node not healthy on 1.0.0 within 0.5 s ({closed_url}/health: last answer connection refused)"
    )


def test_command_slot_node_needs_its_slot_url(tmp_path: Path, scripts: Scripts, closed_url: str) -> None:
    env = command_env(tmp_path, closed_url, standard_commands(scripts))
    with pytest.raises(DriverError) as info:
        command_driver(env).served_version("green")
    assert str(info.value) == f"{env.source}: [slots] green is not set; cannot reach the green node"


# -- drivers/base.py -------------------------------------------------------------------------------


def test_registry_unknown_name_lists_the_known_ones(tmp_path: Path) -> None:
    assert DEPLOY_DRIVERS.names() == ["command", "lab"]
    with pytest.raises(DriverError) as info:
        DEPLOY_DRIVERS.get("ansible")
    assert str(info.value) == 'unknown deploy driver "ansible" (known: command, lab)'
    env = load_environment(write_env(tmp_path, 'name = "Stage"\n'), environ={})
    with pytest.raises(DriverError) as info:
        deploy_driver("ansible", env, Prober([]), {})
    assert str(info.value) == 'unknown deploy driver "ansible" (known: command, lab)'

    widgets: Registry[object] = Registry("widget driver")
    assert widgets.names() == []
    with pytest.raises(DriverError) as info:
        widgets.get("x")
    assert str(info.value) == 'unknown widget driver "x" (known: )'

    class Plain:
        pass

    assert widgets.register("plain")(Plain) is Plain
    assert widgets.get("plain") is Plain
    assert widgets.names() == ["plain"]


def test_url_at_keeps_a_path_prefix_of_the_base() -> None:
    from drivers.probe import url_at

    assert url_at("https://host/mcms", "/health") == "https://host/mcms/health"
    assert url_at("https://host/mcms/", "health") == "https://host/mcms/health"
    assert (
        url_at("http://127.0.0.1:8080", "/swagger/index.html") == "http://127.0.0.1:8080/swagger/index.html"
    )


def test_notify_target_never_shows_credentials_or_path(tmp_path: Path) -> None:
    notifier = Notifier(
        "https://svc:hunter2@hooks.corp.example:8443/webhook/tok3n", "generic", tmp_path / "o.jsonl"
    )
    assert notifier.target == "https://hooks.corp.example:8443/…"


# -- the live slot is never acted on (drivers.deploy.DeployDriver.refuse_live) ------------------------------


def test_deploy_verbs_refuse_the_live_slot(tmp_path: Path, scripts: Scripts, closed_url: str) -> None:
    driver = command_driver(command_env(tmp_path, closed_url, standard_commands(scripts)))
    driver.live_slot = lambda: "green"
    package = Package("1.1.0", tmp_path / "MCMS_Setup_1.1.0.zip")
    with pytest.raises(DriverError, match=r"^refusing to stop green: it is the live slot"):
        driver.stop_site("green")
    with pytest.raises(DriverError, match=r"^refusing to deploy 1\.1\.0 onto green: it is the live slot"):
        driver.deploy(package, "green")
    assert scripts.calls() == [], "no script ran against the live slot"
    driver.stop_site("blue")  # the idle slot may be stopped
    assert scripts.calls() == [["stop_site", "Stage", "blue"], ["recycle_pool", "Stage", "blue"]]


def test_deploy_verbs_refuse_when_nobody_can_tell_which_slot_is_live(
    tmp_path: Path, scripts: Scripts, closed_url: str
) -> None:
    driver = command_driver(command_env(tmp_path, closed_url, standard_commands(scripts)))

    def router_down() -> str:
        raise DriverError("[drivers.command] active exit code 1 after 0.1 s: ARR farm unreachable")

    driver.live_slot = router_down
    with pytest.raises(
        DriverError, match=r"^refusing to stop blue: cannot tell which slot is live \(.*ARR farm"
    ):
        driver.stop_site("blue")
    assert scripts.calls() == []


def router_env(tmp_path: Path, closed_url: str, active: str, after_switch: str) -> Environment:
    """A router whose `active` prints `active` until `switch` ran, then `after_switch`."""
    state = tmp_path / "router-state.txt"
    state.write_text(active)
    py = Path(sys.executable).as_posix()
    commands = {
        "active": [py, "-c", f"print(open({str(state)!r}).read())"],
        "switch": [py, "-c", f"open({str(state)!r}, 'w').write({after_switch!r})", "{slot}"],
    }
    env = command_env(tmp_path, closed_url, commands)
    return dataclasses.replace(env, drivers=dataclasses.replace(env.drivers, router="command"))


def test_a_switch_to_the_live_slot_is_an_error(tmp_path: Path, closed_url: str) -> None:
    router = router_driver("command", router_env(tmp_path, closed_url, "green", "green"), {})
    with pytest.raises(DriverError, match=r"^switch to green refused: green is already the live slot"):
        router.switch("green")
    assert (tmp_path / "router-state.txt").read_text() == "green"


def test_a_switch_the_router_does_not_take_is_an_error(tmp_path: Path, closed_url: str) -> None:
    router = router_driver("command", router_env(tmp_path, closed_url, "blue", "blue"), {})
    with pytest.raises(
        DriverError, match=r"^switched traffic from blue to green, but the router now reports blue"
    ):
        router.switch("green")
    ok = router_driver("command", router_env(tmp_path, closed_url, "blue", "green"), {})
    action = ok.switch("green")
    assert (action.detail["from"], action.detail["live_after"]) == ("blue", "green")
