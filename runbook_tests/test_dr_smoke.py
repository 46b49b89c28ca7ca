"""DR-SMOKE: the service state right after deploy (playbook §8, run-smoke.ps1): Health 200, Swagger 200, and
the Kerberos endpoint answering 401 + Negotiate. Each probe is recorded with its status and latency."""

from __future__ import annotations

import pytest

from drivers.config import Environment
from drivers.probe import SmokeCheck, smoke_checks, url_at
from fixtures.probe import Probe
from plugins.state import RunbookRun

pytestmark = [
    pytest.mark.rollback,
    pytest.mark.bluegreen,
    pytest.mark.dr_smoke,
    pytest.mark.phase("DR-SMOKE"),
]


def _check(environment: Environment, name: str) -> SmokeCheck:
    return next(c for c in smoke_checks(environment.service) if c.name == name)


def _expect(check: SmokeCheck, probe: Probe, target: str) -> dict[str, object] | None:
    __tracebackhide__ = True
    result = probe(check.name, url_at(target, check.path))
    seen = f"status -1 ({result.error})" if result.refused else f"HTTP {result.status}"
    if not check.passed(result):
        pytest.fail(f"{check.name} {result.url}: expected {check.expectation}, got {seen}", pytrace=False)
    body = result.json()
    return body if isinstance(body, dict) else None


def test_health_answers_200(
    runbook: RunbookRun, probe: Probe, environment: Environment, smoke_target: str
) -> None:
    """Health answers 200 and, when the flow knows which version it deployed, reports that version."""
    body = _expect(_check(environment, "health"), probe, smoke_target)
    if runbook.expected_version is not None:
        served = body.get("version") if body else None
        if served != runbook.expected_version:
            pytest.fail(f"health reports version {served}, expected {runbook.expected_version} after the deploy",
                        pytrace=False)  # fmt: skip


def test_swagger_answers_200(probe: Probe, environment: Environment, smoke_target: str) -> None:
    """Swagger UI answers 200."""
    _expect(_check(environment, "swagger"), probe, smoke_target)


def test_kerberos_endpoint_answers(probe: Probe, environment: Environment, smoke_target: str) -> None:
    """The Kerberos endpoint answers: 401 with WWW-Authenticate: Negotiate when unauthenticated (or 200)."""
    _expect(_check(environment, "kerberos"), probe, smoke_target)
