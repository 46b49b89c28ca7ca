"""DR-AXE: no major accessibility regression on the release under test (playbook §8): axe-core finds no
violation of impact [axe] fail_on (critical and serious by default) on any page of [axe] pages.

Each page is opened in the run's browser at the smoke target (green's own address in Blue/Green), logging in
first when it is behind the login, and scanned with the WCAG 2 A/AA and best-practice rules ([axe] tags). A
finding that the baseline ([axe] baseline) accepts does not fail the row until its acceptance expires. The axe
result of each page (artifacts/axe/), a screenshot and every finding are kept, and listed in the report.
"""

from __future__ import annotations

import pytest

from drivers.config import Axe
from fixtures.axe import AxeCheck, ScanPage
from plugins.state import RunbookRun, run_key

pytestmark = [
    pytest.mark.rollback,
    pytest.mark.bluegreen,
    pytest.mark.dr_axe,
    pytest.mark.phase("DR-AXE"),
]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One test per page of [axe] pages, named by its path: test_page_has_no_major_violations[/dashboard]."""
    if "page" not in metafunc.fixturenames:
        return
    run: RunbookRun | None = metafunc.config.stash.get(run_key, None)
    pages = run.env.axe.pages if run is not None else Axe().pages
    metafunc.parametrize("page", pages, ids=pages)


def test_page_has_no_major_violations(page: str, axe_page: ScanPage) -> None:
    """Open the page (logging in first when it is behind the login), scan it with axe-core and keep the result
    and a screenshot; no violation of impact [axe] fail_on that the baseline does not accept."""
    result = axe_page(page)
    if result.failure:
        pytest.fail(result.failure, pytrace=False)


def test_accepted_findings_are_still_needed(axe_check: AxeCheck, runbook: RunbookRun) -> None:
    """Review the baseline of accepted findings: an entry that no longer matches anything on the scanned pages
    is reported as a warning, so that the baseline shrinks as fixes land (it does not fail the row)."""
    for line in axe_check.review_baseline():
        runbook.warn(f"DR-AXE baseline: {line}; remove the entry")
