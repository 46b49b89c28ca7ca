"""A SIGKILL of the runner leaves nothing a rerun does not clean, and the rerun converges (issue #8 item 5, #12).

Each test runs the real rollback drill as an operator does (a pytest subprocess on its own Lab directory,
evidence directory and browser state directory), kills its runner (its PID only) at a moment of the drill,
checks that the journal is a valid unsealed prefix and counts what the killed run left, then runs the same
drill again to completion with --keep-lab and checks that none of the killed run's processes (identified by
PID and start time), profile directories or browser records are left, and that the kept Lab serves the
version the drill deploys, healthy. benchmarks/kill_boundaries.py does the same at every phase boundary and
holds the machinery; the `kill_drill` fixture stops whatever is left at the end, also when an assertion fails.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from benchmarks.kill_boundaries import DRILL_VERSION, PHASES, KillDrill, Killed, Rerun
from drivers.reaper import BrowserRecord
from plugins.journal import read_events

pytestmark = [pytest.mark.lab, pytest.mark.drill]


@pytest.fixture
def kill_drill(tmp_path: Path) -> Iterator[Callable[[str], KillDrill]]:
    made: list[KillDrill] = []

    def make(phase: str) -> KillDrill:
        drill = KillDrill(tmp_path / phase, phase)
        made.append(drill)
        return drill

    yield make
    for drill in made:
        drill.cleanup()  # the runner, both runs' Labs, the killed run's browser and profile, by PID


def assert_valid_prefix(killed: Killed) -> None:
    journal = killed.journal
    assert journal.chain_intact, journal.problems
    assert not journal.sealed, "a killed run cannot have sealed its bundle"
    assert not journal.manifest_present
    assert killed.phase_order_ok, killed.phases_started
    kinds = [e["kind"] for e in read_events(killed.bundle / "evidence.jsonl")]
    assert kinds[0] == "run.start"
    assert "run.end" not in kinds
    assert len(kinds) == journal.events


def assert_converged(killed: Killed, rerun: Rerun) -> None:
    assert rerun.exit_code == 0, rerun.output[-4000:]
    assert not rerun.left.lab, f"the killed run's Lab processes still run: {rerun.left.describe()}"
    assert not rerun.left.browser, f"the killed run's browser still runs: {rerun.left.describe()}"
    assert not rerun.left.profiles, (
        f"the killed run's browser profile is still there: {rerun.left.describe()}"
    )
    assert not rerun.left.records, f"the killed run's browser record is still there: {rerun.left.describe()}"
    assert (rerun.served.status, rerun.served.health, rerun.served.version) == (200, "Healthy", DRILL_VERSION)
    assert rerun.bundle is not None
    assert read_events(rerun.bundle / "evidence.jsonl")[-1]["kind"] == "seal"


def test_kill_after_rb2_started_then_the_rerun_brings_the_site_back(
    kill_drill: Callable[[str], KillDrill],
) -> None:
    """RB-2 stops the site: a runner killed there leaves the Lab it started; the rerun stops it (by its
    recorded PIDs) and ends with the previous stable release serving, healthy."""
    drill = kill_drill("RB-2")
    killed = drill.kill_at_boundary()
    assert_valid_prefix(killed)
    assert killed.phases_started[: PHASES.index("RB-2") + 1] == ["PRE", "RB-1", "RB-2"]
    # Something for the rerun to clean: the killed run's Lab (its webhook sink at least) is still running.
    assert any(p.what == "lab webhook-sink" for p in killed.left.lab), killed.left.describe()
    assert not killed.left.untracked, f"on no record, so no rerun can find it: {killed.left.describe()}"
    rerun = drill.rerun()
    assert_converged(killed, rerun)


def test_kill_during_dr_axe_then_the_rerun_reaps_the_browser(kill_drill: Callable[[str], KillDrill]) -> None:
    """DR-AXE: the browser is up. The killed run leaves chromedriver, Chromium and the profile; the rerun's
    browser fixture reaps them (journalled as browser.reap) and nothing of that browser is left."""
    drill = kill_drill("DR-AXE")
    killed = drill.kill_at_boundary()
    assert_valid_prefix(killed)
    roles = {p.what for p in killed.left.browser}
    assert {"chromedriver", "chromium"} <= roles, (
        f"the kill took the browser with it: {killed.left.describe()}"
    )
    assert killed.left.profiles, killed.left.describe()
    assert all(p.is_dir() for p in killed.left.profiles)
    assert len(killed.left.records) == 1, killed.left.describe()
    assert killed.left.lab, killed.left.describe()
    assert not killed.left.untracked, f"on no record, so no rerun can find it: {killed.left.describe()}"
    rerun = drill.rerun()
    assert_converged(killed, rerun)
    assert len(rerun.reaped) == 1, "the rerun journalled no browser.reap of the killed run's browser"
    stopped = rerun.reaped[0]["detail"]["stopped"]
    assert any(s.startswith("chromedriver ") for s in stopped), stopped


def browser_starting(state_dir: Path) -> Callable[[int], bool]:
    """True once Chromium already runs on the runner's profile directory while the browser's record does not
    name it yet: the moment inside the browser's start (webdriver.Chrome has not returned). The record names
    chromedriver from the moment it is spawned; Chromium is found through it, or by its profile argument."""

    def check(runner_pid: int) -> bool:
        for path in state_dir.glob("*.json"):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                record = BrowserRecord.read(path)
                if record.runner.pid != runner_pid or any(p.role == "chromium" for p in record.processes):
                    continue
                flag = f"--user-data-dir={record.profile_dir}"
                with contextlib.suppress(psutil.Error):
                    for child in psutil.Process(runner_pid).children(recursive=True):
                        with contextlib.suppress(psutil.Error):
                            if flag in child.cmdline():
                                return True
        return False

    return check


def test_kill_while_the_browser_starts_then_the_rerun_leaves_none_of_it(
    kill_drill: Callable[[str], KillDrill],
) -> None:
    """DR-E2E starts the browser: a runner killed after chromedriver and Chromium are up, but before the start
    returned, must not leave them (or their profile) running for good; the rerun must stop them too.

    The record got its processes only once webdriver.Chrome() had returned (about a second later): a kill in
    between left a record naming the profile only, the reaper stopped nothing and deleted the profile Chromium
    was still writing to. Now chromedriver is on record the moment it is spawned (Chromium descends from it),
    and the reaper also stops any process started on the record's own profile directory.
    """
    drill = kill_drill("DR-E2E")
    killed = drill.kill_at_boundary(then=browser_starting(drill.state_dir))
    assert_valid_prefix(killed)
    roles = [p.what for p in killed.left.browser]
    # chromedriver and what it started on the profile (Debian's chromium is a shell wrapper at first: "sh").
    assert "chromedriver" in roles, f"the moment was missed: {killed.left.describe()}"
    assert len(roles) >= 2, f"the moment was missed: {killed.left.describe()}"
    rerun = drill.rerun()
    assert_converged(killed, rerun)
