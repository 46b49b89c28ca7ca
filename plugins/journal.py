"""The evidence journal (`evidence.jsonl`), the bundle manifest, the seal, and their verification.

Every event of a run is one JSON line, chained to the one before by sha256 (DESIGN.md, "Journal"), and
written with flush + fsync so that a run killed half-way still leaves a valid prefix. `Journal.seal` closes
the bundle at the end of the run in two steps: it writes manifest.json (the sha256 of every other file of the
bundle, and the journal so far: its event count and last hash), then appends one last event, the seal (kind
`seal`, data `manifest_sha256` and `files`). So the journal's very last hash, which the run prints for the
operator to keep with the change record, covers every byte of the bundle: the files through the manifest, the
manifest through the seal, the journal through its chain. `verify_bundle` and the CLI
(`python -m plugins.evidence verify <bundle>`) say precisely what was altered afterwards, and in which file.

The journal cannot list its own file hash in the manifest (the seal, written after the manifest, is part of
the file); it is checked line by line instead: each line must be exactly the bytes the writer writes, hash
its content and link to the line before.

The chain makes the bundle tamper-evident, not tamper-proof: it has no secret key, so someone who rewrites
the journal, recomputes every hash and rewrites the manifest is not detected by the bundle alone. Compare the
last hash `verify` prints with the copy kept elsewhere (the CI log, the change ticket) to close that gap.

Standard library only: this module also runs as a quick CLI, outside pytest.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import re
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from enum import Enum
from pathlib import Path, PurePath, PurePosixPath
from types import TracebackType
from typing import Any, Final, Self, TextIO

__all__ = [
    "EVENT_FIELDS",
    "GENESIS_HASH",
    "JOURNAL_NAME",
    "KINDS",
    "MANIFEST_KEYS",
    "MANIFEST_NAME",
    "SEAL_KIND",
    "Journal",
    "VerifyResult",
    "canonical_hash",
    "main",
    "read_events",
    "verify_bundle",
    "write_manifest",
]

JOURNAL_NAME: Final = "evidence.jsonl"
MANIFEST_NAME: Final = "manifest.json"
GENESIS_HASH: Final = "0" * 64
SEAL_KIND: Final = "seal"
"""The kind of the journal's last event, written by `Journal.seal` only: data `manifest_sha256` and `files`."""

MANIFEST_KEYS: Final[tuple[str, ...]] = ("files", "journal_events", "journal_last_hash", "created")
"""The keys of manifest.json, in the order they are written."""

KINDS: Final[tuple[str, ...]] = (
    "run.start",
    "phase.start",
    "phase.end",
    "action",
    "probe",
    "notify",
    "approval",
    "rollback",
    "finding",
    "run.end",
    "warning",
    "note",
    SEAL_KIND,
)
"""The kinds DESIGN.md gives a meaning to, and the seal. `Journal.append` accepts any kind matching
`KIND_PATTERN` except the seal, which only `Journal.seal` writes."""

KIND_PATTERN: Final = re.compile(r"[a-z]+(?:\.[a-z]+)*")

EVENT_FIELDS: Final[tuple[str, ...]] = (
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
)
"""The fields of an event, in the order they are written."""

_HEX64: Final = re.compile(r"[0-9a-f]{64}")
_CREATED: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00")
_SEAL_FIELDS: Final = frozenset({"manifest_sha256", "files"})


def utc_timestamp() -> str:
    """Now, as ISO 8601 in UTC with milliseconds and offset: `2026-11-26T13:02:11.123+00:00`."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def canonical_hash(event: Mapping[str, Any]) -> str:
    """The DESIGN.md hash of an event: sha256 of its canonical JSON without the `hash` field."""
    body = {key: value for key, value in event.items() if key != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _identity(text: str) -> str:
    return text


def _changes_nothing(redact: Callable[[str], str]) -> bool:
    """Whether `redact` is known to return every text unchanged: the identity, or the redactor of an
    environment with no secrets (drivers.config `Environment.redact`, which then replaces nothing; found in
    sys.modules, so that this module imports nothing of the runbook's). The journal then skips it. Anything
    else, a subclass's override included, is called on every string."""
    if redact is _identity:
        return True
    config = sys.modules.get("drivers.config")
    environment = getattr(config, "Environment", None)
    owner = getattr(redact, "__self__", None)
    return (
        isinstance(environment, type)
        and isinstance(owner, environment)
        and getattr(redact, "__func__", None) is getattr(environment, "redact", None)
        and getattr(owner, "secrets", None) == frozenset()
    )


def _utf8_safe(text: str) -> str:
    # Lone surrogates (undecodable file names, bad bytes decoded with surrogateescape) cannot be encoded as
    # UTF-8; the hash would fail to compute. Replace them by their escape, deterministically.
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class _Converter:
    """Turns arbitrary event data into plain JSON values, passing every string through the redactor.

    Values that are plain JSON already, by their exact type (str, int, float, bool, None, dict, list, tuple;
    not a subclass, such as an IntEnum or an OrderedDict), take a fast path: no chain of isinstance checks.
    Every other value takes the general branches, one per kind of value. A plain value's result is the one the
    general branches give it (tests/test_journal.py checks it). redact None: the run's redactor changes
    nothing (`_changes_nothing`), so it is not called.

    `keys_sorted` stays True while every dict built has its keys in sorted order: then the data's canonical
    JSON (keys sorted, for the hash) and its written JSON (keys in order) are the same text.
    """

    def __init__(self, redact: Callable[[str], str] | None) -> None:
        self._redact = redact
        self._active: set[int] = set()
        self.keys_sorted = True

    def text(self, value: str) -> str:
        if self._redact is not None:
            value = self._redact(value)
        return value if value.isascii() else _utf8_safe(value)

    def key(self, value: object) -> str:
        if isinstance(value, str):
            return self.text(value)
        converted = self.value(value)
        return converted if isinstance(converted, str) else self.text(str(converted))

    def value(self, value: object) -> Any:  # noqa: PLR0911, PLR0912 - one branch per kind of value, flat on purpose
        # One method, no helper per kind: one frame per level of nesting, however deep the data.
        if type(value) is str:
            return self.text(value)
        if type(value) is int or type(value) is bool or value is None:
            return value
        if type(value) is float:
            return value if math.isfinite(value) else repr(value)
        if type(value) is not dict and type(value) is not list and type(value) is not tuple:
            if value is None or isinstance(value, bool):
                return value
            if isinstance(value, str):
                return self.text(value)
            if isinstance(value, Enum):
                return self.value(value.value)
            if isinstance(value, int):
                return int(value)
            if isinstance(value, float):
                # NaN and infinities are not JSON; json.dumps would write them anyway, unportably.
                return float(value) if math.isfinite(value) else repr(float(value))
            if isinstance(value, datetime | date | time):
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
            if type(value) is dict:
                text, key, convert = self.text, self.key, self.value
                return self._built(
                    {text(k) if type(k) is str else key(k): convert(v) for k, v in value.items()}
                )
            if type(value) is list or type(value) is tuple:
                convert = self.value
                return [convert(item) for item in value]
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                return self._built(
                    {f.name: self.value(getattr(value, f.name)) for f in dataclasses.fields(value)}
                )
            if isinstance(value, Mapping):
                return self._built({self.key(k): self.value(v) for k, v in value.items()})
            if isinstance(value, set | frozenset):
                items = [self.value(item) for item in value]
                return sorted(items, key=lambda item: json.dumps(item, sort_keys=True, ensure_ascii=False))
            if isinstance(value, list | tuple | Sequence):
                return [self.value(item) for item in value]
        finally:
            self._active.discard(marker)
        return self.text(str(value))

    def _built(self, converted: dict[str, Any]) -> dict[str, Any]:
        if self.keys_sorted and len(converted) > 1:
            keys = list(converted)
            self.keys_sorted = keys == sorted(keys)
        return converted


class Journal:
    """The run's hash-chained, append-only JSONL journal.

    One journal is written once, by one run: the file must be new or empty. Every `append` is written, flushed
    and fsynced before it returns, under a lock, so probes and monitors may record from their own threads.
    """

    def __init__(
        self,
        path: Path,
        run_id: str,
        env: str,
        flow: str,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        self._path = Path(path)
        # None: the redactor changes nothing, and is skipped (the common case, a run without secrets).
        self._redact = None if redact is None or _changes_nothing(redact) else redact
        self._run_id = _utf8_safe(run_id)
        self._env = _utf8_safe(env)
        self._flow = _utf8_safe(flow)
        self._fixed_json = _FixedJSON(_json_text(self._run_id), _json_text(self._env), _json_text(self._flow))
        self._lock = threading.Lock()
        self._seq = 0
        self._last_hash = GENESIS_HASH
        self._sealed = False
        self._path.parent.mkdir(parents=True, exist_ok=True)
        created = not self._path.exists()
        self._file = self._path.open("ab", buffering=0)
        if self._file.tell() != 0:
            self._file.close()
            raise FileExistsError(
                f"{self._path}: already holds events; a journal is written by exactly one run "
                "(start a new bundle directory)"
            )
        if created:
            _fsync_directory(self._path.parent)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def run_id(self) -> str:
        return self._run_id

    @property
    def env(self) -> str:
        return self._env

    @property
    def flow(self) -> str:
        return self._flow

    @property
    def seq(self) -> int:
        """The seq of the last event written (0 before the first)."""
        return self._seq

    @property
    def last_hash(self) -> str:
        """The hash of the last event written (64 zeros before the first): what the manifest seals."""
        return self._last_hash

    @property
    def closed(self) -> bool:
        return self._file.closed

    def append(
        self,
        kind: str,
        data: Mapping[str, Any] | None = None,
        *,
        phase: str | None = None,
        nodeid: str | None = None,
        ts: str | None = None,
    ) -> dict[str, Any]:
        """Write one event and return it as written (with seq, ts, prev_hash and hash). `ts` is when the
        event happened (the recorder's stamp, `2026-11-26T13:02:11.123+00:00`); default now.

        Every string in `data` (values and keys, at any depth) and the nodeid pass through the run's redactor
        before hashing, so secrets never reach the file.
        """
        if not isinstance(kind, str) or not KIND_PATTERN.fullmatch(kind):
            raise ValueError(
                f"journal event kind {kind!r}: must be lower-case words joined by dots, "
                f"like {', '.join(KINDS[:4])}, ..."
            )
        if kind == SEAL_KIND:
            raise ValueError(
                f"journal event kind {SEAL_KIND!r} is written by Journal.seal only, once, at the end of the run"
            )
        if data is not None and not isinstance(data, Mapping):
            raise TypeError(f"journal event data must be a mapping or None, not {type(data).__name__}")
        converter = _Converter(self._redact)
        plain_data = converter.value(data) if data is not None else {}
        plain_nodeid = converter.text(nodeid) if nodeid is not None else None
        keys_sorted = converter.keys_sorted
        plain_phase = _utf8_safe(phase) if phase is not None else None
        if ts is not None and not _CREATED.fullmatch(ts):
            raise ValueError(
                f"journal event ts {ts!r}: expected UTC ISO 8601 with milliseconds, like {utc_timestamp()}"
            )
        with self._lock:
            event = self._append_locked(kind, plain_data, plain_phase, plain_nodeid, ts, keys_sorted)
        return dict(event)

    def seal(self) -> dict[str, Any]:
        """Seal the bundle this journal is in: write manifest.json, append the seal event, close the journal.

        The manifest records the sha256 of every other file of the bundle and the journal as it is now (its
        event count and last hash); the seal event records the sha256 of the manifest's bytes. The seal's hash,
        the journal's last, thus covers the whole bundle: it is what the run prints for the change record.
        Call it last, after every writer (report.html included) is done; a file written later is reported by
        `verify_bundle` as added after the run, an event recorded later is refused. Returns the seal event.
        """
        if self._path.name != JOURNAL_NAME:
            raise ValueError(f"{self._path}: only a bundle's {JOURNAL_NAME} seals the bundle it is in")
        with self._lock:
            self._refuse_if_finished()
            # Under the lock: an event recorded from another thread meanwhile would fall between the
            # manifest's last hash and the seal.
            payload, files = _write_manifest(self._path.parent, self._seq, self._last_hash)
            data = {"manifest_sha256": hashlib.sha256(payload).hexdigest(), "files": files}
            event = self._append_locked(SEAL_KIND, data, None, None, keys_sorted=False)
            self._sealed = True
            self._file.close()
        return dict(event)

    @property
    def sealed(self) -> bool:
        return self._sealed

    def _refuse_if_finished(self) -> None:
        if self._sealed:
            raise ValueError(f"{self._path}: journal is sealed; nothing is recorded after the seal")
        if self._file.closed:
            raise ValueError(f"{self._path}: journal is closed")

    def _append_locked(
        self,
        kind: str,
        data: dict[str, Any],
        phase: str | None,
        nodeid: str | None,
        ts: str | None = None,
        keys_sorted: bool = False,
    ) -> dict[str, Any]:
        """keys_sorted: every dict in data has its keys in sorted order (see `_Converter`)."""
        self._refuse_if_finished()
        event: dict[str, Any] = {
            "seq": self._seq + 1,
            "ts": ts or utc_timestamp(),
            "run_id": self._run_id,
            "env": self._env,
            "flow": self._flow,
            "phase": phase,
            "nodeid": nodeid,
            "kind": kind,
            "data": data,
            "prev_hash": self._last_hash,
        }
        event["hash"], line = _hash_and_line(event, self._fixed_json, keys_sorted)
        self._write_durably(line)
        self._seq = event["seq"]
        self._last_hash = event["hash"]
        return event

    def _write_durably(self, payload: bytes) -> None:
        start = self._file.tell()
        try:
            view = memoryview(payload)
            while view:
                written = self._file.write(view)
                if not written:
                    raise OSError(f"{self._path}: write returned {written!r}")
                view = view[written:]
            os.fsync(self._file.fileno())
        except BaseException:
            # Leave no torn line behind a failed write (disk full, interrupted): the next event would not
            # parse-chain otherwise. Best effort; the original error is what the caller must see.
            with contextlib.suppress(OSError):
                self._file.truncate(start)
            raise

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Journal({str(self._path)!r}, run_id={self._run_id!r}, seq={self._seq})"


def _written_form(event: Mapping[str, Any]) -> bytes:
    """The exact bytes of an event's line, as the journal writes it: its fields in order, compact, UTF-8."""
    ordered = {name: event[name] for name in EVENT_FIELDS}
    return (json.dumps(ordered, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def _dict_encoder(*, sort_keys: bool) -> Callable[[dict[str, Any]], str]:
    """`json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys)` of a plain dict
    (str keys, no NaN, no cycle: what `_Converter` builds), the text canonical_hash and _written_form encode.

    json.dumps builds a JSONEncoder and, in it, the C accelerator's encoder on every call; this builds them
    once: the encoder JSONEncoder.iterencode builds for a one-shot encode, with the same arguments, but no
    circular-reference markers (the converter's values have no cycle). Without the accelerator (another
    interpreter), the JSONEncoder's own encode.
    """
    encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys)
    make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if make_encoder is None:
        return encoder.encode
    one_shot = make_encoder(
        None,
        encoder.default,
        json.encoder.encode_basestring,
        encoder.indent,
        encoder.key_separator,
        encoder.item_separator,
        encoder.sort_keys,
        encoder.skipkeys,
        encoder.allow_nan,
    )

    def encode(value: dict[str, Any]) -> str:
        return "".join(one_shot(value, 0))

    return encode


_CANONICAL_JSON: Final = _dict_encoder(sort_keys=True)
_WRITTEN_JSON: Final = _dict_encoder(sort_keys=False)
_encode_text: Final = json.encoder.encode_basestring
"""A str as JSON, as json.dumps(..., ensure_ascii=False) writes it."""


def _json_text(value: str | None) -> str:
    return "null" if value is None else _encode_text(value)


@dataclasses.dataclass(frozen=True, slots=True)
class _FixedJSON:
    """A journal's fields that every event shares, as JSON text."""

    run_id: str
    env: str
    flow: str


def _hash_and_line(event: Mapping[str, Any], fixed: _FixedJSON, keys_sorted: bool) -> tuple[str, bytes]:
    """canonical_hash(event) and _written_form(event with that hash), encoding each field once.

    Both are the same JSON fields, compact, in two orders: the hash's sorted by name (the data's keys too),
    the line's in EVENT_FIELDS order (the data's keys as they are). Each field is encoded once and the two
    texts are put together from the same pieces; the data twice, once with its keys sorted, unless its keys
    are in sorted order already (keys_sorted), when both are the same text. event: a plain event from
    `Journal._append_locked` (str fields, or None for phase and nodeid; an int seq; a plain JSON dict data
    with str keys and no NaN), with the fixed fields `fixed` encodes. tests/test_journal.py checks both
    against canonical_hash and _written_form.
    """
    data = _CANONICAL_JSON(event["data"])
    seq = str(event["seq"])
    ts = _json_text(event["ts"])
    phase = _json_text(event["phase"])
    nodeid = _json_text(event["nodeid"])
    kind = _json_text(event["kind"])
    prev_hash = _json_text(event["prev_hash"])
    hashed = (
        f'{{"data":{data},"env":{fixed.env},"flow":{fixed.flow},"kind":{kind},"nodeid":{nodeid},'
        f'"phase":{phase},"prev_hash":{prev_hash},"run_id":{fixed.run_id},"seq":{seq},"ts":{ts}}}'
    )
    digest = hashlib.sha256(hashed.encode("utf-8")).hexdigest()
    if not keys_sorted:
        data = _WRITTEN_JSON(event["data"])
    line = (
        f'{{"seq":{seq},"ts":{ts},"run_id":{fixed.run_id},"env":{fixed.env},"flow":{fixed.flow},'
        f'"phase":{phase},"nodeid":{nodeid},"kind":{kind},"data":{data},"prev_hash":{prev_hash},'
        f'"hash":"{digest}"}}\n'
    )
    return digest, line.encode("utf-8")


def _fsync_directory(directory: Path) -> None:
    # Makes a newly created file (or a rename) durable on POSIX; Windows has no directory handles to fsync.
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_events(path: Path, *, strict: bool = True, seal: bool = True) -> list[dict[str, Any]]:
    """The events of a journal file, in file order.

    strict: raise ValueError naming the line on anything that is not a JSON object; otherwise skip such lines
    (e.g. the torn last line of a killed run). seal: False leaves out the seal event (kind `seal`, the last
    line of a finished run's journal), so that the last event returned is the run's own last one, `run.end`.
    Use `verify_bundle` to check the chain.
    """
    events: list[dict[str, Any]] = []
    for number, raw in enumerate(_split_lines(Path(path).read_bytes()), start=1):
        try:
            event = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as error:
            if strict:
                raise ValueError(f"{path} line {number}: not a valid event ({error})") from error
            continue
        if not isinstance(event, dict):
            if strict:
                raise ValueError(f"{path} line {number}: not a JSON object")
            continue
        if not seal and event.get("kind") == SEAL_KIND:
            continue
        events.append(event)
    return events


def _split_lines(content: bytes) -> list[bytes]:
    # Split on b"\n" only: JSON escapes every control character, and str.splitlines() would also break on
    # U+2028 and friends, which ensure_ascii=False writes literally.
    lines = content.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def _sha256_file(path: Path) -> str:
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def _bundle_files(bundle_dir: Path) -> dict[str, Path]:
    """Every file of the bundle the manifest lists: all but manifest.json and the journal (the seal covers
    those two), sorted by relative path."""
    files: dict[str, Path] = {}
    for folder, _, names in os.walk(bundle_dir):
        for name in names:
            path = Path(folder, name)
            if path.is_file():
                relative = path.relative_to(bundle_dir).as_posix()
                if relative not in (MANIFEST_NAME, JOURNAL_NAME):
                    files[relative] = path
    return dict(sorted(files.items()))


def _manifest_bytes(
    files: Mapping[str, str], journal_events: int, journal_last_hash: str, created: str
) -> bytes:
    """manifest.json's exact bytes: `verify_bundle` re-serializes what it reads and compares byte for byte."""
    manifest = {
        "files": dict(sorted(files.items())),
        "journal_events": journal_events,
        "journal_last_hash": journal_last_hash,
        "created": created,
    }
    # surrogateescape: a file name that is not valid UTF-8 (POSIX allows any bytes) is written as its bytes.
    return (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8", "surrogateescape")


def write_manifest(bundle_dir: Path, *, journal_events: int, journal_last_hash: str) -> bytes:
    """Write manifest.json: the sha256 of every other file but the journal, and the journal so far (its event
    count and last hash). Returns the bytes written. Written atomically (temp file + os.replace).

    This is the first half of `Journal.seal`, which then appends the seal event holding these bytes' sha256;
    a bundle with a manifest but no seal verifies as "not sealed".
    """
    return _write_manifest(Path(bundle_dir), journal_events, journal_last_hash)[0]


def _write_manifest(bundle_dir: Path, journal_events: int, journal_last_hash: str) -> tuple[bytes, int]:
    if not isinstance(journal_last_hash, str) or not _HEX64.fullmatch(journal_last_hash):
        raise ValueError(f"journal_last_hash {journal_last_hash!r}: must be 64 lower-case hex digits")
    if not _is_count(journal_events):
        raise ValueError(f"journal_events {journal_events!r}: must be a whole number, 0 or more")
    files = {relative: _sha256_file(path) for relative, path in _bundle_files(bundle_dir).items()}
    payload = _manifest_bytes(files, journal_events, journal_last_hash, utc_timestamp())
    target = bundle_dir / MANIFEST_NAME
    fd, temp_name = tempfile.mkstemp(prefix=f".{MANIFEST_NAME}.", suffix=".tmp", dir=bundle_dir)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        # mkstemp makes the file private; the manifest is archived with the rest of the bundle.
        os.chmod(temp_name, 0o644)
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    _fsync_directory(bundle_dir)
    return payload, len(files)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_created(value: object) -> bool:
    if not isinstance(value, str) or not _CREATED.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


@dataclasses.dataclass(slots=True)
class VerifyResult:
    """What `verify_bundle` found. ok is True only when there is no problem at all."""

    ok: bool
    events: int
    """How many lines of evidence.jsonl are well-formed events, the seal included."""
    problems: list[str]
    chain_intact: bool = False
    """Every line of evidence.jsonl is a well-formed event, written as the journal writes it, linked to the one
    before: a valid (prefix of a) run's journal."""
    sealed: bool = False
    """evidence.jsonl holds a seal event whose content matches its hash (it may still be followed by lines
    added later, or the manifest may differ from it: see problems)."""
    manifest_present: bool = False
    manifest_files: int = 0
    """How many files manifest.json lists."""
    last_hash: str = GENESIS_HASH
    """The hash of the last well-formed event: in a sealed bundle, the seal's."""


@dataclasses.dataclass(slots=True)
class _Line:
    number: int
    event: dict[str, Any]
    seq: int
    hash: str
    raw: bytes


@dataclasses.dataclass(slots=True)
class _Seal:
    line: int
    trusted: bool
    """Well-formed and its content matches its hash: its manifest_sha256 is the one the run wrote."""
    manifest_sha256: str


@dataclasses.dataclass(slots=True)
class _Manifest:
    listed: dict[str, str | None] | None
    """Relative path -> sha256 (None where the entry's sha256 is malformed); None when "files" is unusable."""
    journal_events: int | None
    journal_last_hash: str | None


def _show(value: object) -> str:
    """A value read from a file, for an operator: as JSON (null, true, "text"), whatever its type."""
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


def _names(names: Sequence[str]) -> str:
    return ", ".join(_show(name) for name in names)


def _plural(count: int, noun: str) -> str:
    return f"{count} {_noun(count, noun)}"


def _noun(count: int, noun: str) -> str:
    return noun if count == 1 else f"{noun}s"


def _label(number: int, seq: object = None) -> str:
    return f"{JOURNAL_NAME} line {number}" + (f" (seq {seq})" if isinstance(seq, int) else "")


def _content_hash(event: Mapping[str, Any]) -> str | None:
    # A lone surrogate escape ("\ud800") in an altered line parses but cannot be encoded: no writer made it.
    try:
        return canonical_hash(event)
    except UnicodeEncodeError:
        return None


def _parse_journal(content: bytes, problems: list[str]) -> list[_Line | None]:
    """One entry per line: the parsed event, or None (with a problem recorded) when it is not one."""
    parsed: list[_Line | None] = []
    ends_with_newline = content.endswith(b"\n")
    lines = _split_lines(content)
    for number, raw in enumerate(lines, start=1):
        torn = number == len(lines) and not ends_with_newline
        entry = _parse_line(number, raw, torn, problems)
        parsed.append(entry)
    return parsed


_TORN: Final = (
    "last line incomplete, no end of line (the run was killed while writing it, or the file was cut)"
)


def _decode_line(label: str, raw: bytes, torn: bool, problems: list[str]) -> dict[str, Any] | None:
    if not raw.strip():
        problems.append(f"{label}: empty line (altered)")
        return None
    try:
        event = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        problems.append(f"{label}: {_TORN if torn else 'not valid UTF-8 (altered)'}")
        return None
    except (ValueError, RecursionError):
        problems.append(f"{label}: {_TORN if torn else 'not valid JSON (altered)'}")
        return None
    if not isinstance(event, dict):
        problems.append(f"{label}: not a JSON object (altered)")
        return None
    return event


def _parse_line(number: int, raw: bytes, torn: bool, problems: list[str]) -> _Line | None:
    event = _decode_line(_label(number), raw, torn, problems)
    if event is None:
        return None
    seq = event.get("seq")
    label = _label(number, seq)
    missing = [name for name in EVENT_FIELDS if name not in event]
    if missing:
        problems.append(f"{label}: missing {_noun(len(missing), 'field')} {', '.join(missing)} (altered)")
    unknown = [name for name in event if name not in EVENT_FIELDS]
    if unknown:
        problems.append(f"{label}: unknown {_noun(len(unknown), 'field')} {_names(unknown)} (altered)")
    stored_hash = event.get("hash")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        if "seq" not in missing:
            problems.append(f"{label}: seq {_show(seq)} is not a positive whole number (altered)")
        return None
    if not isinstance(stored_hash, str) or not _HEX64.fullmatch(stored_hash):
        if "hash" not in missing:
            problems.append(f"{label}: hash {_show(stored_hash)} is not 64 lower-case hex digits (altered)")
        return None
    if torn:
        problems.append(f"{label}: {_TORN}")
    return _Line(number, event, seq, stored_hash, raw)


def _check_chain(parsed: list[_Line | None], problems: list[str]) -> None:
    """Check each readable line: its hash, its bytes, its seq after the previous one, its link to the
    previous line, its run."""
    lines = [line for line in parsed if line is not None]
    present_seqs = {line.seq for line in lines}
    line_of_hash: dict[str, int] = {}
    for readable in lines:
        line_of_hash.setdefault(readable.hash, readable.number)
    # The run is the one most lines belong to (line 1's on a tie): one altered run_id is blamed on its line.
    runs = Counter(_show(line.event.get("run_id")) for line in lines)
    run_id = runs.most_common(1)[0][0] if runs else None
    seen: set[int] = set()
    previous: _Line | None = None
    for index, line in enumerate(parsed):
        if line is None:
            previous = None  # unreadable line: nothing to compare the next one with
            continue
        label = _label(line.number, line.seq)
        if _content_hash(line.event) != line.hash:
            problems.append(f"{label}: hash does not match its content (altered)")
        elif set(line.event) == set(EVENT_FIELDS) and _written_form(line.event) != line.raw + b"\n":
            # Same content, other bytes: an escape's hex digits in other case, a number spelt otherwise, a
            # space, a field moved. The hash cannot see it; the bytes can.
            problems.append(
                f"{label}: not byte for byte as the journal writes it "
                "(spacing, field order, escaping or number format changed; altered)"
            )
        if index == 0 or previous is not None:
            expected = max(seen, default=0) + 1
            if line.seq != expected:
                cause = _seq_cause(line.seq, expected, present_seqs, seen)
                problems.append(f"{label}: seq {line.seq}, expected {expected} ({cause})")
            link = _link_problem(line, previous, line_of_hash, seen)
            if link:
                problems.append(f"{label}: {link}")
        own_run = _show(line.event.get("run_id"))
        if own_run != run_id:
            problems.append(
                f"{label}: run_id {own_run} differs from the run's {run_id} (line from another run, or altered)"
            )
        seen.add(line.seq)
        previous = line


def _link_problem(line: _Line, previous: _Line | None, line_of_hash: dict[str, int], seen: set[int]) -> str:
    prev_hash = line.event.get("prev_hash")
    wanted = previous.hash if previous is not None else GENESIS_HASH
    if prev_hash == wanted:
        return ""
    target = "64 zeros (first event)" if previous is None else f"line {previous.number}"
    linked = line_of_hash.get(prev_hash) if isinstance(prev_hash, str) else None
    if linked is not None:
        cause = "line duplicated" if line.seq in seen else "lines reordered"
        return f"prev_hash links to line {linked}, not {target} ({cause})"
    if previous is None:
        return "prev_hash is not 64 zeros, so this is not the first event (lines removed at the start)"
    if line.seq == previous.seq + 1:
        cause = f"line {previous.number} altered and its hash recomputed, or this line replaced"
    else:
        cause = "line removed or reordered"
    return f"prev_hash does not link to {target} ({cause})"


def _seq_cause(seq: int, expected: int, present: set[int], seen: set[int]) -> str:
    if seq < expected:
        return "line duplicated" if seq in seen else "lines reordered"
    skipped = range(expected, seq)
    if all(number in present for number in skipped):
        return "lines reordered"
    return "line removed" if len(skipped) == 1 else f"{len(skipped)} lines removed"


NOT_SEALED: Final = f"{JOURNAL_NAME}: not sealed: the run did not finish, or the seal was removed"


def _find_seal(parsed: list[_Line | None], problems: list[str]) -> _Seal | None:
    """The journal's seal event, which must be its last line; None (and a problem) when there is none."""
    seals = [line for line in parsed if line is not None and line.event.get("kind") == SEAL_KIND]
    if not seals:
        problems.append(NOT_SEALED)
        return None
    seal = seals[0]
    for extra in seals[1:]:
        problems.append(
            f"{_label(extra.number, extra.seq)}: a second seal (a bundle is sealed once, at the end of its "
            "run; altered)"
        )
    after = len(parsed) - seal.number
    if after:
        problems.append(
            f"{JOURNAL_NAME}: {_plural(after, 'line')} after the seal at line {seal.number} (added after the run)"
        )
    data = seal.event.get("data")
    digest = data.get("manifest_sha256") if isinstance(data, dict) else None
    well_formed = (
        isinstance(data, dict)
        and set(data) == _SEAL_FIELDS
        and isinstance(digest, str)
        and _HEX64.fullmatch(digest) is not None
        and _is_count(data.get("files"))
        and seal.event.get("phase") is None
        and seal.event.get("nodeid") is None
    )
    if not well_formed or not isinstance(digest, str):
        problems.append(
            f"{_label(seal.number, seal.seq)}: the seal does not hold exactly the manifest's sha256 and its "
            "number of files (altered)"
        )
        return _Seal(seal.number, False, "")
    return _Seal(seal.number, _content_hash(seal.event) == seal.hash, digest)


_UNUSABLE: Final = "the other files cannot be checked against it"


def _read_manifest(raw: bytes, problems: list[str]) -> _Manifest | None:
    """Parse manifest.json and check that it is exactly what the run writes; None when it is not usable."""
    try:
        manifest = json.loads(raw.decode("utf-8", "surrogateescape"))
    except (ValueError, RecursionError):
        problems.append(f"{MANIFEST_NAME}: not valid JSON (altered); {_UNUSABLE}")
        return None
    if not isinstance(manifest, dict):
        problems.append(f"{MANIFEST_NAME}: not a JSON object (altered); {_UNUSABLE}")
        return None
    before = len(problems)
    unknown = [key for key in manifest if key not in MANIFEST_KEYS]
    if unknown:
        problems.append(f"{MANIFEST_NAME}: unknown {_noun(len(unknown), 'key')} {_names(unknown)} (altered)")
    missing = [key for key in MANIFEST_KEYS if key not in manifest]
    if missing:
        problems.append(f"{MANIFEST_NAME}: missing {_noun(len(missing), 'key')} {_names(missing)} (altered)")
    listed = _read_listed_files(manifest, problems)
    events = manifest.get("journal_events")
    if "journal_events" in manifest and not _is_count(events):
        problems.append(
            f"{MANIFEST_NAME}: journal_events {_show(events)} is not a number of events (altered)"
        )
    last_hash = manifest.get("journal_last_hash")
    last_hash_ok = isinstance(last_hash, str) and _HEX64.fullmatch(last_hash) is not None
    if "journal_last_hash" in manifest and not last_hash_ok:
        problems.append(
            f"{MANIFEST_NAME}: journal_last_hash {_show(last_hash)} is not 64 lower-case hex digits (altered)"
        )
    created = manifest.get("created")
    if "created" in manifest and not _is_created(created):
        problems.append(
            f"{MANIFEST_NAME}: created {_show(created)} is not a UTC time as the run writes it, "
            "like 2026-11-26T13:02:11.123+00:00 (altered)"
        )
    if len(problems) == before and listed is not None and isinstance(events, int):
        # Every value is as the run writes it; the bytes must be too (no space, order or escape changed).
        digests = {relative: digest for relative, digest in listed.items() if digest is not None}
        try:
            canonical = _manifest_bytes(digests, events, str(last_hash), str(created))
        except UnicodeEncodeError:
            canonical = b""
        if canonical != raw:
            problems.append(
                f"{MANIFEST_NAME}: not byte for byte as the run writes it "
                "(spacing, key order, escaping or a repeated key changed; altered)"
            )
    return _Manifest(
        listed,
        events if _is_count(events) else None,
        last_hash if last_hash_ok and isinstance(last_hash, str) else None,
    )


def _read_listed_files(manifest: Mapping[str, Any], problems: list[str]) -> dict[str, str | None] | None:
    if "files" not in manifest:
        return None
    files = manifest["files"]
    if not isinstance(files, dict):
        problems.append(f'{MANIFEST_NAME}: "files" is not an object (altered); {_UNUSABLE}')
        return None
    listed: dict[str, str | None] = {}
    for relative, digest in files.items():
        candidate = PurePosixPath(relative)
        if candidate.is_absolute() or ".." in candidate.parts or not candidate.parts or "\\" in relative:
            problems.append(f"{MANIFEST_NAME}: lists {_show(relative)}, a path outside the bundle (altered)")
            continue
        if relative in (MANIFEST_NAME, JOURNAL_NAME):
            problems.append(
                f"{MANIFEST_NAME}: lists {relative} among the files, which the run never does: the seal "
                "covers it (altered)"
            )
            continue
        if isinstance(digest, str) and _HEX64.fullmatch(digest):
            listed[relative] = digest
        else:
            listed[relative] = None
            problems.append(
                f"{MANIFEST_NAME}: the sha256 listed for {relative} is {_show(digest)}, "
                "not 64 lower-case hex digits (altered)"
            )
    return listed


def _check_manifest(
    bundle_dir: Path, parsed: list[_Line | None] | None, seal: _Seal | None, problems: list[str]
) -> int:
    """Check manifest.json against the seal, against itself, the journal and the files; return how many
    files it lists. parsed is None when the journal is missing."""
    raw = (bundle_dir / MANIFEST_NAME).read_bytes()
    own: list[str] = []
    if seal is not None and seal.trusted and hashlib.sha256(raw).hexdigest() != seal.manifest_sha256:
        own.append(
            f"{MANIFEST_NAME}: sha256 differs from the one sealed at {JOURNAL_NAME} line {seal.line} (altered)"
        )
    manifest = _read_manifest(raw, own)
    problems.extend(own)
    if manifest is None:
        return 0
    # A manifest known to be altered is blamed for every difference it shows; an intact one (or one that
    # cannot be told, without a seal) for none: then the other file is what changed.
    blame_manifest = bool(own)
    if parsed is not None:
        _check_journal_against_manifest(parsed, seal, manifest, blame_manifest, problems)
    if manifest.listed is None:
        return 0
    _check_files(bundle_dir, manifest.listed, blame_manifest, problems)
    return len(manifest.listed)


def _check_journal_against_manifest(
    parsed: list[_Line | None],
    seal: _Seal | None,
    manifest: _Manifest,
    blame_manifest: bool,
    problems: list[str],
) -> None:
    """The manifest records the journal as it was before the seal: its number of events and last hash."""
    recorded = manifest.journal_events
    if recorded is None:
        return
    lines = len(parsed)
    if seal is not None:
        before = seal.line - 1
        if before != recorded:
            problems.append(
                f"{MANIFEST_NAME}: records {_plural(recorded, 'journal event')} before the seal, "
                f"the journal has {before} (altered)"
                if blame_manifest
                else f"{JOURNAL_NAME}: {_plural(before, 'event')} before the seal, {MANIFEST_NAME} records "
                f"{recorded} (events removed or added before the seal)"
            )
    elif lines < recorded:
        problems.append(
            f"{MANIFEST_NAME}: records {_plural(recorded, 'journal event')}, the journal has {_plural(lines, 'line')} (altered)"
            if blame_manifest
            else f"{JOURNAL_NAME}: {_plural(lines, 'line')}, {MANIFEST_NAME} records {_plural(recorded, 'event')} "
            "(events removed at the end)"
        )
    elif lines > recorded:
        problems.append(
            f"{MANIFEST_NAME}: records {_plural(recorded, 'journal event')}, the journal has {_plural(lines, 'line')} (altered)"
            if blame_manifest
            else f"{JOURNAL_NAME}: {_plural(lines - recorded, 'line')} after line {recorded}, the last event "
            f"{MANIFEST_NAME} records, and none is a valid seal (added after the run, or the seal altered)"
        )
    recorded_hash = manifest.journal_last_hash
    if recorded_hash is None:
        return
    # The event the manifest's last hash belongs to: the one just before the seal, or (unsealed) the last one
    # the manifest records.
    position = seal.line - 1 if seal is not None else recorded
    if position == 0:
        if recorded_hash != GENESIS_HASH:
            problems.append(
                f"{MANIFEST_NAME}: journal_last_hash is not 64 zeros, though no event precedes the seal (altered)"
                if blame_manifest or seal is None
                else f"{JOURNAL_NAME}: no event before the seal, though {MANIFEST_NAME} records some "
                "(events removed)"
            )
        return
    line = parsed[position - 1] if position <= lines else None
    if line is not None and line.hash != recorded_hash:
        problems.append(
            f"{MANIFEST_NAME}: journal_last_hash is not the hash of {JOURNAL_NAME} line {position} (altered)"
            if blame_manifest
            else f"{_label(line.number, line.seq)}: hash differs from {MANIFEST_NAME}'s journal_last_hash "
            "(events rewritten with recomputed hashes, or removed or added)"
        )


def _check_files(
    bundle_dir: Path, listed: Mapping[str, str | None], blame_manifest: bool, problems: list[str]
) -> None:
    on_disk = _bundle_files(bundle_dir)
    for relative, expected in sorted(listed.items()):
        path = on_disk.get(relative)
        if path is None:
            problems.append(
                f"{MANIFEST_NAME}: lists {relative}, which is not in the bundle (altered)"
                if blame_manifest
                else f"{relative}: missing (listed in the manifest, removed after the run)"
            )
        elif expected is not None and _sha256_file(path) != expected:
            problems.append(
                f"{MANIFEST_NAME}: the sha256 it lists for {relative} is not the file's (altered)"
                if blame_manifest
                else f"{relative}: sha256 differs from manifest (altered)"
            )
    for relative in on_disk:
        if relative not in listed:
            problems.append(
                f"{MANIFEST_NAME}: does not list {relative}, which is in the bundle (altered)"
                if blame_manifest
                else f"{relative}: not in manifest (added after the run)"
            )


def verify_bundle(bundle_dir: Path) -> VerifyResult:
    """Check an evidence bundle: the journal's chain and seal, manifest.json byte for byte, every file; say
    precisely what was altered, each problem starting with the name of the file it found altered."""
    bundle_dir = Path(bundle_dir)
    problems: list[str] = []
    journal_path = bundle_dir / JOURNAL_NAME
    journal_present = journal_path.is_file()
    manifest_present = (bundle_dir / MANIFEST_NAME).is_file()
    parsed: list[_Line | None] = []
    if journal_present:
        parsed = _parse_journal(journal_path.read_bytes(), problems)
        _check_chain(parsed, problems)
    elif manifest_present:
        problems.append(
            f"{JOURNAL_NAME}: missing (the bundle has its {MANIFEST_NAME}, so the journal was removed after "
            "the run)"
        )
    else:
        problems.append(f"{JOURNAL_NAME}: missing (not an evidence bundle, or the journal was removed)")
    chain_intact = journal_present and not problems
    seal = _find_seal(parsed, problems) if journal_present else None
    manifest_files = 0
    if manifest_present:
        manifest_files = _check_manifest(bundle_dir, parsed if journal_present else None, seal, problems)
    elif seal is not None:
        problems.append(
            f"{MANIFEST_NAME}: missing (the seal at {JOURNAL_NAME} line {seal.line} records it; removed after "
            "the run)"
        )
    else:
        problems.append(MISSING_MANIFEST)
    lines = [line for line in parsed if line is not None]
    return VerifyResult(
        ok=not problems,
        events=len(lines),
        problems=problems,
        chain_intact=chain_intact,
        sealed=seal is not None and seal.trusted,
        manifest_present=manifest_present,
        manifest_files=manifest_files,
        last_hash=lines[-1].hash if lines else GENESIS_HASH,
    )


MISSING_MANIFEST: Final = f"{MANIFEST_NAME}: missing (the run did not finish, or it was removed)"


def _say(stream: TextIO, text: str) -> None:
    # A file name the console cannot encode (Windows code pages) must not turn a verdict into a traceback.
    try:
        print(text, file=stream)
    except UnicodeEncodeError:
        encoding = getattr(stream, "encoding", None) or "ascii"
        print(text.encode(encoding, "backslashreplace").decode(encoding), file=stream)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m plugins.evidence",
        description="Check an evidence bundle written by the runbook: the journal's chain and seal, the "
        "manifest and every file.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    verify = commands.add_parser(
        "verify",
        help="check evidence.jsonl's chain and seal, manifest.json and every file; say what was altered",
        description="Exit 0 when the bundle is intact and sealed, 1 when something was altered, is missing "
        "or the bundle is not sealed, 2 on usage errors.",
    )
    verify.add_argument(
        "bundle_dir", metavar="BUNDLE_DIR", type=Path, help="a run's directory under reports/"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m plugins.evidence verify <bundle-dir>`: 0 intact, 1 altered, 2 usage error."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        bundle_dir: Path = args.bundle_dir
        if not bundle_dir.is_dir():
            parser.error(f"{bundle_dir}: no such directory")
        if not (bundle_dir / JOURNAL_NAME).is_file() and not (bundle_dir / MANIFEST_NAME).is_file():
            parser.error(
                f"{bundle_dir}: no {JOURNAL_NAME} and no {MANIFEST_NAME} in it (not an evidence bundle?)"
            )
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 2
    result = verify_bundle(bundle_dir)
    if result.ok:
        _say(
            sys.stdout,
            f"OK: {bundle_dir}: {result.events} events, chain intact, sealed, "
            f"manifest matches ({result.manifest_files} files)",
        )
        _say(
            sys.stdout,
            f"journal last hash {result.last_hash} (compare it with the copy kept with the change record)",
        )
        return 0
    unfinished = {NOT_SEALED, MISSING_MANIFEST}
    heading = "NOT SEALED" if set(result.problems) <= unfinished else "ALTERED"
    _say(sys.stdout, f"{heading}: {bundle_dir}")
    for problem in result.problems:
        _say(sys.stdout, f"  {problem}")
    if result.chain_intact:
        state = (
            "sealed by its last event" if result.sealed else "but not sealed: an unsealed prefix of the run"
        )
        _say(sys.stdout, f"note: the journal's {result.events} events form an intact chain, {state}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
