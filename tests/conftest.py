"""Shared fixtures of the project's own tests."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab import Lab
from plugins.journal import read_events

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

    def served_version(self) -> str | None:
        return self.version_at("public")

    def version_at(self, which: str) -> str | None:
        """The version /health reports at the kept Lab's public address or one slot's own address."""
        lab = Lab.attach(self.lab_dir)
        assert lab is not None, "the drill was run with --keep-lab; its Lab should still be there"
        try:
            with urllib.request.urlopen(lab.urls()[which] + "/health", timeout=3) as response:
                return str(json.load(response)["version"])
        except OSError:
            return None

    def notified(self) -> list[tuple[str, str]]:
        return [(n["data"]["event_type"], n["data"]["delivery"]) for n in self.kinds("notify")]


@pytest.fixture
def drill(tmp_path: Path) -> Iterator[Any]:
    """Run a drill as an operator does: a pytest subprocess on its own Lab directory and evidence directory."""
    lab_dir = tmp_path / "lab"
    reports = tmp_path / "reports"

    def bundles() -> set[Path]:
        return (
            {p for p in reports.iterdir() if p.is_dir() and p.name[:8].isdigit()}
            if reports.exists()
            else set()
        )

    def run(*args: str, marker: str = "rollback", keep: bool = True) -> Drill:
        before = bundles()
        env_file = tmp_path / "Lab.toml"
        text = (ROOT / "environments" / "Lab.toml").read_text(encoding="utf-8")
        env_file.write_text(text.replace('dir = ".lab"', f'dir = "{lab_dir.as_posix()}"'), encoding="utf-8")
        keep_lab = ["--keep-lab"] if keep else []
        cmd = [sys.executable, "-m", "pytest", "-m", marker, f"--env-file={env_file}", f"--evidence-dir={reports}",
               *keep_lab, "-p", "no:cacheprovider", "-rs", *args]  # fmt: skip
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180, check=False)
        output = proc.stdout + proc.stderr
        (bundle,) = bundles() - before
        return Drill(proc.returncode, output, bundle, read_events(bundle / "evidence.jsonl"), lab_dir)

    yield run
    lab = Lab.attach(lab_dir)
    if lab is not None:
        lab.stop()
