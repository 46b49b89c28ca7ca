"""PRE: preconditions (playbook §3). Packages verified, notification webhook ready, outage watch, log paths.

Nothing here changes a system. A failed precondition blocks the whole flow: nothing is stopped or deployed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from drivers.browser import check_browser_tools
from drivers.config import Environment
from drivers.deploy import DeployDriver
from drivers.e2e import check_regression_command
from drivers.notify import Notifier
from drivers.packages import PackageSet
from drivers.probe import smoke_checks, stop_verdict, url_at
from drivers.zap import check_zap_available
from fixtures.browser import reap_orphaned_browsers
from fixtures.deploy import driver_step, verify_package
from fixtures.notify import check_webhook
from fixtures.probe import Probe
from plugins.state import RunbookRun

pytestmark = [pytest.mark.rollback, pytest.mark.bluegreen, pytest.mark.phase("PRE")]


def test_approval_recorded_before_anything_changes(runbook: RunbookRun, environment: Environment) -> None:
    """The playbook's first rule: a step proceeds only after approval. The approver given up front
    (--approved-by; required outside the Lab when [approval] required = true, checked by preflight) is journalled
    here, before any phase acts; in the Lab the drill approves itself (lab-auto)."""
    approver = runbook.options.approved_by or ("lab-auto" if environment.is_lab else None)
    if approver is None:
        runbook.record(
            "note", {"message": f"no approver given; {environment.source}: [approval] required = false"}
        )
        return
    runbook.approval(
        approver, env=environment.name, given="--approved-by" if runbook.options.approved_by
        else "the Lab drills approve themselves", **{"for": f"the {runbook.flow} flow on {environment.name}"},
    )  # fmt: skip


def test_packages_present_and_verified(
    runbook: RunbookRun, packages: PackageSet, environment: Environment
) -> None:
    """§3.1: the latest package, and for a rollback the previous stable one, are in the offline directory and
    their SHA-256 matches the .sha256 beside them."""
    latest = driver_step(lambda: packages.latest)
    verify_package(runbook, latest, "precondition: latest package")
    if runbook.flow == "rollback":
        previous = driver_step(lambda: packages.previous_stable(environment.packages.previous_stable))
        verify_package(runbook, previous, "precondition: previous stable package")


def test_notification_webhook_configured_and_reachable(runbook: RunbookRun, notifier: Notifier) -> None:
    """§3.2: the deploy-notification webhook is configured. If it cannot be reached, notifications queue in the
    outbox and the flow goes on; the report shows it as a warning."""
    check_webhook(runbook, notifier, "this rollback")


def test_outage_watch_smoke_before_acting(
    runbook: RunbookRun, probe: Probe, environment: Environment, deployer: DeployDriver
) -> None:
    """§3.3 and §4: run the smoke checks before acting. When nothing of the service's own answers (every probe
    refused, or only what stands in front of it answers 502/503/504: drivers.probe.stop_verdict, RB-2's test)
    the service is treated as fully stopped and the flow prepares a redeploy; either way the state is recorded,
    and the flow goes on."""
    base = environment.service.base_url
    results = [probe(c.name, url_at(base, c.path)) for c in smoke_checks(environment.service)]
    reported = results[0].reported_version() if results[0].status in (200, 503) else None
    if reported is not None:
        runbook.version("from", reported, "health before acting")
    else:
        runbook.version("from", driver_step(lambda: deployer.current_version("active")), "the deploy driver")
    serving = runbook.version_from
    verdicts = [stop_verdict(r) for r in results]
    if all(v.stopped for v in verdicts):
        # Refused (-1), or only a proxy or HTTP.sys in front of it answers (502/503/504), as RB-2 judges a stop.
        seen = (
            "every pre-rollback probe refused (-1)"
            if all(r.refused for r in results)
            else verdicts[0].sentence
        )
        runbook.note(
            f"{seen}: the service is treated as fully stopped (playbook §4); the flow goes on to redeploy",
            service_state="stopped", version_laid_out=serving,
        )  # fmt: skip
    else:
        state = "up" if all(r.status in (200, 401) for r in results) else "degraded"
        runbook.note(f"pre-rollback smoke: service {state}, serving {serving}", service_state=state)


def test_log_and_evidence_paths_writable(runbook: RunbookRun, log_dirs: list[Path]) -> None:
    """§3.4: the log collection paths exist and are writable, and so is the evidence bundle."""
    problems = []
    for directory in [*log_dirs, runbook.artifacts]:
        if not directory.is_dir():
            problems.append(f"{directory}: does not exist")
            continue
        try:
            fd, name = tempfile.mkstemp(dir=directory, prefix=".runbook-write-check-")
            os.close(fd)
            os.unlink(name)
        except OSError as exc:
            problems.append(f"{directory}: not writable ({exc.strerror})")
    if problems:
        pytest.fail("log collection paths not ready: " + "; ".join(problems), pytrace=False)


def test_tools_of_the_matrix_rows_are_ready(runbook: RunbookRun, environment: Environment) -> None:
    """Before anything is stopped or deployed: the tools of the selected matrix rows are here. The browser and
    its driver (matching major versions, or the Selenium Grid answering) for DR-AXE and DR-E2E, the ZAP daemon
    (or [zap] path) for DR-ZAP, the regression command's program for DR-E2E. A missing tool of a required row
    ([matrix] required) fails PRE, so nothing is touched; of another row, it is a warning. Browsers that a
    killed run left running are stopped first (by their records, never by name)."""
    env, rows = environment, runbook.rows
    reap_orphaned_browsers(runbook)  # what a killed run left on this machine goes first, whatever rows run
    missing: dict[str, list[str]] = {}
    portal = "DR-E2E" in rows and env.row_configured("DR-E2E") and bool(env.e2e.flows)
    if ("DR-AXE" in rows and env.row_configured("DR-AXE")) or portal:
        check = check_browser_tools(env.browser, runbook.options.selenium_remote)
        runbook.record("action", {"name": "tools.browser", "target": check.browser or "browser",
                                  "result": "ready" if check.ok else "missing", "duration_s": check.duration_s,
                                  "detail": {"browser_version": check.browser_version, "driver": check.driver,
                                             "driver_version": check.driver_version, "problems": check.problems}})  # fmt: skip
        for row in ("DR-AXE", "DR-E2E"):
            if row in rows and env.row_configured(row) and (row != "DR-E2E" or portal):
                missing.setdefault(row, []).extend(check.problems)
    if "DR-ZAP" in rows and env.row_configured("DR-ZAP"):
        problem = check_zap_available(env.zap)
        runbook.record("action", {"name": "tools.zap", "target": env.zap.engine, "result": "missing" if problem else "ready",
                                  "duration_s": 0.0, "detail": {"problem": problem}})  # fmt: skip
        if problem:
            missing.setdefault("DR-ZAP", []).append(problem)
    if "DR-E2E" in rows and env.e2e.command:
        problem = check_regression_command(env.e2e, root=runbook.rootdir, source=str(env.source))
        if problem:
            missing.setdefault("DR-E2E", []).append(problem)
    required = [
        f"{row}: {p}" for row, problems in missing.items() if row in env.matrix.required for p in problems
    ]
    for row, problems in missing.items():
        if row not in env.matrix.required:
            for problem in problems:
                runbook.warn(f"{row} (not required) will not run: {problem}")
    if required:
        pytest.fail(
            "tools missing for required matrix rows; nothing was stopped or deployed:\n  - "
            + "\n  - ".join(required),
            pytrace=False,
        )
