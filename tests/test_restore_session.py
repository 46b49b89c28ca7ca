"""The restore-on-failure finalizer in a real session: a rollback drill whose RB-3 fails after RB-2 stopped the
site, run as an operator runs it (a pytest subprocess on its own Lab), checked in the sealed bundle.

The previous stable package is one the drill places in the Lab's offline folder before the Lab starts and pins in
`[packages] previous_stable`: its hash is right (PRE and RB-3 verify it), but the release never becomes healthy.
The Lab's start rebuilds only its own 1.0.0 and 1.1.0 packages, so this one stays as placed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lab import CURRENT, build_package
from plugins.journal import verify_bundle

pytestmark = [pytest.mark.lab, pytest.mark.drill]

ROOT = Path(__file__).resolve().parents[1]
BROKEN = "1.0.5"  # between the Lab's 1.0.0 and its current 1.1.0: the pinned previous stable


def evidence_verify(bundle: Path) -> subprocess.CompletedProcess[str]:
    """The documented command: `python -m plugins.evidence verify reports/<run>`."""
    return subprocess.run(
        [sys.executable, "-m", "plugins.evidence", "verify", str(bundle)],
        cwd=ROOT, capture_output=True, text=True, encoding="utf-8", timeout=120, check=False,
    )  # fmt: skip


def pin_broken_previous_stable(text: str) -> str:
    # A 3 s bound on the start keeps the drill short; the broken release answers 503 until then.
    text = text.replace("start_timeout_s = 10.0", "start_timeout_s = 3.0")
    return text + f'\n[packages]\nprevious_stable = "{BROKEN}"\n'


def test_failed_rb3_restores_the_release_that_was_serving(drill: Any) -> None:
    build_package(BROKEN, drill.lab_dir / "artifacts" / "offline", faults=["unhealthy"])
    d = drill(edit_env=pin_broken_previous_stable)
    assert d.returncode == 1, d.output
    outcomes = d.phase_outcomes()
    assert (outcomes["PRE"], outcomes["RB-1"], outcomes["RB-2"], outcomes["RB-3"]) == (
        "passed", "passed", "passed", "failed",
    )  # fmt: skip
    assert {outcomes[p] for p in ("DR-SMOKE", "DR-E2E", "DR-AXE", "DR-ZAP", "RB-4")} == {"blocked"}
    assert outcomes["RB-5"] == "passed"
    # RB-2 really stopped the site, and RB-3 laid out the broken package, which never came up.
    (stopped,) = d.actions("stop_site", "active")
    assert d.events[stopped]["phase"] == "RB-2"
    assert d.events[stopped]["data"]["result"] == "stopped"
    (failed_start,) = [i for i in d.actions("start_site", "active") if d.events[i]["phase"] == "RB-3"]
    assert d.events[failed_start]["data"]["result"] == "failed"
    assert f"node blue ({BROKEN}) did not start" in d.events[failed_start]["data"]["detail"]["error"]

    # The sealed bundle: intact, and the documented verify command says so.
    result = verify_bundle(d.bundle)
    assert (result.ok, result.sealed) == (True, True), result.problems
    assert [e["kind"] for e in d.events[-2:]] == ["run.end", "seal"]
    cli = evidence_verify(d.bundle)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert cli.stdout.startswith(f"OK: {d.bundle}: {len(d.events)} events, chain intact, sealed")

    # RB-3's rollback is journalled as failed; then one decision: the restore ran, succeeded, and says why.
    (rb3,) = d.index(lambda e: e["kind"] == "rollback" and e["phase"] == "RB-3")
    assert (d.events[rb3]["data"]["result"], d.events[rb3]["data"]["to"]) == ("failed", BROKEN)
    (decided,) = d.index(lambda e: e["kind"] == "rollback" and "node" in e["data"])
    rollback = d.events[decided]["data"]
    assert (rollback["result"], rollback["to"]) == ("succeeded", CURRENT), rollback
    assert rollback["reason"].startswith(
        f"the site was stopped and no release came back healthy (blocked by RB-3: node blue ({BROKEN}) did not start"
    )
    assert rollback["reason"].endswith("restoring the release that was serving before (policy on-failure)")
    # In order: after RB-3 failed, the finalizer laid out and started 1.1.0, then recorded the rollback; all of it
    # before the Lab fixture's teardown (here: the Lab left running), run.end and the seal.
    restores = [
        i for i in d.actions("deploy", "active") if d.events[i]["data"]["detail"]["version"] == CURRENT
    ]
    starts = [i for i in d.actions("start_site", "active") if d.events[i]["data"]["result"] == "ok"]
    assert len(restores) == len(starts) == 1, "the finalizer lays out 1.1.0 again and starts it, once"
    (restored,), (healthy,) = restores, starts
    (lab_left,) = d.index(lambda e: e["kind"] == "note" and e["data"]["message"] == "Lab left running")
    (end,) = d.index(lambda e: e["kind"] == "run.end")
    (seal,) = d.index(lambda e: e["kind"] == "seal")
    assert d.phase_end("RB-3") < restored < healthy < decided < lab_left < end < seal
    assert d.events[healthy]["data"]["detail"]["version"] == CURRENT
    run_end = d.events[end]["data"]
    assert (run_end["outcome"], run_end["rollback_ran"], run_end["rollback_result"]) == (
        "failed",
        True,
        "succeeded",
    )
    assert run_end["restore_result"] == "succeeded: the active node serves 1.1.0 again"
    assert (run_end["version_to"], run_end["site_down"]) == (CURRENT, None)
    assert not d.kinds("site.down")
    assert "SITE DOWN" not in d.output

    # And the old release serves again, on the kept Lab.
    assert d.served_version() == CURRENT

    # Any altered byte of the sealed bundle: exit 1, naming the file.
    report = d.bundle / "report.html"
    data = bytearray(report.read_bytes())
    data[len(data) // 2] ^= 0x01
    report.write_bytes(bytes(data))
    cli = evidence_verify(d.bundle)
    assert cli.returncode == 1, cli.stdout
    assert cli.stdout.splitlines()[:2] == [
        f"ALTERED: {d.bundle}",
        "  report.html: sha256 differs from manifest (altered)",
    ]
