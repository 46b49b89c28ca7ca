"""drivers/packages.py in plain Python: the offline package directory in tmp_path, versions and sha256."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from drivers.base import DriverError
from drivers.packages import Package, PackageError, find_packages, version_key
from tests.driver_env import make_package


def test_packages_sorted_by_numeric_version_ignoring_other_files(tmp_path: Path) -> None:
    offline = tmp_path / "offline"
    for version in ("1.9.0", "1.10.0", "1.2", "0.9.12"):
        make_package(offline, version)
    (offline / "notes.txt").write_text("x", encoding="utf-8")
    (offline / "MCMS_Setup_beta.zip").write_bytes(b"x")
    (offline / "MCMS_Setup_2.0.0.tar.gz").write_bytes(b"x")
    (offline / "Other_Setup_9.0.0.zip").write_bytes(b"x")
    (offline / "MCMS_Setup_9.0.0.zip").mkdir()  # a directory, not a package
    found = find_packages(offline)
    assert found.directory == offline
    assert [p.version for p in found.packages] == ["1.10.0", "1.9.0", "1.2", "0.9.12"]
    assert found.latest == Package("1.10.0", offline / "MCMS_Setup_1.10.0.zip")
    assert found.previous_stable() == Package("1.9.0", offline / "MCMS_Setup_1.9.0.zip")
    assert found.previous_stable("0.9.12").path == offline / "MCMS_Setup_0.9.12.zip"
    assert found.latest.key == (1, 10, 0)
    assert version_key("1.10.0") > version_key("1.9.0")


def test_packages_pinned_previous_stable(tmp_path: Path) -> None:
    offline = tmp_path / "offline"
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        make_package(offline, version)
    found = find_packages(offline)
    assert found.previous_stable("1.0.0").version == "1.0.0"
    with pytest.raises(PackageError) as info:
        found.previous_stable("0.9.0")
    assert str(info.value) == (
        f"{offline}: previous stable 0.9.0 is pinned in [packages] previous_stable, "
        "but MCMS_Setup_0.9.0.zip is not there (have: 1.2.0, 1.1.0, 1.0.0)"
    )


def test_packages_need_two_for_a_rollback(tmp_path: Path) -> None:
    offline = tmp_path / "offline"
    make_package(offline, "1.1.0")
    found = find_packages(offline)
    assert found.latest.version == "1.1.0"
    with pytest.raises(PackageError) as info:
        found.previous_stable()
    assert str(info.value) == (
        f"{offline}: a rollback needs a previous stable package below the latest 1.1.0; "
        "found only 1 package(s)"
    )


def test_packages_empty_directory(tmp_path: Path) -> None:
    found = find_packages(tmp_path)
    assert found.packages == ()
    with pytest.raises(PackageError) as info:
        _ = found.latest
    assert str(info.value) == f"{tmp_path}: no MCMS_Setup_<version>.zip packages"
    with pytest.raises(PackageError) as info:
        found.previous_stable()
    assert str(info.value) == f"{tmp_path}: no MCMS_Setup_<version>.zip packages"
    with pytest.raises(PackageError) as info:
        found.previous_stable("1.0.0")
    assert str(info.value).endswith("but MCMS_Setup_1.0.0.zip is not there (have: none)")


def test_packages_directory_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(PackageError) as info:
        find_packages(missing)
    assert str(info.value) == f"{missing}: the offline package directory does not exist"
    assert isinstance(info.value, DriverError)


def test_package_verify_ok(tmp_path: Path) -> None:
    path = make_package(tmp_path, "1.0.0", b"zip bytes")
    assert Package("1.0.0", path).verify() == hashlib.sha256(b"zip bytes").hexdigest()
    # A bare upper-case digest (Get-FileHash style) is accepted too.
    (tmp_path / "MCMS_Setup_1.0.0.zip.sha256").write_text(
        hashlib.sha256(b"zip bytes").hexdigest().upper(), encoding="utf-8"
    )
    assert Package("1.0.0", path).verify() == hashlib.sha256(b"zip bytes").hexdigest()


def test_package_verify_mismatch_names_both_digests(tmp_path: Path) -> None:
    path = make_package(tmp_path, "1.0.0", b"original")
    path.write_bytes(b"tampered")
    actual, expected = hashlib.sha256(b"tampered").hexdigest(), hashlib.sha256(b"original").hexdigest()
    with pytest.raises(PackageError) as info:
        Package("1.0.0", path).verify()
    assert str(info.value) == (
        f"MCMS_Setup_1.0.0.zip: sha256 mismatch: the file hashes to {actual}, "
        f"MCMS_Setup_1.0.0.zip.sha256 says {expected}"
    )


def test_package_verify_without_sha256_file(tmp_path: Path) -> None:
    path = make_package(tmp_path, "1.0.0", sha=False)
    with pytest.raises(PackageError) as info:
        Package("1.0.0", path).verify()
    assert str(info.value) == (
        "MCMS_Setup_1.0.0.zip: no MCMS_Setup_1.0.0.zip.sha256 beside it, so it cannot be verified"
    )


@pytest.mark.parametrize(
    ("text", "shown"),
    [("not-a-digest  MCMS_Setup_1.0.0.zip\n", "not-a-digest  MCMS_Setup_1.0.0.zip"), ("", "")],
)
def test_package_verify_malformed_sha256_file(tmp_path: Path, text: str, shown: str) -> None:
    path = make_package(tmp_path, "1.0.0")
    path.with_name(path.name + ".sha256").write_text(text, encoding="utf-8")
    with pytest.raises(PackageError) as info:
        Package("1.0.0", path).verify()
    assert (
        str(info.value)
        == f"MCMS_Setup_1.0.0.zip.sha256: expected a sha256 hex digest, found {json.dumps(shown)}"
    )
