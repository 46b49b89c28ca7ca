"""The evidence journal, the manifest, the seal and `verify` (DESIGN.md, "Evidence bundle" and "Journal").

Real files in tmp_path, real processes for the CLI and for the killed writer, a real pytest session for a
real bundle; nothing is mocked.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from datetime import time as time_of_day
from enum import Enum, IntEnum
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath
from types import MappingProxyType
from typing import Any

import pytest

import plugins.journal as journal_module
from drivers.config import Environment, load_environment
from plugins.journal import (
    KINDS,
    MANIFEST_KEYS,
    SEAL_KIND,
    Journal,
    main,
    read_events,
    verify_bundle,
    write_manifest,
)
from tests.runbook_project import make_runbook_project, phase_module

ROOT = Path(__file__).resolve().parents[1]
ZEROS = "0" * 64
SECRET = "s3cr3t-Tok3n-9f2c"
MISSING_MANIFEST = "manifest.json: missing (the run did not finish, or it was removed)"
NOT_SEALED = "evidence.jsonl: not sealed: the run did not finish, or the seal was removed"
MANIFEST_SHA_DIFFERS = "manifest.json: sha256 differs from the one sealed at evidence.jsonl line 11 (altered)"
BUNDLE_FILES = [
    "artifacts/axe/home.json",
    "artifacts/monitor.csv",
    "artifacts/notifications.jsonl",
    "junit.xml",
    "report.html",
    "timeline.md",
]


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


def run_module(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=False,
    )


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_module("plugins.journal", *args)


def run_evidence_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The command the operator is told to run (README, DESIGN): python -m plugins.evidence."""
    return run_module("plugins.evidence", *args)


def manifest_of(bundle: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    return manifest


def write_json(path: Path, value: object) -> None:
    """Rewrite manifest.json the way the run does, with whatever values the test put in."""
    path.write_bytes((json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode())


def names_only(problems: list[str], relative: str) -> bool:
    """Every problem starts with the name of this one file: no other file is blamed."""
    return bool(problems) and all(
        problem.startswith((f"{relative}: ", f"{relative} line ")) for problem in problems
    )


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """A finished rollback run's bundle: 10 events, artifacts, junit and report, then the manifest and the
    seal (line 11). One action's detail holds terminal colour escapes and one probe a tiny latency, so that
    the journal has JSON escapes and a number in exponent form, both of which can be spelt otherwise."""
    directory = tmp_path / "reports" / "20261126T130211Z_Lab_rollback"
    with Journal(directory / "evidence.jsonl", "run-1", "Lab", "rollback") as journal:
        journal.append("run.start", {"env": "Lab", "flow": "rollback", "options": {"approver": "j.doe"}})
        journal.append("phase.start", phase="PRE", nodeid="runbook_tests/test_pre.py::test_preflight")
        journal.append("probe", {"name": "home", "url": "http://lab/", "status": 200, "latency_ms": 1.5e-05})
        journal.append("phase.end", {"outcome": "passed", "reason": None}, phase="PRE")
        journal.append("approval", {"approver": "j.doe"}, phase="RB-1")
        journal.append(
            "action",
            {
                "name": "stop_service",
                "target": "app-1",
                "result": "ok",
                "duration_s": 1.2,
                "detail": "\x1b[32mstopped\x1b[0m",
            },
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
        (directory / "junit.xml").write_text('<?xml version="1.0" encoding="utf-8"?>\n<testsuites />\n')
        journal.seal()
    return directory


# --- the chain ------------------------------------------------------------------------------------------


def test_chain_starts_at_zeros_counts_from_one_and_every_hash_recomputes(bundle: Path) -> None:
    events = [json.loads(line) for line in journal_lines(bundle)]

    assert [event["seq"] for event in events] == list(range(1, 12))
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
    assert verify_bundle(tmp_path).problems == [NOT_SEALED, MISSING_MANIFEST]


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
        journal.seal()

    events = read_events(tmp_path / "evidence.jsonl")
    assert len((tmp_path / "evidence.jsonl").read_bytes().split(b"\n")) == 4  # 2 events, the seal, ""
    assert events[0]["data"]["text"] == "naïve ✓ 日本"
    assert events[0]["data"]["separators"] == "a\u2028b\u2029c\nd\re"
    assert events[0]["data"]["lone"] == "x\\udcffy"
    assert "naïve ✓".encode() in (tmp_path / "evidence.jsonl").read_bytes()
    assert verify_bundle(tmp_path).ok


# --- the fast path: plain values, a redactor that changes nothing, each field encoded once ----------------


class Colour(Enum):
    RED = "red"


class Level(IntEnum):
    HIGH = 4


class Text(str):
    __slots__ = ()


class Number(int):
    pass


class GeneralConverter:
    """The general path: plugins/journal.py's converter as it was before its fast path, word for word, every
    value through the chain of isinstance checks and every string through the redactor."""

    def __init__(self, redact: Callable[[str], str]) -> None:
        self._redact = redact
        self._active: set[int] = set()

    def text(self, value: str) -> str:
        return journal_module._utf8_safe(self._redact(value))

    def key(self, value: object) -> str:
        if isinstance(value, str):
            return self.text(value)
        converted = self.value(value)
        return converted if isinstance(converted, str) else self.text(str(converted))

    def value(self, value: object) -> Any:
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Enum):
            return self.value(value.value)
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return float(value) if math.isfinite(value) else repr(float(value))
        if isinstance(value, datetime | date | time_of_day):
            return value.isoformat()
        if isinstance(value, timedelta):
            return value.total_seconds()
        if isinstance(value, bytes | bytearray):
            return f"<{len(value)} bytes>"
        if isinstance(value, memoryview):
            return f"<{value.nbytes} bytes>"
        if isinstance(value, PurePath):
            return self.text(str(value))
        marker = id(value)
        if marker in self._active:
            return "<cycle>"
        self._active.add(marker)
        try:
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                return {f.name: self.value(getattr(value, f.name)) for f in dataclasses.fields(value)}
            if isinstance(value, Mapping):
                return {self.key(k): self.value(v) for k, v in value.items()}
            if isinstance(value, set | frozenset):
                items = [self.value(item) for item in value]
                return sorted(items, key=lambda item: json.dumps(item, sort_keys=True, ensure_ascii=False))
            if isinstance(value, list | tuple | Sequence):
                return [self.value(item) for item in value]
        finally:
            self._active.discard(marker)
        return self.text(str(value))


def nested(depth: int, leaf: object) -> object:
    """`leaf` under `depth` levels of dict, list and tuple, in turn, with unsorted keys and a str subclass."""
    value = leaf
    for level in range(depth):
        value = ({"z": level, Text("k"): value, "a": [level]}, [level, value], (value, level))[level % 3]
    return value


def corpus() -> list[dict[Any, Any]]:
    """Event data of every kind the converter knows, plain and not, in one event each."""
    looped: list[Any] = [1]
    looped.append(looped)
    selfish: dict[str, Any] = {"name": "self"}
    selfish["me"] = selfish
    shared = [1, {"b": 2, "a": 1}]
    at = datetime(2026, 11, 26, 13, 2, 11, 123000, tzinfo=UTC)
    return [
        {},
        {"a": 1, "b": [1, 2.5, None, True, False, "x"], "c": {"d": "e", "f": {}}},  # sorted at every depth
        {
            "name": "health",
            "url": "http://127.0.0.1:8080/health",
            "status": 200,
            "latency_ms": 3.2,
            "error": None,
            "body": {"status": "Healthy", "version": "1.1.0"},
        },
        {"a": {"z": 1, "b": 2}},  # sorted outside, not inside
        {
            "floats": [
                1e-7,
                1e16,
                1.5e300,
                -0.0,
                0.1 + 0.2,
                5e-324,
                2.5,
                float("nan"),
                float("inf"),
                -math.inf,
            ],
            "ints": [0, -1, 2**70, -(2**64)],
            "bools": [True, False],
        },
        {
            3: "int key",
            1.5: "float key",
            1e-7: "tiny float key",
            None: "None key",
            True: "bool key",
            (1, "x"): "tuple key",
            Colour.RED: "enum key",
            Level.HIGH: "int enum key",
            float("nan"): "nan key",
            frozenset({"b", "a"}): "frozenset key",
            "3": "collides with 3: the later wins",
            Number(9): "int subclass",
        },
        {"tuple": (1, (2, (3,))), "empty": [(), ((),), [], {}], "list of dicts": [{"b": 1, "a": 2}]},
        {
            "path": Path("artifacts") / "monitor.csv",
            "pure": PurePosixPath("/etc/x"),
            "windows": PureWindowsPath(r"C:\x"),
        },
        {
            "unicode": "naïve ✓ 日本 😀",
            "separators": "a\u2028b\u2029c\x85d",
            "controls": '\x00\x1f\n\r\t"\\/\x7f',
            "lone": "x\udcffy\ud800",
            "\udc80key": "a lone surrogate in a key",
            "ключ": "значение",
            "ü": "non-ASCII key",
        },
        {
            "subclasses": [Text("t"), Number(7), Level.HIGH, Colour.RED],
            "ordered": OrderedDict([("b", 1), ("a", 2)]),
            Text("str subclass key"): 1,
            "mapping proxy": MappingProxyType({"y": 1, "x": 2}),
        },
        {"cycle list": looped, "cycle dict": selfish, "shared twice": [shared, shared]},
        {
            "dataclass": Probe("home", 200, at),
            "set": {"b", "a", "c"},
            "mixed set": {2, "1", (3, 4)},
            "bytes": b"\x00\x01",
            "bytearray": bytearray(3),
            "memoryview": memoryview(b"abcd"),
            "at": at,
            "date": at.date(),
            "time": at.timetz(),
            "timedelta": timedelta(seconds=1.5),
            "range": range(3),
        },
        {"deep": nested(60, "leaf"), "deep sorted": nested(1, {"a": {"b": {"c": [1, [2, [3]]]}}})},
        {"object": Impact.SERIOUS, "exception": ValueError("no"), "type": int},
    ]


def general_journal(
    events: list[tuple[str, dict[Any, Any], str | None, str | None, str]],
    redact: Callable[[str], str],
    fields: tuple[str, str, str],
) -> bytes:
    """The bytes the journal writes, by the general path: the converter without its fast path, the redactor
    called on every string, and the event encoded by json.dumps (canonical_hash, _written_form)."""
    run_id, env, flow = fields
    lines, prev_hash = [], ZEROS
    for seq, (kind, data, phase, nodeid, ts) in enumerate(events, start=1):
        converter = GeneralConverter(redact)
        event: dict[str, Any] = {
            "seq": seq,
            "ts": ts,
            "run_id": run_id,
            "env": env,
            "flow": flow,
            "phase": journal_module._utf8_safe(phase) if phase is not None else None,  # not redacted
            "nodeid": converter.text(nodeid) if nodeid is not None else None,
            "kind": kind,
            "data": converter.value(data),
            "prev_hash": prev_hash,
        }
        event["hash"] = journal_module.canonical_hash(event)
        lines.append(journal_module._written_form(event))
        prev_hash = event["hash"]
    return b"".join(lines)


def secret_environment(tmp_path: Path, secret: str | None) -> Environment:
    """A real environment, with `secret` as the value of one ${VAR} (a secret to redact), or with none."""
    path = tmp_path / "Stage.toml"
    url = "https://stage.example/${TOKEN}/" if secret is not None else "https://stage.example/"
    path.write_text(f'name = "Stage"\n[service]\nbase_url = "{url}"\n', encoding="utf-8")
    return load_environment(path, environ={} if secret is None else {"TOKEN": secret})


def corpus_events(nodeid_extra: str = "") -> list[tuple[str, dict[Any, Any], str | None, str | None, str]]:
    phases = [None, "DR-SMOKE", "RB-3 ✓", "ph\udcffase"]
    nodeids = [None, f"t.py::test_a[{nodeid_extra}]", "t.py::test_ü[x\udcffy]", 'q"uote\\']
    return [
        ("note" if n % 2 else "probe", data, phases[n % 4], nodeids[n % 4], f"2026-11-26T13:02:{n:02d}.123+00:00")
        for n, data in enumerate(corpus())
    ]  # fmt: skip


@pytest.mark.parametrize("redactor", ["none", "environment without secrets", "identity function", "secret"])
def test_the_fast_path_writes_the_bytes_of_the_general_path(tmp_path: Path, redactor: str) -> None:
    """Every line, byte for byte, as the general path writes it: the converter without its fast path, every
    string through the redactor, the event encoded by json.dumps twice; with the redactor skipped (none, an
    environment without secrets) or called (a function the journal cannot know changes nothing, a secret)."""
    redact: Callable[[str], str] | None = {
        "none": None,
        "environment without secrets": secret_environment(tmp_path, None).redact,
        "identity function": lambda text: text,
        "secret": secret_environment(tmp_path, SECRET).redact,
    }[redactor]
    events = corpus_events(SECRET)
    fields = ('run-"1"', "Prod-東京", "rollback")
    bundle = tmp_path / "bundle"
    with Journal(bundle / "evidence.jsonl", *fields, redact=redact) as journal:
        returned = [
            journal.append(kind, data, phase=phase, nodeid=nodeid, ts=ts) for kind, data, phase, nodeid, ts in events
        ]  # fmt: skip
        journal.seal()

    content = (bundle / "evidence.jsonl").read_bytes()
    expected = general_journal(events, redact or (lambda text: text), fields)
    assert content.startswith(expected)
    assert content.count(b"\n") == len(events) + 1  # and the seal
    written = read_events(bundle / "evidence.jsonl", seal=False)
    assert written == returned
    assert all(event["hash"] == design_hash(event) for event in written)
    assert (SECRET.encode() in content) == (redactor != "secret")
    result = verify_bundle(bundle)
    assert (result.ok, result.events, result.problems) == (True, len(events) + 1, [])


def test_data_whose_keys_are_sorted_is_encoded_once_for_both_forms() -> None:
    """The converter says when every dict it built has its keys in sorted order; then, and only then, the
    hash's text (keys sorted) and the line's (keys in order) of the data are the same, and one is encoded."""
    shared = 0
    for data in corpus():
        converter = journal_module._Converter(None)
        plain = converter.value(data)
        assert plain == GeneralConverter(journal_module._identity).value(data)
        canonical = json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        ordered = json.dumps(plain, separators=(",", ":"), ensure_ascii=False)
        if converter.keys_sorted:
            assert canonical == ordered, data
            shared += 1
        else:
            assert canonical != ordered, data  # this corpus's unsorted dicts all change the text
    assert 0 < shared < len(corpus())


@pytest.mark.parametrize("depth", [0, 1, 2, 7, 40])
def test_a_secret_is_redacted_at_any_depth_on_the_fast_path(tmp_path: Path, depth: int) -> None:
    """With a run's secret, every string of the data (keys and values, of plain values and of the others) and
    the nodeid pass the environment's redactor before hashing, however deep they are."""
    env = secret_environment(tmp_path, SECRET)
    leaf = {
        SECRET: "a key",
        "value": f"Bearer {SECRET}",
        "list": [SECRET, (f"pre-{SECRET}-post",)],
        (1, SECRET): "a tuple key",
        "path": Path("/etc") / SECRET,
        "probe": Probe(SECRET, 200, datetime(2026, 11, 26, tzinfo=UTC)),
        "set": {SECRET},
        "ordered": OrderedDict([(SECRET, Text(SECRET))]),
        "fragment": SECRET[2:-2],
    }
    with Journal(tmp_path / "evidence.jsonl", "r", "Lab", "dr", redact=env.redact) as journal:
        returned = journal.append("note", {"deep": nested(depth, leaf)}, nodeid=f"t.py::test[{SECRET}]")

    content = (tmp_path / "evidence.jsonl").read_bytes()
    assert SECRET.encode() not in content
    assert SECRET[2:-2].encode() not in content
    assert returned["nodeid"] == "t.py::test[***]"
    assert content == general_journal(
        [("note", {"deep": nested(depth, leaf)}, None, f"t.py::test[{SECRET}]", returned["ts"])],
        env.redact,
        ("r", "Lab", "dr"),
    )
    assert read_events(tmp_path / "evidence.jsonl") == [returned]


def test_the_redactor_is_skipped_only_when_it_changes_nothing(tmp_path: Path) -> None:
    """The journal skips the redactor of an environment without secrets, and no other: not one with a secret,
    not a function (it cannot know what it does), not a subclass's own redact."""
    without = secret_environment(tmp_path, None)
    with_secret = secret_environment(tmp_path, SECRET)

    @dataclasses.dataclass(frozen=True)
    class Stricter(Environment):
        def redact(self, text: str) -> str:
            return text.replace("stage", "***")

    stricter = Stricter(**{field.name: getattr(without, field.name) for field in dataclasses.fields(without)})
    changes_nothing = journal_module._changes_nothing
    assert without.secrets == frozenset()
    assert changes_nothing(without.redact)
    assert changes_nothing(journal_module._identity)
    assert not changes_nothing(with_secret.redact)
    assert not changes_nothing(lambda text: text)
    assert not changes_nothing(str.strip)
    assert not changes_nothing(stricter.redact)
    with Journal(tmp_path / "evidence.jsonl", "r", "Lab", "dr", redact=stricter.redact) as journal:
        assert journal.append("note", {"url": "https://stage.example/"})["data"] == {
            "url": "https://***.example/"
        }


@pytest.mark.parametrize(
    "text",
    [
        "",
        "plain",
        "https://user:pass@host.example/x?token=abc",
        "password=hunter2",
        "Bearer abc.def",
        "ü ✓ \udcff",
    ],
)
def test_an_environment_without_secrets_redacts_nothing(tmp_path: Path, text: str) -> None:
    """What the journal's skip rests on: drivers.config's redactor changes no text when the environment has no
    secret. Should it ever hide something more, the journal must stop skipping it (plugins/journal.py
    _changes_nothing)."""
    assert secret_environment(tmp_path, None).redact(text) == text


@pytest.mark.parametrize("kind", ["", "Probe", "phase-start", "run.", ".end", "run..end", "probe 1", "ok!"])
def test_malformed_kind_is_refused(tmp_path: Path, kind: str) -> None:
    with Journal(tmp_path / "evidence.jsonl", "r", "Lab", "dr") as journal:
        with pytest.raises(ValueError, match="kind"):
            journal.append(kind)
        assert journal.seq == 0
    assert (tmp_path / "evidence.jsonl").read_bytes() == b""


def test_design_kinds_and_new_ones_are_accepted(tmp_path: Path) -> None:
    design = {"run.start", "phase.start", "phase.end", "action", "probe", "notify", "approval", "rollback"}
    assert design | {"finding", "run.end", "warning", "note", "seal"} == set(KINDS)
    recordable = [kind for kind in KINDS if kind != SEAL_KIND]
    with Journal(tmp_path / "evidence.jsonl", "r", "Lab", "dr") as journal:
        for kind in (*recordable, "lab.fault.injected"):
            journal.append(kind)
    kinds = [event["kind"] for event in read_events(tmp_path / "evidence.jsonl")]
    assert kinds == [*recordable, "lab.fault.injected"]


def test_only_the_seal_writes_a_seal_event(tmp_path: Path) -> None:
    with Journal(tmp_path / "evidence.jsonl", "r", "Lab", "dr") as journal:
        with pytest.raises(ValueError, match=r"written by Journal\.seal only"):
            journal.append("seal", {"manifest_sha256": ZEROS, "files": 0})
        assert journal.seq == 0


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
        journal.seal()

    events = read_events(path, seal=False)
    assert [event["seq"] for event in events] == list(range(1, 801))
    assert all(event["hash"] == design_hash(event) for event in events)
    assert all(later["prev_hash"] == earlier["hash"] for earlier, later in itertools.pairwise(events))
    for worker in range(4):
        assert [e["data"]["n"] for e in events if e["data"]["worker"] == worker] == list(range(200))
    result = verify_bundle(tmp_path)
    assert (result.ok, result.events, result.problems) == (True, 801, [])


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
    assert result.problems == [NOT_SEALED, MISSING_MANIFEST]
    assert result.chain_intact
    assert not result.sealed
    assert result.events >= 200
    assert not result.manifest_present
    cli = run_cli("verify", str(bundle))
    assert cli.returncode == 1
    assert cli.stdout.splitlines() == [
        f"NOT SEALED: {bundle}",
        f"  {NOT_SEALED}",
        f"  {MISSING_MANIFEST}",
        f"note: the journal's {result.events} events form an intact chain, "
        "but not sealed: an unsealed prefix of the run",
    ]


# --- the seal and the manifest --------------------------------------------------------------------------


def test_the_seal_is_the_last_event_and_holds_the_manifests_sha256(bundle: Path) -> None:
    events = read_events(bundle / "evidence.jsonl")
    seal, run_end = events[-1], events[-2]
    manifest_bytes = (bundle / "manifest.json").read_bytes()

    assert [event["kind"] for event in events[-2:]] == ["run.end", "seal"]
    assert (seal["seq"], seal["phase"], seal["nodeid"]) == (11, None, None)
    assert seal["data"] == {"manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest(), "files": 6}
    assert seal["prev_hash"] == run_end["hash"]
    assert seal["hash"] == design_hash(seal)
    # The manifest describes the journal as it was before the seal: its own hash is in the seal.
    manifest = manifest_of(bundle)
    assert (manifest["journal_events"], manifest["journal_last_hash"]) == (10, run_end["hash"])
    assert read_events(bundle / "evidence.jsonl", seal=False) == events[:-1]


def test_seal_returns_the_last_event_and_ends_the_journal(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "evidence.jsonl", "r", "Lab", "dr")
    journal.append("run.end", {"outcome": "passed"})
    seal = journal.seal()

    assert seal == read_events(tmp_path / "evidence.jsonl")[-1]
    assert (journal.last_hash, journal.seq, journal.sealed, journal.closed) == (seal["hash"], 2, True, True)
    with pytest.raises(ValueError, match="sealed; nothing is recorded after the seal"):
        journal.append("note")
    with pytest.raises(ValueError, match="sealed"):
        journal.seal()
    journal.close()  # closing after the seal is harmless
    assert verify_bundle(tmp_path).ok


def test_only_a_bundles_evidence_jsonl_seals(tmp_path: Path) -> None:
    with (
        Journal(tmp_path / "other.jsonl", "r", "Lab", "dr") as journal,
        pytest.raises(ValueError, match=r"only a bundle's evidence\.jsonl seals"),
    ):
        journal.seal()
    assert not (tmp_path / "manifest.json").exists()


def test_manifest_lists_every_other_file_with_its_sha256_in_canonical_form(bundle: Path) -> None:
    raw = (bundle / "manifest.json").read_bytes()
    manifest = manifest_of(bundle)

    assert tuple(manifest) == MANIFEST_KEYS
    assert list(manifest["files"]) == BUNDLE_FILES  # not itself, not the journal: the seal covers those
    for relative, digest in manifest["files"].items():
        assert digest == hashlib.sha256((bundle / relative).read_bytes()).hexdigest(), relative
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", manifest["created"])
    assert raw == (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode()
    assert sorted(path.name for path in bundle.iterdir()) == [
        "artifacts",
        "evidence.jsonl",
        "junit.xml",
        "manifest.json",
        "report.html",
        "timeline.md",
    ]  # no temporary file left behind


def test_manifest_refuses_a_journal_hash_that_is_not_one(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="64 lower-case hex"):
        write_manifest(tmp_path, journal_events=0, journal_last_hash="not-a-hash")
    with pytest.raises(ValueError, match="whole number"):
        write_manifest(tmp_path, journal_events=-1, journal_last_hash=ZEROS)
    assert not (tmp_path / "manifest.json").exists()


def test_run_killed_after_the_manifest_before_the_seal(tmp_path: Path) -> None:
    with Journal(tmp_path / "evidence.jsonl", "r", "Lab", "dr") as journal:
        journal.append("run.end", {"outcome": "passed"})
        write_manifest(tmp_path, journal_events=journal.seq, journal_last_hash=journal.last_hash)

    result = verify_bundle(tmp_path)
    assert (result.ok, result.chain_intact, result.sealed) == (False, True, False)
    assert result.problems == [NOT_SEALED]


# --- verify: what was altered, in which file ------------------------------------------------------------


def test_clean_bundle_verifies(bundle: Path) -> None:
    result = verify_bundle(bundle)
    assert result.problems == []
    assert (result.ok, result.events, result.chain_intact, result.sealed, result.manifest_files) == (
        True,
        11,
        True,
        True,
        6,
    )
    assert result.last_hash == read_events(bundle / "evidence.jsonl")[-1]["hash"]


def test_edited_data_field_is_named_by_line(bundle: Path) -> None:
    def edit(lines: list[bytes]) -> list[bytes]:
        event = json.loads(lines[6])
        event["data"]["delivery"] = "delivered"  # was "queued"
        lines[6] = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        return lines

    rewrite_journal(bundle, edit)

    result = verify_bundle(bundle)
    assert not result.ok
    assert result.problems == ["evidence.jsonl line 7 (seq 7): hash does not match its content (altered)"]


def test_edited_line_with_its_hash_recomputed_breaks_the_next_link(bundle: Path) -> None:
    def edit(lines: list[bytes]) -> list[bytes]:
        event = json.loads(lines[4])
        event["data"]["approver"] = "someone.else"
        event["hash"] = design_hash(event)
        lines[4] = json.dumps(event, separators=(",", ":")).encode() + b"\n"
        return lines

    rewrite_journal(bundle, edit)

    assert verify_bundle(bundle).problems == [
        "evidence.jsonl line 6 (seq 6): prev_hash does not link to line 5 "
        "(line 5 altered and its hash recomputed, or this line replaced)",
    ]


@pytest.mark.parametrize(
    ("line", "old", "new"),
    [
        (6, b"\\u001b", b"\\u001B"),  # the same escape, hex digits in upper case
        (3, b"1.5e-05", b"1.5E-05"),  # the same number
        (3, b"1.5e-05", b"15e-06"),  # ... spelt otherwise
        (6, b'"result":"ok"', b'"result": "ok"'),  # a space
        (6, b'{"seq":6,"ts"', b'{"ts"'),  # a field moved: first removed here ...
    ],
    ids=["escape-case", "exponent-case", "exponent-form", "space", "field-order"],
)
def test_same_content_other_bytes_is_detected(bundle: Path, line: int, old: bytes, new: bytes) -> None:
    def edit(lines: list[bytes]) -> list[bytes]:
        assert old in lines[line - 1]
        lines[line - 1] = lines[line - 1].replace(old, new, 1)
        if old.startswith(b'{"seq"'):  # ... and put back at the end, same content
            lines[line - 1] = lines[line - 1][:-2] + b',"seq":6}\n'
        return lines

    rewrite_journal(bundle, edit)

    assert verify_bundle(bundle).problems == [
        f"evidence.jsonl line {line} (seq {line}): not byte for byte as the journal writes it "
        "(spacing, field order, escaping or number format changed; altered)"
    ]


def test_lone_surrogate_escape_is_reported_not_raised(bundle: Path) -> None:
    rewrite_journal(
        bundle, lambda lines: [*lines[:5], lines[5].replace(b"\\u001b", b"\\ud01b", 1), *lines[6:]]
    )

    assert verify_bundle(bundle).problems == [
        "evidence.jsonl line 6 (seq 6): hash does not match its content (altered)"
    ]


def test_altered_run_id_is_blamed_on_its_own_line(bundle: Path) -> None:
    rewrite_journal(bundle, lambda lines: [lines[0].replace(b'"run-1"', b'"run-2"'), *lines[1:]])

    assert verify_bundle(bundle).problems == [
        "evidence.jsonl line 1 (seq 1): hash does not match its content (altered)",
        'evidence.jsonl line 1 (seq 1): run_id "run-2" differs from the run\'s "run-1" '
        "(line from another run, or altered)",
    ]


def test_deleted_middle_line(bundle: Path) -> None:
    rewrite_journal(bundle, lambda lines: lines[:4] + lines[5:])

    result = verify_bundle(bundle)
    assert result.events == 10
    assert result.problems == [
        "evidence.jsonl line 5 (seq 6): seq 6, expected 5 (line removed)",
        "evidence.jsonl line 5 (seq 6): prev_hash does not link to line 4 (line removed or reordered)",
        "evidence.jsonl: 9 events before the seal, manifest.json records 10 (events removed or added before "
        "the seal)",
    ]


def test_two_lines_swapped(bundle: Path) -> None:
    rewrite_journal(bundle, lambda lines: [*lines[:3], lines[4], lines[3], *lines[5:]])

    assert verify_bundle(bundle).problems == [
        "evidence.jsonl line 4 (seq 5): seq 5, expected 4 (lines reordered)",
        "evidence.jsonl line 4 (seq 5): prev_hash links to line 5, not line 3 (lines reordered)",
        "evidence.jsonl line 5 (seq 4): seq 4, expected 6 (lines reordered)",
        "evidence.jsonl line 5 (seq 4): prev_hash links to line 3, not line 4 (lines reordered)",
        "evidence.jsonl line 6 (seq 6): prev_hash links to line 4, not line 5 (lines reordered)",
    ]


def test_duplicated_line(bundle: Path) -> None:
    rewrite_journal(bundle, lambda lines: [*lines[:5], lines[4], *lines[5:]])

    assert verify_bundle(bundle).problems == [
        "evidence.jsonl line 6 (seq 5): seq 5, expected 6 (line duplicated)",
        "evidence.jsonl line 6 (seq 5): prev_hash links to line 4, not line 5 (line duplicated)",
        "evidence.jsonl: 11 events before the seal, manifest.json records 10 (events removed or added before "
        "the seal)",
    ]


def test_truncated_seal(bundle: Path) -> None:
    rewrite_journal(bundle, lambda lines: [*lines[:-1], lines[-1][:40]])

    result = verify_bundle(bundle)
    assert result.events == 10
    assert result.problems == [
        "evidence.jsonl line 11: last line incomplete, no end of line "
        "(the run was killed while writing it, or the file was cut)",
        NOT_SEALED,
        "evidence.jsonl: 1 line after line 10, the last event manifest.json records, and none is a valid "
        "seal (added after the run, or the seal altered)",
    ]


def test_garbage_line_in_the_middle(bundle: Path) -> None:
    rewrite_journal(bundle, lambda lines: [*lines[:2], b'{"seq": 3, "broken\n', *lines[3:]])

    assert verify_bundle(bundle).problems == ["evidence.jsonl line 3: not valid JSON (altered)"]


def test_first_lines_removed(bundle: Path) -> None:
    rewrite_journal(bundle, lambda lines: lines[2:])

    assert verify_bundle(bundle).problems == [
        "evidence.jsonl line 1 (seq 3): seq 3, expected 1 (2 lines removed)",
        "evidence.jsonl line 1 (seq 3): prev_hash is not 64 zeros, so this is not the first event "
        "(lines removed at the start)",
        "evidence.jsonl: 8 events before the seal, manifest.json records 10 (events removed or added before "
        "the seal)",
    ]


def test_seal_removed(bundle: Path) -> None:
    rewrite_journal(bundle, lambda lines: lines[:-1])

    result = verify_bundle(bundle)
    assert (result.chain_intact, result.sealed, result.problems) == (True, False, [NOT_SEALED])
    cli = run_cli("verify", str(bundle))
    assert cli.returncode == 1
    assert cli.stdout.splitlines() == [
        f"NOT SEALED: {bundle}",
        f"  {NOT_SEALED}",
        "note: the journal's 10 events form an intact chain, but not sealed: an unsealed prefix of the run",
    ]


def test_last_events_removed_with_the_seal(bundle: Path) -> None:
    rewrite_journal(bundle, lambda lines: lines[:-3])

    result = verify_bundle(bundle)
    assert result.chain_intact  # what is left is a valid chain: only the manifest can tell
    assert result.problems == [
        NOT_SEALED,
        "evidence.jsonl: 8 lines, manifest.json records 10 events (events removed at the end)",
    ]


def test_events_added_after_the_seal(bundle: Path) -> None:
    events = read_events(bundle / "evidence.jsonl")
    last = events[-1]
    extra = {**last, "seq": 12, "kind": "note", "data": {"text": "later"}, "prev_hash": last["hash"]}
    extra["hash"] = design_hash(extra)
    rewrite_journal(bundle, lambda lines: [*lines, json.dumps(extra, separators=(",", ":")).encode() + b"\n"])

    result = verify_bundle(bundle)
    assert result.chain_intact
    assert result.problems == ["evidence.jsonl: 1 line after the seal at line 11 (added after the run)"]


def test_events_rewritten_and_the_seal_recomputed_are_caught_by_the_manifest(bundle: Path) -> None:
    """A forger who rewrites an event and recomputes every hash after it, seal included (the manifest, and
    so the seal's manifest_sha256, left as they are), is caught: the manifest pins the last hash before
    the seal."""
    original_last = verify_bundle(bundle).last_hash
    events = read_events(bundle / "evidence.jsonl")
    events[4]["data"]["approver"] = "someone.else"
    for previous, event in zip([None, *events], events, strict=False):
        if previous is not None:
            event["prev_hash"] = previous["hash"]
        event["hash"] = design_hash(event)
    (bundle / "evidence.jsonl").write_bytes(
        b"".join(json.dumps(e, ensure_ascii=False, separators=(",", ":")).encode() + b"\n" for e in events)
    )

    result = verify_bundle(bundle)
    assert result.chain_intact
    assert result.problems == [
        "evidence.jsonl line 10 (seq 10): hash differs from manifest.json's journal_last_hash "
        "(events rewritten with recomputed hashes, or removed or added)"
    ]
    assert result.last_hash != original_last


def test_a_complete_forgery_shows_only_in_the_last_hash(bundle: Path) -> None:
    """The limit of a keyless chain: rewrite an event, the manifest and every hash after it, and the bundle
    verifies; the last hash then differs from the one the run printed, kept with the change record."""
    printed = verify_bundle(bundle).last_hash
    events = read_events(bundle / "evidence.jsonl", seal=False)
    events[4]["data"]["approver"] = "someone.else"
    (bundle / "evidence.jsonl").unlink()
    (bundle / "manifest.json").unlink()
    with Journal(bundle / "evidence.jsonl", "run-1", "Lab", "rollback") as forged:
        for event in events:
            forged.append(event["kind"], event["data"], phase=event["phase"], nodeid=event["nodeid"])
        forged.seal()

    result = verify_bundle(bundle)
    assert result.ok
    assert result.last_hash != printed


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
    assert (result.ok, result.chain_intact, result.sealed, result.events) == (False, True, True, 11)
    assert result.problems == [
        "manifest.json: missing (the seal at evidence.jsonl line 11 records it; removed after the run)"
    ]


def test_missing_journal_is_named_and_the_rest_still_checked(bundle: Path) -> None:
    (bundle / "evidence.jsonl").unlink()
    (bundle / "timeline.md").write_text("# Timeline, rewritten\n")

    assert verify_bundle(bundle).problems == [
        "evidence.jsonl: missing (the bundle has its manifest.json, so the journal was removed after the run)",
        "timeline.md: sha256 differs from manifest (altered)",
    ]


def test_manifest_that_is_not_json(bundle: Path) -> None:
    (bundle / "manifest.json").write_text("{not json")

    assert verify_bundle(bundle).problems == [
        MANIFEST_SHA_DIFFERS,
        "manifest.json: not valid JSON (altered); the other files cannot be checked against it",
    ]


def test_manifest_pointing_outside_the_bundle_is_not_followed(bundle: Path) -> None:
    manifest = manifest_of(bundle)
    manifest["files"]["../outside.txt"] = "0" * 64
    write_json(bundle / "manifest.json", manifest)

    assert verify_bundle(bundle).problems == [
        MANIFEST_SHA_DIFFERS,
        'manifest.json: lists "../outside.txt", a path outside the bundle (altered)',
    ]


def upper_case_one_hex_letter(manifest: dict[str, Any]) -> None:
    digest = manifest["files"]["report.html"]
    at = next(i for i, c in enumerate(digest) if c in "abcdef")
    manifest["files"]["report.html"] = digest[:at] + digest[at].upper() + digest[at + 1 :]


def another_valid_time(manifest: dict[str, Any]) -> None:
    manifest["created"] = "2026-11-26T13:02:11.123+00:00"


def an_extra_key(manifest: dict[str, Any]) -> None:
    manifest["approved"] = True


def another_hash_for_a_file(manifest: dict[str, Any]) -> None:
    manifest["files"]["report.html"] = hashlib.sha256(b"<html>forged</html>\n").hexdigest()


def another_journal_last_hash(manifest: dict[str, Any]) -> None:
    manifest["journal_last_hash"] = "f" * 64


def fewer_journal_events(manifest: dict[str, Any]) -> None:
    manifest["journal_events"] = 9


def a_file_dropped(manifest: dict[str, Any]) -> None:
    del manifest["files"]["report.html"]


def the_journal_listed(manifest: dict[str, Any]) -> None:
    manifest["files"]["evidence.jsonl"] = "0" * 64


def an_impossible_time(manifest: dict[str, Any]) -> None:
    manifest["created"] = "2026-02-30T13:02:11.123+00:00"


MANIFEST_EDITS: list[tuple[Callable[[dict[str, Any]], None], str | None]] = [
    (
        upper_case_one_hex_letter,
        "manifest.json: the sha256 listed for report.html is {digest}, not 64 lower-case hex digits (altered)",
    ),
    (another_valid_time, None),
    (an_extra_key, 'manifest.json: unknown key "approved" (altered)'),
    (
        another_hash_for_a_file,
        "manifest.json: the sha256 it lists for report.html is not the file's (altered)",
    ),
    (
        another_journal_last_hash,
        "manifest.json: journal_last_hash is not the hash of evidence.jsonl line 10 (altered)",
    ),
    (
        fewer_journal_events,
        "manifest.json: records 9 journal events before the seal, the journal has 10 (altered)",
    ),
    (a_file_dropped, "manifest.json: does not list report.html, which is in the bundle (altered)"),
    (
        the_journal_listed,
        "manifest.json: lists evidence.jsonl among the files, which the run never does: the seal covers it "
        "(altered)",
    ),
    (
        an_impossible_time,
        'manifest.json: created "2026-02-30T13:02:11.123+00:00" is not a UTC time as the run writes it, like '
        "2026-11-26T13:02:11.123+00:00 (altered)",
    ),
]


@pytest.mark.parametrize(
    ("edit", "problem"), MANIFEST_EDITS, ids=[edit.__name__ for edit, _ in MANIFEST_EDITS]
)
def test_manifest_value_edits_are_detected_and_blamed_on_the_manifest(
    bundle: Path, edit: Callable[[dict[str, Any]], None], problem: str | None
) -> None:
    manifest = manifest_of(bundle)
    edit(manifest)
    write_json(bundle / "manifest.json", manifest)

    expected = [MANIFEST_SHA_DIFFERS]
    if problem is not None:
        expected.append(problem.format(digest=json.dumps(manifest["files"].get("report.html"))))
    assert verify_bundle(bundle).problems == expected


FORM = (
    "manifest.json: not byte for byte as the run writes it "
    "(spacing, key order, escaping or a repeated key changed; altered)"
)


@pytest.mark.parametrize(
    "edit",
    [
        lambda raw: raw.replace(b'": "', b'":  "', 1),  # whitespace
        lambda raw: raw + b"\n",  # a blank line at the end
        lambda raw: raw.replace(b"\n", b"\r\n"),  # Windows line ends
        lambda raw: raw.rstrip(b"\n"),  # the end of line removed
        lambda raw: raw.replace(b"report.html", b"report\\u002ehtml"),  # the same name, escaped
        lambda raw: raw.replace(
            b'\n  "created"', b'\n  "created": "1999-01-01T00:00:00.000+00:00",\n  "created"'
        ),
    ],
    ids=["space", "blank-line", "crlf", "no-eol", "escaped-name", "repeated-key"],
)
def test_manifest_byte_edits_with_the_same_values_are_detected(
    bundle: Path, edit: Callable[[bytes], bytes]
) -> None:
    path = bundle / "manifest.json"
    altered = edit(path.read_bytes())
    assert json.loads(altered) == manifest_of(bundle)  # the same values, other bytes
    path.write_bytes(altered)

    assert verify_bundle(bundle).problems == [MANIFEST_SHA_DIFFERS, FORM]


def test_key_order_is_part_of_the_form(bundle: Path) -> None:
    manifest = manifest_of(bundle)
    write_json(bundle / "manifest.json", dict(reversed(manifest.items())))

    assert verify_bundle(bundle).problems == [MANIFEST_SHA_DIFFERS, FORM]


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (upper_case_one_hex_letter, "the sha256 listed for report.html is"),
        (an_extra_key, 'unknown key "approved"'),
        (an_impossible_time, "is not a UTC time as the run writes it"),
        (
            lambda manifest: manifest.update(journal_events=True),
            "journal_events true is not a number of events",
        ),
    ],
    ids=["hex-case", "extra-key", "bad-created", "events-not-a-number"],
)
def test_manifest_checks_itself_without_the_seal(
    bundle: Path, edit: Callable[[dict[str, Any]], None], problem: str
) -> None:
    """With the seal removed the manifest cannot be compared with it, and still checks its own values."""
    rewrite_journal(bundle, lambda lines: lines[:-1])
    manifest = manifest_of(bundle)
    edit(manifest)
    write_json(bundle / "manifest.json", manifest)

    problems = verify_bundle(bundle).problems
    assert problems[0] == NOT_SEALED
    assert any(p.startswith("manifest.json: ") and problem in p for p in problems[1:]), problems


def test_manifest_whitespace_is_detected_without_the_seal(bundle: Path) -> None:
    rewrite_journal(bundle, lambda lines: lines[:-1])
    path = bundle / "manifest.json"
    path.write_bytes(path.read_bytes().replace(b'": "', b'" : "', 1))

    assert verify_bundle(bundle).problems == [NOT_SEALED, FORM]


def test_a_seal_with_other_data_is_not_trusted(bundle: Path) -> None:
    def edit(lines: list[bytes]) -> list[bytes]:
        seal = json.loads(lines[-1])
        seal["data"]["note"] = "extra"
        seal["hash"] = design_hash(seal)
        return [*lines[:-1], json.dumps(seal, separators=(",", ":")).encode() + b"\n"]

    rewrite_journal(bundle, edit)

    result = verify_bundle(bundle)
    assert not result.sealed
    assert result.problems == [
        "evidence.jsonl line 11 (seq 11): the seal does not hold exactly the manifest's sha256 and its number "
        "of files (altered)"
    ]


def test_read_events_is_strict_unless_asked(bundle: Path) -> None:
    rewrite_journal(bundle, lambda lines: [*lines[:-1], lines[-1][:40]])

    with pytest.raises(ValueError, match="line 11"):
        read_events(bundle / "evidence.jsonl")
    prefix = read_events(bundle / "evidence.jsonl", strict=False)
    assert [event["seq"] for event in prefix] == list(range(1, 11))


# --- tamper: every single-byte change of every file is detected and blamed on that file ----------------


def bundle_file_names(bundle: Path) -> list[str]:
    return sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file())


def sample_offsets(size: int, relative: str, limit: int | None) -> list[int]:
    """Every offset of manifest.json and of files up to limit bytes (of every file when limit is None); of a
    larger file its first and last 100 bytes and a fixed pseudo-random sample of the rest (the same every
    run), limit offsets in all."""
    if limit is None or relative == "manifest.json" or size <= limit:
        return list(range(size))
    rng = random.Random(f"{relative}:{size}")
    middle = rng.sample(range(100, size - 100), limit - 200)
    return sorted({*range(100), *range(size - 100, size), *middle})


def tamper_every_byte(
    bundle: Path, masks: tuple[int, ...] = (0x01, 0x20), limit: int | None = None
) -> tuple[int, list[str]]:
    """Change each sampled byte of each file (XOR with each mask: the low bit, and the letter case), verify,
    restore. Returns how many alterations were tried and a description of each one missed or misblamed."""
    tried = 0
    misses: list[str] = []
    for relative in bundle_file_names(bundle):
        path = bundle / relative
        original = path.read_bytes()
        for offset in sample_offsets(len(original), relative, limit):
            for mask in masks:
                altered = bytearray(original)
                altered[offset] ^= mask
                path.write_bytes(bytes(altered))
                problems = verify_bundle(bundle).problems
                tried += 1
                if not names_only(problems, relative):
                    misses.append(f"{relative} byte {offset} ^ {mask:#04x}: {problems}")
        path.write_bytes(original)
    return tried, misses


def test_tamper_every_single_byte_change_of_every_file_is_detected(bundle: Path) -> None:
    tried, misses = tamper_every_byte(bundle)

    assert misses == []
    assert tried == 2 * sum((bundle / name).stat().st_size for name in bundle_file_names(bundle))
    assert verify_bundle(bundle).ok  # every file restored


@pytest.mark.parametrize("relative", ["evidence.jsonl", "manifest.json", *BUNDLE_FILES])
def test_deleted_file_is_named_missing_exit_1(
    bundle: Path, relative: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (bundle / relative).unlink()

    assert main(["verify", str(bundle)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"ALTERED: {bundle}"
    assert [line for line in out[1:] if line.startswith("  ")] == [
        line for line in out[1:] if line.startswith(f"  {relative}: missing")
    ]
    assert len(out) >= 2


def test_cli_missing_journal_is_altered_not_a_usage_error(bundle: Path) -> None:
    (bundle / "evidence.jsonl").unlink()

    result = run_cli("verify", str(bundle))
    assert (result.returncode, result.stderr) == (1, "")
    assert result.stdout.splitlines() == [
        f"ALTERED: {bundle}",
        "  evidence.jsonl: missing (the bundle has its manifest.json, so the journal was removed after the run)",
    ]


# --- a real bundle, from a real pytest session ----------------------------------------------------------


def journal_step(phase: str, *markers: str) -> str:
    body = "def test_step(runbook):\n    runbook.record('note', {'text': 'naïve ✓ \\x1b[0m'})\n"
    return phase_module(phase, *markers, body=body)


@pytest.fixture
def session_bundle(pytester: pytest.Pytester) -> tuple[Path, str]:
    """A real rollback-flow session (PRE and RB-5 stand-ins, a remote environment where nothing listens):
    its sealed bundle and the terminal's `Journal:  last hash` line."""
    make_runbook_project(pytester)
    pytester.makepyfile(test_pre=journal_step("PRE", "rollback", "bluegreen"))
    pytester.makepyfile(test_rb5=journal_step("RB-5", "rollback"))
    result = pytester.runpytest("-m", "rollback", "--env", "Remote")
    result.assert_outcomes(passed=2)
    (bundle,) = sorted((pytester.path / "reports").iterdir())
    (line,) = [line for line in result.outlines if line.startswith("Journal:")]
    return bundle, line


def test_a_real_session_is_sealed_and_prints_the_seals_hash(session_bundle: tuple[Path, str]) -> None:
    bundle, line = session_bundle
    events = read_events(bundle / "evidence.jsonl")

    assert [e["kind"] for e in events[-2:]] == ["run.end", "seal"]
    assert line == f"Journal:  last hash {events[-1]['hash']} (keep it with the change record)"
    result = verify_bundle(bundle)
    assert (result.ok, result.sealed, result.last_hash) == (True, True, events[-1]["hash"])
    assert {"report.html", "junit.xml", "timeline.md", "evidence.jsonl", "manifest.json"} <= set(
        bundle_file_names(bundle)
    )


def test_tamper_a_real_bundle(session_bundle: tuple[Path, str]) -> None:
    bundle, _ = session_bundle
    tried, misses = tamper_every_byte(bundle, masks=(0x01,), limit=600)

    assert misses == []
    assert tried >= 600
    assert verify_bundle(bundle).ok


def test_the_documented_verify_command_on_a_real_bundle(session_bundle: tuple[Path, str]) -> None:
    """`python -m plugins.evidence verify reports/<run>`, as README and DESIGN write it: exit 0 on the bundle a
    real session sealed; exit 1 once one byte of one file changed, naming that file and no other."""
    bundle, _ = session_bundle
    last_hash = read_events(bundle / "evidence.jsonl")[-1]["hash"]

    intact = run_evidence_cli("verify", str(bundle))
    assert (intact.returncode, intact.stderr) == (0, "")
    assert intact.stdout.splitlines()[0].startswith(f"OK: {bundle}: ")
    assert f"journal last hash {last_hash}" in intact.stdout

    junit = bundle / "junit.xml"
    data = bytearray(junit.read_bytes())
    data[len(data) // 2] ^= 0x01
    junit.write_bytes(bytes(data))
    altered = run_evidence_cli("verify", str(bundle))
    assert altered.returncode == 1
    assert altered.stdout.splitlines()[:2] == [
        f"ALTERED: {bundle}",
        "  junit.xml: sha256 differs from manifest (altered)",
    ]
    assert [line for line in altered.stdout.splitlines() if line.startswith("  ")] == [
        "  junit.xml: sha256 differs from manifest (altered)"
    ]


# --- the CLI --------------------------------------------------------------------------------------------


def test_cli_ok(bundle: Path) -> None:
    result = run_cli("verify", str(bundle))
    last_hash = read_events(bundle / "evidence.jsonl")[-1]["hash"]

    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines() == [
        f"OK: {bundle}: 11 events, chain intact, sealed, manifest matches (6 files)",
        f"journal last hash {last_hash} (compare it with the copy kept with the change record)",
    ]


def test_cli_altered_lists_every_problem(bundle: Path) -> None:
    rewrite_journal(bundle, lambda lines: lines[:4] + lines[5:])
    (bundle / "artifacts" / "monitor.csv").write_text("forged\n")

    result = run_cli("verify", str(bundle))

    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"ALTERED: {bundle}",
        "  evidence.jsonl line 5 (seq 6): seq 6, expected 5 (line removed)",
        "  evidence.jsonl line 5 (seq 6): prev_hash does not link to line 4 (line removed or reordered)",
        "  evidence.jsonl: 9 events before the seal, manifest.json records 10 (events removed or added before "
        "the seal)",
        "  artifacts/monitor.csv: sha256 differs from manifest (altered)",
    ]


def test_cli_altered_file_with_an_intact_chain_says_so(bundle: Path) -> None:
    (bundle / "report.html").write_text("<html>forged</html>\n")

    result = run_cli("verify", str(bundle))

    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"ALTERED: {bundle}",
        "  report.html: sha256 differs from manifest (altered)",
        "note: the journal's 11 events form an intact chain, sealed by its last event",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["verify", "{missing}"], "{missing}: no such directory"),
        (
            ["verify", "{empty}"],
            "{empty}: no evidence.jsonl and no manifest.json in it (not an evidence bundle?)",
        ),
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
