"""RB-2: stop the IIS site and recycle the App Pool (playbook §6.2): the web process, then the worker."""

from __future__ import annotations

import pytest

from drivers.config import Environment
from drivers.probe import stop_verdict, url_at
from fixtures.deploy import SiteControl, driver_step
from fixtures.probe import Probe
from plugins.state import RunbookRun

pytestmark = [pytest.mark.rollback, pytest.mark.phase("RB-2")]


def test_stop_site_and_recycle_app_pool(
    runbook: RunbookRun, site: SiteControl, probe: Probe, environment: Environment
) -> None:
    """Stop the site, recycle its pool, and check that the public address no longer serves: it refuses the
    connection, or only what stands in front of the service (a proxy, HTTP.sys) answers, with 502, 503 or 504."""
    steps = driver_step(lambda: site.stop("active"))
    assert steps, "the deploy driver reported no step for stop_site"
    failed = [s for s in steps if s.result not in ("stopped", "already stopped", "ok")]
    assert not failed, "stop steps did not complete: " + "; ".join(
        f"{s.name} on {s.target}: {s.result}" for s in failed
    )
    after = probe("health", url_at(environment.service.base_url, environment.service.health_path), retries=0)
    verdict = stop_verdict(after)
    assert verdict.stopped, verdict.sentence
    runbook.note(verdict.sentence, url=after.url, status=after.status)
