"""The matrix rows' collection-time work: which DR-E2E parts run, and the row files checked before anything runs.

- DR-E2E has two parts, the portal flow (`[e2e] flows`) and the regression command (`[e2e] command`); the part
  an environment does not configure is deselected (a skip would fail the gate). With neither configured both
  stay, and skip as "not configured", which the gate fails.
- A malformed axe baseline, a missing `[axe] script`, a bad `[browser] window` or a malformed ZAP rules file is a
  usage error (exit 4) before any system is touched.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from drivers.axe import BaselineError, load_baseline
from drivers.base import DriverError
from drivers.browser import parse_window
from drivers.zap_rules import RulesError, load_rules
from plugins.flow import phase_of
from plugins.state import RunbookRun, run_key

E2E_PART = "runbook_e2e_part"


def e2e_part[F: Callable[..., Any]](part: str) -> Callable[[F], F]:
    """Mark a DR-E2E test as one part of the row: "portal" ([e2e] flows) or "command" ([e2e] command)."""

    def mark(fn: F) -> F:
        fn.__dict__[E2E_PART] = part
        return fn

    return mark


def project_path(run: RunbookRun, value: str) -> Path:
    """Relative paths in an environment file are relative to the project root (README "Environments")."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else run.rootdir / path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run = config.stash.get(run_key, None)
    if run is None or not run.env.row_configured("DR-E2E"):
        return  # nothing configured: every DR-E2E test stays and skips as "not configured"
    parts = {"portal": "portal" in run.env.e2e.flows, "command": bool(run.env.e2e.command)}
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        part = getattr(getattr(item, "function", None), E2E_PART, None)
        (drop if part is not None and not parts.get(part, False) else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    run = session.config.stash.get(run_key, None)
    if run is None or session.config.getoption("runbook_plan"):
        return
    env = run.env
    rows = {phase_of(item) for item in session.items}
    try:
        if rows & {"DR-AXE", "DR-E2E"}:
            parse_window(env.browser.window)
        if "DR-AXE" in rows and env.row_configured("DR-AXE"):
            if env.axe.baseline:
                load_baseline(project_path(run, env.axe.baseline))
            if env.axe.script and not project_path(run, env.axe.script).is_file():
                raise DriverError(f"{env.source}: [axe] script = {env.axe.script!r}: no such file")
        if "DR-ZAP" in rows and env.row_configured("DR-ZAP") and env.zap.rules:
            try:
                load_rules(project_path(run, env.zap.rules), source=env.zap.rules)
            except RulesError as exc:
                raise DriverError(f"[zap] rules: {exc}") from None
    except (BaselineError, DriverError) as exc:
        raise pytest.UsageError(str(exc)) from None
