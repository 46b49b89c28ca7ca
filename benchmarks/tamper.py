"""How much tampering `verify` catches: ``python -m benchmarks.tamper [--bundle DIR] [--sample N]``.

Builds a sealed evidence bundle in a temporary directory, the way a run does (the journal of a rollback run,
artifacts, timeline, junit and report, then `Journal.seal`: manifest.json and the seal event), or copies the
bundle given with --bundle (e.g. one under reports/). Then alters it and runs `verify_bundle` after each
alteration, restoring the file after each:

- every single byte of every file, manifest.json and evidence.jsonl included, changed twice: XOR 0x01 (the
  low bit: "a" -> "`", "5" -> "4") and XOR 0x20 (letter case: a hex digit "a" -> "A"). With --sample N, a
  file over N bytes gets its first and last 100 bytes and a fixed pseudo-random sample of the rest, N
  offsets in all (manifest.json always every byte);
- each file deleted, one file added;
- edits of manifest.json that keep its values (spacing, line ends, escapes, key order, a repeated key) and
  edits of its values (hex case, the created time, an extra key, a file's hash, the journal's last hash);
- edits of evidence.jsonl: the seal removed, an event removed, two swapped, one duplicated.

An alteration counts as detected when verify says the bundle is not intact, and as blamed right when every
problem it reports names the altered file (or, for an addition, the added one). Prints the figures; asserts
nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from plugins.journal import JOURNAL_NAME, MANIFEST_NAME, Journal, verify_bundle

MASKS = (0x01, 0x20)


@dataclass
class Tally:
    """Alterations of one kind (or one file): how many, how many detected, how many blamed on that file."""

    alterations: int = 0
    detected: int = 0
    blamed_right: int = 0
    missed: list[str] = field(default_factory=list)

    def add(self, what: str, problems: list[str], culprit: str) -> None:
        self.alterations += 1
        if problems:
            self.detected += 1
        if problems and all(p.startswith((f"{culprit}: ", f"{culprit} line ")) for p in problems):
            self.blamed_right += 1
        else:
            self.missed.append(f"{what}: {problems or 'reported intact'}")


def build_bundle(directory: Path) -> Path:
    """A finished rollback run's bundle, sealed as `plugins.evidence.seal_bundle` seals it."""
    bundle = directory / "20261126T130211Z_Lab_rollback"
    journal = Journal(bundle / JOURNAL_NAME, "20261126T130211Z", "Lab", "rollback")
    journal.append("run.start", {"env": "Lab", "flow": "rollback", "options": {"approved_by": "j.doe"}})
    phases = ["PRE", "RB-1", "RB-2", "RB-3", "DR-SMOKE", "RB-4", "RB-5"]
    for phase in phases:
        journal.append("phase.start", phase=phase, nodeid=f"runbook_tests/test_{phase.lower()}.py::test_step")
        journal.append(
            "probe",
            {"name": "health", "url": "http://127.0.0.1:8080/health", "status": 200, "latency_ms": 1.5e-05},
            phase=phase,
        )
        if phase == "RB-2":
            journal.append(
                "action",
                {
                    "name": "stop_site",
                    "target": "active",
                    "result": "ok",
                    "duration_s": 0.42,
                    "detail": "\x1b[32mstopped\x1b[0m naïve ✓",
                },
                phase=phase,
            )
        journal.append("phase.end", {"outcome": "passed", "reason": None}, phase=phase)
    journal.append("notify", {"event_type": "Deployed", "delivery": "delivered"}, phase="RB-4")
    journal.append(
        "run.end", {"outcome": "passed", "version_from": "1.1.0", "version_to": "1.0.0", "rollback_ran": True}
    )
    artifacts = bundle / "artifacts"
    (artifacts / "axe").mkdir(parents=True)
    (artifacts / "screenshots").mkdir()
    (artifacts / "axe" / "home.json").write_text(
        json.dumps({"url": "http://127.0.0.1:8080/", "violations": [], "testEngine": {"name": "axe-core"}})
    )
    (artifacts / "monitor.csv").write_text(
        "ts,status,latency_ms,ok\n"
        + "".join(f"2026-11-26T13:02:{s:02d}Z,200,{10 + s % 7},1\n" for s in range(40))
    )
    (artifacts / "notifications.jsonl").write_text('{"event_type": "Deployed", "delivery": "delivered"}\n')
    (artifacts / "screenshots" / "home.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    (bundle / "timeline.md").write_text(
        "| time (UTC) | phase | step |\n|---|---|---|\n"
        + "".join(f"| 13:02:{n:02d}.000 | {p} | phase passed |\n" for n, p in enumerate(phases))
    )
    (bundle / "junit.xml").write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n<testsuites>\n  <testsuite name="runbook rollback Lab" '
        'tests="7" failures="0" />\n</testsuites>\n'
    )
    (bundle / "report.html").write_text(
        "<!DOCTYPE html>\n<html><head><title>Runbook summary</title></head><body>\n"
        + "".join(f"<tr><td>{p}</td><td>passed</td></tr>\n" for p in phases)
        + "</body></html>\n"
    )
    journal.seal()
    return bundle


def files_of(bundle: Path) -> list[str]:
    return sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file())


def offsets(size: int, relative: str, sample: int | None) -> list[int]:
    if sample is None or relative == MANIFEST_NAME or size <= sample:
        return list(range(size))
    rng = random.Random(f"{relative}:{size}")
    middle = rng.sample(range(100, size - 100), max(sample - 200, 0))
    return sorted({*range(100), *range(size - 100, size), *middle})


def single_bytes(bundle: Path, sample: int | None, timings: list[float]) -> dict[str, Tally]:
    tallies: dict[str, Tally] = {}
    for relative in files_of(bundle):
        tally = tallies.setdefault(relative, Tally())
        path = bundle / relative
        original = path.read_bytes()
        try:
            for offset in offsets(len(original), relative, sample):
                for mask in MASKS:
                    altered = bytearray(original)
                    altered[offset] ^= mask
                    path.write_bytes(bytes(altered))
                    started = time.perf_counter()
                    problems = verify_bundle(bundle).problems
                    timings.append(time.perf_counter() - started)
                    tally.add(f"{relative} byte {offset} XOR {mask:#04x}", problems, relative)
        finally:
            path.write_bytes(original)
    return tallies


def deletions_and_addition(bundle: Path) -> Tally:
    tally = Tally()
    for relative in files_of(bundle):
        path = bundle / relative
        original = path.read_bytes()
        path.unlink()
        try:
            problems = verify_bundle(bundle).problems
            named_missing = problems and all(p.startswith(f"{relative}: missing") for p in problems)
            tally.add(
                f"{relative} deleted",
                problems if named_missing else [*problems, "(not named missing)"],
                relative,
            )
        finally:
            path.write_bytes(original)
    added = bundle / "artifacts" / "added-later.png"
    added.write_bytes(b"\x89PNG")
    try:
        tally.add("a file added", verify_bundle(bundle).problems, "artifacts/added-later.png")
    finally:
        added.unlink()
    return tally


def _json_edit(edit: Callable[[dict[str, object]], None]) -> Callable[[bytes], bytes]:
    def apply(raw: bytes) -> bytes:
        manifest = json.loads(raw)
        edit(manifest)
        return (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode()

    return apply


def _upper_hex(manifest: dict[str, object]) -> None:
    files = manifest["files"]
    assert isinstance(files, dict)
    name = next(iter(files))
    files[name] = str(files[name]).upper()


def _other_file_hash(manifest: dict[str, object]) -> None:
    files = manifest["files"]
    assert isinstance(files, dict)
    files[next(iter(files))] = hashlib.sha256(b"forged").hexdigest()


MANIFEST_EDITS: dict[str, Callable[[bytes], bytes]] = {
    "a space added": lambda raw: raw.replace(b'": "', b'":  "', 1),
    "a blank line at the end": lambda raw: raw + b"\n",
    "Windows line ends": lambda raw: raw.replace(b"\n", b"\r\n"),
    "the end of line removed": lambda raw: raw.rstrip(b"\n"),
    "a name escaped": lambda raw: raw.replace(b".html", b"\\u002ehtml", 1),
    "a repeated key": lambda raw: raw.replace(b'\n  "created"', b'\n  "created": "x",\n  "created"', 1),
    "keys reordered": lambda raw: (
        json.dumps(dict(reversed(json.loads(raw).items())), indent=2, ensure_ascii=False) + "\n"
    ).encode(),
    "hex digits in upper case": _json_edit(_upper_hex),
    "another created time": _json_edit(lambda m: m.update(created="2026-11-26T13:02:11.123+00:00")),
    "an impossible created time": _json_edit(lambda m: m.update(created="2026-02-30T13:02:11.123+00:00")),
    "an extra key": _json_edit(lambda m: m.update(approved=True)),
    "another hash for a file": _json_edit(_other_file_hash),
    "another journal last hash": _json_edit(lambda m: m.update(journal_last_hash="f" * 64)),
    "fewer journal events": _json_edit(lambda m: m.update(journal_events=int(str(m["journal_events"])) - 1)),
}

JOURNAL_EDITS: dict[str, Callable[[list[bytes]], list[bytes]]] = {
    "the seal removed": lambda lines: lines[:-1],
    "an event removed": lambda lines: lines[:3] + lines[4:],
    "two events swapped": lambda lines: [*lines[:3], lines[4], lines[3], *lines[5:]],
    "an event duplicated": lambda lines: [*lines[:4], lines[3], *lines[4:]],
    "the seal and run.end removed": lambda lines: lines[:-2],
}


def structural_edits(bundle: Path) -> Tally:
    tally = Tally()
    manifest = bundle / MANIFEST_NAME
    original = manifest.read_bytes()
    for what, edit in MANIFEST_EDITS.items():
        manifest.write_bytes(edit(original))
        try:
            tally.add(f"manifest.json: {what}", verify_bundle(bundle).problems, MANIFEST_NAME)
        finally:
            manifest.write_bytes(original)
    journal = bundle / JOURNAL_NAME
    content = journal.read_bytes()
    lines = [line + b"\n" for line in content.split(b"\n")[:-1]]
    for what, line_edit in JOURNAL_EDITS.items():
        journal.write_bytes(b"".join(line_edit(list(lines))))
        try:
            tally.add(f"evidence.jsonl: {what}", verify_bundle(bundle).problems, JOURNAL_NAME)
        finally:
            journal.write_bytes(content)
    return tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tamper", description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", type=Path, help="sweep a copy of this bundle instead of a built one")
    parser.add_argument(
        "--sample",
        type=int,
        default=None,
        metavar="N",
        help="at most N offsets per file (manifest.json: all)",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tamper-") as temp:
        if args.bundle is not None:
            bundle = Path(temp) / args.bundle.name
            shutil.copytree(args.bundle, bundle)
        else:
            bundle = build_bundle(Path(temp))
        before = verify_bundle(bundle)
        if not before.ok:
            print(f"{args.bundle or bundle}: not intact before any alteration; verify says:")
            for problem in before.problems:
                print(f"  {problem}")
            return 1
        sizes = {relative: (bundle / relative).stat().st_size for relative in files_of(bundle)}
        what = (
            "every byte" if args.sample is None else f"up to {args.sample} bytes (manifest.json: every byte)"
        )
        print(
            f"bundle: {args.bundle or 'built in a temporary directory'}: {len(sizes)} files, {sum(sizes.values())} bytes"
        )
        print(f"single-byte changes: {what} of every file, XOR 0x01 and XOR 0x20, verify after each")
        timings: list[float] = []
        started = time.perf_counter()
        per_file = single_bytes(bundle, args.sample, timings)
        print(f"\n{'file':40} {'bytes':>8} {'altered':>8} {'detected':>9} {'right file':>11}")
        for relative, tally in per_file.items():
            print(
                f"{relative:40} {sizes[relative]:8} {tally.alterations:8} {tally.detected:9} {tally.blamed_right:11}"
            )
        bytes_total = Tally()
        for tally in per_file.values():
            bytes_total.alterations += tally.alterations
            bytes_total.detected += tally.detected
            bytes_total.blamed_right += tally.blamed_right
            bytes_total.missed += tally.missed
        others = deletions_and_addition(bundle)
        structure = structural_edits(bundle)
        elapsed = time.perf_counter() - started
        assert verify_bundle(bundle).ok, "the benchmark left the bundle altered"

    def line(label: str, tally: Tally) -> str:
        return (
            f"{label:42} detected {tally.detected} / {tally.alterations}, "
            f"blamed on the altered file alone {tally.blamed_right} / {tally.alterations}"
        )

    print()
    print(line("single-byte changes:", bytes_total))
    print(line("files deleted (named missing), one added:", others))
    print(line("manifest.json and evidence.jsonl edits:", structure))
    total = Tally(
        bytes_total.alterations + others.alterations + structure.alterations,
        bytes_total.detected + others.detected + structure.detected,
        bytes_total.blamed_right + others.blamed_right + structure.blamed_right,
        bytes_total.missed + others.missed + structure.missed,
    )
    print(f"\ntamper detections / alterations: {total.detected} / {total.alterations}")
    print(f"blamed on the right file / alterations: {total.blamed_right} / {total.alterations}")
    print(
        f"verify_bundle: median {statistics.median(timings) * 1000:.2f} ms per call, "
        f"{len(timings)} calls; whole sweep {elapsed:.1f} s"
    )
    for miss in total.missed[:20]:
        print(f"MISSED: {miss}")
    if len(total.missed) > 20:
        print(f"... and {len(total.missed) - 20} more")
    return 0


if __name__ == "__main__":
    sys.exit(main())
