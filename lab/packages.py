"""Offline packages: ``MCMS_Setup_<version>.zip`` beside ``MCMS_Setup_<version>.zip.sha256``.

A package holds the application source (``mcms/``) and ``release.json`` with its version and release faults.
Builds are deterministic (fixed timestamps and permissions, sorted entries), so the same source and version
always give the same bytes and the same hash, which is what the runbook's hash check relies on.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path

APP_SOURCE = Path(__file__).resolve().parent / "mcms"
RELEASE_FAULTS = ("a11y-regression", "insecure-headers", "unhealthy")
"""Faults a release can carry, plus ``degrade-after:<seconds>`` (every request answers 500 after a 0.3 s delay,
<seconds> after start) and ``degrade-after-routed:<seconds>`` (the same, counted from the first request that
arrives through the Lab router), and ``queue-backlog-after-routed:<seconds>`` (<seconds> after the first request
through the router, the node's own job queue grows and its worker does not drain it; pages stay 200 and fast)."""
TIMED_FAULTS = ("degrade-after", "degrade-after-routed", "queue-backlog-after-routed")

_VERSION = re.compile(r"\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?")
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)


def package_name(version: str) -> str:
    return f"MCMS_Setup_{version}.zip"


def check_version(version: str) -> str:
    # The version ends up in file and directory names: nothing path-like may get through.
    if not _VERSION.fullmatch(version):
        raise ValueError(f"version {version!r} is not like 1.2.3 or 1.2.3-rc1")
    return version


def check_release_fault(fault: str) -> str:
    if fault in RELEASE_FAULTS:
        return fault
    name, sep, seconds = fault.partition(":")
    if name in TIMED_FAULTS and sep:
        try:
            if float(seconds) >= 0:
                return fault
        except ValueError:
            pass
    allowed = ", ".join((*RELEASE_FAULTS, *(f"{name}:<seconds>" for name in TIMED_FAULTS)))
    raise ValueError(f"unknown release fault {fault!r}; expected one of: {allowed}")


def _source_files() -> list[tuple[str, Path]]:
    files = []
    for path in APP_SOURCE.rglob("*"):
        rel = path.relative_to(APP_SOURCE)
        if path.is_file() and "__pycache__" not in rel.parts and path.suffix not in (".pyc", ".pyo"):
            files.append((f"mcms/{rel.as_posix()}", path))
    return sorted(files)


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # the same bytes whether built on Windows or Linux
    info.external_attr = 0o644 << 16
    return info


def build_package(version: str, out_dir: Path, faults: Sequence[str] = ()) -> Path:
    """Build ``out_dir/MCMS_Setup_<version>.zip`` and its ``.sha256`` file; return the zip's path."""
    check_version(version)
    release = {"version": version, "faults": [check_release_fault(f) for f in faults]}
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / package_name(version)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        entries = [*_source_files()]
        for name, path in entries:
            zf.writestr(_entry(name), path.read_bytes())
        zf.writestr(_entry("release.json"), json.dumps(release, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, target)
    write_sha256_file(target)
    return target


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_path(package: Path) -> Path:
    return package.with_name(package.name + ".sha256")


def write_sha256_file(package: Path, digest: str | None = None) -> Path:
    """sha256sum format, so ``sha256sum -c`` and Get-FileHash comparisons both work on it."""
    path = sha256_path(package)
    path.write_bytes(f"{digest or sha256_of(package)}  {package.name}\n".encode("ascii"))
    return path


def read_sha256_file(path: Path) -> str:
    """The hex digest from a sha256sum-style file (``<hex>  <name>`` or ``<hex> *<name>``), lower case."""
    text = path.read_text(encoding="utf-8-sig").strip()
    first = text.split(maxsplit=1)[0] if text else ""
    if not re.fullmatch(r"[0-9a-fA-F]{64}", first):
        raise ValueError(f"{path}: no SHA-256 digest found")
    return first.lower()
