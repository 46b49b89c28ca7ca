"""Linux equivalents of scripts/iis/*.ps1, acting on a fake IIS: the same arguments, exit codes and stdout.

The PowerShell scripts cannot run here, so the command contract they keep (scripts/iis/README.md) is tested
through these. One function per script (`SCRIPTS`), with the parameters its param() block declares (`PARAMS`,
compared with the .ps1 by tests/test_iis_contract.py so that the two cannot drift), bound the way PowerShell
binds a script's parameters (named, case-insensitive, unambiguous prefixes, `-Name:value`, positional in
declaration order; anything left over is `$args`, which the scripts refuse).

The fake IIS is a folder, `$MCMS_IIS_FAKE_STATE`: `iis.json` holds the sites (state, physicalPath, pool, an
optional loopback port), the application pools (state, how often recycled), the ARR server farms (servers and
whether each is enabled) and the URL Rewrite rules (their action url); `calls.jsonl` has one line per script
run. A started site with a port runs tests/remote_site/slot_server.py there, serving the version of the release
its physicalPath points at (release.json in the package, else the folder's name). `arrControl` in iis.json (the
control URL of lab/router.py) makes a switch also move a real reverse proxy. The configuration is the scripts'
own: `$MCMS_IIS_CONFIG`, else scripts/iis/mcms-iis.json.

    python iis_fake.py SCRIPT [ARGS...]          # SCRIPT: e.g. Stop-McmsSite
    python iis_fake.py --powershell [POWERSHELL ARGS...]   # what tests/iis_linux/powershell runs
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SCRIPTS_DIR = ROOT / "scripts" / "iis"
SLOT_SERVER = ROOT / "tests" / "remote_site" / "slot_server.py"

EXIT_DONE, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
SLOTS = ("blue", "green")
NODES = ("active", "blue", "green")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}")
VERSION_PATTERN = re.compile(r"[0-9A-Za-z][0-9A-Za-z._+-]{0,63}")

# The param() block of each script, in declaration order; every one is [string] with a default of ''.
PARAMS: dict[str, tuple[str, ...]] = {
    "Stop-McmsSite": ("Environment", "Slot"),
    "Restart-McmsAppPool": ("Environment", "Slot"),
    "Deploy-McmsPackage": ("Environment", "Slot", "Version", "Package"),
    "Start-McmsSite": ("Environment", "Slot", "Version"),
    "Get-McmsVersion": ("Environment", "Slot"),
    "Switch-McmsSlot": ("Environment", "Slot"),
    "Get-McmsActiveSlot": ("Environment",),
}


class Usage(Exception):
    """Exit 2: the call (or the configuration) is wrong; nothing was touched."""


class Failed(Exception):
    """Exit 1: the action failed."""


class BindingError(Exception):
    """PowerShell refused the arguments before the script ran (exit 1, its own message)."""


# --- PowerShell's parameter binding for a script without [CmdletBinding()] -----------------------------------


def bind(params: Sequence[str], argv: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """The bound parameters (default '') and $args, as powershell -File binds a simple script's arguments."""
    bound: dict[str, str] = {}
    extra: list[str] = []
    positional: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        i += 1
        if len(token) > 1 and token[0] == "-" and (token[1].isalpha() or token[1] == "_"):
            name, colon, inline = token[1:].partition(":")
            matches = [p for p in params if p.lower() == name.lower()] or [
                p for p in params if p.lower().startswith(name.lower())
            ]
            if len(matches) > 1:
                raise BindingError(
                    f"Parameter cannot be processed because the parameter name '{name}' is ambiguous. "
                    f"Possible matches include: {' '.join('-' + m for m in matches)}."
                )
            if not matches:
                extra.append(token)
                continue
            param = matches[0]
            if param in bound:
                raise BindingError(
                    f"Cannot bind parameter because parameter '{param}' is specified more than once."
                )
            if colon:
                bound[param] = inline
            elif i < len(argv) and not re.match(r"-[A-Za-z_]", argv[i]):
                bound[param] = argv[i]
                i += 1
            else:
                raise BindingError(
                    f"Missing an argument for parameter '{param}'. Specify a parameter of type "
                    "'System.String' and try again."
                )
        else:
            positional.append(token)
    for value in positional:
        free = next((p for p in params if p not in bound), None)
        if free is None:
            extra.append(value)
        else:
            bound[free] = value
    return {p: bound.get(p, "") for p in params}, extra


# --- McmsIis.psm1 --------------------------------------------------------------------------------------------


def assert_no_extra(extra: Sequence[str]) -> None:
    if extra:
        raise Usage(f"unexpected argument(s): {' '.join(extra)} (see scripts/iis/README.md)")


def load_config() -> dict[str, Any]:
    path = Path(os.environ.get("MCMS_IIS_CONFIG") or SCRIPTS_DIR / "mcms-iis.json")
    if not path.is_file():
        raise Usage(f"the configuration {path} does not exist (see scripts/iis/README.md)")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except ValueError as exc:
        raise Usage(f"the configuration {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise Usage(f"the configuration {path} is not valid JSON: expected an object")
    return data


def prop(obj: Any, name: str, where: str) -> Any:
    if not isinstance(obj, dict) or name not in obj:
        raise Usage(f"{where}.{name}: missing in the configuration")
    return obj[name]


def environment(name: str) -> dict[str, Any]:
    if not name:
        raise Usage("-Environment NAME is required")
    environments = prop(load_config(), "environments", "mcms-iis.json")
    if name not in environments:
        raise Usage(f"-Environment {name}: not in the configuration (known: {', '.join(environments)})")
    return {**environments[name], "Name": name}


def router_of(env: dict[str, Any]) -> dict[str, Any]:
    router = prop(env, "router", env["Name"])
    where = f"{env['Name']}.router"
    mode = prop(router, "mode", where)
    if mode not in ("farm", "rewrite"):
        raise Usage(f"{where}.mode: expected farm or rewrite, got {mode}")
    for slot in SLOTS:
        prop(router, slot, where)
    key = "farm" if mode == "farm" else "rule"
    name = str(prop(router, key, where))
    if not NAME_PATTERN.fullmatch(name):
        raise Usage(f"{where}.{key}: unusable IIS name '{name}'")
    for slot in SLOTS:
        if "'" in str(router[slot]):
            raise Usage(f"{where}.{slot}: may not contain a quote")
    return dict(router)


def assert_slot(slot: str, allowed: Sequence[str]) -> None:
    if not slot:
        raise Usage(f"-Slot is required ({', '.join(allowed)})")
    if slot not in allowed:
        raise Usage(f"-Slot {slot}: expected one of {', '.join(allowed)}")


@dataclass
class Node:
    environment: str
    slot: str
    site: str
    pool: str
    root: str
    required: list[str] = field(default_factory=lambda: ["web.config"])
    timeout_s: int = 60


def get_node(env_name: str, slot: str) -> Node:
    env = environment(env_name)
    assert_slot(slot, NODES)
    slots = prop(env, "slots", env_name)
    if slot not in slots:
        raise Usage(f"-Slot {slot}: {env_name} has no {slot} slot in the configuration")
    value = slots[slot]
    resolved = slot
    if isinstance(value, str):
        if slot != "active" or value != "live":
            raise Usage(f'{env_name}.slots.{slot}: expected a site entry (or "live" for active)')
        resolved = live_slot(env)
        value = prop(slots, resolved, f"{env_name}.slots")
    where = f"{env_name}.slots.{resolved}"
    node = Node(
        env_name,
        resolved,
        str(prop(value, "site", where)),
        str(prop(value, "pool", where)),
        str(prop(value, "root", where)),
    )
    for name in (node.site, node.pool):
        if not NAME_PATTERN.fullmatch(name):
            raise Usage(f"{where}: unusable IIS name '{name}'")
    if "requiredFiles" in env:
        node.required = [str(f) for f in env["requiredFiles"]]
    if "timeoutSeconds" in env:
        node.timeout_s = int(env["timeoutSeconds"])
    return node


def assert_version(version: str) -> None:
    if not version:
        raise Usage("-Version is required")
    if not VERSION_PATTERN.fullmatch(version):
        raise Usage(f"-Version {version}: expected a version like 1.2.3 (letters, digits, . _ + -)")


# --- the fake IIS (what the WebAdministration cmdlets act on) --------------------------------------------------


def state_dir() -> Path:
    """Initialize-McmsIis: where the elevation check and Import-Module WebAdministration would fail."""
    value = os.environ.get("MCMS_IIS_FAKE_STATE", "")
    if not value or not (Path(value) / "iis.json").is_file():
        raise Failed("the WebAdministration module is missing: install IIS Management Scripts and Tools")
    return Path(value)


def load_state() -> dict[str, Any]:
    return dict(json.loads((state_dir() / "iis.json").read_text(encoding="utf-8")))


def save_state(state: dict[str, Any]) -> None:
    path = state_dir() / "iis.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def site_of(state: dict[str, Any], node: Node) -> dict[str, Any]:
    """Assert-McmsSite: the site and its pool must exist."""
    if node.site not in state.get("sites", {}):
        raise Failed(f"IIS has no site {node.site}")
    if node.pool not in state.get("appPools", {}):
        raise Failed(f"IIS has no application pool {node.pool}")
    return dict(state["sites"][node.site])


def releases_dir(node: Node) -> Path:
    return Path(node.root) / "releases"


def laid_out_version(site: dict[str, Any], node: Node) -> str:
    path = Path(str(site.get("physicalPath", "")))
    releases = releases_dir(node)
    if path.parent != releases or not VERSION_PATTERN.fullmatch(path.name):
        raise Failed(
            f"cannot tell the version of {node.site}: its physicalPath {path} is not {releases}{os.sep}<version> "
            "(deploy once with Deploy-McmsPackage.ps1, or point it at such a folder)"
        )
    return path.name


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie still answers kill(0)
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True


def _stop_worker(site: dict[str, Any]) -> None:
    pid = int(site.get("pid") or 0)
    if pid and _alive(pid):
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    site["pid"] = 0
    site.pop("argv", None)


def _start_worker(site: dict[str, Any], node: Node) -> None:
    if not site.get("port"):
        return
    release = Path(str(site["physicalPath"]))
    version = release.name
    with_release = release / "release.json"
    if with_release.is_file():
        version = str(json.loads(with_release.read_text(encoding="utf-8"))["version"])
    argv = [sys.executable, str(SLOT_SERVER), "--port", str(site["port"]), "--version", version,
            "--slot", node.slot]  # fmt: skip
    log = state_dir() / f"{node.site}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True
        )
    site["pid"] = proc.pid
    site["argv"] = (
        argv  # so that a test's cleanup can stop it by PID (lab.procs.stop_pid checks the command line)
    )


def farm_server(state: dict[str, Any], router: dict[str, Any], slot: str) -> dict[str, Any]:
    servers = state.get("webFarms", {}).get(router["farm"], {}).get("servers", {})
    address = str(router[slot])
    if address not in servers:
        raise Failed(f"the ARR server farm {router['farm']} has no server {address} (the {slot} slot)")
    return dict(servers[address])


def rule_key(router: dict[str, Any]) -> str:
    scope = f"IIS:\\Sites\\{router['site']}" if router.get("site") else "MACHINE/WEBROOT/APPHOST"
    return f"{scope}|{router['rule']}"


def live_slot(env: dict[str, Any]) -> str:
    router = router_of(env)
    state = load_state()
    if router["mode"] == "farm":
        live = [slot for slot in SLOTS if farm_server(state, router, slot).get("enabled")]
        if len(live) != 1:
            raise Failed(
                f"the ARR server farm {router['farm']} has {len(live)} slots enabled ({', '.join(live)}); "
                "expected exactly one"
            )
        return live[0]
    url = str(state.get("rewriteRules", {}).get(rule_key(router), {}).get("url", ""))
    for slot in SLOTS:
        if url.lower() == str(router[slot]).lower():
            return slot
    raise Failed(
        f"the URL Rewrite rule {router['rule']} sends traffic to {url}, which is neither blue "
        f"({router['blue']}) nor green ({router['green']})"
    )


def set_live_slot(env: dict[str, Any], slot: str) -> None:
    router = router_of(env)
    state = load_state()
    if router["mode"] == "farm":
        other = next(s for s in SLOTS if s != slot)
        farm_server(state, router, slot)
        farm_server(state, router, other)
        servers = state["webFarms"][router["farm"]]["servers"]
        servers[str(router[slot])]["enabled"] = True  # one commit (Start-/Stop-WebCommitDelay)
        servers[str(router[other])]["enabled"] = False
    else:
        state.setdefault("rewriteRules", {}).setdefault(rule_key(router), {})["url"] = str(router[slot])
    if state.get("arrControl"):
        request = urllib.request.Request(
            str(state["arrControl"]) + "/switch", data=json.dumps({"to": slot}).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=5):
            pass
    save_state(state)


def wait_state(read: Callable[[], str], want: str, timeout_s: int, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while (state := read()) != want:
        if time.monotonic() > deadline:
            raise Failed(f"{what} is {state}, not {want}, after {timeout_s} s")
        time.sleep(0.25)


# --- the scripts ---------------------------------------------------------------------------------------------


def stop_site(p: dict[str, str], extra: list[str]) -> list[str]:
    assert_no_extra(extra)
    node = get_node(p["Environment"], p["Slot"])
    state = load_state()
    site = site_of(state, node)
    before = site["state"]
    if before == "Stopped":
        return [f"site {node.site} ({node.slot}) already stopped"]
    _stop_worker(site)
    site["state"] = "Stopped"
    state["sites"][node.site] = site
    save_state(state)
    return [f"site {node.site} ({node.slot}) stopped (was {before})"]


def restart_pool(p: dict[str, str], extra: list[str]) -> list[str]:
    assert_no_extra(extra)
    node = get_node(p["Environment"], p["Slot"])
    state = load_state()
    site_of(state, node)
    pool = state["appPools"][node.pool]
    if pool["state"] == "Started":
        pool["recycles"] = int(pool.get("recycles", 0)) + 1
        save_state(state)
        return [f"application pool {node.pool} ({node.slot}) recycled"]
    return [f"application pool {node.pool} ({node.slot}) is {pool['state']}: nothing to recycle"]


def deploy(p: dict[str, str], extra: list[str]) -> list[str]:
    assert_no_extra(extra)
    node = get_node(p["Environment"], p["Slot"])
    version, package = p["Version"], p["Package"]
    assert_version(version)
    if not package:
        raise Usage("-Package PATH.zip is required")
    if Path(package).suffix.lower() != ".zip":
        raise Usage(f"-Package {package}: expected a .zip file")
    if not Path(package).is_file():
        raise Failed(f"package {package} does not exist")
    state = load_state()
    site = site_of(state, node)
    if site["state"] != "Stopped":
        raise Failed(f"site {node.site} is {site['state']}: stop it (stop_site) before deploying onto it")
    before = str(site.get("physicalPath", ""))
    releases = releases_dir(node)
    release = releases / version
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    staging = releases / f".staging-{version}-{stamp}"
    aside: Path | None = None
    placed = False
    try:
        staging.mkdir(parents=True, exist_ok=True)
        try:
            with zipfile.ZipFile(package) as zf:
                zf.extractall(staging)
        except (zipfile.BadZipFile, OSError) as exc:
            raise Failed(f"Expand-Archive {package}: {exc}") from None
        missing = [f for f in node.required if not (staging / f).exists()]
        if missing:
            raise Failed(f"package {package} lacks {', '.join(missing)}: not a release of this site")
        if release.exists():
            aside = release.with_name(f"{version}.replaced-{stamp}")
            release.rename(aside)
        staging.rename(release)
        placed = True
        site["physicalPath"] = str(release)
        state["sites"][node.site] = site
        save_state(state)
    except BaseException:
        if staging.exists():
            shutil.rmtree(staging)
        if placed:
            shutil.rmtree(release)
        if aside is not None:
            aside.rename(release)
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    return [f"site {node.site} ({node.slot}) now points at {release} (previous: {before})"]


def start_site(p: dict[str, str], extra: list[str]) -> list[str]:
    assert_no_extra(extra)
    node = get_node(p["Environment"], p["Slot"])
    version = p["Version"]
    assert_version(version)
    state = load_state()
    site = site_of(state, node)
    laid_out = laid_out_version(site, node)
    if laid_out != version:
        raise Failed(f"site {node.site} has {laid_out} laid out, not {version}: deploy {version} first")
    pool = state["appPools"][node.pool]
    if pool["state"] != "Started":
        pool["state"] = "Started"
    if site["state"] != "Started":
        _start_worker(site, node)
        site["state"] = "Started"
    state["sites"][node.site] = site
    save_state(state)
    return [f"site {node.site} ({node.slot}) started on {version}"]


def current_version(p: dict[str, str], extra: list[str]) -> list[str]:
    assert_no_extra(extra)
    node = get_node(p["Environment"], p["Slot"])
    return [laid_out_version(site_of(load_state(), node), node)]


def switch(p: dict[str, str], extra: list[str]) -> list[str]:
    assert_no_extra(extra)
    env = environment(p["Environment"])
    assert_slot(p["Slot"], SLOTS)
    before = live_slot(env)
    set_live_slot(env, p["Slot"])
    after = live_slot(env)
    if after != p["Slot"]:
        raise Failed(f"switched to {p['Slot']}, but the router now serves {after}")
    return [f"traffic of {p['Environment']} switched from {before} to {p['Slot']}"]


def active(p: dict[str, str], extra: list[str]) -> list[str]:
    assert_no_extra(extra)
    return [live_slot(environment(p["Environment"]))]


SCRIPTS: dict[str, Callable[[dict[str, str], list[str]], list[str]]] = {
    "Stop-McmsSite": stop_site,
    "Restart-McmsAppPool": restart_pool,
    "Deploy-McmsPackage": deploy,
    "Start-McmsSite": start_site,
    "Get-McmsVersion": current_version,
    "Switch-McmsSlot": switch,
    "Get-McmsActiveSlot": active,
}


def _log_call(entry: dict[str, Any]) -> None:
    folder = os.environ.get("MCMS_IIS_FAKE_STATE", "")
    if folder and Path(folder).is_dir():
        with (Path(folder) / "calls.jsonl").open("a", encoding="utf-8") as log:
            log.write(json.dumps({**entry, "t": time.time()}) + "\n")


def run_script(name: str, argv: Sequence[str]) -> int:
    """Run one script's equivalent: its output lines on stdout, the error on stderr, the exit code."""
    _log_call({"script": name, "args": list(argv)})
    try:
        bound, extra = bind(PARAMS[name], argv)
    except BindingError as exc:
        print(f"{name}.ps1 : {exc}", file=sys.stderr)
        return EXIT_FAILED
    try:
        lines = SCRIPTS[name](bound, extra)
    except Usage as exc:
        print(f"usage: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Failed as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    for line in lines:
        print(line)
    return EXIT_DONE


# --- the powershell stand-in ---------------------------------------------------------------------------------

POLICIES = ("Bypass", "Unrestricted", "RemoteSigned", "AllSigned", "Restricted", "Default", "Undefined")
EXIT_BAD_COMMAND_LINE = 64  # what powershell gives a command line it cannot parse


def powershell(argv: Sequence[str], cwd: Path | None = None) -> int:
    """`powershell [-NoProfile] [-NonInteractive] [-NoLogo] [-ExecutionPolicy P] -File X.ps1 ARGS...`.

    Runs the Linux equivalent of X with ARGS. X.ps1 must exist (the shipped script, relative to the working
    directory like powershell resolves it). Without -ExecutionPolicy Bypass or Unrestricted the script is refused
    the way Windows' default policy (Restricted) refuses it, so an argv without the flag fails here as it would
    on an operator's PC.
    """
    cwd = cwd or Path.cwd()
    flags: list[str] = []
    policy = "Restricted"
    i = 0
    while i < len(argv):
        token = argv[i]
        low = token.lower()
        if low in ("-noprofile", "-noninteractive", "-nologo"):
            flags.append(token)
            i += 1
        elif low == "-executionpolicy" and i + 1 < len(argv):
            value = next((p for p in POLICIES if p.lower() == argv[i + 1].lower()), None)
            if value is None:
                print(f"Invalid ExecutionPolicy value '{argv[i + 1]}'.", file=sys.stderr)
                return EXIT_BAD_COMMAND_LINE
            flags += [token, argv[i + 1]]
            policy = value
            i += 2
        elif low == "-file" and i + 1 < len(argv):
            return _run_file(argv[i + 1], list(argv[i + 2 :]), flags, policy, cwd)
        else:
            print(
                f"powershell stand-in: unsupported argument {token!r} (supported: -NoProfile, -NonInteractive, "
                "-NoLogo, -ExecutionPolicy POLICY, -File SCRIPT ARGS...)",
                file=sys.stderr,
            )
            return EXIT_BAD_COMMAND_LINE
    print("powershell stand-in: no -File SCRIPT given", file=sys.stderr)
    return EXIT_BAD_COMMAND_LINE


def _run_file(file: str, args: list[str], flags: list[str], policy: str, cwd: Path) -> int:
    path = Path(file) if Path(file).is_absolute() else cwd / file
    _log_call({"powershell": flags, "file": file, "args": args})
    if path.suffix.lower() != ".ps1" or not path.is_file():
        print(f"The argument '{file}' to the -File parameter does not exist.", file=sys.stderr)
        return EXIT_BAD_COMMAND_LINE
    if policy not in ("Bypass", "Unrestricted"):
        print(
            f"File {path} cannot be loaded because running scripts is disabled on this system "
            f"(execution policy {policy}).",
            file=sys.stderr,
        )
        return EXIT_FAILED
    name = path.stem
    if name not in SCRIPTS:
        print(f"powershell stand-in: no Linux equivalent of {path.name}", file=sys.stderr)
        return EXIT_BAD_COMMAND_LINE
    return run_script(name, args)


def main(argv: Sequence[str]) -> int:
    if argv and argv[0] == "--powershell":
        return powershell(argv[1:])
    if not argv or argv[0] not in SCRIPTS:
        print(f"usage: iis_fake.py SCRIPT [ARGS...] (SCRIPT: {', '.join(SCRIPTS)})", file=sys.stderr)
        return EXIT_USAGE
    return run_script(argv[0], argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
