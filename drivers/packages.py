"""Offline packages (playbook §3.1): MCMS_Setup_<version>.zip beside MCMS_Setup_<version>.zip.sha256."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from drivers.base import DriverError, quoted

_NAME = re.compile(r"^MCMS_Setup_(\d+(?:\.\d+)*)\.zip$")


class PackageError(DriverError):
    """A package is missing, unreadable, or its hash does not match."""


@dataclass(frozen=True)
class Package:
    version: str
    path: Path

    @property
    def sha256_path(self) -> Path:
        return self.path.with_name(self.path.name + ".sha256")

    @property
    def key(self) -> tuple[int, ...]:
        return version_key(self.version)

    def verify(self) -> str:
        """Return the verified sha256; raise PackageError saying what did not match."""
        if not self.sha256_path.is_file():
            raise PackageError(
                f"{self.path.name}: no {self.sha256_path.name} beside it, so it cannot be verified"
            )
        text = self.sha256_path.read_text(encoding="utf-8", errors="replace").strip()
        expected = text.split()[0].lower() if text else ""
        if not re.fullmatch(r"[0-9a-f]{64}", expected):
            raise PackageError(
                f"{self.sha256_path.name}: expected a sha256 hex digest, found {quoted(text[:80])}"
            )
        actual = sha256_of(self.path)
        if actual != expected:
            raise PackageError(
                f"{self.path.name}: sha256 mismatch: the file hashes to {actual}, "
                f"{self.sha256_path.name} says {expected}"
            )
        return actual


@dataclass(frozen=True)
class PackageSet:
    """The packages of an offline directory, newest first, with the two the runbook uses."""

    directory: Path
    packages: tuple[Package, ...]

    @property
    def latest(self) -> Package:
        if not self.packages:
            raise PackageError(f"{self.directory}: no MCMS_Setup_<version>.zip packages")
        return self.packages[0]

    def previous_stable(self, pinned: str = "") -> Package:
        """The pinned version, or the highest version below the latest."""
        if pinned:
            for package in self.packages:
                if package.version == pinned:
                    return package
            have = ", ".join(p.version for p in self.packages) or "none"
            raise PackageError(
                f"{self.directory}: previous stable {pinned} is pinned in [packages] previous_stable, "
                f"but MCMS_Setup_{pinned}.zip is not there (have: {have})"
            )
        if len(self.packages) < 2:
            raise PackageError(
                f"{self.directory}: a rollback needs a previous stable package below the latest "
                f"{self.latest.version}; found only {len(self.packages)} package(s)"
            )
        return self.packages[1]


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def find_packages(directory: Path) -> PackageSet:
    if not directory.is_dir():
        raise PackageError(f"{directory}: the offline package directory does not exist")
    found = []
    for path in directory.iterdir():
        match = _NAME.match(path.name)
        if match and path.is_file():
            found.append(Package(match.group(1), path))
    return PackageSet(directory, tuple(sorted(found, key=lambda p: p.key, reverse=True)))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
