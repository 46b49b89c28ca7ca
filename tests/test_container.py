"""The Lab drill's container (Containerfile): built with podman from a base image made here, then run.

No registry is reachable from these machines, so the base image is the one `scripts/container/make-base-image`
makes (debootstrap of Debian 13 from the Debian mirror, imported into podman), made when it is missing. The image
is built from the project's root as an operator would (`.dockerignore` decides what goes in), with the machine's
company root certificates put where the README says (`scripts/container/ca-certificates/`, git-ignored) when the
machine has any, because pip in the build goes through the same TLS-inspecting proxy as the host's pip.

Some hosts need flags beside the README's commands, found by trying (`engine_flags`): podman raises the
container's open-files limit above a hard limit lower than its default (`setrlimit RLIMIT_NOFILE: Operation not
permitted`), and crun refuses a cgroup v1+v2 hybrid host (`cgroups in hybrid mode not supported`; runc runs).
The README names both errors and their flags. Each run is a real drill in the container, on its own loopback
(`--network none`): its bundle lands in the mounted folder, and the host verifies it.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.tools import ROOT, system_tool

pytestmark = [pytest.mark.container, pytest.mark.drill]

BASE_IMAGE = "localhost/mcms-debian-base:trixie"
IMAGE = "localhost/mcms-runbook-lab:test"
IMAGE_LABEL = "org.opencontainers.image.title=mcms-runbook-lab"  # the Containerfile's LABEL
CA_SOURCE = Path("/usr/local/share/ca-certificates")
CA_TARGET = ROOT / "scripts" / "container" / "ca-certificates"
BUILD_TIMEOUT_S = (
    1500  # the first build downloads Chromium and the wheels; later ones reuse the cached layers
)
RUN_TIMEOUT_S = 600


@dataclass(frozen=True)
class Engine:
    podman: str
    flags: tuple[str, ...]  # what this host needs beside the README's commands (empty on most machines)

    def run(self, *args: str, timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        """`podman build ...` or `podman run ...` (args[0]) with this host's flags after the subcommand."""
        assert args[0] in ("build", "run"), "only build and run take the flags"
        return subprocess.run(
            [self.podman, args[0], *self.flags, *args[1:]],
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _unavailable(message: str) -> None:
    if os.environ.get("RUNBOOK_REQUIRE_TOOLS") == "1":
        pytest.fail(f"{message} (RUNBOOK_REQUIRE_TOOLS=1: CI needs it)", pytrace=False)
    pytest.skip(message)


def engine_flags(podman: str, image: str) -> tuple[tuple[str, ...], str]:
    """The first set of flags with which `podman run IMAGE true` works here, and the errors of those that did not."""
    _, nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    _, nproc = resource.getrlimit(resource.RLIMIT_NPROC)
    # podman lowers its own process limit to 32768 when it can (and its container cannot have more than that).
    limits = (
        "--ulimit",
        f"nofile={nofile}:{nofile}",
        "--ulimit",
        f"nproc={min(nproc, 32768)}:{min(nproc, 32768)}",
    )
    candidates: list[tuple[str, ...]] = [(), limits]
    if shutil.which("runc"):
        candidates.append(("--runtime", "runc", *limits))
    errors: list[str] = []
    for flags in candidates:
        done = subprocess.run(
            [podman, "run", *flags, "--rm", "--network", "none", image, "true"],
            check=False, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if done.returncode == 0:
            return flags, "; ".join(errors)
        last = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        errors.append(f"with {' '.join(flags) or 'no flags'}: {last}")
    _unavailable("podman cannot start a container on this machine: " + "; ".join(errors))
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def engine() -> Engine:
    podman = system_tool("podman")
    if subprocess.run([podman, "image", "exists", BASE_IMAGE], check=False, timeout=60).returncode != 0:
        if os.geteuid() != 0 or shutil.which("debootstrap") is None:
            _unavailable(
                f"no {BASE_IMAGE} and cannot make it here (scripts/container/make-base-image needs root)"
            )
        made = subprocess.run(
            [str(ROOT / "scripts" / "container" / "make-base-image")],
            check=False, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert made.returncode == 0, f"make-base-image failed:\n{made.stdout}\n{made.stderr}"
        assert f"Base image: {BASE_IMAGE}" in made.stdout
    flags, tried = engine_flags(podman, BASE_IMAGE)
    print(f"podman flags this machine needs: {' '.join(flags) or 'none'} ({tried or 'the first try worked'})")
    return Engine(podman, flags)


@pytest.fixture(scope="module")
def company_ca() -> Iterator[list[Path]]:
    """The machine's own root certificates, copied where the README tells an operator to put them, then removed."""
    added = []
    for cert in sorted(CA_SOURCE.glob("*.crt")) if CA_SOURCE.is_dir() else []:
        target = CA_TARGET / cert.name
        if not target.exists():
            shutil.copyfile(cert, target)
            added.append(target)
    yield added
    for target in added:
        target.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def image(engine: Engine, company_ca: list[Path]) -> str:
    built = engine.run(
        "build", "--build-arg", f"BASE={BASE_IMAGE}", "-t", IMAGE, "-f", str(ROOT / "Containerfile"), str(ROOT),
        timeout=BUILD_TIMEOUT_S,
    )  # fmt: skip
    assert built.returncode == 0, f"podman build failed:\n{built.stdout[-6000:]}\n{built.stderr[-3000:]}"
    # The layers of earlier builds that this one replaced (untagged, no child): removed, so that builds do not
    # pile up; only this image's (its label), never another project's dangling images.
    subprocess.run(
        [engine.podman, "image", "prune", "--force", "--filter", f"label={IMAGE_LABEL}"],
        check=False, capture_output=True, timeout=300,
    )  # fmt: skip
    left = subprocess.run(
        [engine.podman, "images", "--quiet", "--filter", "dangling=true", "--filter", f"label={IMAGE_LABEL}"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout.split()  # fmt: skip
    assert left == [], f"earlier builds' layers were left behind: {left}"
    return IMAGE


def run_argv(engine: Engine, name: str, image: str, bundles: Path, *args: str) -> list[str]:
    """`podman run --rm --network none -v BUNDLES:/bundle:Z IMAGE ARGS`: the README's command."""
    return [engine.podman, "run", *engine.flags, "--rm", "--name", name, "--network", "none",
            "-v", f"{bundles}:/bundle:Z", image, *args]  # fmt: skip


def remove(engine: Engine, name: str) -> None:
    """The test's own container, by the name it gave it (gone already after --rm, unless the run was killed)."""
    subprocess.run(
        [engine.podman, "rm", "-f", "--ignore", name], check=False, capture_output=True, timeout=120
    )


def run_container(engine: Engine, image: str, bundles: Path, *args: str) -> str:
    """The README's run command with ARGS after the image's name; its exit code and output."""
    name = f"mcms-runbook-test-{uuid.uuid4().hex[:8]}"
    try:
        done = subprocess.run(
            run_argv(engine, name, image, bundles, *args),
            check=False, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
        )  # fmt: skip
    finally:
        remove(engine, name)
    return f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"


def only_bundle(bundles: Path) -> Path:
    found = [p for p in bundles.iterdir() if p.is_dir()]
    assert len(found) == 1, f"expected one bundle in {bundles}, found {sorted(p.name for p in found)}"
    return found[0]


def verify_on_host(bundle: Path) -> str:
    done = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-m", "plugins.evidence", "verify", str(bundle)],
        check=False, capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, (
        f"the host cannot verify the container's bundle:\n{done.stdout}\n{done.stderr}"
    )
    return done.stdout


def junit_counts(bundle: Path) -> dict[str, int]:
    suite = ET.parse(bundle / "junit.xml").getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    return {key: int(suite.get(key, "0")) for key in ("tests", "failures", "errors", "skipped")}


def test_the_lab_drill_runs_in_the_container_and_leaves_its_bundle_on_the_host(
    engine: Engine, image: str, tmp_path: Path
) -> None:
    output = run_container(engine, image, tmp_path)
    assert output.startswith("exit 0\n"), output[-4000:]
    assert "$ /opt/venv/bin/python -m pytest -m rollback --env Lab\n" in output
    bundle = only_bundle(tmp_path)
    assert bundle.name.endswith("_Lab_rollback")
    assert f"Evidence: /bundle/{bundle.name}" in output
    assert "OK: " in verify_on_host(bundle)
    # Every row ran in the container, the browser rows with its Chromium: none skipped.
    counts = junit_counts(bundle)
    assert counts["tests"] >= 20, counts
    assert counts["failures"] == counts["errors"] == counts["skipped"] == 0, counts
    report = (bundle / "report.html").read_text(encoding="utf-8")
    assert "MCMS on Lab was rolled back from 1.1.0 to 1.0.0 and is serving 1.0.0." in report
    start = json.loads((bundle / "evidence.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert start["kind"] == "run.start", start


def test_a_failing_drill_in_the_container_exits_non_zero_and_still_leaves_a_verified_bundle(
    engine: Engine, image: str, tmp_path: Path
) -> None:
    output = run_container(engine, image, tmp_path, "drill", "--lab-fault", "bad-package-hash")
    assert output.startswith("exit 1\n"), output[-4000:]
    bundle = only_bundle(tmp_path)
    verify_on_host(bundle)
    assert junit_counts(bundle)["failures"] >= 1
    assert "Outcome:  FAILED at PRE" in output, output[-3000:]


def test_a_blue_green_release_behind_the_containers_nginx(engine: Engine, image: str, tmp_path: Path) -> None:
    output = run_container(engine, image, tmp_path, "release", "--env", "LabNginx")
    assert output.startswith("exit 0\n"), output[-4000:]
    bundle = only_bundle(tmp_path)
    verify_on_host(bundle)
    journal = (bundle / "evidence.jsonl").read_text(encoding="utf-8")
    # The switch went through the container's real nginx (its `nginx -t` answered), not the built-in router.
    assert "/usr/sbin/nginx" in journal
    assert "syntax is ok" in journal
    assert "built-in router serves" not in journal
    assert "Versions: 1.0.0 -> 1.1.0" in output


def test_the_image_holds_the_project_and_not_the_checkouts_working_state(engine: Engine, image: str) -> None:
    done = engine.run(
        "run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", image, "-c",
        "ls -A /opt/mcms-runbook; /opt/venv/bin/python -c 'import sys; print(sys.version_info >= (3, 12))';"
        " for p in chromium chromedriver nginx; do command -v $p; done",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split()
    for kept_out in (".git", ".venv", ".cache", ".lab", "wheelhouse", "dist"):
        assert kept_out not in lines, f"{kept_out} went into the image (.dockerignore)"
    for needed in (
        "Containerfile",
        "conftest.py",
        "plugins",
        "runbook_tests",
        "environments",
        "requirements.txt",
    ):
        assert needed in lines, f"{needed} is missing from the image"
    assert "True" in lines, "the image's Python is older than 3.12"
    for program in ("/usr/bin/chromium", "/usr/bin/chromedriver", "/usr/sbin/nginx"):
        assert program in lines, f"{program} is not in the image"


def journal_of(bundles: Path) -> list[dict[str, Any]]:
    found = sorted(bundles.glob("*/evidence.jsonl"))
    if not found:
        return []
    lines = found[0].read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.endswith("}")]  # the last line may be half written


def test_ctrl_c_during_the_monitoring_window_in_the_container_rolls_back(
    engine: Engine, image: str, tmp_path: Path
) -> None:
    """Ctrl-C to `podman run` (which passes it on to the container's PID 1, tini, and tini to the runbook) in
    BG-4's monitoring window: the rollback policy sends traffic back to blue before the container ends, exit 2,
    and the bundle on the host says so and verifies."""
    name = f"mcms-runbook-test-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "podman-run.log"
    bundles = tmp_path / "bundles"
    bundles.mkdir()
    with log.open("wb") as out:
        proc = subprocess.Popen(run_argv(engine, name, image, bundles, "release", "--env", "Lab"),
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            deadline = time.monotonic() + 300
            while not any(
                e["kind"] == "action" and e["phase"] == "BG-4" and e["data"].get("target") == "green"
                for e in journal_of(bundles)
            ):
                assert proc.poll() is None, log.read_text(errors="replace")[-4000:]
                assert time.monotonic() < deadline, "BG-4's switch never came"
                time.sleep(0.2)
            time.sleep(1.5)  # into the monitoring window
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
            remove(engine, name)
    output = log.read_text(errors="replace")
    assert code == 2, output[-4000:]
    events = journal_of(bundles)
    interrupted = [i for i, e in enumerate(events) if e["kind"] == "warning"
                   and "interrupted by the operator" in e["data"]["message"]]  # fmt: skip
    assert interrupted, output[-4000:]
    back = [e["data"] for e in events if e["kind"] == "rollback" and e["data"].get("result") == "succeeded"]
    assert [(d.get("from_slot"), d.get("to_slot")) for d in back] == [("green", "blue")], back
    kinds = [e["kind"] for e in events]
    assert kinds[-2:] == ["run.end", "seal"], kinds[-5:]  # the run ended in order and its journal is sealed
    assert interrupted[0] < kinds.index("run.end")
    verify_on_host(only_bundle(bundles))
