"""Packaging: the wheelhouse and the offline bundle (`make wheelhouse`), the wheel (`pip wheel . --no-deps`), the
`pytest11` entry point in a fresh virtual environment, `--env-file PATH` with a space, and `./drill`.

`make wheelhouse` downloads about 50 wheels (~70 MB, ~20 s here): the tests build it once into
.cache/wheelhouse-test-<hash of requirements.txt and of the commands `make wheelhouse` runs> and reuse it while
those are unchanged (the commands as `make -n` prints them: an edit of another target of the Makefile keeps it;
delete the folder to download again); the offline zip is built from it into each run's tmp folder.
The fresh-clone test unzips that bundle and runs `./drill` in it, which creates a virtual environment with a
CPython 3.12 (the wheelhouse's compiled wheels are 3.12's) and installs offline from the bundle's wheelhouse/;
without a Python 3.12 on the machine it reuses the project's .venv instead (RUNBOOK_VENV=.venv, installed).
"""

from __future__ import annotations

import email.parser
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from lab import Lab
from plugins.cli import build_offline_zip, project_version
from plugins.entry import ENTRY_POINT, PLUGINS

ROOT = Path(__file__).resolve().parents[1]
VERSION = project_version(ROOT)
TOP = f"mcms-runbook-offline-{VERSION}"

# The marker environment of the machines the wheelhouse is for (pip evaluates markers for the machine it runs
# on, never for --platform: this is the check pip download cannot make).
_PY312 = {
    "implementation_name": "cpython",
    "implementation_version": "3.12.10",
    "platform_python_implementation": "CPython",
    "python_full_version": "3.12.10",
    "python_version": "3.12",
}
WINDOWS = {**_PY312, "os_name": "nt", "sys_platform": "win32", "platform_system": "Windows",
           "platform_machine": "AMD64", "platform_release": "10", "platform_version": "10.0.19045"}  # fmt: skip
LINUX = {**_PY312, "os_name": "posix", "sys_platform": "linux", "platform_system": "Linux",
         "platform_machine": "x86_64", "platform_release": "6.1.0", "platform_version": "#1 SMP"}  # fmt: skip
WIN_PLATFORMS = ["win_amd64"]
LINUX_PLATFORMS = [
    *(f"manylinux_2_{minor}_x86_64" for minor in range(28, 4, -1)),
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
]


def supported_tags(platforms: list[str]) -> set[Tag]:
    """The wheel tags CPython 3.12 installs on those platforms (what pip would accept there)."""
    return set(cpython_tags((3, 12), platforms=platforms)) | set(
        compatible_tags((3, 12), "cp312", platforms=platforms)
    )


def requires_dist(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [
            n for n in archive.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")
        ]
        message = email.parser.Parser().parsestr(archive.read(metadata).decode("utf-8"))
    return [Requirement(r) for r in message.get_all("Requires-Dist") or []]


def requirement_lines(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line]


def unsatisfied(wheelhouse: Path, roots: list[str], env: dict[str, str], platforms: list[str]) -> list[str]:
    """What an offline `pip install --no-index --find-links wheelhouse` of `roots` would miss on that machine:
    every requirement, and every dependency its wheel declares for that marker environment (extras included),
    needs a wheel of a matching version whose tags that machine accepts. [] when the wheelhouse satisfies all."""
    tags = supported_tags(platforms)
    index: dict[str, list[tuple[Version, Path]]] = {}
    for wheel in wheelhouse.glob("*.whl"):
        name, version, _, wheel_tags = parse_wheel_filename(wheel.name)
        if wheel_tags & tags:
            index.setdefault(name, []).append((version, wheel))
    problems: list[str] = []
    todo = [(Requirement(line), "requirements.txt") for line in roots]
    seen: set[tuple[str, Version, frozenset[str]]] = set()
    while todo:
        req, needed_by = todo.pop()
        if req.marker is not None and not req.marker.evaluate({**env, "extra": ""}):
            continue
        name = canonicalize_name(req.name)
        candidates = [(v, w) for v, w in index.get(name, []) if req.specifier.contains(v, prereleases=True)]
        if not candidates:
            problems.append(f"{req} (needed by {needed_by}): no wheel for this platform in {wheelhouse}")
            continue
        version, wheel = max(candidates)
        key = (name, version, frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        for dep in requires_dist(wheel):
            extras = {"", *req.extras}
            if dep.marker is None or any(dep.marker.evaluate({**env, "extra": e}) for e in extras):
                todo.append((dep, f"{name} {version}"))
    return sorted(problems)


def _make(*args: str) -> str:
    """What make prints for these arguments in the project, outside any parent make (`make test`'s flags)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    proc = subprocess.run(
        ["make", "-s", "--no-print-directory", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _stamp() -> str:
    """The Makefile's $(STAMP), the install stamp of the project's .venv: `make wheelhouse` depends on it, and
    `-o` it keeps make from reinstalling that .venv (the one running these tests) in the middle of the session."""
    return _make("--eval=print-stamp: ; @echo $(STAMP)", "print-stamp").strip()


def _cache_key() -> str:
    """requirements.txt and the commands `make wheelhouse` runs, as make expands them (`make -n`)."""
    recipe = _make("-n", "-o", _stamp(), "wheelhouse", "WHEELHOUSE=@WHEELHOUSE@", "DIST=@DIST@")
    assert "pip download" in recipe, recipe
    digest = hashlib.sha256((ROOT / "requirements.txt").read_bytes())
    digest.update(recipe.encode("utf-8"))
    return digest.hexdigest()[:12]


@pytest.fixture(scope="session")
def wheelhouse() -> Path:
    """`make wheelhouse` into .cache/ (once per requirements.txt + wheelhouse recipe; the module's docstring)."""
    key = _cache_key()
    target = ROOT / ".cache" / f"wheelhouse-test-{key}"
    done = target / ".complete"
    if not done.exists():
        shutil.rmtree(target, ignore_errors=True)
        dist = ROOT / ".cache" / f"dist-test-{key}"
        proc = subprocess.run(
            ["make", "-s", "-o", _stamp(), "wheelhouse", f"WHEELHOUSE={target}", f"DIST={dist}"],
            cwd=ROOT, capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"Offline bundle: {dist / (TOP + '.zip')}" in proc.stdout, proc.stdout
        shutil.rmtree(dist)
        done.write_text("make wheelhouse completed\n", encoding="utf-8")
    return target


@pytest.fixture(scope="session")
def offline_zip(wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    assert build_offline_zip(ROOT, wheelhouse=str(wheelhouse), dist=str(dist)) == 0
    return dist / f"{TOP}.zip"


def test_the_wheelhouse_satisfies_requirements_for_win_amd64_without_an_index(
    wheelhouse: Path, tmp_path: Path
) -> None:
    roots = requirement_lines(ROOT / "requirements.txt")
    assert unsatisfied(wheelhouse, roots, WINDOWS, WIN_PLATFORMS) == []
    assert unsatisfied(wheelhouse, roots, LINUX, LINUX_PLATFORMS) == []
    assert (
        unsatisfied(wheelhouse, ["setuptools>=77"], WINDOWS, WIN_PLATFORMS) == []
    )  # `pip install .` offline
    # pip's own resolution with no index, for win_amd64 (markers as on this machine: necessary, not sufficient).
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-index",
         "--find-links", str(wheelhouse), "--platform", "win_amd64", "--python-version", "3.12",
         "--implementation", "cp", "--only-binary=:all:", "-r", str(ROOT / "requirements.txt"),
         "-d", str(tmp_path / "win")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {p.name for p in (tmp_path / "win").iterdir()} <= {p.name for p in wheelhouse.glob("*.whl")}


def test_a_wheelhouse_without_the_windows_only_dependencies_is_caught(
    wheelhouse: Path, tmp_path: Path
) -> None:
    """The check above can fail: without colorama (pytest's, on win32 only) it says so, where pip download
    on Linux would not notice."""
    crippled = tmp_path / "wheelhouse"
    crippled.mkdir()
    for wheel in wheelhouse.glob("*.whl"):
        if not wheel.name.startswith("colorama-"):
            (crippled / wheel.name).symlink_to(wheel)
    roots = requirement_lines(ROOT / "requirements.txt")
    assert unsatisfied(crippled, roots, WINDOWS, WIN_PLATFORMS) == [
        'colorama==0.4.6; sys_platform == "win32" (needed by requirements.txt): no wheel for this platform in '
        f"{crippled}",
        f'colorama>=0.4; sys_platform == "win32" (needed by pytest 9.2.0): no wheel for this platform in {crippled}',
    ]
    assert unsatisfied(crippled, roots, LINUX, LINUX_PLATFORMS) == []


def test_the_offline_zip_holds_the_project_the_wheelhouse_and_the_launchers(
    offline_zip: Path, wheelhouse: Path
) -> None:
    with zipfile.ZipFile(offline_zip) as bundle:
        infos = {i.filename: i for i in bundle.infolist()}
    names = set(infos)
    assert all(n.startswith(f"{TOP}/") for n in names)
    for name in ("drill", "drill.ps1", "drill.cmd", "pyproject.toml", "requirements.txt", "conftest.py",
                 "pytest.ini", "plugins/cli.py", "plugins/entry.py", "environments/Lab.toml",
                 "lab/mcms/static/site.css", "runbook_tests/test_pre.py"):  # fmt: skip
        assert f"{TOP}/{name}" in names, name
    wheels = {n.removeprefix(f"{TOP}/wheelhouse/") for n in names if n.startswith(f"{TOP}/wheelhouse/")}
    assert wheels == {w.name for w in wheelhouse.glob("*.whl")}
    assert not [n for n in names if n.split("/")[1] in (".venv", ".lab", ".cache", ".git", "dist", "build")]
    assert [n for n in names if n.split("/")[1] == "reports"] == [f"{TOP}/reports/.gitkeep"]  # no bundle
    assert not [n for n in names if "__pycache__" in n]
    mode = infos[f"{TOP}/drill"].external_attr >> 16
    assert mode & stat.S_IXUSR, "./drill must stay executable after unzip"


@dataclass
class Bundle:
    """The unzipped offline bundle (a fresh clone with a wheelhouse) and the virtual environment ./drill made."""

    root: Path
    venv: Path
    drill: subprocess.CompletedProcess[str]

    def bin(self, name: str) -> Path:
        return self.venv / ("Scripts" if os.name == "nt" else "bin") / name


def _python312() -> str | None:
    for candidate in ("python3.12", *map(str, sorted(Path.home().glob(".pyenv/versions/3.12*/bin/python3")))):
        found = shutil.which(candidate)
        if found and subprocess.run([found, "-c", "import sys, venv; sys.exit(sys.version_info[:2] != (3, 12))"],
                                    capture_output=True, check=False, timeout=30).returncode == 0:  # fmt: skip
            return found
    return None


@pytest.fixture(scope="module")
def bundle(offline_zip: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bundle]:
    """./drill on the unzipped bundle, as on a fresh PC: with a Python 3.12 it creates its venv and installs
    offline from wheelhouse/; without one it reuses the project's .venv (RUNBOOK_VENV)."""
    where = tmp_path_factory.mktemp("bundle")
    with zipfile.ZipFile(offline_zip) as archive:
        archive.extractall(where)
    root = where / TOP
    for info in zipfile.ZipFile(offline_zip).infolist():  # extractall drops the mode bits
        mode = info.external_attr >> 16
        if mode:
            (where / info.filename).chmod(mode & 0o777)
    python = _python312()
    venv = where / "venv" if python else ROOT / ".venv"
    # The desktop's opener, as a stand-in that writes down what it was asked to open: ./drill opens the report
    # with xdg-open where there is a display.
    desktop = where / "desktop-bin"
    desktop.mkdir()
    opener = desktop / "xdg-open"
    opener.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{where / "opened.txt"}"\n', encoding="utf-8")
    opener.chmod(0o755)
    env = {**os.environ, "RUNBOOK_VENV": str(venv), "PYTHON": python or "", "DISPLAY": ":99",
           "PATH": f"{desktop}{os.pathsep}{os.environ.get('PATH', '')}"}  # fmt: skip
    for name in ("RUNBOOK_ENV", "RUNBOOK_NO_OPEN", "WAYLAND_DISPLAY"):
        env.pop(name, None)
    drill = subprocess.run(
        ["./drill", "-p", "no:cacheprovider"], cwd=root, capture_output=True, text=True, timeout=600, env=env,
        check=False,
    )  # fmt: skip
    yield Bundle(root, venv, drill)
    lab = Lab.attach(root / ".lab")
    if lab is not None:
        lab.stop()


def test_drill_on_a_fresh_bundle_runs_the_lab_drill_and_names_the_report(bundle: Bundle) -> None:
    output = bundle.drill.stdout + bundle.drill.stderr
    assert bundle.drill.returncode == 0, output
    if bundle.venv != ROOT / ".venv":
        assert f"Creating {bundle.venv} with " in output
        assert "Installing the requirements from wheelhouse/ (offline)" in output
    assert "-m pytest -m rollback --env Lab -p no:cacheprovider" in output
    (report,) = (bundle.root / "reports").glob("*_Lab_rollback/report.html")
    assert f"Opening {report}" in output
    assert (bundle.root.parent / "opened.txt").read_text(encoding="utf-8") == f"{report}\n"
    assert "Outcome:  PASSED" in output


@pytest.fixture(scope="module")
def installed(bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """The wheel of `pip wheel . --no-deps` (built offline: setuptools from the wheelhouse) installed into a
    fresh venv that has the pinned requirements (./drill's, when it made one)."""
    if bundle.venv == ROOT / ".venv":
        pytest.skip("no Python 3.12 here: the wheel is not installed into the project's own .venv")
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [str(bundle.bin("python")), "-m", "pip", "wheel", ".", "--no-deps", "--no-index", "--find-links",
         "wheelhouse", "-w", str(out), "--quiet", "--disable-pip-version-check"],
        cwd=bundle.root, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = archive.read(f"mcms_dr_runbook-{VERSION}.dist-info/entry_points.txt").decode()
    assert {
        "lab/mcms/static/site.css",
        "plugins/templates/sections.html.j2",
        "runbook_tests/test_pre.py",
    } <= names
    assert f"mcms_dr_runbook-{VERSION}.data/data/share/mcms-runbook/environments/Lab.toml" in names
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/"))]
    assert f"[pytest11]\n{ENTRY_POINT} = plugins.entry" in entry_points
    assert "mcms-runbook = plugins.cli:main" in entry_points
    install = subprocess.run(
        [str(bundle.bin("python")), "-m", "pip", "install", "--no-deps", "--quiet", "--disable-pip-version-check",
         str(wheel)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    return bundle


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RUNBOOK_ENV")}
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300, check=False, env=env)


def test_the_installed_runbook_loads_in_any_folder(installed: Bundle, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    helped = _run([str(installed.bin("pytest")), "--help"], elsewhere)
    assert helped.returncode == 0, helped.stdout + helped.stderr
    assert "DR & rollback runbook:" in helped.stdout
    assert "--env-file=PATH" in helped.stdout
    cli = _run([str(installed.bin("mcms-runbook")), "--help"], elsewhere)
    assert cli.returncode == 0
    assert "switch-back" in cli.stdout
    # The installed runbook_tests, the current folder as pytest's root: an operator's folder of environment files.
    (elsewhere / "environments").mkdir()
    shutil.copy(installed.root / "environments" / "Lab.toml", elsewhere / "environments" / "Lab.toml")
    plan = _run([str(installed.bin("mcms-runbook")), "plan", "--env", "Lab"], elsewhere)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "- [ ] " in plan.stdout
    assert "test_rb3_deploy_previous.py" in plan.stdout


def test_env_file_with_a_space_works_or_says_to_write_the_equals_sign(
    installed: Bundle, tmp_path: Path
) -> None:
    """With the entry point the option is known at pytest's first parse; a path that made pytest choose
    another root folder is a usage error that says what to write."""
    outside = tmp_path / "envs" / "Lab.toml"
    outside.parent.mkdir()
    shutil.copy(installed.root / "environments" / "Lab.toml", outside)
    python = str(installed.bin("python"))
    base = [python, "-m", "pytest", "-m", "rollback", "--runbook-plan", "-p", "no:cacheprovider"]
    equals = _run([*base, f"--env-file={outside}"], installed.root)
    assert equals.returncode == 0, equals.stdout + equals.stderr
    assert "- [ ] " in equals.stdout
    inside = _run([*base, "--env-file", "environments/Lab.toml"], installed.root)
    assert inside.returncode == 0, inside.stdout + inside.stderr
    assert "- [ ] " in inside.stdout
    spaced = _run([*base, "--env-file", str(outside)], installed.root)
    assert spaced.returncode == 4, spaced.stdout + spaced.stderr
    assert (
        f"--env-file {outside}: write --env-file={outside} (with '='): pytest read {outside} as a test path"
        in (spaced.stderr)
    )
    assert f"instead of {installed.root}" in spaced.stderr
    assert "Traceback" not in spaced.stderr


def test_entry_point_and_root_conftest_together_load_each_plugin_once(installed: Bundle) -> None:
    """From the project's root with the runbook installed, both ways are active: a real drill runs, and
    `-p no:mcms_runbook` leaves the root conftest to load the same list."""
    python = str(installed.bin("python"))
    drill = _run(
        [python, "-m", "pytest", "-m", "rollback", "--env", "Lab", "-p", "no:cacheprovider"], installed.root
    )
    assert drill.returncode == 0, drill.stdout + drill.stderr
    assert "Outcome:  PASSED" in drill.stdout
    code = (
        "import sys, pytest\n"
        "class P:\n"
        "    def pytest_configure(self, config):\n"
        "        names = [n for n, p in config.pluginmanager.list_name_plugin() if p is not None]\n"
        "        print('PLUGINS', ','.join(n for n in names if n.startswith(('plugins.', 'fixtures.', 'mcms'))))\n"
        "sys.exit(pytest.main(sys.argv[1:], plugins=[P()]))\n"
    )
    for extra in ([], ["-p", f"no:{ENTRY_POINT}"]):
        proc = _run(
            [
                python,
                "-c",
                code,
                "--co",
                "-q",
                "-m",
                "rollback",
                "--env",
                "Lab",
                "-p",
                "no:cacheprovider",
                *extra,
            ],
            installed.root,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        (line,) = [x for x in proc.stdout.splitlines() if x.startswith("PLUGINS ")]
        loaded = line.removeprefix("PLUGINS ").split(",")
        assert sorted(n for n in loaded if n != ENTRY_POINT) == sorted(PLUGINS)
        assert (ENTRY_POINT in loaded) == (not extra)
