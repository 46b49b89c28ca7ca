"""Preflight (DESIGN.md "Preflight"): check everything the selected flow and rows need before anything is touched.

Runs once, right after collection (the flow and rows are known then), before the embedded Lab starts, before the
evidence bundle is created and before any phase acts. Every problem is collected and reported at once, as one
usage error (exit 4) naming the file, key or option and what was expected: the environment file's own problems,
every unset `${VAR}` of a section the run uses, the drivers the flow needs (their names come from the driver
registries), every `[drivers.command]` template the flow or its restore path will run, the files and folders
that must exist, the scope of every address, the evidence directory, and the approval (`--approved-by`, and
`--confirm-env` for `protect = true`).

The tools of the required matrix rows (browser and driver, ZAP, the regression command) are not checked here
but in PRE (runbook_tests/test_pre.py): a missing tool fails PRE, which blocks the flow before it stops or
deploys anything, and the report says what is missing and how to get it.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from drivers import commands
from drivers.axe import BaselineError, load_baseline
from drivers.browser import check_browser_settings
from drivers.config import Environment, RouterNginx
from drivers.deploy import DEPLOY_DRIVERS
from drivers.nginx import settings_problems as nginx_settings_problems
from drivers.notify import FORMATS
from drivers.phases import CHANGING_FLOWS, SLOT_FLOWS, SWITCH_BACK
from drivers.router import ROUTER_DRIVERS
from drivers.zap import SCANNERS
from drivers.zap_rules import RulesError, load_rules
from plugins.state import RunbookRun

# Flows that change a system: they stop, deploy or switch. A matrix-only run only looks.


def project_path(run: RunbookRun, value: str) -> Path:
    """Relative paths in an environment file are relative to the project root (README "Environments")."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else run.rootdir / path


def command_verbs_needed(env: Environment, flow: str, phases: Iterable[str]) -> list[str]:
    """The [drivers.command] verbs this run will run, its restore path included."""
    phases = set(phases)
    needed: list[str] = []
    if env.drivers.deploy == "command":
        if flow == "rollback" and phases & {"RB-2", "RB-3"}:
            # RB-2 stops, RB-3 deploys and starts; restore-on-failure deploys and starts the release that served.
            needed += ["stop_site", "deploy", "start_site"]
        if flow == "bluegreen" and "BG-1" in phases:
            # BG-1 stops the idle slot, deploys and starts; a release that fails before the switch is stopped.
            needed += ["stop_site", "deploy", "start_site"]
        if flow == "bluegreen" and "BG-5" in phases and env.slots.standby_then == "release":
            needed += ["stop_site"]
    if flow == "bluegreen" and env.drivers.router == "command":
        needed += ["active"] + (["switch"] if "BG-4" in phases else [])
    if flow == SWITCH_BACK and env.drivers.router == "command":
        needed += ["active"] + (["switch"] if "SB-2" in phases else [])  # switch-back stops nothing
    return list(dict.fromkeys(needed))


def check(run: RunbookRun, phases: Iterable[str], *, plan_only: bool) -> list[str]:
    """Every problem of this run, in the order an operator fixes them: the file, then the options."""
    env, flow = run.env, run.flow or "matrix"
    phases = list(phases)
    problems = list(run.config_problems)
    problems += [str(p) for p in env.problems(flow, run.rows)]
    problems += _drivers(env, flow, run.rows)
    problems += _nginx_router(run, flow)
    problems += _commands(run, flow, phases)
    problems += _files(run, flow)
    problems += _scope(env, flow)
    problems += _parallel(run, flow)
    problems += _switch_back(env, flow)
    if not plan_only:
        problems += _evidence_dir(run)
        problems += _approval(run, flow)
    return list(dict.fromkeys(problems))  # one problem, one line, even when two checks see it


def raise_if_problems(problems: list[str], run: RunbookRun) -> None:
    if not problems:
        return
    count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
    lines = "\n".join(f"  - {run.env.redact(p)}" for p in problems)
    raise pytest.UsageError(
        f"preflight found {count} before anything was touched (nothing was started, stopped or deployed):\n"
        f"{lines}"
    )


def _parallel(run: RunbookRun, flow: str) -> list[str]:
    """A parallel run (pytest-xdist) is for the matrix rows: a flow acts on one system, phase by phase."""
    parallel, dist = run.options.parallel, run.options.dist
    if not parallel:
        return []
    if flow in CHANGING_FLOWS:
        return [
            f"{parallel}: the {flow} flow stops, deploys and switches one system phase by phase; run it without "
            '-n (a parallel run checks matrix rows, e.g. -m "dr_smoke or dr_axe or dr_zap")'
        ]
    if dist != "load":
        return [f"--dist {dist}: a parallel runbook run needs --dist load (the default of -n), which keeps the "
                "playbook order on every worker"]  # fmt: skip
    return []


def _switch_back(env: Environment, flow: str) -> list[str]:
    """What the switch-back flow needs beyond a changing flow's sections: both slots' own addresses (the standby
    is checked there before traffic goes to it) and every ${VAR} of the sections it reads."""
    if flow != SWITCH_BACK:
        return []
    src = str(env.source)
    found = [
        f"{src}: [slots] {slot}: required for the switch_back flow (the standby is checked on its own address)"
        for slot in ("blue", "green")
        if not env.is_lab and not getattr(env.slots, slot)
    ]
    if not env.is_lab:
        if not env.notify.webhook_url and "[notify] webhook_url" not in env.unset:
            found.append(f"{src}: [notify] webhook_url: required for the switch_back flow")
        if "paths" not in env.present:
            found.append(
                f"{src}: [paths]: required for the switch_back flow outside the Lab: log_dirs (playbook §3.4) "
                "and timeline_dir (§9) on this machine"
            )
    for label, var in sorted(env.unset.items()):
        if label.split("]")[0].strip("[").split(".")[0] in ("slots", "router", "approval"):
            found.append(
                f"{src}: {label}: ${{{var}}} is not set in the process environment (set {var} before the run)"
            )
    return found


def _drivers(env: Environment, flow: str, rows: frozenset[str]) -> list[str]:
    """Every backend name the run will use, against the registry that defines the names (never a copy)."""
    src = str(env.source)
    found: list[str] = []
    uses: list[tuple[str, str, str, list[str]]] = []
    if flow in CHANGING_FLOWS:
        uses.append(("[drivers] deploy", "deploy driver", env.drivers.deploy, DEPLOY_DRIVERS.names()))
        uses.append(("[notify] format", "notify format", env.notify.format, FORMATS.names()))
    if flow in SLOT_FLOWS:
        uses.append(("[drivers] router", "router driver", env.drivers.router, ROUTER_DRIVERS.names()))
    if "DR-ZAP" in rows and env.row_configured("DR-ZAP"):
        uses.append(("[zap] engine", "scan engine", env.zap.engine, SCANNERS.names()))
    for key, what, name, known in uses:
        if name not in known:
            found.append(f'{src}: {key}: no {what} "{name}" (known: {", ".join(known)})')
        elif name == "lab" and not env.is_lab:
            found.append(f'{src}: {key}: "lab" drives the embedded Lab only; this file has kind = "remote"')
    return found


def _nginx_router(run: RunbookRun, flow: str) -> list[str]:
    """[router.nginx] for a Blue/Green run through nginx (drivers/nginx.py `settings_problems`); in the Lab, which
    fills [router.nginx] in itself, [drivers] router and [lab] router must agree."""
    env = run.env
    if flow not in SLOT_FLOWS or env.drivers.router not in ("nginx", "lab"):
        return []
    src = str(env.source)
    if env.is_lab:
        found: list[str] = []
        if env.drivers.router == "nginx" and env.lab.router != "nginx":
            found.append(
                f'{src}: [drivers] router = "nginx" in the Lab needs [lab] router = "nginx" (the Lab then runs a '
                f'real nginx as its public address); [lab] router is "{env.lab.router}"'
            )
        if env.drivers.router == "lab" and env.lab.router == "nginx":
            found.append(
                f'{src}: [lab] router = "nginx" puts the Lab behind nginx, which the "lab" router driver cannot '
                'switch: set [drivers] router = "nginx"'
            )
        written = [
            f.name
            for f in dataclasses.fields(RouterNginx)
            if f.name != "timeout_s" and getattr(env.router.nginx, f.name) != getattr(RouterNginx(), f.name)
        ]
        found += [
            f'{src}: [router.nginx] {key}: must be left out when kind = "lab": the embedded Lab fills it in for '
            "its own nginx"
            for key in written
        ]
        return found
    if env.drivers.router != "nginx":
        return []
    return nginx_settings_problems(env, run.rootdir)


def _commands(run: RunbookRun, flow: str, phases: list[str]) -> list[str]:
    env = run.env
    src = str(env.source)
    table = env.drivers.command
    if not table and not env.drivers.timeouts:
        return []
    needed = command_verbs_needed(env, flow, phases)
    found = commands.validate_templates(table, needed, src)
    for verb, seconds in env.drivers.timeouts.items():
        if verb not in commands.VERBS:
            found.append(
                f"{src}: [drivers.timeouts] {verb}: unknown verb (known: {', '.join(sorted(commands.VERBS))})"
            )
        elif seconds <= 0:
            found.append(
                f"{src}: [drivers.timeouts] {verb}: expected a number of seconds > 0, got {seconds:g}"
            )
    optional = [v for v in ("recycle_pool", "current_version") if v in table and "stop_site" in needed]
    found += commands.missing_programs(table, [*needed, *optional], root=run.rootdir, source=src)
    return found


def _must_exist(found: list[str], src: str, key: str, path: Path, *, folder: bool = False) -> bool:
    ok = path.is_dir() if folder else path.is_file()
    if not ok:
        what = "folder" if folder else "file"
        seen = (
            "it is a file"
            if folder and path.is_file()
            else "it is a folder"
            if path.is_dir()
            else "no such " + what
        )
        found.append(f'{src}: {key} = "{path}": expected an existing {what} ({seen})')
    return ok


def _files(run: RunbookRun, flow: str) -> list[str]:
    env = run.env
    src = str(env.source)
    found: list[str] = []
    if env.service.ca_file:
        _must_exist(found, src, "[service] ca_file", project_path(run, env.service.ca_file))
    if flow in CHANGING_FLOWS and not env.is_lab:
        if flow != SWITCH_BACK:  # a switch-back deploys nothing: the standby already serves
            _must_exist(found, src, "[packages] dir", project_path(run, env.packages.dir), folder=True)
        if "paths" in env.present:
            for i, directory in enumerate(env.paths.log_dirs):
                _must_exist(found, src, f"[paths] log_dirs[{i}]", project_path(run, directory), folder=True)
            _must_exist(
                found, src, "[paths] timeline_dir", project_path(run, env.paths.timeline_dir), folder=True
            )
    return found + _row_files(run)


def _row_files(run: RunbookRun) -> list[str]:
    env, rows = run.env, run.rows
    src = str(env.source)
    found: list[str] = []
    if rows & {"DR-AXE", "DR-E2E"}:
        # [browser] window and args, and the Grid's address (--selenium-remote or [browser] remote).
        found += [f"{src}: {p}" for p in check_browser_settings(env.browser, run.options.selenium_remote)]
    if "DR-AXE" in rows and env.row_configured("DR-AXE"):
        if env.axe.baseline:
            path = project_path(run, env.axe.baseline)
            if _must_exist(found, src, "[axe] baseline", path):
                try:
                    load_baseline(path)
                except BaselineError as exc:
                    found.append(str(exc))
        if env.axe.script:
            _must_exist(found, src, "[axe] script", project_path(run, env.axe.script))
    if "DR-ZAP" in rows and env.row_configured("DR-ZAP") and env.zap.rules:
        path = project_path(run, env.zap.rules)
        if _must_exist(found, src, "[zap] rules", path):
            try:
                load_rules(path, source=env.zap.rules)
            except RulesError as exc:
                found.append(f"[zap] rules: {exc}")
    if "DR-E2E" in rows and env.e2e.junit and not project_path(run, env.e2e.junit).parent.is_dir():
        found.append(f'{src}: [e2e] junit = "{env.e2e.junit}": its folder does not exist')
    return found


def _scope(env: Environment, flow: str) -> list[str]:
    if env.is_lab or not env.scope.allowed_hosts:
        return []
    allowed = {h.lower() for h in env.scope.allowed_hosts}
    urls = {"[service] base_url": env.service.base_url}
    if flow in SLOT_FLOWS:
        urls |= {"[slots] blue": env.slots.blue, "[slots] green": env.slots.green}
    found = []
    for key, url in urls.items():
        host = (urlsplit(url).hostname or "").lower()
        if url and host not in allowed:
            found.append(
                f"{env.source}: {key}: host {host} is outside [scope] allowed_hosts ({', '.join(sorted(allowed))}); "
                "the runbook never sends a request there"
            )
    return found


def _evidence_dir(run: RunbookRun) -> list[str]:
    """The evidence directory must be creatable and writable: a run that cannot keep evidence must not act."""
    directory = run.options.evidence_dir
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        return [f"--evidence-dir {directory}: {existing} is a file, not a folder"]
    if existing != directory:
        if not os.access(existing, os.W_OK | os.X_OK):
            return [f"--evidence-dir {directory}: cannot create it ({existing} is not writable)"]
        return []
    try:
        fd, name = tempfile.mkstemp(dir=directory, prefix=".runbook-write-check-")
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        return [f"--evidence-dir {directory}: not writable ({exc.strerror or exc})"]
    return []


def _approval(run: RunbookRun, flow: str) -> list[str]:
    env, options = run.env, run.options
    found: list[str] = []
    if options.confirm_env is not None and options.confirm_env != env.name:
        found.append(
            f"--confirm-env {options.confirm_env}: does not repeat the environment's name {env.name}"
        )
    if flow not in CHANGING_FLOWS or env.is_lab:
        return found
    if env.approval.required and not options.approved_by:
        found.append(
            f"--approved-by NAME: required up front for the {flow} flow on {env.name} ({env.source}: [approval] "
            f"required = true); rerun with {options.env_argument} --approved-by NAME"
        )
    if env.protect and options.confirm_env != env.name:
        found.append(
            f"--confirm-env {env.name}: required for the {flow} flow ({env.source}: protect = true); "
            "repeat the environment's name to confirm"
        )
    return found
