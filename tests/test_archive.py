"""plugins/archive.py: the bundle's .zip (--evidence-zip), retention of the evidence directory ([retention]) and
the dated Timeline_YYYY-MM-DD.md, in real pytest sessions (pytester, remote environment where nothing listens)
and in real Lab drills."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drivers.config import ConfigProblems, load_environment
from plugins.archive import RUN_ID_FORMAT
from plugins.journal import read_events, verify_bundle
from tests.conftest import Drill
from tests.lab_checks import closed_url
from tests.runbook_project import PLUGINS, make_runbook_project, phase_module, remote_env

ROOT = Path(__file__).resolve().parents[1]
RB5 = (ROOT / "runbook_tests" / "test_rb5_timeline.py").read_text(encoding="utf-8")
LINE = re.compile(r"^- (\d{2}:\d{2}:\d{2}\.\d{3}) (\S+): (.*)$")


def project(pytester: pytest.Pytester, conftest: str = "") -> pytest.Pytester:
    """The shared runbook project (tests/runbook_project.py) with this plugin loaded, as conftest.py does."""
    make_runbook_project(pytester)
    pytester.makeconftest(f"pytest_plugins = {[*PLUGINS, 'plugins.archive']!r}\n{conftest}")
    return pytester


def rollback_modules(p: pytest.Pytester, bodies: dict[str, str] | None = None) -> None:
    """Stand-ins for the rollback phases (bodies by phase) and the real RB-5."""
    bodies = bodies or {}
    phases = {
        "PRE": ["rollback", "bluegreen"],
        "RB-1": ["rollback"],
        "RB-2": ["rollback"],
        "RB-3": ["rollback"],
        "DR-SMOKE": ["rollback", "bluegreen", "dr_smoke"],
        "RB-4": ["rollback"],
    }
    for phase, markers in phases.items():
        body = bodies.get(phase, "def test_step():\n    pass\n")
        name = "test_" + phase.lower().replace("-", "_")
        p.makepyfile(**{name: phase_module(phase, *markers, body=body)})
    p.makepyfile(test_rb5=RB5)


def bundles(p: pytest.Pytester) -> list[Path]:
    root = p.path / "reports"
    return sorted(d for d in root.iterdir() if d.is_dir() and d.name[:8].isdigit()) if root.exists() else []


def only_bundle(p: pytest.Pytester) -> Path:
    (bundle,) = bundles(p)
    return bundle


def dated_file(folder: Path, bundle: Path) -> Path:
    run_id = bundle.name[:16]
    return folder / f"Timeline_{run_id[:4]}-{run_id[4:6]}-{run_id[6:8]}.md"


def section(text: str, bundle: Path) -> list[tuple[str, str]]:
    """(phase, text) of each line of the section of the run whose bundle this is."""
    lines = text.splitlines()
    heads = [
        i for i, line in enumerate(lines) if line.startswith("## ") and f"evidence {bundle.name}," in line
    ]
    assert len(heads) == 1, text
    found: list[tuple[str, str]] = []
    for line in lines[heads[0] + 1 :]:
        if line.startswith("## "):
            break
        match = LINE.match(line)
        if match:
            found.append((match[2], match[3]))
        else:
            assert not line.strip(), f"not a timeline line: {line!r}"
    return found


def run_id(days_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(days=days_ago)).strftime(RUN_ID_FORMAT)


# --- --evidence-zip ----------------------------------------------------------------------------------------
def test_zip_holds_the_whole_sealed_bundle_and_verifies_unzipped(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    p = project(pytester)
    rollback_modules(p)
    result = p.runpytest("-m", "rollback", "--env", "Remote", "--evidence-zip")
    result.assert_outcomes(passed=7)
    bundle = only_bundle(p)
    archive = bundle.with_name(bundle.name + ".zip")
    assert archive.is_file()
    assert not bundle.with_name(bundle.name + ".zip.partial").exists()
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        assert zf.testzip() is None
    assert all(n == f"{bundle.name}/" or n.startswith(f"{bundle.name}/") for n in names), names
    files = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    assert {n.removeprefix(f"{bundle.name}/") for n in names if not n.endswith("/")} == files
    assert {"evidence.jsonl", "manifest.json", "report.html", "junit.xml", "timeline.md"} <= files
    assert f"{bundle.name}/artifacts/" in names, "the folders come too"
    # The summary says where and how to check it, after the bundle's own lines (it runs after the seal).
    out = result.stdout.str()
    assert f"Archive:  {archive}" in out
    assert out.index(f"Evidence: {bundle}") < out.index(f"Archive:  {archive}")
    assert "not sealed before this summary" not in out
    assert f"check it: python -m zipfile -e {archive} DIR, then" in out
    assert f"python -m plugins.evidence verify DIR/{bundle.name}" in out
    # ... and what it says works: unzip with Python's own zipfile, verify the folder.
    subprocess.run([sys.executable, "-m", "zipfile", "-e", str(archive), str(tmp_path)], check=True)
    unzipped = tmp_path / bundle.name
    verify = subprocess.run(
        [sys.executable, "-m", "plugins.evidence", "verify", str(unzipped)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert verify_bundle(unzipped).ok
    assert read_events(unzipped / "evidence.jsonl")[-1]["kind"] == "seal", "zipped after the seal"


def test_without_the_option_there_is_no_zip(pytester: pytest.Pytester) -> None:
    p = project(pytester)
    rollback_modules(p)
    result = p.runpytest("-m", "rollback", "--env", "Remote")
    result.assert_outcomes(passed=7)
    only_bundle(p)
    assert not list((p.path / "reports").glob("*.zip*"))
    assert "Archive:" not in result.stdout.str()


ZIP_SPY = """
import json, zipfile
from pathlib import Path
_write = zipfile.ZipFile.write
seen = []

def pytest_configure(config):
    def spy(self, filename, arcname=None, *args, **kwargs):
        name = Path(self.filename)
        final = name.with_name(name.name.removesuffix(".partial"))
        seen.append({"file": name.name, "exists": name.exists(), "final_exists": final.exists()})
        if FAIL_AT and len(seen) >= FAIL_AT:
            raise OSError(28, "No space left on device")
        return _write(self, filename, arcname, *args, **kwargs)
    zipfile.ZipFile.write = spy

def pytest_unconfigure(config):
    zipfile.ZipFile.write = _write
    Path("zip-spy.json").write_text(json.dumps(seen))
"""


def test_zip_is_written_under_a_temporary_name_then_renamed(pytester: pytest.Pytester) -> None:
    p = project(pytester, "FAIL_AT = 0\n" + ZIP_SPY)
    rollback_modules(p)
    p.runpytest("-m", "rollback", "--env", "Remote", "--evidence-zip").assert_outcomes(passed=7)
    bundle = only_bundle(p)
    seen = json.loads((p.path / "zip-spy.json").read_text())
    assert len(seen) > 5
    assert {s["file"] for s in seen} == {bundle.name + ".zip.partial"}, (
        "every byte goes to the temporary name"
    )
    assert not any(s["final_exists"] for s in seen), "the finished name appears only when the zip is whole"
    assert bundle.with_name(bundle.name + ".zip").is_file()
    assert not bundle.with_name(bundle.name + ".zip.partial").exists()


def test_a_zip_that_fails_half_way_leaves_no_archive_and_the_run_stands(pytester: pytest.Pytester) -> None:
    p = project(pytester, "FAIL_AT = 3\n" + ZIP_SPY)
    rollback_modules(p)
    result = p.runpytest("-m", "rollback", "--env", "Remote", "--evidence-zip")
    result.assert_outcomes(passed=7)
    assert result.ret == 0, "archiving a sealed bundle does not change the run's outcome"
    bundle = only_bundle(p)
    assert not list((p.path / "reports").glob("*.zip*")), "neither a finished name nor a partial file is left"
    result.stdout.fnmatch_lines(
        [
            "*EVIDENCE WRITER ERROR: after the seal: --evidence-zip: *.zip not written: No space left on device*",
            "*Archive:  NOT WRITTEN: *.zip not written: No space left on device*",
        ]
    )
    assert verify_bundle(bundle).ok


# --- retention ---------------------------------------------------------------------------------------------
def _bundle(root: Path, name: str) -> Path:
    folder = root / name
    (folder / "artifacts").mkdir(parents=True)
    (folder / "evidence.jsonl").write_text("{}\n")
    (folder / "artifacts" / "notifications.jsonl").write_text("{}\n")
    return folder


def test_retention_prunes_only_old_runs_inside_the_evidence_directory(pytester: pytest.Pytester) -> None:
    p = project(pytester)
    p.makepyfile(test_smoke=phase_module("DR-SMOKE", "rollback", "bluegreen", "dr_smoke"))
    reports = p.path / "reports"
    outside = p.path / "outside"
    old, older, month = run_id(15), run_id(400), run_id(30)
    due = [
        _bundle(reports, f"{old}_Remote_rollback").name,
        _bundle(reports, f"{older}_Lab_bluegreen-2").name,
        f"{old}_Remote_rollback.zip",
        f"{older}_Lab_matrix.zip.partial",  # a killed run's half-written archive
    ]
    for name in due[2:]:
        (reports / name).write_bytes(b"PK")
    kept = [
        _bundle(reports, f"{run_id(13)}_Remote_rollback").name,  # younger than 14 days
        f"{run_id(1)}_Remote_rollback.zip",
        _bundle(reports, "verified-release").name,  # not a run's name
        _bundle(reports, f"{older[:8]}_Remote_rollback").name,  # a date, not a run id
        _bundle(reports, "20201399T000000Z_Remote_rollback").name,  # no such day
        f".runbook-{older}-4242.json",  # a parallel run's handoff file
        "notes.txt",
        f"{old}_Remote_rollback.tar",
    ]
    for name in kept:
        if not (reports / name).exists():
            (reports / name).write_text("x")
    # Old names that are not the evidence directory's own: a symlinked folder and file pointing outside it,
    # and an old bundle outside the evidence directory.
    target = _bundle(outside, f"{older}_Remote_rollback")
    (outside / "a.zip").write_bytes(b"PK")
    (reports / f"{month}_Remote_rollback").symlink_to(target, target_is_directory=True)
    (reports / f"{month}_Remote_matrix.zip").symlink_to(outside / "a.zip")
    kept += [f"{month}_Remote_rollback", f"{month}_Remote_matrix.zip"]
    before_outside = sorted(q.relative_to(outside) for q in outside.rglob("*"))

    p.runpytest("-m", "dr_smoke", "--env", "Remote").assert_outcomes(passed=1)

    current = next(b for b in bundles(p) if b.name.endswith("_Remote_matrix"))
    left = {q.name for q in reports.iterdir()} - {"notifications"}
    assert not left & set(due), left & set(due)
    assert set(kept) <= left
    assert current.name in left
    assert sorted(q.relative_to(outside) for q in outside.rglob("*")) == before_outside, "outside: untouched"
    assert (reports / kept[0] / "evidence.jsonl").is_file()
    events = read_events(current / "evidence.jsonl")
    assert [e["kind"] for e in events[:2]] == ["run.start", "retention"], "journalled when the bundle starts"
    data = events[1]["data"]
    assert sorted(data["pruned"]) == sorted(due)
    assert data["counts"] == {"bundles": 2, "zips": 1, "partial_zips": 1, "notification_files": 0}
    assert (data["reports_days"], data["notifications_days"]) == (14, 30)
    refused = {r["name"]: r["why"] for r in data["refused"]}
    assert refused.pop(f"{old}_Remote_rollback.tar") == "named like a bundle but is not a folder"
    assert set(refused) == set(kept[-2:])
    assert all("outside the evidence directory): never followed" in why for why in refused.values()), refused
    assert data["failed"] == []
    # The 15-day-old bundle is gone, its outbox stays (notifications are kept 30 days); the 400-day-old one's not.
    assert data["kept_notifications"] == [f"notifications/{old}_Remote_rollback.jsonl"]
    assert (reports / "notifications" / f"{old}_Remote_rollback.jsonl").read_text() == "{}\n"
    timeline = (current / "timeline.md").read_text()
    assert f"retention, pruned: {', '.join(data['pruned'])}" in timeline
    assert verify_bundle(current).ok


def test_kept_notifications_are_pruned_after_notifications_days(pytester: pytest.Pytester) -> None:
    p = project(pytester)
    p.makepyfile(test_smoke=phase_module("DR-SMOKE", "rollback", "bluegreen", "dr_smoke"))
    folder = p.path / "reports" / "notifications"
    folder.mkdir(parents=True)
    gone, stays = (
        folder / f"{run_id(31)}_Remote_rollback.jsonl",
        folder / f"{run_id(29)}_Remote_rollback.jsonl",
    )
    other = folder / "operator-notes.jsonl"  # not a run's name: never touched
    for path in (gone, stays, other):
        path.write_text("{}\n")
    p.runpytest("-m", "dr_smoke", "--env", "Remote").assert_outcomes(passed=1)
    assert (gone.exists(), stays.exists(), other.exists()) == (False, True, True)
    current = next(b for b in bundles(p) if b.name.endswith("_Remote_matrix"))
    (event,) = [e for e in read_events(current / "evidence.jsonl") if e["kind"] == "retention"]
    assert event["data"]["pruned"] == [f"notifications/{gone.name}"]
    assert event["data"]["counts"]["notification_files"] == 1


def test_retention_journals_that_nothing_was_due(pytester: pytest.Pytester) -> None:
    p = project(pytester)
    p.makepyfile(test_smoke=phase_module("DR-SMOKE", "rollback", "bluegreen", "dr_smoke"))
    young = _bundle(p.path / "reports", f"{run_id(2)}_Remote_rollback")
    p.runpytest("-m", "dr_smoke", "--env", "Remote").assert_outcomes(passed=1)
    assert young.is_dir()
    current = next(b for b in bundles(p) if b != young)
    (event,) = [e for e in read_events(current / "evidence.jsonl") if e["kind"] == "retention"]
    assert event["data"]["pruned"] == []
    assert "| retention, pruned: nothing was due |" in (current / "timeline.md").read_text()


def test_retention_days_come_from_the_environment_file(pytester: pytest.Pytester) -> None:
    p = project(pytester)
    env = p.path / "environments" / "Remote.toml"
    env.write_text(env.read_text() + "[retention]\nreports_days = 3\nnotifications_days = 7\n")
    p.makepyfile(test_smoke=phase_module("DR-SMOKE", "rollback", "bluegreen", "dr_smoke"))
    reports = p.path / "reports"
    gone, stays = _bundle(reports, f"{run_id(4)}_Remote_rollback"), _bundle(reports, f"{run_id(2)}_Remote_x")
    p.runpytest("-m", "dr_smoke", "--env", "Remote").assert_outcomes(passed=1)
    assert not gone.exists()
    assert stays.is_dir()
    current = next(b for b in bundles(p) if b.name.endswith("_Remote_matrix"))
    (event,) = [e for e in read_events(current / "evidence.jsonl") if e["kind"] == "retention"]
    assert (event["data"]["reports_days"], event["data"]["notifications_days"]) == (3, 7)


CLOCK_60_DAYS_ON = """
from datetime import timedelta
import plugins.archive as archive
_now = archive._now

def pytest_configure(config):
    archive._now = lambda: _now() + timedelta(days=60)

def pytest_unconfigure(config):
    archive._now = _now
"""


def test_the_current_run_is_never_pruned(pytester: pytest.Pytester) -> None:
    """With the clock 60 days on, every bundle is due, the current run's too: it is kept, whole and sealed."""
    p = project(pytester, CLOCK_60_DAYS_ON)
    rollback_modules(p)
    yesterday = _bundle(p.path / "reports", f"{run_id(1)}_Remote_rollback")
    p.runpytest("-m", "rollback", "--env", "Remote", "--evidence-zip").assert_outcomes(passed=7)
    assert not yesterday.exists(), "the moved clock made yesterday's run due"
    current = only_bundle(p)
    events = read_events(current / "evidence.jsonl")
    (retention,) = [e["data"] for e in events if e["kind"] == "retention"]
    assert retention["pruned"] == [yesterday.name]
    assert events[-1]["kind"] == "seal"
    assert verify_bundle(current).ok
    assert current.with_name(current.name + ".zip").is_file()


RMTREE_REFUSES = """
import shutil
_rmtree = shutil.rmtree

def pytest_configure(config):
    def refuse(path, *args, **kwargs):
        if "_Stuck_" in str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return _rmtree(path, *args, **kwargs)
    shutil.rmtree = refuse

def pytest_unconfigure(config):
    shutil.rmtree = _rmtree
"""


def test_a_retention_problem_is_a_warning_not_a_stopped_run(pytester: pytest.Pytester) -> None:
    p = project(pytester, RMTREE_REFUSES)
    p.makepyfile(test_smoke=phase_module("DR-SMOKE", "rollback", "bluegreen", "dr_smoke"))
    reports = p.path / "reports"
    stuck = _bundle(reports, f"{run_id(20)}_Stuck_rollback")
    gone = _bundle(reports, f"{run_id(20)}_Remote_rollback")
    result = p.runpytest("-m", "dr_smoke", "--env", "Remote")
    result.assert_outcomes(passed=1)
    assert result.ret == 0
    result.stdout.fnmatch_lines([f"*WARNING:  retention: could not prune {stuck.name}: Permission denied*"])
    assert stuck.is_dir()
    assert not gone.exists(), "one entry that cannot go does not keep the others"
    current = next(b for b in bundles(p) if b.name.endswith("_Remote_matrix"))
    (event,) = [e for e in read_events(current / "evidence.jsonl") if e["kind"] == "retention"]
    assert [f["name"] for f in event["data"]["failed"]] == [stuck.name]
    assert event["data"]["pruned"] == [gone.name]


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("reports_days = 0", "[retention] reports_days: expected a number >= 1, got 0"),
        ("notifications_days = -30", "[retention] notifications_days: expected a number >= 1, got -30"),
        ("reports_days = 2.5", "[retention] reports_days: expected a whole number, got a number 2.5"),
        ('reports_days = "14"', "[retention] reports_days: expected a whole number, got a string '14'"),
        ("notifications_days = true", "[retention] notifications_days: expected a whole number, got a boolean True"),
        ("keep_days = 3", "[retention] keep_days: unknown key (known: reports_days, notifications_days)"),
    ],
    ids=["zero", "negative", "fraction", "string", "boolean", "unknown-key"],
)  # fmt: skip
def test_bad_retention_value_is_a_usage_error(pytester: pytest.Pytester, toml: str, expected: str) -> None:
    p = project(pytester)
    env = p.path / "environments" / "Remote.toml"
    env.write_text(env.read_text() + f"[retention]\n{toml}\n")
    p.makepyfile(test_smoke=phase_module("DR-SMOKE", "rollback", "bluegreen", "dr_smoke"))
    result = p.runpytest("-m", "dr_smoke", "--env", "Remote")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    out = result.stdout.str() + result.stderr.str()
    assert f"{env}: {expected}" in out, out
    assert not (p.path / "reports").exists(), "nothing starts, nothing is pruned"


def test_retention_defaults_and_every_bad_value_at_once(tmp_path: Path) -> None:
    path = tmp_path / "Stage.toml"
    path.write_text('name = "Stage"\n')
    env = load_environment(path, environ={})
    assert (env.retention.reports_days, env.retention.notifications_days) == (14, 30)
    path.write_text('name = "Stage"\n[retention]\nreports_days = 0\nnotifications_days = "x"\n')
    with pytest.raises(ConfigProblems) as info:
        load_environment(path, environ={})
    assert [p.key for p in info.value.problems] == [
        "[retention] reports_days",
        "[retention] notifications_days",
    ]
    assert info.value.env is not None
    assert info.value.env.retention.reports_days == 14, "a bad value keeps its default for preflight"


# --- the dated timeline ------------------------------------------------------------------------------------
def test_dated_timeline_of_a_rollback_run_written_as_it_happens(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cr3t-dated-token-77"
    monkeypatch.setenv("RUNBOOK_TEST_WEBHOOK", f"{closed_url()}/hook/{secret}")
    p = project(pytester)
    (p.path / "environments" / "Remote.toml").write_text(remote_env(webhook_url="${RUNBOOK_TEST_WEBHOOK}"))
    so_far = (
        "from fixtures.environment import timeline_dir_for\n"
        "from plugins.archive import dated_timeline_name\n"
        "def test_step(runbook):\n"
        "    dated = timeline_dir_for(runbook) / dated_timeline_name(runbook)\n"
        "    assert 'stop_site on' in dated.read_text(), 'RB-2 is in the dated file before the run ends'\n"
        "    runbook.rollback(reason='drill', result='succeeded', **{'from': '1.1.0', 'to': '1.0.0'})\n"
    )
    rollback_modules(
        p,
        {
            "PRE": "def test_step(runbook):\n    runbook.approval('A. Operator')\n"
            "    runbook.note('a note stays out of the dated file')\n",
            "RB-1": "def test_step(runbook):\n    runbook.notified(event_type='RolledBack', delivery='delivered', attempts=1, target='http://127.0.0.1')\n",
            "RB-2": "def test_step(runbook):\n    runbook.record('action', {'name': 'stop_site', 'target':"
            " runbook.env.notify.webhook_url, 'result': 'stopped', 'duration_s': 0.1, 'detail': {}})\n",
            "RB-3": so_far,
        },
    )
    result = p.runpytest("-m", "rollback", "--env", "Remote")
    result.assert_outcomes(passed=7)
    bundle = only_bundle(p)
    daily = dated_file(p.path / "logs", bundle)
    text = daily.read_text(encoding="utf-8")
    assert secret not in text
    assert text.startswith(f"# {daily.stem.replace('_', ' ')} (playbook §9)\n")
    assert f"## {bundle.name[:16]} Remote rollback: evidence {bundle.name}, times in UTC" in text
    lines = section(text, bundle)
    assert [ph for ph, _ in lines] == [
        "PRE", "PRE", "RB-1", "RB-1", "RB-2", "RB-2", "RB-3", "RB-3", "DR-SMOKE", "RB-4", "RB-5", "RB-5", "-",
    ]  # fmt: skip
    assert lines[0][1] == "approved by A. Operator"
    assert [t for _, t in lines[1:10:2]] == ["phase passed"] * 5
    assert lines[2][1] == "notify RolledBack: delivered"
    assert lines[4][1] == "stop_site on ***: stopped (0.1 s)", "redacted: the webhook's address is a secret"
    assert lines[6][1] == "rollback 1.1.0 -> 1.0.0: succeeded (drill)"
    assert lines[8:10] == [("DR-SMOKE", "phase passed"), ("RB-4", "phase passed")]
    assert lines[10][1].startswith(f"timeline.record on {daily}: recorded")
    assert lines[11][1] == "phase passed"
    assert lines[12][1].startswith("run ended passed")
    events = read_events(bundle / "evidence.jsonl")
    (recorded,) = [e for e in events if e["kind"] == "action" and e["data"]["name"] == "timeline.record"]
    assert Path(recorded["data"]["target"]) == daily, "RB-5 names the file the writer wrote"
    assert verify_bundle(bundle).ok

    # A second run the same day gets its own section; RB-5 checks its own.
    p.runpytest("-m", "rollback", "--env", "Remote").assert_outcomes(passed=7)
    second = next(b for b in bundles(p) if b != bundle)
    daily_2 = dated_file(p.path / "logs", second)
    assert section(daily_2.read_text(encoding="utf-8"), second)[-1][0] == "-"
    if daily_2 == daily:
        assert section(daily.read_text(encoding="utf-8"), bundle) == lines, (
            "the first section stays as it was"
        )


def test_dated_timeline_of_a_bluegreen_run_has_the_approval_of_the_switch(pytester: pytest.Pytester) -> None:
    p = project(pytester)
    bodies = {
        "PRE": "def test_step(runbook):\n    runbook.approval('A. Operator')\n",
        "BG-1": "def test_step(runbook):\n    runbook.record('action', {'name': 'deploy', 'target': 'green',"
        " 'result': 'deployed', 'duration_s': 0.2, 'detail': {'version': '1.1.0'}})\n",
        "BG-3": "def test_step(runbook):\n    runbook.approval('A. Operator', version='1.1.0', env='Remote',"
        " **{'for': 'switch: live blue (1.0.0), idle green (1.1.0)'})\n"
        "    runbook.notified(event_type='Approved', delivery='delivered', attempts=1, target='http://127.0.0.1')\n",
        "BG-4": "def test_step(runbook):\n    runbook.record('action', {'name': 'switch', 'target': 'green',"
        " 'result': 'switched', 'duration_s': 0.01, 'detail': {}})\n"
        "    runbook.site_is_down('public address', 'SITE DOWN: blue did not answer after the rollback')\n",
    }
    for phase, body in bodies.items():
        markers = ["rollback", "bluegreen"] if phase == "PRE" else ["bluegreen"]
        p.makepyfile(**{"test_" + phase.lower().replace("-", "_"): phase_module(phase, *markers, body=body)})
    result = p.runpytest("-m", "bluegreen", "--env", "Remote")
    result.assert_outcomes(passed=4)
    assert result.ret == 1, "a site left down fails the run"
    bundle = only_bundle(p)
    lines = section(dated_file(p.path / "logs", bundle).read_text(encoding="utf-8"), bundle)
    assert ("BG-3", "approved by A. Operator (switch: live blue (1.0.0), idle green (1.1.0))") in lines
    assert ("BG-3", "notify Approved: delivered") in lines
    assert ("BG-4", "SITE DOWN: blue did not answer after the rollback") in lines
    assert [ph for ph, t in lines if t.startswith("phase ")] == ["PRE", "BG-1", "BG-3", "BG-4"]
    assert lines[-1][0] == "-"
    assert lines[-1][1].startswith("run ended failed")
    assert "SITE DOWN: public address" in lines[-1][1]


def test_a_matrix_only_run_has_its_section_too(pytester: pytest.Pytester) -> None:
    p = project(pytester)
    p.makepyfile(test_smoke=phase_module("DR-SMOKE", "rollback", "bluegreen", "dr_smoke"))
    p.runpytest("-m", "dr_smoke", "--env", "Remote").assert_outcomes(passed=1)
    bundle = only_bundle(p)
    text = dated_file(p.path / "logs", bundle).read_text(encoding="utf-8")
    assert f"Remote matrix: evidence {bundle.name}" in text
    assert [ph for ph, _ in section(text, bundle)] == ["DR-SMOKE", "-"]


def test_a_failing_dated_timeline_does_not_stop_the_run_and_rb5_says_so(pytester: pytest.Pytester) -> None:
    """The dated file cannot be opened (a folder holds its name): the run goes on; RB-5's check fails."""
    p = project(pytester)
    rollback_modules(p)
    today = datetime.now(UTC)
    for day in (today, today + timedelta(seconds=5)):  # the run's own day, even across midnight
        (p.path / "logs" / f"Timeline_{day.date().isoformat()}.md").mkdir(exist_ok=True)
    result = p.runpytest("-m", "rollback", "--env", "Remote")
    result.assert_outcomes(passed=6, failed=1)
    out = result.stdout.str()
    assert "EVIDENCE WRITER ERROR: the dated timeline could not be started: Is a directory" in out
    bundle = only_bundle(p)
    events = read_events(bundle / "evidence.jsonl")
    ends = {e["phase"]: e["data"]["outcome"] for e in events if e["kind"] == "phase.end"}
    assert ends == dict.fromkeys(("PRE", "RB-1", "RB-2", "RB-3", "DR-SMOKE", "RB-4"), "passed") | {
        "RB-5": "failed"
    }
    (rb5,) = [e["data"]["reason"] for e in events if e["kind"] == "phase.end" and e["phase"] == "RB-5"]
    assert re.search(
        rf"Timeline_\S+\.md has no section for run {bundle.name[:16]}; evidence writer errors: ", rb5
    )
    assert verify_bundle(bundle).ok


def test_a_dated_timeline_that_fails_mid_run_is_reported_and_the_run_goes_on(
    pytester: pytest.Pytester,
) -> None:
    p = project(pytester)
    breaks = (
        "import shutil\n"
        "def test_break(runbook):\n"
        "    logs = runbook.rootdir / 'logs'\n"
        "    shutil.rmtree(logs)\n"
        "    logs.write_text('the folder is gone')\n"
        "def test_after():\n"
        "    pass\n"
    )
    p.makepyfile(test_smoke=phase_module("DR-SMOKE", "rollback", "bluegreen", "dr_smoke", body=breaks))
    result = p.runpytest("-m", "dr_smoke", "--env", "Remote")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*EVIDENCE WRITER ERROR: evidence writer dated timeline *failed on a phase.end event: Not a directory*"
        ]
    )
    bundle = only_bundle(p)
    assert read_events(bundle / "evidence.jsonl")[-2]["kind"] == "run.end"
    assert verify_bundle(bundle).ok


# --- real Lab drills ---------------------------------------------------------------------------------------
@pytest.mark.lab
@pytest.mark.drill
def test_lab_rollback_drill_with_zip_and_dated_timeline(unkept_rollback_drill: Drill, tmp_path: Path) -> None:
    d = unkept_rollback_drill  # --evidence-zip, without --keep-lab; shared (tests/conftest.py): only read here
    assert d.returncode == 0, d.output
    assert d.phase_outcomes()["RB-5"] == "passed"
    (recorded,) = [e for e in d.kinds("action") if e["data"]["name"] == "timeline.record"]
    daily = Path(recorded["data"]["target"])
    assert daily == dated_file(d.lab_dir.resolve() / "logs" / "deploy", d.bundle)
    lines = section(daily.read_text(encoding="utf-8"), d.bundle)
    phases_ended = [ph for ph, t in lines if t.startswith("phase ")]
    assert phases_ended == [
        "PRE",
        "RB-1",
        "RB-2",
        "RB-3",
        "DR-SMOKE",
        "DR-E2E",
        "DR-AXE",
        "DR-ZAP",
        "RB-4",
        "RB-5",
    ]
    assert ("PRE", "approved by lab-auto (the rollback flow on Lab)") in lines
    assert ("RB-1", "notify RolledBack: delivered") in lines
    assert any(ph == "RB-2" and t.startswith("stop_site on ") for ph, t in lines)
    assert any(ph == "RB-3" and t.startswith("rollback ") for ph, t in lines), lines
    assert lines[-1][1].startswith("run ended passed: version 1.1.0 -> 1.0.0")
    archive = d.bundle.with_name(d.bundle.name + ".zip")
    assert f"Archive:  {archive}" in d.output
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(tmp_path / "unzipped")
    assert verify_bundle(tmp_path / "unzipped" / d.bundle.name).ok


@pytest.mark.lab
@pytest.mark.drill
def test_lab_bluegreen_release_dated_timeline_has_the_approval_of_the_switch(release_drill: Drill) -> None:
    d = release_drill  # shared with other modules' tests (tests/conftest.py): only read here
    assert d.returncode == 0, d.output
    daily = dated_file(d.lab_dir.resolve() / "logs" / "deploy", d.bundle)
    lines = section(daily.read_text(encoding="utf-8"), d.bundle)
    (switch,) = [t for ph, t in lines if ph == "BG-3" and t.startswith("approved by ")]
    assert re.fullmatch(
        r"approved by lab-auto \(switch: live blue \(1\.0\.0\) -> idle green \(1\.1\.0\)\)", switch
    ), switch
    assert ("BG-3", "notify Approved: delivered") in lines
    assert [ph for ph, t in lines if t.startswith("phase ")] == [
        "PRE", "BG-1", "DR-SMOKE", "DR-E2E", "DR-AXE", "DR-ZAP", "BG-3", "BG-4", "BG-5",
    ]  # fmt: skip
    assert any(ph == "BG-4" and t.startswith("switch_traffic on green: ok") for ph, t in lines), lines
    assert lines[-1][1].startswith("run ended passed: version 1.0.0 -> 1.1.0")
    assert not list(d.bundle.parent.glob("*.zip")), "no --evidence-zip, no archive"
