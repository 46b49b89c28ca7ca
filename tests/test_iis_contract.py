"""The IIS scripts' command contract (scripts/iis/README.md), through the shipped examples' own argv templates.

PowerShell cannot run here, so every verb runs its Linux equivalent (tests/iis_linux/iis_fake.py) through the
`powershell` stand-in on PATH, with the EXACT argv of environments/InternalStage.toml and InternalProd.toml,
filled and run by the runbook's command drivers, against a fake IIS (sites, pools, release folders, the ARR farm
or the URL Rewrite rule in a folder). A check of the .ps1 param() blocks keeps the two sides from drifting. Then a
real rollback runbook run through the scripts against a loopback site, and the shipped examples through the
runbook's preflight with their ${VAR}s set, proving that nothing resolves or contacts a non-loopback host.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from drivers import commands
from drivers.base import DriverError
from drivers.config import Environment, load_environment
from drivers.deploy import run_command_verb
from drivers.router import CommandRouterDriver
from lab import build_package, procs
from plugins.journal import read_events, verify_bundle
from tests import lab_checks
from tests.iis_linux import iis_fake

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts" / "iis"
STANDIN = ROOT / "tests" / "iis_linux"
EXAMPLES = ("InternalStage", "InternalProd")
PREFIX = ["powershell", "-NoProfile", "-ExecutionPolicy", "Bypass", "-File"]
# What each verb's script is, and the parameters its template passes (name -> placeholder).
VERB_SCRIPTS = {
    "stop_site": "Stop-McmsSite",
    "recycle_pool": "Restart-McmsAppPool",
    "deploy": "Deploy-McmsPackage",
    "start_site": "Start-McmsSite",
    "current_version": "Get-McmsVersion",
    "switch": "Switch-McmsSlot",
    "active": "Get-McmsActiveSlot",
}
PLACEHOLDER = {"Environment": "{env}", "Slot": "{slot}", "Version": "{version}", "Package": "{package}"}
# ${VAR}s of the examples: fake values that must never be used to reach anything.
SECRETS = {
    "MCMS_WEBHOOK_URL": "https://hooks.corp.example/workflows/4242?sig=not-a-secret-4242",
    "MCMS_E2E_PASSWORD": "e2e-pw-4242",
    "ZAP_API_KEY": "zap-key-4242",
}


def example(name: str) -> Environment:
    return load_environment(ROOT / "environments" / f"{name}.toml", environ=SECRETS)


# --- static: the templates, the scripts and their Linux equivalents agree ----------------------------------


def ps1_params(path: Path) -> list[tuple[str, str]]:
    """(type, name) of each parameter of the script's param() block, in order."""
    text = path.read_text(encoding="utf-8")
    start = re.search(r"^param\s*\(", text, re.MULTILINE | re.IGNORECASE)
    assert start, f"{path.name}: no param() block"
    depth, i = 1, start.end()
    while depth:
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        i += 1
    block = text[start.end() : i - 1]
    found = re.findall(r"\[(\w+)\]\s*\$(\w+)", block)
    assert len(found) == block.count("$"), f"{path.name}: a parameter without a [type]: {block}"
    return [(t.lower(), n) for t, n in found]


def test_every_script_declares_the_parameters_of_its_linux_equivalent() -> None:
    shipped = sorted(p.stem for p in SCRIPTS.glob("*.ps1"))
    assert shipped == sorted(iis_fake.PARAMS) == sorted(iis_fake.SCRIPTS), "a script without its equivalent"
    assert sorted(VERB_SCRIPTS.values()) == shipped
    for name, params in iis_fake.PARAMS.items():
        path = SCRIPTS / f"{name}.ps1"
        assert ps1_params(path) == [("string", p) for p in params], f"{path.name} and iis_fake.PARAMS differ"
        text = path.read_text(encoding="utf-8")
        for line in (
            "Set-StrictMode -Version Latest",
            "$ErrorActionPreference = 'Stop'",
            "Import-Module (Join-Path $PSScriptRoot 'McmsIis.psm1') -Force -DisableNameChecking",
            "    Assert-McmsNoExtra $args",
            "} catch { exit (Write-McmsFailure $_) }",
        ):
            assert line in text.splitlines(), f"{path.name}: missing {line!r}"
        assert text.rstrip().endswith("exit 0"), path.name
        # No [Parameter(Mandatory)]: PowerShell would prompt for it (or exit 1), never give the usage exit 2.
        assert "Mandatory" not in text, path.name
        assert "CmdletBinding" not in text, path.name
    module = (SCRIPTS / "McmsIis.psm1").read_text(encoding="utf-8")
    assert "Set-StrictMode -Version Latest" in module
    assert "$ErrorActionPreference = 'Stop'" in module
    # A "$name:" inside a string is a scope-qualified variable to PowerShell: a parse error at run time.
    for path in [*SCRIPTS.glob("*.ps1"), SCRIPTS / "McmsIis.psm1"]:
        bad = [
            m.group(0)
            for m in re.finditer(r"\$(\w+):(?!:)", path.read_text(encoding="utf-8"))
            if m.group(1).lower() not in ("env", "script", "global")
        ]
        assert not bad, f"{path.name}: {bad} (write ${{name}}:)"


@pytest.mark.parametrize("name", EXAMPLES)
def test_the_examples_call_the_shipped_scripts_with_their_parameters(name: str) -> None:
    env = example(name)
    table = env.drivers.command
    assert sorted(table) == sorted(commands.VERBS), "every verb is wired"
    assert commands.validate_templates(table, commands.VERBS, name) == []
    assert (env.drivers.deploy, env.drivers.router, env.notify.format) == (
        "command",
        "command",
        "teams-workflow",
    )
    for verb, template in table.items():
        script = VERB_SCRIPTS[verb]
        assert template[:5] == PREFIX, f"{verb}: {template}"
        assert template[5] == f"scripts/iis/{script}.ps1"
        # -Name {placeholder} pairs: exactly the script's parameters, each filled with what the verb gets.
        pairs = dict(zip(template[6::2], template[7::2], strict=True))
        wanted = {f"-{p}": PLACEHOLDER[p] for p in iis_fake.PARAMS[script]}
        assert pairs == wanted, f"{verb}: {pairs} != {wanted}"
        # The usage line at the top of the script is this very argv.
        usage = f"# {' '.join(template)}"
        assert usage in (SCRIPTS / f"{script}.ps1").read_text(encoding="utf-8").splitlines(), usage


def test_the_configuration_names_every_slot_of_the_examples() -> None:
    config = json.loads((SCRIPTS / "mcms-iis.json").read_text(encoding="utf-8"))["environments"]
    assert sorted(config) == sorted(EXAMPLES)
    modes = set()
    for name in EXAMPLES:
        entry = config[name]
        assert entry["slots"]["active"] == "live"
        for slot in ("blue", "green"):
            assert {"site", "pool", "root"} <= set(entry["slots"][slot]), (name, slot)
        modes.add(entry["router"]["mode"])
        hosts = {entry["router"][s].split("//")[-1].split("/")[0] for s in ("blue", "green")}
        assert hosts <= set(example(name).scope.allowed_hosts), "the router's upstreams are the slots' hosts"
    assert modes == {"farm", "rewrite"}, "one example per ARR mode"


# --- the fake IIS ------------------------------------------------------------------------------------------


@dataclass
class FakeIis:
    dir: Path  # $MCMS_IIS_FAKE_STATE
    config: Path  # $MCMS_IIS_CONFIG
    packages: Path

    def state(self) -> dict[str, Any]:
        return dict(json.loads((self.dir / "iis.json").read_text(encoding="utf-8")))

    def site(self, name: str) -> dict[str, Any]:
        return dict(self.state()["sites"][name])

    def calls(self) -> list[dict[str, Any]]:
        path = self.dir / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def environ(self) -> dict[str, str]:
        return {
            "PATH": f"{STANDIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "MCMS_IIS_PYTHON": sys.executable,
            "MCMS_IIS_FAKE_STATE": str(self.dir),
            "MCMS_IIS_CONFIG": str(self.config),
        }


def lay_out(root: Path, version: str) -> Path:
    release = root / "releases" / version
    release.mkdir(parents=True)
    (release / "web.config").write_text("<configuration/>")
    (release / "release.json").write_text(json.dumps({"version": version}))
    return release


def write_config(path: Path, base: Path, **overrides: Any) -> None:
    """The shipped mcms-iis.json with every release root in `base`, and `overrides` per environment."""
    config = json.loads((SCRIPTS / "mcms-iis.json").read_text(encoding="utf-8"))
    for name, entry in config["environments"].items():
        for slot in ("blue", "green"):
            entry["slots"][slot]["root"] = str(base / f"{name}-{slot}")
        entry.update(overrides.get(name, {}))
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")


def iis_package(directory: Path, version: str, *, web_config: bool = True) -> Path:
    """An offline package like the real ones: web.config and the app at the root of the zip."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"MCMS_Setup_{version}.zip"
    with zipfile.ZipFile(path, "w") as zf:
        if web_config:
            zf.writestr("web.config", "<configuration/>")
        zf.writestr("release.json", json.dumps({"version": version}))
        zf.writestr("bin/MCMS.dll", f"MCMS {version}")
    return path


@pytest.fixture
def iis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeIis:
    """Every slot of both examples started on 1.0.0 (1.0.0 and 0.9.0 laid out); blue is live."""
    base = tmp_path / "D"
    fake = FakeIis(tmp_path / "iis", tmp_path / "mcms-iis.json", tmp_path / "offline")
    fake.dir.mkdir()
    write_config(fake.config, base)
    config = json.loads(fake.config.read_text())["environments"]
    sites: dict[str, Any] = {}
    pools: dict[str, Any] = {}
    for entry in config.values():
        for slot in ("blue", "green"):
            node = entry["slots"][slot]
            lay_out(Path(node["root"]), "0.9.0")
            release = lay_out(Path(node["root"]), "1.0.0")
            sites[node["site"]] = {"state": "Started", "physicalPath": str(release), "pool": node["pool"]}
            pools[node["pool"]] = {"state": "Started", "recycles": 0}
    stage, prod = config["InternalStage"]["router"], config["InternalProd"]["router"]
    state = {
        "sites": sites,
        "appPools": pools,
        "webFarms": {stage["farm"]: {"servers": {stage["blue"]: {"enabled": True}, stage["green"]: {"enabled": False}}}},
        "rewriteRules": {f"IIS:\\Sites\\{prod['site']}|{prod['rule']}": {"url": prod["blue"]}},
    }  # fmt: skip
    (fake.dir / "iis.json").write_text(json.dumps(state, indent=2))
    for version in ("1.0.0", "1.1.0"):
        iis_package(fake.packages, version)
    for key, value in fake.environ().items():
        monkeypatch.setenv(key, value)
    return fake


def verb(env: Environment, name: str, slot: str = "", **values: str) -> commands.CommandResult:
    """One verb as the command drivers run it: the example's template, filled, run from the project root."""
    _, result = run_command_verb(env, {"root": ROOT}, name, slot, **values)
    return result


def stop_site_worker(iis: FakeIis, site: str) -> None:
    """Stop the slot server the fake started for a site, by its PID and the command line it recorded."""
    record = iis.site(site)
    pid, argv = int(record.get("pid") or 0), record.get("argv")
    if pid and argv:
        procs.stop_pid(pid, 5.0, [str(arg) for arg in argv])


def site_name(env: str, slot: str) -> str:
    return f"MCMS-{env.removeprefix('Internal')}-{slot.capitalize()}"


@pytest.mark.parametrize("name", EXAMPLES)
def test_a_release_through_every_verb(iis: FakeIis, name: str) -> None:
    """The Blue/Green release the runbook drives: ask the live slot, take the idle one out, lay out, start, switch."""
    env = example(name)
    router = CommandRouterDriver(env, {"root": ROOT})
    assert router.active() == "blue"
    green, root = (
        site_name(name, "green"),
        Path(iis.site(site_name(name, "green"))["physicalPath"]).parents[1],
    )
    version = verb(env, "current_version", "green")
    assert (version.exit_code, version.stdout) == (0, "1.0.0\n"), "stdout holds the version and nothing else"
    for step in ("stop_site", "recycle_pool"):
        result = verb(env, step, "green")
        assert result.passed, result.output_tail
    assert iis.site(green)["state"] == "Stopped"
    assert iis.state()["appPools"][green]["recycles"] == 1
    package = iis.packages / "MCMS_Setup_1.1.0.zip"
    result = verb(env, "deploy", "green", version="1.1.0", package=str(package))
    assert result.passed, result.output_tail
    assert iis.site(green)["physicalPath"] == str(root / "releases" / "1.1.0")
    assert (root / "releases" / "1.1.0" / "web.config").is_file()
    assert (root / "releases" / "1.0.0" / "release.json").is_file(), (
        "the previous release is kept for rollback"
    )
    assert not list((root / "releases").glob(".staging-*"))
    assert verb(env, "current_version", "green").last_line() == "1.1.0"
    result = verb(env, "start_site", "green", version="1.1.0")
    assert result.passed, result.output_tail
    assert iis.site(green)["state"] == "Started"
    switched = router.switch("green")  # the driver checks that active() now says green
    assert switched.detail["live_after"] == "green"
    assert verb(env, "active").stdout == "green\n"
    assert iis.site(site_name(name, "blue"))["state"] == "Started", "the live slot was never touched"
    # The exact argv of the example reached the stand-in: powershell's own flags, then the shipped script.
    runs = [c for c in iis.calls() if "powershell" in c]
    assert runs, "nothing went through the powershell stand-in"
    assert {tuple(c["powershell"]) for c in runs} == {("-NoProfile", "-ExecutionPolicy", "Bypass")}
    assert {c["file"] for c in runs} == {f"scripts/iis/{s}.ps1" for s in VERB_SCRIPTS.values()}


def test_active_in_a_rollback_is_the_live_slot(iis: FakeIis) -> None:
    env = example("InternalStage")
    assert verb(env, "current_version", "active").stdout == "1.0.0\n"
    assert verb(env, "stop_site", "active").stdout.startswith("site MCMS-Stage-Blue (blue) stopped")
    CommandRouterDriver(env, {"root": ROOT})._switch("green")  # the farm now serves green, blue is stopped
    assert verb(env, "stop_site", "active").stdout.startswith("site MCMS-Stage-Green (green) stopped")


def test_stop_of_a_stopped_site_is_success(iis: FakeIis) -> None:
    env = example("InternalStage")
    assert verb(env, "stop_site", "green").passed
    again = verb(env, "stop_site", "green")
    assert again.passed
    assert "already stopped" in again.stdout


def test_redeploying_the_same_version_replaces_its_folder(iis: FakeIis) -> None:
    env = example("InternalProd")
    verb(env, "stop_site", "green").check()
    root = Path(iis.site("MCMS-Prod-Green")["physicalPath"]).parents[1]
    (root / "releases" / "1.0.0" / "stale.txt").write_text("left over")
    package = iis_package(iis.packages / "again", "1.0.0")
    verb(env, "deploy", "green", version="1.0.0", package=str(package)).check()
    assert sorted(p.name for p in (root / "releases").iterdir()) == ["0.9.0", "1.0.0"]
    assert not (root / "releases" / "1.0.0" / "stale.txt").exists()


def unchanged(
    iis: FakeIis, before: dict[str, Any], result: commands.CommandResult, code: int, text: str
) -> None:
    """A refused or failed verb: its exit code, one sentence on stderr naming the problem, IIS as it was."""
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert text in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert iis.state() == before, "the fake IIS was changed"


FAILURES = [
    # (id, verb, slot, values, exit code, stderr fragment)
    ("unknown-slot", "stop_site", "purple", {}, 2, "usage: -Slot purple: expected one of active, blue, green"),
    ("empty-slot", "recycle_pool", "", {}, 2, "usage: -Slot is required"),
    ("switch-to-active", "switch", "active", {}, 2, "usage: -Slot active: expected one of blue, green"),
    ("bad-version", "start_site", "green", {"version": "1.0/../x"}, 2, "usage: -Version 1.0/../x: expected"),
    ("not-a-zip", "deploy", "green", {"version": "1.1.0", "package": "x.tar"}, 2, "expected a .zip file"),
    ("missing-package", "deploy", "green", {"version": "1.1.0", "package": "/no/such/MCMS_Setup_1.1.0.zip"}, 1,
     "failed: package /no/such/MCMS_Setup_1.1.0.zip does not exist"),
    ("deploy-onto-started", "deploy", "green", {"version": "1.1.0", "package": "{pkg}"}, 1,
     "failed: site MCMS-Stage-Green is Started: stop it (stop_site) before deploying onto it"),
    ("start-other-version", "start_site", "green", {"version": "1.1.0"}, 1,
     "failed: site MCMS-Stage-Green has 1.0.0 laid out, not 1.1.0: deploy 1.1.0 first"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("verb_name", "slot", "values", "code", "text"), [f[1:] for f in FAILURES], ids=[f[0] for f in FAILURES]
)
def test_a_refused_verb_leaves_iis_as_it_was(
    iis: FakeIis, verb_name: str, slot: str, values: dict[str, str], code: int, text: str
) -> None:  # fmt: skip
    env = example("InternalStage")
    values = {k: v.replace("{pkg}", str(iis.packages / "MCMS_Setup_1.1.0.zip")) for k, v in values.items()}
    before = iis.state()
    unchanged(iis, before, verb(env, verb_name, slot, **values), code, text)


def test_an_unknown_environment_is_a_usage_error(iis: FakeIis) -> None:
    env = example("InternalStage")
    template = env.drivers.command["active"]
    argv = commands.fill_template("active", template, {"env": "InternalTest"})
    result = commands.run_argv(argv, timeout_s=30, redact=env.redact, cwd=ROOT)
    unchanged(iis, iis.state(), result, 2, "usage: -Environment InternalTest: not in the configuration")


@pytest.mark.parametrize("case", ["corrupt-zip", "no-web-config"])
def test_a_package_that_fails_its_check_leaves_the_site_on_its_release(iis: FakeIis, case: str) -> None:
    env = example("InternalStage")
    verb(env, "stop_site", "green").check()
    before = iis.state()
    root = Path(iis.site("MCMS-Stage-Green")["physicalPath"]).parents[1]
    if case == "corrupt-zip":
        package = iis.packages / "bad" / "MCMS_Setup_1.1.0.zip"
        package.parent.mkdir()
        package.write_bytes(b"PK\x03\x04 not really a zip")
        text = "failed: Expand-Archive"
    else:
        package = iis_package(iis.packages / "bare", "1.1.0", web_config=False)
        text = "lacks web.config: not a release of this site"
    result = verb(env, "deploy", "green", version="1.1.0", package=str(package))
    unchanged(iis, before, result, 1, text)
    assert sorted(p.name for p in (root / "releases").iterdir()) == ["0.9.0", "1.0.0"], "staging removed"


def test_a_router_in_an_unknown_state_is_a_failure_not_a_guess(iis: FakeIis) -> None:
    stage, prod = example("InternalStage"), example("InternalProd")
    state = iis.state()
    for server in state["webFarms"]["mcms-stage"]["servers"].values():
        server["enabled"] = True
    (rule,) = state["rewriteRules"].values()
    rule["url"] = "http://elsewhere.corp.example/{R:1}"
    (iis.dir / "iis.json").write_text(json.dumps(state))
    both = verb(stage, "active")
    assert both.exit_code == 1
    assert "has 2 slots enabled (blue, green); expected exactly one" in both.stderr
    other = verb(prod, "active")
    assert other.exit_code == 1
    assert "which is neither blue" in other.stderr
    with pytest.raises(DriverError, match="exit code 1"):
        CommandRouterDriver(stage, {"root": ROOT}).active()
    assert verb(stage, "switch", "green").exit_code == 1, "a switch from an unknown state is refused"
    assert iis.state() == state


BINDING = [
    # argv after the script, exit code, stderr fragment: PowerShell binds a script's parameters itself.
    (
        ["-Environment", "InternalStage", "-Slot", "blue", "-Force"],
        2,
        "usage: unexpected argument(s): -Force",
    ),
    (["-Environment", "InternalStage", "-Slot", "blue", "extra"], 2, "usage: unexpected argument(s): extra"),
    (["-Environment", "InternalStage", "-Slot"], 1, "Missing an argument for parameter 'Slot'"),
    (["-Environment", "InternalStage", "-Slot", "blue", "-slot", "green"], 1, "specified more than once"),
    (["-environment:InternalStage", "-S", "blue"], 0, ""),  # case, -Name:value and prefixes, like PowerShell
    (["InternalStage", "blue"], 0, ""),  # positional, in declaration order
    ([], 2, "usage: -Environment NAME is required"),
]


@pytest.mark.parametrize(("args", "code", "text"), BINDING)
def test_arguments_bind_like_powershell(iis: FakeIis, args: list[str], code: int, text: str) -> None:
    argv = [*PREFIX, "scripts/iis/Get-McmsVersion.ps1", *args]
    result = commands.run_argv(argv, timeout_s=30, redact=str, cwd=ROOT)
    assert result.exit_code == code, result.stderr
    assert text in result.stderr
    assert result.stdout == ("1.0.0\n" if code == 0 else "")


def test_without_bypass_the_execution_policy_refuses_the_script(iis: FakeIis) -> None:
    argv = [
        "powershell",
        "-NoProfile",
        "-File",
        "scripts/iis/Get-McmsActiveSlot.ps1",
        "-Environment",
        "InternalStage",
    ]
    result = commands.run_argv(argv, timeout_s=30, redact=str, cwd=ROOT)
    assert result.exit_code == 1
    assert "running scripts is disabled on this system" in result.stderr
    missing = commands.run_argv([*PREFIX, "scripts/iis/Nope.ps1"], timeout_s=30, redact=str, cwd=ROOT)
    assert missing.exit_code == 64
    assert "does not exist" in missing.stderr


def test_without_the_fake_iis_the_scripts_say_what_is_missing(
    iis: FakeIis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MCMS_IIS_FAKE_STATE")
    result = verb(example("InternalStage"), "stop_site", "blue")
    assert result.exit_code == 1
    assert "the WebAdministration module is missing" in result.stderr


# --- a real rollback run of the runbook through the scripts ------------------------------------------------


def derived_env_file(path: Path, sections: dict[str, str], drop: tuple[str, ...]) -> Path:
    """InternalStage.toml with whole sections replaced (or dropped); [drivers.command] stays as shipped."""
    text = (ROOT / "environments" / "InternalStage.toml").read_text(encoding="utf-8")
    parts = re.split(r"(?m)^(?=\[)", text)
    out = []
    for part in parts:
        header = part.split("]", 1)[0].lstrip("[") if part.startswith("[") else ""
        if header in drop:
            continue
        out.append(sections.pop(header) + "\n\n" if header in sections else part)
    out += [rest + "\n" for rest in sections.values()]
    path.write_text("".join(out), encoding="utf-8")
    return path


@pytest.fixture
def loopback_site(tmp_path: Path, iis: FakeIis) -> Iterator[tuple[FakeIis, int]]:
    """A single-node IIS site on a loopback port serving 1.1.0 (1.0.0 the previous stable), via the fake."""
    port = procs.free_port()
    root = tmp_path / "D" / "stage-single"
    write_config(iis.config, tmp_path / "D", InternalStage={
        "slots": {"active": {"site": "MCMS-Stage", "pool": "MCMS-Stage", "root": str(root)}},
        "requiredFiles": ["release.json", "mcms"],
    })  # fmt: skip
    offline = tmp_path / "artifacts" / "offline"
    for version in ("1.0.0", "1.1.0"):
        build_package(version, offline)
    state = iis.state()
    state["sites"]["MCMS-Stage"] = {"state": "Stopped", "physicalPath": str(root / "wwwroot"),
                                     "pool": "MCMS-Stage", "port": port}  # fmt: skip
    state["appPools"]["MCMS-Stage"] = {"state": "Started", "recycles": 0}
    (iis.dir / "iis.json").write_text(json.dumps(state))
    env = example("InternalStage")
    verb(env, "deploy", "active", version="1.1.0", package=str(offline / "MCMS_Setup_1.1.0.zip")).check()
    verb(env, "start_site", "active", version="1.1.0").check()
    try:
        procs.wait_http(f"http://127.0.0.1:{port}/health", 10, lambda r: r.status == 200)
        (iis.dir / "calls.jsonl").unlink()
        yield iis, port
    finally:
        stop_site_worker(iis, "MCMS-Stage")


def run_runbook(
    tmp_path: Path, iis: FakeIis, sections: dict[str, str], drop: tuple[str, ...], marker: str
) -> tuple[int, str, Path]:
    """The runbook in a subprocess on a copy of InternalStage.toml pointed at loopback, the stand-in on PATH."""
    logs = tmp_path / "logs"
    logs.mkdir()
    sink_port = procs.free_port()
    sink = procs.spawn("sink", procs.python_argv(ROOT / "lab" / "sink.py", "--port", str(sink_port), "--log-dir",
                                                 str(logs / "notifications")), logs / "sink.log")  # fmt: skip
    common = {
        "packages": f'[packages]\ndir = "{(tmp_path / "artifacts" / "offline").as_posix()}"',
        "paths": f'[paths]\nlog_dirs = ["{logs.as_posix()}"]\ntimeline_dir = "{logs.as_posix()}"',
        "notify": '[notify]\nwebhook_url = "${MCMS_WEBHOOK_URL}"\nformat = "teams-workflow"',
        "scope": '[scope]\nallowed_hosts = ["127.0.0.1"]',
        "matrix": '[matrix]\nrequired = ["DR-SMOKE"]',
    }
    env_file = derived_env_file(tmp_path / "InternalStage.toml", {**common, **sections}, drop)
    reports = tmp_path / "reports"
    environ = {
        **os.environ,
        **iis.environ(),
        **SECRETS,
        "MCMS_WEBHOOK_URL": f"http://127.0.0.1:{sink_port}/hook",
    }
    cmd = [sys.executable, "-m", "pytest", f"--env-file={env_file}", f"--evidence-dir={reports}", "-p",
           "no:cacheprovider", "-m", f"{marker} and not dr_e2e and not dr_axe and not dr_zap",
           "--approved-by", "A. Operator"]  # fmt: skip
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=300, check=False
        )
    finally:
        procs.stop_pid(sink.pid, 5.0, sink.argv)
    return proc.returncode, proc.stdout + proc.stderr, reports


def script_calls(iis: FakeIis) -> list[tuple[str, str]]:
    """(script, -Slot or "") of every script run, in order."""
    return [(c["script"], dict(zip(c["args"][::2], c["args"][1::2], strict=False)).get("-Slot", ""))
            for c in iis.calls() if "script" in c]  # fmt: skip


def checked_bundle(reports: Path) -> list[dict[str, Any]]:
    """The one bundle's journal, intact, every command it ran being one of the shipped scripts' argv."""
    (bundle,) = [p for p in reports.iterdir() if p.is_dir() and p.name[:8].isdigit()]
    assert verify_bundle(bundle).ok
    events = read_events(bundle / "evidence.jsonl")
    argvs = [e["data"]["detail"]["argv"] for e in events
             if e["kind"] == "action" and "argv" in e["data"].get("detail", {})]  # fmt: skip
    assert argvs
    assert all(a[:5] == PREFIX and a[5].startswith("scripts/iis/") for a in argvs), argvs
    return events


@pytest.mark.drill
def test_a_rollback_run_drives_iis_through_the_shipped_templates(
    tmp_path: Path, loopback_site: tuple[FakeIis, int]
) -> None:
    iis, port = loopback_site
    service = f'[service]\nbase_url = "http://127.0.0.1:{port}"\ntimeout_s = 2.0\nretries = 1'
    rc, output, reports = run_runbook(tmp_path, iis, {"service": service}, ("slots",), "rollback")
    assert rc == 0, output[-4000:]
    assert script_calls(iis) == [
        ("Get-McmsVersion", "active"),
        ("Stop-McmsSite", "active"),
        ("Restart-McmsAppPool", "active"),
        ("Deploy-McmsPackage", "active"),
        ("Start-McmsSite", "active"),
    ]
    site = iis.site("MCMS-Stage")
    releases = Path(site["physicalPath"]).parent
    assert (site["state"], Path(site["physicalPath"]).name) == ("Started", "1.0.0")
    assert (releases / "1.1.0" / "release.json").is_file(), "the release rolled back from is kept"
    assert iis.state()["appPools"]["MCMS-Stage"]["recycles"] == 1
    (end,) = [e["data"] for e in checked_bundle(reports) if e["kind"] == "run.end"]
    assert (end["version_from"], end["version_to"]) == ("1.1.0", "1.0.0")


@pytest.fixture
def loopback_farm(tmp_path: Path, iis: FakeIis) -> Iterator[tuple[FakeIis, dict[str, int]]]:
    """Blue live on 1.0.0 and green standing by on 0.9.0, each an IIS site on its own loopback port, behind a real
    reverse proxy (lab/router.py) standing in for ARR: a switch of the farm also moves it."""
    ports = {"public": procs.free_port(), "control": procs.free_port(), "blue": procs.free_port(),
             "green": procs.free_port()}  # fmt: skip
    write_config(iis.config, tmp_path / "D", InternalStage={"requiredFiles": ["release.json", "mcms"]})
    offline = tmp_path / "artifacts" / "offline"
    for version in ("0.9.0", "1.0.0", "1.1.0"):
        build_package(version, offline)
    state = iis.state()
    for slot in ("blue", "green"):
        state["sites"][site_name("InternalStage", slot)].update(state="Stopped", port=ports[slot])
    state["arrControl"] = f"http://127.0.0.1:{ports['control']}"
    (iis.dir / "iis.json").write_text(json.dumps(state))
    router_argv = procs.python_argv(
        ROOT / "lab" / "router.py", "--port", str(ports["public"]), "--control-port", str(ports["control"]),
        "--backend", f"blue=http://127.0.0.1:{ports['blue']}", "--backend", f"green=http://127.0.0.1:{ports['green']}",
        "--active", "blue", "--state-file", str(tmp_path / "router-state.json"),
    )  # fmt: skip
    router = procs.spawn("router", router_argv, tmp_path / "router.log")
    env = example("InternalStage")
    try:
        for slot, version in (("blue", "1.0.0"), ("green", "0.9.0")):
            package = str(offline / f"MCMS_Setup_{version}.zip")
            verb(env, "deploy", slot, version=version, package=package).check()
            verb(env, "start_site", slot, version=version).check()
        for port in (ports["blue"], ports["green"], ports["public"]):
            procs.wait_http(f"http://127.0.0.1:{port}/health", 10, lambda r: r.status == 200)
        (iis.dir / "calls.jsonl").unlink()
        yield iis, ports
    finally:
        for slot in ("blue", "green"):
            stop_site_worker(iis, site_name("InternalStage", slot))
        procs.stop_pid(router.pid, 5.0, router.argv)


@pytest.mark.drill
def test_a_blue_green_release_drives_arr_through_the_shipped_templates(
    tmp_path: Path, loopback_farm: tuple[FakeIis, dict[str, int]]
) -> None:
    iis, ports = loopback_farm
    sections = {
        "service": f'[service]\nbase_url = "http://127.0.0.1:{ports["public"]}"\ntimeout_s = 2.0\nretries = 1',
        "slots": f'[slots]\nblue = "http://127.0.0.1:{ports["blue"]}"\ngreen = "http://127.0.0.1:{ports["green"]}"',
        "monitor": "[monitor]\nduration_s = 3\ninterval_s = 0.5\nsla_p95_ms = 800\nmax_error_rate = 0.01\n"
        "alert_after_failures = 2",
    }
    rc, output, reports = run_runbook(tmp_path, iis, sections, (), "bluegreen")
    assert rc == 0, output[-4000:]
    calls = script_calls(iis)
    touched = {c for c in calls if c[0] in ("Stop-McmsSite", "Restart-McmsAppPool", "Deploy-McmsPackage")}
    assert touched == {
        ("Stop-McmsSite", "green"),
        ("Restart-McmsAppPool", "green"),
        ("Deploy-McmsPackage", "green"),
    }
    assert [c for c in calls if c[0] == "Switch-McmsSlot"] == [("Switch-McmsSlot", "green")]
    assert ("Get-McmsActiveSlot", "") in calls
    farm = iis.state()["webFarms"]["mcms-stage"]["servers"]
    assert (
        farm["mcms-stage-blue.corp.example"]["enabled"],
        farm["mcms-stage-green.corp.example"]["enabled"],
    ) == (
        False,
        True,
    )
    assert Path(iis.site("MCMS-Stage-Green")["physicalPath"]).name == "1.1.0"
    assert iis.site("MCMS-Stage-Blue")["state"] == "Started", "blue stays up as the warm standby"
    assert lab_checks.served_version(f"http://127.0.0.1:{ports['public']}") == "1.1.0"
    (end,) = [e["data"] for e in checked_bundle(reports) if e["kind"] == "run.end"]
    assert (end["version_from"], end["version_to"]) == ("1.0.0", "1.1.0")


# --- the shipped examples pass preflight, and nothing leaves loopback ------------------------------------------

PROJECT = ("conftest.py", "pytest.ini", "pyproject.toml", "drivers", "plugins", "fixtures", "lab", "runbook_tests",
           "environments", "scripts")  # fmt: skip


@pytest.fixture(scope="module")
def project_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project in a tmp folder, with what the examples say must exist relative to the project root."""
    copy = tmp_path_factory.mktemp("project")
    for name in PROJECT:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, copy / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, copy / name)
    env = load_environment(copy / "environments" / "InternalStage.toml", environ=SECRETS)
    for folder in (env.packages.dir, *env.paths.log_dirs, env.paths.timeline_dir):
        (copy / folder).mkdir(parents=True, exist_ok=True)  # "D:/MCMS/..." is a relative path on Linux
    return copy


PREFLIGHTS = [
    (name, flow, plan) for name in EXAMPLES for flow in ("rollback", "bluegreen") for plan in (False, True)
]


@pytest.mark.drill
@pytest.mark.parametrize(
    ("name", "flow", "plan"), PREFLIGHTS, ids=[f"{n}-{f}-{'plan' if p else 'run'}" for n, f, p in PREFLIGHTS]
)
def test_the_shipped_examples_pass_preflight(
    project_copy: Path, tmp_path: Path, name: str, flow: str, plan: bool
) -> None:
    guard = tmp_path / "net.jsonl"
    environ = {**os.environ, **SECRETS, "PATH": f"{STANDIN}{os.pathsep}{os.environ['PATH']}",
               "MCMS_IIS_PYTHON": sys.executable, "PYTHONPATH": str(STANDIN), "MCMS_NET_GUARD_LOG": str(guard)}  # fmt: skip
    args = ["--runbook-plan"] if plan else ["--approved-by", "A. Operator", "--confirm-env", name]
    cmd = [sys.executable, "-m", "pytest", "-p", "preflight_guard", "-p", "no:cacheprovider", "--env", name,
           "-m", flow, f"--evidence-dir={tmp_path / 'reports'}", *args]  # fmt: skip
    proc = subprocess.run(
        cmd, cwd=project_copy, env=environ, capture_output=True, text=True, timeout=120, check=False
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "preflight found" not in output, output[-3000:]
    assert "Preflight would refuse" not in output, output[-3000:]
    if plan:
        assert f"# Runbook plan: {flow} against {name}" in output
    else:
        assert f"PREFLIGHT PASSED: the {flow} flow on {name}" in output, output[-3000:]
        assert not (tmp_path / "reports").exists(), "no evidence bundle: nothing after preflight ran"
    for secret in SECRETS.values():
        assert secret not in output
    looked_up = [json.loads(line) for line in guard.read_text().splitlines()] if guard.exists() else []
    outside = [entry for entry in looked_up if not entry["loopback"]]
    assert not outside, f"preflight resolved or contacted a host outside loopback: {outside}"


def test_the_guard_sees_and_refuses_a_lookup_outside_loopback(tmp_path: Path) -> None:
    """The control of the check above: a name lookup or a connection outside loopback is recorded and refused."""
    guard = tmp_path / "net.jsonl"
    code = (
        "import preflight_guard, socket, urllib.request\n"
        "for call in (lambda: socket.getaddrinfo('mcms-stage.corp.example', 443),\n"
        "             lambda: urllib.request.urlopen('https://mcms-stage.corp.example/health', timeout=1)):\n"
        "    try:\n"
        "        call()\n"
        "    except OSError as exc:\n"
        "        print('refused:', exc)\n"
        "socket.getaddrinfo('127.0.0.1', 80)\n"
    )
    environ = {**os.environ, "PYTHONPATH": str(STANDIN), "MCMS_NET_GUARD_LOG": str(guard)}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("preflight_guard: getaddrinfo of non-loopback host") == 2, proc.stdout
    entries = [json.loads(line) for line in guard.read_text().splitlines()]
    assert [(e["host"], e["loopback"]) for e in entries] == [
        ("'mcms-stage.corp.example'", False),
        ("'mcms-stage.corp.example'", False),
        ("'127.0.0.1'", True),
    ]
