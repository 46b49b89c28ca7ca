"""The matrix rows' collection-time work: which DR-E2E parts run, and the row files checked before anything runs.

- DR-E2E has two parts, the portal flow (`[e2e] flows`) and the regression command (`[e2e] command`); the part
  an environment does not configure is deselected (a skip would fail the gate). With neither configured both
  stay, and skip as "not configured", which the gate fails.
- The row files (axe baseline and script, ZAP rules, browser window) are checked by plugins.preflight.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from plugins.preflight import project_path
from plugins.state import run_key

__all__ = ["E2E_PART", "e2e_part", "project_path", "pytest_collection_modifyitems"]

E2E_PART = "runbook_e2e_part"


def e2e_part[F: Callable[..., Any]](part: str) -> Callable[[F], F]:
    """Mark a DR-E2E test as one part of the row: "portal" ([e2e] flows) or "command" ([e2e] command)."""

    def mark(fn: F) -> F:
        fn.__dict__[E2E_PART] = part
        return fn

    return mark


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
