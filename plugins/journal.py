"""The evidence journal (`evidence.jsonl`), the bundle manifest and their verification.

Every event of a run is one JSON line, chained to the one before by sha256 (DESIGN.md, "Journal"), and
written with flush + fsync so that a run killed half-way still leaves a valid prefix. `write_manifest` seals
the bundle at the end of the run; `verify_bundle` and the CLI (`python -m plugins.evidence verify <bundle>`)
say precisely what was altered afterwards.

The chain makes the journal tamper-evident, not tamper-proof: it has no secret key, so someone who rewrites
the journal, recomputes every hash and rewrites the manifest is not detected. Keep a copy of the manifest's
`journal_last_hash` somewhere else (the CI log, the change ticket) to close that gap.

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
    "MANIFEST_NAME",
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
)
"""The kinds DESIGN.md gives a meaning to. `Journal.append` accepts any kind matching `KIND_PATTERN`."""

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
_CHUNK: Final = 1 << 20


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


def _utf8_safe(text: str) -> str:
    # Lone surrogates (undecodable file names, bad bytes decoded with surrogateescape) cannot be encoded as
    # UTF-8; the hash would fail to compute. Replace them by their escape, deterministically.
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class _Converter:
    """Turns arbitrary event data into plain JSON values, passing every string through the redactor."""

    def __init__(self, redact: Callable[[str], str]) -> None:
        self._redact = redact
        self._active: set[int] = set()

    def text(self, value: str) -> str:
        return _utf8_safe(self._redact(value))

    def key(self, value: object) -> str:
        if isinstance(value, str):
            return self.text(value)
        converted = self.value(value)
        return converted if isinstance(converted, str) else self.text(str(converted))

    def value(self, value: object) -> Any:  # noqa: PLR0911, PLR0912 - one branch per kind of value, flat on purpose
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
        self._redact = redact if redact is not None else _identity
        self._run_id = _utf8_safe(run_id)
        self._env = _utf8_safe(env)
        self._flow = _utf8_safe(flow)
        self._lock = threading.Lock()
        self._seq = 0
        self._last_hash = GENESIS_HASH
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
    ) -> dict[str, Any]:
        """Write one event and return it as written (with seq, ts, prev_hash and hash).

        Every string in `data` (values and keys, at any depth) and the nodeid pass through the run's redactor
        before hashing, so secrets never reach the file.
        """
        if not isinstance(kind, str) or not KIND_PATTERN.fullmatch(kind):
            raise ValueError(
                f"journal event kind {kind!r}: must be lower-case words joined by dots, "
                f"like {', '.join(KINDS[:4])}, ..."
            )
        if data is not None and not isinstance(data, Mapping):
            raise TypeError(f"journal event data must be a mapping or None, not {type(data).__name__}")
        converter = _Converter(self._redact)
        plain_data = converter.value(data) if data is not None else {}
        plain_nodeid = converter.text(nodeid) if nodeid is not None else None
        plain_phase = _utf8_safe(phase) if phase is not None else None
        with self._lock:
            if self._file.closed:
                raise ValueError(f"{self._path}: journal is closed")
            event: dict[str, Any] = {
                "seq": self._seq + 1,
                "ts": utc_timestamp(),
                "run_id": self._run_id,
                "env": self._env,
                "flow": self._flow,
                "phase": plain_phase,
                "nodeid": plain_nodeid,
                "kind": kind,
                "data": plain_data,
                "prev_hash": self._last_hash,
            }
            event["hash"] = canonical_hash(event)
            line = json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n"
            self._write_durably(line.encode("utf-8"))
            self._seq = event["seq"]
            self._last_hash = event["hash"]
        return dict(event)

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


def read_events(path: Path, *, strict: bool = True) -> list[dict[str, Any]]:
    """The events of a journal file, in file order.

    strict: raise ValueError naming the line on anything that is not a JSON object; otherwise skip such lines
    (e.g. the torn last line of a killed run). Use `verify_bundle` to check the chain.
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
    files: dict[str, Path] = {}
    for path in bundle_dir.rglob("*"):
        if path.is_file():
            relative = path.relative_to(bundle_dir).as_posix()
            if relative != MANIFEST_NAME:
                files[relative] = path
    return dict(sorted(files.items()))


def write_manifest(bundle_dir: Path, journal_last_hash: str) -> Path:
    """Seal the bundle: write manifest.json with the sha256 of every other file and the journal's last hash.

    Call it last, after every writer (report.html included) is done; a file written later is reported by
    `verify_bundle` as added after the run. Written atomically (temp file + os.replace).
    """
    bundle_dir = Path(bundle_dir)
    if not _HEX64.fullmatch(journal_last_hash):
        raise ValueError(f"journal_last_hash {journal_last_hash!r}: must be 64 lower-case hex digits")
    manifest = {
        "files": {relative: _sha256_file(path) for relative, path in _bundle_files(bundle_dir).items()},
        "journal_last_hash": journal_last_hash,
        "created": utc_timestamp(),
    }
    target = bundle_dir / MANIFEST_NAME
    payload = (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
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
    return target


@dataclasses.dataclass(slots=True)
class VerifyResult:
    """What `verify_bundle` found. ok is True only when there is no problem at all."""

    ok: bool
    events: int
    problems: list[str]
    chain_intact: bool = False
    """Every line of evidence.jsonl is a well-formed event linked to the one before: a valid (prefix of a)
    run's journal."""
    manifest_present: bool = False
    manifest_files: int = 0
    """How many files manifest.json lists."""
    last_hash: str = GENESIS_HASH
    """The hash of the last well-formed event."""


@dataclasses.dataclass(slots=True)
class _Line:
    number: int
    event: dict[str, Any]
    seq: int
    hash: str


def _label(number: int, seq: object = None) -> str:
    return f"{JOURNAL_NAME} line {number}" + (f" (seq {seq})" if isinstance(seq, int) else "")


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
    except ValueError:
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
        problems.append(f"{label}: missing field(s) {', '.join(missing)} (altered)")
    stored_hash = event.get("hash")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        if "seq" not in missing:
            problems.append(f"{label}: seq {seq!r} is not a positive integer (altered)")
        return None
    if not isinstance(stored_hash, str) or not _HEX64.fullmatch(stored_hash):
        if "hash" not in missing:
            problems.append(f"{label}: hash {stored_hash!r} is not a sha256 hex digest (altered)")
        return None
    if torn:
        problems.append(f"{label}: {_TORN}")
    return _Line(number, event, seq, stored_hash)


def _check_chain(parsed: list[_Line | None], problems: list[str]) -> None:
    """Check each readable line: its hash, its seq after the previous one, its link to the previous line."""
    lines = [line for line in parsed if line is not None]
    present_seqs = {line.seq for line in lines}
    line_of_hash: dict[str, int] = {}
    for readable in lines:
        line_of_hash.setdefault(readable.hash, readable.number)
    run_id = lines[0].event.get("run_id") if lines else None
    seen: set[int] = set()
    previous: _Line | None = None
    for index, line in enumerate(parsed):
        if line is None:
            previous = None  # unreadable line: nothing to compare the next one with
            continue
        label = _label(line.number, line.seq)
        if canonical_hash(line.event) != line.hash:
            problems.append(f"{label}: hash does not match its content (altered)")
        if index == 0 or previous is not None:
            expected = max(seen, default=0) + 1
            if line.seq != expected:
                cause = _seq_cause(line.seq, expected, present_seqs, seen)
                problems.append(f"{label}: seq {line.seq}, expected {expected} ({cause})")
            link = _link_problem(line, previous, line_of_hash, seen)
            if link:
                problems.append(f"{label}: {link}")
        if line.event.get("run_id") != run_id:
            problems.append(
                f"{label}: run_id {line.event.get('run_id')!r} differs from line 1's {run_id!r} "
                "(line from another run)"
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


def _check_manifest(
    bundle_dir: Path, last: _Line | None, chain_hashes: list[str], problems: list[str]
) -> int:
    """Check manifest.json against the bundle; return how many files it lists."""
    manifest_path = bundle_dir / MANIFEST_NAME
    try:
        manifest = json.loads(manifest_path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        problems.append(f"{MANIFEST_NAME}: not valid JSON (altered)")
        return 0
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        problems.append(f'{MANIFEST_NAME}: has no "files" object (altered)')
        return 0
    on_disk = _bundle_files(bundle_dir)
    for relative, expected in sorted(files.items()):
        candidate = PurePosixPath(relative)
        if candidate.is_absolute() or ".." in candidate.parts or not candidate.parts or "\\" in relative:
            problems.append(f"{MANIFEST_NAME}: lists {relative!r}, a path outside the bundle (altered)")
            continue
        path = on_disk.get(relative)
        if path is None:
            problems.append(f"{relative}: missing (listed in the manifest, removed after the run)")
        elif not isinstance(expected, str) or _sha256_file(path) != expected.lower():
            problems.append(f"{relative}: sha256 differs from manifest (altered)")
    for relative in on_disk:
        if relative not in files:
            problems.append(f"{relative}: not in manifest (added after the run)")
    sealed = manifest.get("journal_last_hash")
    actual = last.hash if last is not None else GENESIS_HASH
    if sealed != actual:
        if isinstance(sealed, str) and sealed in chain_hashes[:-1]:
            position = chain_hashes.index(sealed) + 1
            added = len(chain_hashes) - position
            problems.append(
                f"{JOURNAL_NAME}: last hash differs from manifest ({added} event(s) added at the end "
                f"after the manifest was written; the manifest seals line {position})"
            )
        else:
            problems.append(
                f"{JOURNAL_NAME}: last hash differs from manifest (events removed or added at the end)"
            )
    return len(files)


def verify_bundle(bundle_dir: Path) -> VerifyResult:
    """Check the journal's chain and the manifest of an evidence bundle; say precisely what was altered."""
    bundle_dir = Path(bundle_dir)
    problems: list[str] = []
    journal_path = bundle_dir / JOURNAL_NAME
    if not journal_path.is_file():
        problems.append(f"{JOURNAL_NAME}: missing (not an evidence bundle, or the journal was removed)")
        parsed: list[_Line | None] = []
    else:
        parsed = _parse_journal(journal_path.read_bytes(), problems)
        _check_chain(parsed, problems)
    chain_intact = journal_path.is_file() and not problems
    lines = [line for line in parsed if line is not None]
    last = lines[-1] if lines else None
    manifest_present = (bundle_dir / MANIFEST_NAME).is_file()
    manifest_files = 0
    if manifest_present:
        manifest_files = _check_manifest(bundle_dir, last, [line.hash for line in lines], problems)
    else:
        problems.append(f"{MANIFEST_NAME} missing (run did not finish, or it was removed)")
    return VerifyResult(
        ok=not problems,
        events=len(lines),
        problems=problems,
        chain_intact=chain_intact,
        manifest_present=manifest_present,
        manifest_files=manifest_files,
        last_hash=last.hash if last is not None else GENESIS_HASH,
    )


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
        description="Check an evidence bundle written by the runbook: the journal's chain and the manifest.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    verify = commands.add_parser(
        "verify",
        help="check evidence.jsonl's chain and manifest.json; say what was altered",
        description="Exit 0 when the bundle is intact, 1 when something was altered or is missing, "
        "2 on usage errors.",
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
        if not (bundle_dir / JOURNAL_NAME).is_file():
            parser.error(f"{bundle_dir}: no {JOURNAL_NAME} in it (not an evidence bundle?)")
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 2
    result = verify_bundle(bundle_dir)
    if result.ok:
        _say(
            sys.stdout,
            f"OK: {bundle_dir}: {result.events} events, chain intact, "
            f"manifest matches ({result.manifest_files} files)",
        )
        return 0
    _say(sys.stdout, f"ALTERED: {bundle_dir}")
    for problem in result.problems:
        _say(sys.stdout, f"  {problem}")
    if result.chain_intact:
        _say(
            sys.stdout,
            f"note: the journal's {result.events} events form an intact chain (a valid prefix of the run)",
        )
    return 1


if __name__ == "__main__":
    sys.exit(main())
