"""Shared fixtures of the project's own tests (the loopback HTTP stub `stub` is tests/http_stub.py's)."""

from __future__ import annotations

import os
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

    def command(
        self,
        *args: str,
        marker: str = "rollback",
        keep: bool = True,
        edit_env: Callable[[str], str] = lambda text: text,
    ) -> list[str]:
        """The operator's pytest command for this drill; writes the copy of Lab.toml it runs with."""
        env_file = self.tmp_path / "Lab.toml"
        text = (ROOT / "environments" / "Lab.toml").read_text(encoding="utf-8")
        text = text.replace('dir = ".lab"', f'dir = "{self.lab_dir.as_posix()}"')
        env_file.write_text(edit_env(text), encoding="utf-8")
        keep_lab = ["--keep-lab"] if keep else []
        return [sys.executable, "-m", "pytest", "-m", marker, f"--env-file={env_file}",
                f"--evidence-dir={self.reports}", *keep_lab, "-p", "no:cacheprovider", "-rs", *args]  # fmt: skip

    def __call__(
        self,
        *args: str,
        marker: str = "rollback",
        keep: bool = True,
        edit_env: Callable[[str], str] = lambda text: text,
        env: dict[str, str] | None = None,
    ) -> Drill:
        before = self.bundles()
        cmd = self.command(*args, marker=marker, keep=keep, edit_env=edit_env)
        proc = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, timeout=180, check=False, env=env
        )
        output = proc.stdout + proc.stderr
        (bundle,) = self.bundles() - before
        return Drill(proc.returncode, output, bundle, read_events(bundle / "evidence.jsonl"), self.lab_dir)


def stop_kept_lab(runner: DrillRunner) -> None:
    """Stop the Lab the runner's drills kept, by its recorded PIDs (nothing when none is running)."""
    lab = Lab.attach(runner.lab_dir)
    if lab is not None:
        lab.stop()


@pytest.fixture
def drill(tmp_path: Path) -> Iterator[Any]:
    """Run a drill as an operator does (DrillRunner); the Lab it kept is stopped by its PIDs afterwards."""
    runner = DrillRunner(tmp_path)
    yield runner
    stop_kept_lab(runner)


# Drills that tests in several modules read: each runs once per session, on its own Lab and evidence directory,
# when the first test that reads it starts. A test that takes one only reads it (its journal, bundle, output and
# what its kept Lab serves): it runs nothing more on that Lab, switches nothing, publishes nothing. A test that
# changes the Lab runs its own drill (the `drill` fixture). A kept Lab is stopped by its PIDs right after the
# last test that reads it (in the collected order), and in any case at the end of the session.
SHARED_DRILLS = ("rollback_drill", "unkept_rollback_drill", "release_drill", "rolled_back_release_drill")
_shared_runners: dict[str, DrillRunner] = {}
_last_readers: dict[str, str] = {}  # shared drill -> node id of the last test that reads it


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _last_readers.clear()
    if hasattr(config, "workerinput"):
        return  # under xdist a worker runs a share of the tests: the Labs are stopped at the session's end
    for item in items:
        for name in SHARED_DRILLS:
            if name in getattr(item, "fixturenames", ()):
                _last_readers[name] = item.nodeid


def pytest_runtest_teardown(item: pytest.Item) -> None:
    for name, nodeid in _last_readers.items():
        if nodeid == item.nodeid and name in _shared_runners:
            stop_kept_lab(_shared_runners[name])


REASON = "CHG-1234 quarterly DR drill"  # --reason of the shared rollback drill
# The operator's zone of the shared drills that say so: KST, UTC+09:00, no daylight saving.
KST = {"TZ": "Asia/Seoul"}


def _shared_drill(
    name: str, factory: pytest.TempPathFactory, *args: str, marker: str = "rollback", keep: bool = True,
    env: dict[str, str] | None = None,
) -> Iterator[Drill]:  # fmt: skip
    runner = _shared_runners[name] = DrillRunner(factory.mktemp(name))
    try:
        yield runner(*args, marker=marker, keep=keep, env=None if env is None else {**os.environ, **env})
    finally:
        stop_kept_lab(runner)


@pytest.fixture(scope="session")
def rollback_drill(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drill]:
    """The green single-node rollback drill with a --reason (REASON), run in the zone KST; its Lab kept."""
    yield from _shared_drill("rollback_drill", tmp_path_factory, "--reason", REASON, env=KST)


@pytest.fixture(scope="session")
def unkept_rollback_drill(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drill]:
    """The green single-node rollback drill without --keep-lab (its Lab stopped by the run), with --evidence-zip."""
    yield from _shared_drill("unkept_rollback_drill", tmp_path_factory, "--evidence-zip", keep=False)


@pytest.fixture(scope="session")
def release_drill(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drill]:
    """The green Blue/Green release (blue 1.0.0 live, green 1.1.0 released), its Lab kept."""
    yield from _shared_drill("release_drill", tmp_path_factory, marker="bluegreen")


@pytest.fixture(scope="session")
def rolled_back_release_drill(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drill]:
    """A Blue/Green release whose green degrades after the switch (--lab-fault green-degrades-after-switch): rolled
    back to blue by policy on-failure; run in the zone KST, its Lab kept."""
    yield from _shared_drill(
        "rolled_back_release_drill",
        tmp_path_factory,
        "--lab-fault",
        "green-degrades-after-switch",
        marker="bluegreen",
        env=KST,
    )


@pytest.fixture
def closed_url() -> str:
    """A loopback address where nothing listens (the port was just free)."""
    return lab_checks.closed_url()
