"""A pytester project with the runbook's plugins and a complete remote environment file (tests share it)."""

from __future__ import annotations

import json
import sys

import pytest

from tests.lab_checks import closed_url

PLUGINS = [
    "plugins.options",
    "plugins.flow",
    "plugins.report",
    "plugins.evidence",
    "plugins.distributed",
    "plugins.progress",
    "plugins.step",
    "fixtures.environment",
]


def remote_env(webhook_url: str | None = None) -> str:
    """A remote environment file complete for both flows (preflight passes): command templates that do nothing,
    folders the project makes, and service, slot and webhook addresses on loopback ports proven closed (each
    was just handed out free and closed again), so nothing answers there. `webhook_url` replaces the webhook
    (e.g. with a "${VAR}")."""
    public, blue, green = closed_url(), closed_url(), closed_url()
    webhook = webhook_url if webhook_url is not None else f"{closed_url()}/hook"
    return f"""
name = "Remote"
kind = "remote"
[service]
base_url = "{public}"
[slots]
blue = "{blue}"
green = "{green}"
[notify]
webhook_url = "{webhook}"
[packages]
dir = "offline"
[paths]
log_dirs = ["logs"]
timeline_dir = "logs"
[approval]
required = false
[drivers]
deploy = "command"
router = "command"
[drivers.command]
stop_site = [{json.dumps(sys.executable)}, "-c", "pass"]
deploy = [{json.dumps(sys.executable)}, "-c", "pass", "{{package}}"]
start_site = [{json.dumps(sys.executable)}, "-c", "pass"]
switch = [{json.dumps(sys.executable)}, "-c", "pass", "{{slot}}"]
active = [{json.dumps(sys.executable)}, "-c", "print('blue')"]
"""


def phase_module(phase: str, *markers: str, body: str = "def test_step():\n    pass\n") -> str:
    marks = ", ".join([*(f"pytest.mark.{m}" for m in markers), f'pytest.mark.phase("{phase}")'])
    return f"import pytest\npytestmark = [{marks}]\n\n{body}"


def make_runbook_project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A project with the runbook plugins, a remote environment file and an evidence dir of its own."""
    pytester.makeconftest(f"pytest_plugins = {PLUGINS!r}\n")
    # No markers here: the runbook registers its own from drivers/phases.py (--strict-markers proves it).
    # -p no:mcms_runbook: where the runbook is installed (its pytest11 entry point), load only PLUGINS here.
    pytester.makeini("[pytest]\naddopts = --strict-markers -p no:cacheprovider -p no:mcms_runbook\n")
    (pytester.path / "environments").mkdir()
    (pytester.path / "environments" / "Remote.toml").write_text(remote_env())
    (pytester.path / "offline").mkdir()
    (pytester.path / "logs").mkdir()
    return pytester
