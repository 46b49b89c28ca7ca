"""RB-2: stop the IIS site and recycle the App Pool (playbook §6.2): the web process, then the worker."""

from __future__ import annotations

import pytest

from drivers.config import Environment
from drivers.probe import url_at
from fixtures.deploy import SiteControl, driver_step
from fixtures.probe import Probe

pytestmark = [pytest.mark.rollback, pytest.mark.phase("RB-2")]


def test_stop_site_and_recycle_app_pool(site: SiteControl, probe: Probe, environment: Environment) -> None:
    """Stop the site, recycle its pool, and check that the public address no longer answers."""
    steps = driver_step(lambda: site.stop("active"))
    assert steps, "the deploy driver reported no step for stop_site"
    failed = [s for s in steps if s.result not in ("stopped", "already stopped", "ok")]
    assert not failed, "stop steps did not complete: " + "; ".join(
        f"{s.name} on {s.target}: {s.result}" for s in failed
    )
    after = probe("health", url_at(environment.service.base_url, environment.service.health_path), retries=0)
    assert after.refused, f"the site still answers after stop_site: HTTP {after.status} at {after.url}"
