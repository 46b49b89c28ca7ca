"""DR-E2E: the main user flows still work on the release under test (playbook §8), in a real browser at the
smoke target and through the external regression command when there is one.

Portal flow ([e2e] flows = ["portal"]): the operator logs in, the dashboard shows the served version and a
healthy worker, an item created in the portal appears in the UI and through the API, the worker processes it
and the queue drains, and the operator logs out. A failed step leaves a screenshot and the page source.
Regression command ([e2e] command, like `npm run test:regression`): runs within [e2e] command_timeout_s; its
exit code, output and JUnit results ([e2e] junit) are kept and shown in the report.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from drivers.base import quoted
from drivers.e2e import LoginPage
from drivers.probe import url_at
from fixtures.e2e import PROCESS_TIMEOUT_S, PortalFlow, RegressionOutcome
from fixtures.probe import Probe
from plugins.matrix import e2e_part
from plugins.state import RunbookRun

pytestmark = [
    pytest.mark.rollback,
    pytest.mark.bluegreen,
    pytest.mark.dr_e2e,
    pytest.mark.phase("DR-E2E"),
]


@e2e_part("portal")
def test_operator_logs_in(portal: PortalFlow) -> None:
    """Log in to the portal with the E2E account ([e2e] username / password); the dashboard opens."""
    landed = portal.act("login", portal.sign_in, user=portal.env.e2e.username)
    assert landed == "/dashboard", f"after logging in the portal shows {landed}, not the dashboard"


@e2e_part("portal")
def test_dashboard_shows_served_version_and_worker_status(portal: PortalFlow, runbook: RunbookRun) -> None:
    """The dashboard shows the served version (the one just deployed, when the flow knows it) and a Healthy
    worker."""
    dashboard = portal.portal.dashboard

    def read() -> dict[str, str]:
        portal.sign_in()
        return {"served_version": dashboard.served_version, "worker_status": dashboard.worker_status}

    shown = portal.act("dashboard", read)
    expected = runbook.expected_version
    if expected is not None and shown["served_version"] != expected:
        pytest.fail(f"the dashboard shows version {shown['served_version']}, expected {expected} after the deploy",
                    pytrace=False)  # fmt: skip
    assert shown["served_version"], "the dashboard shows no served version"
    assert shown["worker_status"] == "Healthy", f"the dashboard shows the worker {shown['worker_status']}"


@e2e_part("portal")
def test_operator_creates_an_item(portal: PortalFlow) -> None:
    """Create an item with the portal's form (its anti-forgery token included); the items page lists it."""

    def create() -> dict[str, object]:
        portal.sign_in()
        portal.portal.new_item.open()
        portal.portal.new_item.create(portal.item_name)
        row = portal.portal.items.find(portal.item_name)
        return {"item": portal.item_name, "listed": row is not None, "status": row.status if row else None}

    shown = portal.act("create_item", create)
    assert shown["listed"], f"the items page does not list {quoted(portal.item_name)} after creating it"
    portal.created = True


@e2e_part("portal")
def test_item_is_listed_by_the_api(portal: PortalFlow, probe: Probe) -> None:
    """The new item is there through the API too: GET /api/items lists it."""
    portal.require_item()
    result = probe("api-items", url_at(portal.target, "/api/items"))
    body = result.json()
    assert result.status == 200, f"{result.url}: HTTP {result.status} {result.error or ''}"
    names = [i.get("name") for i in body if isinstance(i, dict)] if isinstance(body, list) else []
    assert portal.item_name in names, (
        f"{result.url} does not list {quoted(portal.item_name)} ({len(names)} items)"
    )


@e2e_part("portal")
def test_worker_processes_the_item(portal: PortalFlow) -> None:
    """The worker processes the item within the bounded wait: the API reports it processed, the items page
    shows it processed, and the dashboard's queue depth is back to 0."""
    portal.require_item()
    portal.act(
        "worker_processes_item", portal.wait_processed, item=portal.item_name, timeout_s=PROCESS_TIMEOUT_S
    )

    def shown_in_ui() -> dict[str, object]:
        portal.portal.items.open()
        row = portal.portal.items.find(portal.item_name)
        return {"ui_status": row.status if row else None}

    shown = portal.act("item_processed_in_ui", shown_in_ui)
    assert shown["ui_status"] == "processed", (
        f"the items page shows {quoted(portal.item_name)} as {shown['ui_status']}"
    )


@e2e_part("portal")
def test_operator_logs_out(portal: PortalFlow) -> None:
    """Sign out: the portal returns to the home page, and the dashboard asks for the login again."""

    def sign_out() -> dict[str, object]:
        if portal.portal.signed_in_as() is None:
            portal.sign_in()
        portal.portal.sign_out()
        portal.portal.dashboard.open()
        return {"login_asked": LoginPage.is_shown(portal.portal.browser.driver)}

    shown = portal.act("logout", sign_out)
    assert shown["login_asked"], "after signing out the dashboard still opens without a login"


@e2e_part("command")
def test_regression_command_passes(regression: Callable[[], RegressionOutcome]) -> None:
    """Run the external regression command ([e2e] command) within [e2e] command_timeout_s; it exits 0 and its
    JUnit XML ([e2e] junit, when configured) lists no failed test. Exit code and output tail are journalled."""
    outcome = regression()
    if not outcome.passed:
        pytest.fail(outcome.message, pytrace=False)
