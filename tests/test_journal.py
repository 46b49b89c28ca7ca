"""The evidence journal, the manifest and `verify` (DESIGN.md, "Evidence bundle" and "Journal").

Real files in tmp_path, real processes for the CLI and for the killed writer; nothing is mocked.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any

import pytest

from plugins.journal import KINDS, Journal, read_events, verify_bundle, write_manifest

ROOT = Path(__file__).resolve().parents[1]
ZEROS = "0" * 64
SECRET = "s3cr3t-Tok3n-9f2c"
MISSING_MANIFEST = "manifest.json missing (run did not finish, or it was removed)"
JOURNAL_SHA_DIFFERS = "evidence.jsonl: sha256 differs from manifest (altered)"
LAST_HASH_DIFFERS = "evidence.jsonl: last hash differs from manifest (events removed or added at the end)"


def design_hash(event: dict[str, Any]) -> str:
    """The hash exactly as DESIGN.md writes it, independent of the module under test."""
    without_hash = {key: value for key, value in event.items() if key != "hash"}
    text = json.dumps(without_hash, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def journal_lines(bundle: Path) -> list[bytes]:
    """The journal's lines, each with its end of line."""
    content = (bundle / "evidence.jsonl").read_bytes()
    return [line + b"\n" for line in content.split(b"\n")[:-1]]


def rewrite_journal(bundle: Path, edit: Callable[[list[bytes]], list[bytes]]) -> None:
    path = bundle / "evidence.jsonl"
    path.write_bytes(b"".join(edit(journal_lines(bundle))))


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plugins.journal", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=False,
    )


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """A finished rollback run's bundle: 10 events, artifacts and report, sealed by the manifest."""
    directory = tmp_path / "reports" / "20261126T130211Z_Lab_rollback"
    with Journal(directory / "evidence.jsonl", "run-1", "Lab", "rollback") as journal:
        journal.append("run.start", {"env": "Lab", "flow": "rollback", "options": {"approver": "j.doe"}})
        journal.append("phase.start", phase="PRE", nodeid="runbook_tests/test_pre.py::test_preflight")
        journal.append("probe", {"name": "home", "url": "http://lab/", "status": 200, "latency_ms": 12.5})
        journal.append("phase.end", {"outcome": "passed", "reason": None}, phase="PRE")
        journal.append("approval", {"approver": "j.doe"}, phase="RB-1")
        journal.append(
            "action", {"name": "stop_service", "target": "app-1", "result": "ok", "duration_s": 1.2}
        )
        journal.append("notify", {"event_type": "rollback.started", "delivery": "queued"}, phase="RB-2")
        journal.append(
            "rollback", {"reason": "monitor breach", "from": "2.4.0", "to": "2.3.1", "result": "ok"}
        )
        journal.append("finding", {"tool": "axe", "id": "color-contrast", "impact": "serious", "page": "/"})
        journal.append(
            "run.end",
            {"outcome": "passed", "version_from": "2.4.0", "version_to": "2.3.1", "rollback_ran": True},
        )
        artifacts = directory / "artifacts"
        (artifacts / "axe").mkdir(parents=True)
        (artifacts / "axe" / "home.json").write_text('{"url": "http://lab/", "violations": []}\n')
        (artifacts / "monitor.csv").write_text("ts,status,latency_ms\n2026-11-26T13:02:11Z,200,12\n")
        (artifacts / "notifications.jsonl").write_text('{"event_type": "rollback.started"}\n')
        (directory / "timeline.md").write_text("# Timeline\n")
        (directory / "report.html").write_text("<html></html>\n")
        write_manifest(directory, journal.last_hash)
    return directory


# --- the chain ------------------------------------------------------------------------------------------


def test_chain_starts_at_zeros_counts_from_one_and_every_hash_recomputes(bundle: Path) -> None:
    events = [json.loads(line) for line in journal_lines(bundle)]

    assert [event["seq"] for event in events] == list(range(1, 11))
    assert events[0]["prev_hash"] == ZEROS
    for previous, event in itertools.pairwise(events):
        assert event["prev_hash"] == previous["hash"]
    for event in events:
        assert re.fullmatch(r"[0-9a-f]{64}", event["hash"])
        assert event["hash"] == design_hash(event), f"seq {event['seq']}"


def test_event_has_the_design_fields_and_a_utc_millisecond_timestamp(tmp_path: Path) -> None:
    before = datetime.now(UTC)
    with Journal(tmp_path / "evidence.jsonl", "run-7", "InternalStage", "bluegreen") as journal:
        returned = journal.append("probe", {"name": "health"}, phase="BG-3", nodeid="t.py::test_health")
        bare = journal.append("note")

    written = read_events(tmp_path / "evidence.jsonl")
    assert written == [returned, bare]
    assert list(returned) == [
        "seq",
        "ts",
        "run_id",
        "env",
        "flow",
        "phase",
        "nodeid",
        "kind",
        "data",
        "prev_hash",
        "hash",
    ]
    assert returned["run_id"] == "run-7"
    assert returned["env"] == "InternalStage"
    assert returned["flow"] == "bluegreen"
    assert returned["phase"] == "BG-3"
    assert returned["nodeid"] == "t.py::test_health"
    assert returned["kind"] == "probe"
    assert returned["data"] == {"name": "health"}
    assert (bare["phase"], bare["nodeid"], bare["data"]) == (None, None, {})
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", returned["ts"])
    assert before.replace(microsecond=0) <= datetime.fromisoformat(returned["ts"]) <= datetime.now(UTC)


def test_properties_follow_the_last_event(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "deep" / "er" / "evidence.jsonl", "r", "Lab", "dr")
    assert (journal.seq, journal.last_hash) == (0, ZEROS)
    first = journal.append("run.start")
    second = journal.append("run.end", {"outcome": "passed"})
    assert (journal.seq, journal.last_hash) == (2, second["hash"])
    assert second["prev_hash"] == first["hash"]
    journal.close()
    journal.close()  # closing twice is harmless
    with pytest.raises(ValueError, match="closed"):
        journal.append("note")


def test_secret_never_reaches_the_file(tmp_path: Path) -> None:
    def redact(text: str) -> str:
        return text.replace(SECRET, "***")

    path = tmp_path / "evidence.jsonl"
    with Journal(path, "run-1", "Lab", "rollback", redact=redact) as journal:
        returned = journal.append(
            "action",
            {
                "name": "login",
                "detail": f"curl -H 'Authorization: Bearer {SECRET}' http://lab/",
                "nested": {"deeper": [{"token": SECRET}, ("x", f"pre-{SECRET}-post")], SECRET: "as a key"},
                "set": {SECRET},
                "path": Path("/etc") / SECRET,
            },
            nodeid=f"t.py::test_login[{SECRET}]",
        )

    content = path.read_bytes()
    assert SECRET.encode() not in content
    assert content.count(b"***") == 7
    assert returned["data"]["nested"]["deeper"][0] == {"token": "***"}
    assert returned["data"]["nested"]["deeper"][1] == ["x", "pre-***-post"]
    assert returned["nodeid"] == "t.py::test_login[***]"
    assert verify_bundle(tmp_path).problems == [MISSING_MANIFEST]


class Impact(Enum):
    SERIOUS = "serious"


@dataclasses.dataclass
class Probe:
    name: str
    status: int
    at: datetime


def test_values_that_are_not_json_are_converted_deterministically(tmp_path: Path) -> None:
    at = datetime(2026, 11, 26, 13, 2, 11, 123000, tzinfo=UTC)
    data: dict[Any, Any] = {
        "path": Path("artifacts") / "monitor.csv",
        "at": at,
        "probe": Probe("home", 200, at),
        "set": {"b", "a", "c"},
        "mixed_set": {2, "1"},
        "bytes": b"\x00\x01\x02",
        "tuple": (1, 2),
        "enum": Impact.SERIOUS,
        "nan": float("nan"),
        3: "int key",
    }
    with Journal(tmp_path / "evidence.jsonl", "r", "Lab", "dr") as journal:
        event = journal.append("note", data)

    assert event["data"] == {
        "path": str(Path("artifacts") / "monitor.csv"),
        "at": "2026-11-26T13:02:11.123000+00:00",
        "probe": {"name": "home", "status": 200, "at": "2026-11-26T13:02:11.123000+00:00"},
        "set": ["a", "b", "c"],
        "mixed_set": ["1", 2],
        "bytes": "<3 bytes>",
        "tuple": [1, 2],
        "enum": "serious",
        "nan": "nan",
        "3": "int key",
    }
    assert read_events(tmp_path / "evidence.jsonl") == [event]


def test_unicode_keeps_one_event_a_line_and_verifies(tmp_path: Path) -> None:
    with Journal(tmp_path / "evidence.jsonl", "r", "Lab", "dr") as journal:
        separators = "a\u2028b\u2029c\nd\re"
        journal.append("note", {"text": "naïve ✓ 日本", "separators": separators, "lone": "x\udcffy"})
        journal.append("note", {"text": "after"})
        write_manifest(tmp_path, journal.last_hash)

    events = read_events(tmp_path / "evidence.jsonl")
    assert len((tmp_path / "evidence.jsonl").read_bytes().split(b"\n")) == 3
    assert events[0]["data"]["text"] == "naïve ✓ 日本"
    assert events[0]["data"]["separators"] == "a\u2028b\u2029c\nd\re"
    assert events[0]["data"]["lone"] == "x\\udcffy"
    assert "naïve ✓".encode() in (tmp_path / "evidence.jsonl").read_bytes()
    assert verify_bundle(tmp_path).ok


@pytest.mark.parametrize("kind", ["", "Probe", "phase-start", "run.", ".end", "run..end", "probe 1", "ok!"])
def test_malformed_kind_is_refused(tmp_path: Path, kind: str) -> None:
    with Journal(tmp_path / "evidence.jsonl", "r", "Lab", "dr") as journal:
        with pytest.raises(ValueError, match="kind"):
            journal.append(kind)
        assert journal.seq == 0
    assert (tmp_path / "evidence.jsonl").read_bytes() == b""


def test_design_kinds_and_new_ones_are_accepted(tmp_path: Path) -> None:
    design = {"run.start", "phase.start", "phase.end", "action", "probe", "notify", "approval", "rollback"}
    assert design | {"finding", "run.end", "warning", "note"} == set(KINDS)
    with Journal(tmp_path / "evidence.jsonl", "r", "Lab", "dr") as journal:
        for kind in (*KINDS, "lab.fault.injected"):
            journal.append(kind)
    kinds = [event["kind"] for event in read_events(tmp_path / "evidence.jsonl")]
    assert kinds == [*KINDS, "lab.fault.injected"]


def test_data_must_be_a_mapping(tmp_path: Path) -> None:
    with (
        Journal(tmp_path / "evidence.jsonl", "r", "Lab", "dr") as journal,
        pytest.raises(TypeError, match="mapping"),
    ):
        journal.append("note", ["not", "a", "mapping"])  # type: ignore[arg-type]


def test_a_journal_is_written_once(tmp_path: Path) -> None:
    path = tmp_path / "evidence.jsonl"
    path.write_bytes(b"")
    with Journal(path, "r", "Lab", "dr") as journal:  # an empty file is fine
        journal.append("run.start")
    with pytest.raises(FileExistsError, match="already holds events"):
        Journal(path, "r2", "Lab", "dr")
    assert len(read_events(path)) == 1


def test_four_threads_recording_at_once_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "evidence.jsonl"
    start = threading.Barrier(4)
    with Journal(path, "r", "Lab", "bluegreen") as journal:

        def record(worker: int) -> None:
            start.wait()
            for n in range(200):
                journal.append("probe", {"worker": worker, "n": n, "status": 200})

        threads = [threading.Thread(target=record, args=(worker,)) for worker in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        write_manifest(tmp_path, journal.last_hash)

    events = read_events(path)
    assert [event["seq"] for event in events] == list(range(1, 801))
    assert all(event["hash"] == design_hash(event) for event in events)
    assert all(later["prev_hash"] == earlier["hash"] for earlier, later in itertools.pairwise(events))
    for worker in range(4):
        assert [e["data"]["n"] for e in events if e["data"]["worker"] == worker] == list(range(200))
    result = verify_bundle(tmp_path)
    assert (result.ok, result.events, result.problems) == (True, 800, [])


WRITER = """
import sys
from pathlib import Path
from plugins.journal import Journal

journal = Journal(Path(sys.argv[1]) / "evidence.jsonl", "killed-run", "Lab", "rollback")
journal.append("run.start", {"env": "Lab", "flow": "rollback"})
n = 0
while True:
    n += 1
    journal.append("probe", {"name": "home", "n": n, "status": 200, "detail": "x" * 300}, phase="RB-3")
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_a_writer_killed_mid_run_leaves_a_valid_prefix(tmp_path: Path) -> None:
    bundle = tmp_path / "killed"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(bundle)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        journal = bundle / "evidence.jsonl"
        while not journal.exists() or journal.read_bytes().count(b"\n") < 200:
            assert writer.poll() is None, "the writer stopped on its own"
            assert time.monotonic() < deadline, "the writer wrote fewer than 200 events in 60 s"
            time.sleep(0.01)
        assert writer.poll() is None
        os.kill(writer.pid, signal.SIGKILL)
        assert writer.wait(timeout=30) == -signal.SIGKILL
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()

    result = verify_bundle(bundle)
    assert result.problems == [MISSING_MANIFEST]
    assert result.chain_intact
    assert result.events >= 200
    assert not result.manifest_present
    cli = run_cli("verify", str(bundle))
    assert cli.returncode == 1
    assert cli.stdout.splitlines() == [
        f"ALTERED: {bundle}",
        f"  {MISSING_MANIFEST}",
        f"note: the journal's {result.events} events form an intact chain (a valid prefix of the run)",
    ]


# --- the manifest ---------------------------------------------------------------------------------------


def test_manifest_lists_every_other_file_with_its_sha256(bundle: Path) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))

    expected_files = [
        "artifacts/axe/home.json",
        "artifacts/monitor.csv",
        "artifacts/notifications.jsonl",
        "evidence.jsonl",
        "report.html",
        "timeline.md",
    ]
    assert list(manifest["files"]) == expected_files
    for relative, digest in manifest["files"].items():
        assert digest == hashlib.sha256((bundle / relative).read_bytes()).hexdigest(), relative
    assert manifest["journal_last_hash"] == json.loads(journal_lines(bundle)[-1])["hash"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", manifest["created"])
    assert sorted(path.name for path in bundle.iterdir()) == [
        "artifacts",
        "evidence.jsonl",
        "manifest.json",
        "report.html",
        "timeline.md",
    ]  # no temporary file left behind


def test_manifest_can_be_written_again_over_the_old_one(bundle: Path) -> None:
    (bundle / "report.html").write_text("<html>final</html>\n")
    last_hash = json.loads(journal_lines(bundle)[-1])["hash"]
    write_manifest(bundle, last_hash)
    assert verify_bundle(bundle).ok


def test_manifest_refuses_a_journal_hash_that_is_not_one(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="64 lower-case hex"):
        write_manifest(tmp_path, "not-a-hash")
    assert not (tmp_path / "manifest.json").exists()


# --- verify: what was altered ---------------------------------------------------------------------------


def test_clean_bundle_verifies(bundle: Path) -> None:
    result = verify_bundle(bundle)
    assert result.problems == []
    assert (result.ok, result.events, result.chain_intact, result.manifest_files) == (True, 10, True, 6)


def test_edited_data_field_is_named_by_line(bundle: Path) -> None:
    def edit(lines: list[bytes]) -> list[bytes]:
        event = json.loads(lines[6])
        event["data"]["delivery"] = "delivered"  # was "queued"
        lines[6] = json.dumps(event, ensure_ascii=False).encode() + b"\n"
        return lines

    rewrite_journal(bundle, edit)

    result = verify_bundle(bundle)
    assert not result.ok
    assert result.problems == [
        "evidence.jsonl line 7 (seq 7): hash does not match its content (altered)",
        JOURNAL_SHA_DIFFERS,
    ]


def test_edited_line_with_its_hash_recomputed_breaks_the_next_link(bundle: Path) -> None:
    def edit(lines: list[bytes]) -> list[bytes]:
        event = json.loads(lines[4])
        event["data"]["approver"] = "someone.else"
        event["hash"] = design_hash(event)
        lines[4] = json.dumps(event).encode() + b"\n"
        return lines

    rewrite_journal(bundle, edit)

    assert verify_bundle(bundle).problems == [
        "evidence.jsonl line 6 (seq 6): prev_hash does not link to line 5 "
        "(line 5 altered and its hash recomputed, or this line replaced)",
        JOURNAL_SHA_DIFFERS,
    ]


def test_deleted_middle_line(bundle: Path) -> None:
    rewrite_journal(bundle, lambda lines: lines[:4] + lines[5:])

    result = verify_bundle(bundle)
    assert result.events == 9
    assert result.problems == [
        "evidence.jsonl line 5 (seq 6): seq 6, expected 5 (line removed)",
        "evidence.jsonl line 5 (seq 6): prev_hash does not link to line 4 (line removed or reordered)",
        JOURNAL_SHA_DIFFERS,
    ]


def test_two_lines_swapped(bundle: Path) -> None:
    rewrite_journal(bundle, lambda lines: [*lines[:3], lines[4], lines[3], *lines[5:]])

    assert verify_bundle(bundle).problems == [
        "evidence.jsonl line 4 (seq 5): seq 5, expected 4 (lines reordered)",
        "evidence.jsonl line 4 (seq 5): prev_hash links to line 5, not line 3 (lines reordered)",
        "evidence.jsonl line 5 (seq 4): seq 4, expected 6 (lines reordered)",
        "evidence.jsonl line 5 (seq 4): prev_hash links to line 3, not line 4 (lines reordered)",
        "evidence.jsonl line 6 (seq 6): prev_hash links to line 4, not line 5 (lines reordered)",
        JOURNAL_SHA_DIFFERS,
    ]


def test_duplicated_line(bundle: Path) -> None:
    rewrite_journal(bundle, lambda lines: [*lines[:5], lines[4], *lines[5:]])

    assert verify_bundle(bundle).problems == [
        "evidence.jsonl line 6 (seq 5): seq 5, expected 6 (line duplicated)",
        "evidence.jsonl line 6 (seq 5): prev_hash links to line 4, not line 5 (line duplicated)",
        JOURNAL_SHA_DIFFERS,
    ]


def test_truncated_last_line(bundle: Path) -> None:
    rewrite_journal(bundle, lambda lines: [*lines[:-1], lines[-1][:40]])

    result = verify_bundle(bundle)
    assert result.events == 9
    assert result.problems == [
        "evidence.jsonl line 10: last line incomplete, no end of line "
        "(the run was killed while writing it, or the file was cut)",
        JOURNAL_SHA_DIFFERS,
        LAST_HASH_DIFFERS,
    ]


def test_garbage_line_in_the_middle(bundle: Path) -> None:
    rewrite_journal(bundle, lambda lines: [*lines[:2], b'{"seq": 3, "broken\n', *lines[3:]])

    assert verify_bundle(bundle).problems == [
        "evidence.jsonl line 3: not valid JSON (altered)",
        JOURNAL_SHA_DIFFERS,
    ]


def test_first_lines_removed(bundle: Path) -> None:
    rewrite_journal(bundle, lambda lines: lines[2:])

    assert verify_bundle(bundle).problems == [
        "evidence.jsonl line 1 (seq 3): seq 3, expected 1 (2 lines removed)",
        "evidence.jsonl line 1 (seq 3): prev_hash is not 64 zeros, so this is not the first event "
        "(lines removed at the start)",
        JOURNAL_SHA_DIFFERS,
    ]


def test_last_events_removed_with_the_manifest_present(bundle: Path) -> None:
    rewrite_journal(bundle, lambda lines: lines[:-2])

    result = verify_bundle(bundle)
    assert result.chain_intact  # what is left is a valid chain: only the manifest can tell
    assert result.problems == [JOURNAL_SHA_DIFFERS, LAST_HASH_DIFFERS]


def test_events_added_after_the_manifest(bundle: Path) -> None:
    events = read_events(bundle / "evidence.jsonl")
    last = events[-1]
    extra = {**last, "seq": 11, "kind": "note", "data": {"text": "later"}, "prev_hash": last["hash"]}
    extra["hash"] = design_hash(extra)
    rewrite_journal(bundle, lambda lines: [*lines, json.dumps(extra).encode() + b"\n"])

    assert verify_bundle(bundle).problems == [
        JOURNAL_SHA_DIFFERS,
        "evidence.jsonl: last hash differs from manifest (1 event(s) added at the end after the manifest "
        "was written; the manifest seals line 10)",
    ]


def test_altered_artifact(bundle: Path) -> None:
    monitor = bundle / "artifacts" / "monitor.csv"
    monitor.write_text(monitor.read_text().replace(",200,", ",503,"))

    result = verify_bundle(bundle)
    assert result.chain_intact
    assert result.problems == ["artifacts/monitor.csv: sha256 differs from manifest (altered)"]


def test_missing_artifact(bundle: Path) -> None:
    (bundle / "artifacts" / "axe" / "home.json").unlink()

    assert verify_bundle(bundle).problems == [
        "artifacts/axe/home.json: missing (listed in the manifest, removed after the run)"
    ]


def test_added_file(bundle: Path) -> None:
    (bundle / "artifacts" / "screenshots").mkdir()
    (bundle / "artifacts" / "screenshots" / "after.png").write_bytes(b"\x89PNG")

    assert verify_bundle(bundle).problems == [
        "artifacts/screenshots/after.png: not in manifest (added after the run)"
    ]


def test_missing_manifest_still_checks_the_chain(bundle: Path) -> None:
    (bundle / "manifest.json").unlink()

    result = verify_bundle(bundle)
    assert (result.ok, result.chain_intact, result.events) == (False, True, 10)
    assert result.problems == [MISSING_MANIFEST]


def test_manifest_that_is_not_json(bundle: Path) -> None:
    (bundle / "manifest.json").write_text("{not json")

    assert verify_bundle(bundle).problems == ["manifest.json: not valid JSON (altered)"]


def test_manifest_pointing_outside_the_bundle_is_not_followed(bundle: Path) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["../outside.txt"] = "0" * 64
    (bundle / "manifest.json").write_text(json.dumps(manifest))

    assert verify_bundle(bundle).problems == [
        "manifest.json: lists '../outside.txt', a path outside the bundle (altered)"
    ]


def test_read_events_is_strict_unless_asked(bundle: Path) -> None:
    rewrite_journal(bundle, lambda lines: [*lines[:-1], lines[-1][:40]])

    with pytest.raises(ValueError, match="line 10"):
        read_events(bundle / "evidence.jsonl")
    prefix = read_events(bundle / "evidence.jsonl", strict=False)
    assert [event["seq"] for event in prefix] == list(range(1, 10))


# --- the CLI --------------------------------------------------------------------------------------------


def test_cli_ok(bundle: Path) -> None:
    result = run_cli("verify", str(bundle))

    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"OK: {bundle}: 10 events, chain intact, manifest matches (6 files)\n"


def test_cli_altered_lists_every_problem(bundle: Path) -> None:
    rewrite_journal(bundle, lambda lines: lines[:4] + lines[5:])
    (bundle / "artifacts" / "monitor.csv").write_text("forged\n")

    result = run_cli("verify", str(bundle))

    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"ALTERED: {bundle}",
        "  evidence.jsonl line 5 (seq 6): seq 6, expected 5 (line removed)",
        "  evidence.jsonl line 5 (seq 6): prev_hash does not link to line 4 (line removed or reordered)",
        "  artifacts/monitor.csv: sha256 differs from manifest (altered)",
        f"  {JOURNAL_SHA_DIFFERS}",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["verify", "{missing}"], "{missing}: no such directory"),
        (["verify", "{empty}"], "{empty}: no evidence.jsonl in it (not an evidence bundle?)"),
        (["check", "{bundle}"], "invalid choice: 'check'"),
        ([], "the following arguments are required: COMMAND"),
        (["verify"], "the following arguments are required: BUNDLE_DIR"),
    ],
)
def test_cli_usage_errors_exit_2(bundle: Path, tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "empty").mkdir()
    names = {"missing": str(tmp_path / "missing"), "empty": str(tmp_path / "empty"), "bundle": str(bundle)}

    result = run_cli(*(arg.format(**names) for arg in args))

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("usage: python -m plugins.evidence")
    assert message.format(**names) in result.stderr
