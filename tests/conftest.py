"""Shared fixtures of the project's own tests (the loopback HTTP stub `stub` is tests/http_stub.py's)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab import Lab
from plugins.journal import read_events
from tests import lab_checks
from tests.http_stub import stub  # noqa: F401  (a fixture: every test module here gets the loopback stub)

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Drill:
    returncode: int
    output: str
    bundle: Path
    events: list[dict[str, Any]]
    lab_dir: Path

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] == kind]

    def run_end(self) -> dict[str, Any]:
        """The data of the run.end event (the journal's last event before the seal)."""
        (end,) = self.kinds("run.end")
        return dict(end["data"])

    def phase_outcomes(self) -> dict[str, str]:
        return {e["phase"]: e["data"]["outcome"] for e in self.kinds("phase.end")}

    def served_version(self) -> str:
        return self.version_at("public")

    def version_at(self, which: str) -> str:
        """The version a healthy /health reports at the kept Lab's public address or one slot's own address.
        Anything else (refused, 503, 502) fails the test: a stopped slot is proven with `assert_stopped`."""
        lab = Lab.attach(self.lab_dir)
        assert lab is not None, "the drill was run with --keep-lab; its Lab should still be there"
        return lab_checks.served_version(lab.urls()[which])

    def assert_stopped(self, slot: str) -> None:
        """The slot is stopped: its address refuses connections and no process of it runs (tests/lab_checks.py)."""
        lab_checks.assert_stopped(self.lab_dir, slot)

    def index(self, predicate: Callable[[dict[str, Any]], bool]) -> list[int]:
        """Positions in the journal of the events that match."""
        return [i for i, e in enumerate(self.events) if predicate(e)]

    def actions(self, name: str, target: str | None = None) -> list[int]:
        """Positions in the journal of the `action` events of that name (and target)."""
        return self.index(
            lambda e: (
                e["kind"] == "action"
                and e["data"]["name"] == name
                and (target is None or e["data"]["target"] == target)
            )
        )

    def phase_end(self, phase: str) -> int:
        (at,) = self.index(lambda e: e["kind"] == "phase.end" and e["phase"] == phase)
        return at

    def notified(self) -> list[tuple[str, str]]:
        return [(n["data"]["event_type"], n["data"]["delivery"]) for n in self.kinds("notify")]


class DrillRunner:
    """Runs drills as an operator does: a pytest subprocess on its own Lab directory and evidence directory.

    `edit_env` rewrites the copy of environments/Lab.toml that the drill runs with (e.g. to pin a package)."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.lab_dir = tmp_path / "lab"
        self.reports = tmp_path / "reports"

    def bundles(self) -> set[Path]:
        if not self.reports.exists():
            return set()
        return {p for p in self.reports.iterdir() if p.is_dir() and p.name[:8].isdigit()}

    def __call__(
        self,
        *args: str,
        marker: str = "rollback",
        keep: bool = True,
        edit_env: Callable[[str], str] = lambda text: text,
        env: dict[str, str] | None = None,
    ) -> Drill:
        before = self.bundles()
        env_file = self.tmp_path / "Lab.toml"
        text = (ROOT / "environments" / "Lab.toml").read_text(encoding="utf-8")
        text = text.replace('dir = ".lab"', f'dir = "{self.lab_dir.as_posix()}"')
        env_file.write_text(edit_env(text), encoding="utf-8")
        keep_lab = ["--keep-lab"] if keep else []
        cmd = [sys.executable, "-m", "pytest", "-m", marker, f"--env-file={env_file}",
               f"--evidence-dir={self.reports}", *keep_lab, "-p", "no:cacheprovider", "-rs", *args]  # fmt: skip
        proc = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, timeout=180, check=False, env=env
        )
        output = proc.stdout + proc.stderr
        (bundle,) = self.bundles() - before
        return Drill(proc.returncode, output, bundle, read_events(bundle / "evidence.jsonl"), self.lab_dir)


@pytest.fixture
def drill(tmp_path: Path) -> Iterator[Any]:
    """Run a drill as an operator does (DrillRunner); the Lab it kept is stopped by its PIDs afterwards."""
    runner = DrillRunner(tmp_path)
    yield runner
    lab = Lab.attach(runner.lab_dir)
    if lab is not None:
        lab.stop()


@pytest.fixture
def closed_url() -> str:
    """A loopback address where nothing listens (the port was just free)."""
    return lab_checks.closed_url()
