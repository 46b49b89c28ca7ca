"""`mcms-runbook VERB`: the runbook's verbs in an operator's words, a thin layer over pytest.

Each verb builds one command (pytest, or `python -m plugins.evidence` / `python -m plugins.notify`), prints it,
runs it and passes its exit code on: anything it does can be typed as plain pytest. `stop-lab` does what
`make clean-lab` does; `open` opens the newest report in the default browser. Options before `--` that the
runbook knows are passed on; anything after `--` goes to pytest unchanged. A path option is always passed as
`--env-file=PATH` (with "="), whatever way it was written here.

Also `python -m plugins.cli VERB`.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import webbrowser
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

PROG = "mcms-runbook"
NO_OPEN_ENV = "RUNBOOK_NO_OPEN"


@dataclass(frozen=True)
class Flow:
    """A verb that runs pytest: its marker expression and what it does, in one line for --help."""

    marker: str
    help: str
    default_env: str | None = None


FLOWS: dict[str, Flow] = {
    "drill": Flow("rollback", "the rollback drill against the embedded Lab (--env Lab)", "Lab"),
    "rollback": Flow("rollback", "roll back to the previous stable release (single node)"),
    "release": Flow("bluegreen", "Blue/Green release: idle slot, verify, switch, monitor"),
    "gate": Flow("bluegreen and not traffic", "CI gate: deploy and verify the idle slot, no switch"),
    "switch": Flow("bluegreen and traffic", "switch traffic to the slot the gate verified; monitor"),
    "switch-back": Flow("switch_back", "traffic back to the warm standby now; verify, notify"),
    "smoke": Flow("dr_smoke", "just the smoke checks (health, Swagger, Kerberos)"),
}
OTHER_VERBS: dict[str, str] = {
    "plan": "print a flow's phases as a checklist; run nothing",
    "verify": "check a bundle's journal chain, seal and manifest",
    "resend": "deliver a bundle's queued or failed notifications",
    "stop-lab": "stop a kept Lab and orphaned browsers (make clean-lab)",
    "open": "open the newest report.html in the default browser",
}


class CliError(Exception):
    """A usage problem, said in a sentence (exit 2)."""


def _add_runbook_options(parser: argparse.ArgumentParser) -> None:
    """The runbook's options that the verbs pass on (see `pytest --help`, group "DR & rollback runbook")."""
    group = parser.add_argument_group("passed on to the runbook")
    group.add_argument("--env", metavar="NAME", help="environments/NAME.toml (e.g. InternalStage)")
    group.add_argument("--env-file", metavar="PATH", help="any environment file (passed as --env-file=PATH)")
    group.add_argument("--evidence-dir", metavar="DIR", help="where bundles go (default: reports/)")
    group.add_argument("--approved-by", metavar="NAME", help="the approver, journalled")
    group.add_argument("--confirm-env", metavar="NAME", help="repeat the environment's name (protected ones)")
    group.add_argument("--reason", metavar="TEXT", help="why this run, journalled")
    group.add_argument("--step", action="store_true", help="ask before each phase")
    group.add_argument("--keep-lab", action="store_true", help="leave the embedded Lab running")
    group.add_argument(
        "--lab-fault", metavar="NAME", action="append", default=[], help="Lab fault (repeatable)"
    )
    group.add_argument("--runbook-rollback", metavar="POLICY", help="on-failure | always | never")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="The MCMS runbook's verbs. Each prints the command it runs (plain pytest or python -m ...), "
        "runs it and exits with its exit code. Anything after `--` goes to pytest unchanged.",
        epilog=f"Examples: {PROG} drill; {PROG} gate --env InternalStage --approved-by 'A. Operator'; "
        f"{PROG} open --print-only; {PROG} plan release --env InternalProd",
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name, flow in FLOWS.items():
        sub = verbs.add_parser(name, help=flow.help, description=f"{flow.help}: pytest -m {flow.marker!r}")
        _add_runbook_options(sub)
    plan = verbs.add_parser("plan", help=OTHER_VERBS["plan"], description=OTHER_VERBS["plan"])
    plan.add_argument("flow", nargs="?", default="rollback", choices=list(FLOWS), help="the verb to plan")
    _add_runbook_options(plan)
    for name in ("verify", "resend"):
        sub = verbs.add_parser(name, help=OTHER_VERBS[name], description=OTHER_VERBS[name])
        sub.add_argument(
            "bundle", nargs="?", type=Path, metavar="BUNDLE", help="a run's folder under reports/"
        )
        sub.add_argument("--evidence-dir", metavar="DIR", help="where to look for the newest bundle")
        if name == "resend":
            sub.add_argument("--env-file", metavar="PATH", help="take the webhook from this environment file")
    stop = verbs.add_parser("stop-lab", help=OTHER_VERBS["stop-lab"], description=OTHER_VERBS["stop-lab"])
    stop.add_argument("--lab-dir", metavar="DIR", type=Path, default=Path(".lab"), help="default: .lab")
    opener = verbs.add_parser("open", help=OTHER_VERBS["open"], description=OTHER_VERBS["open"])
    opener.add_argument("--evidence-dir", metavar="DIR", help="where to look (default: reports/)")
    opener.add_argument("--print-only", action="store_true", help="print the report's path; open nothing")
    return parser


def evidence_dir(option: str | None, cwd: Path) -> Path:
    """--evidence-dir, else RUNBOOK_EVIDENCE_DIR, else reports/ (relative to the current folder)."""
    value = option or os.environ.get("RUNBOOK_EVIDENCE_DIR") or "reports"
    path = Path(value).expanduser()
    return path if path.is_absolute() else cwd / path


def bundles(directory: Path) -> list[Path]:
    """The evidence bundles in `directory`, oldest first (their names start with the UTC time of the run)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_dir() and p.name[:8].isdigit())


def newest_bundle(directory: Path) -> Path:
    found = bundles(directory)
    if not found:
        raise CliError(f"no evidence bundle in {directory} yet: run `{PROG} drill` (or another flow) first")
    return found[-1]


def newest_report(directory: Path) -> Path:
    reports = [b / "report.html" for b in bundles(directory) if (b / "report.html").is_file()]
    if not reports:
        raise CliError(f"no report.html in {directory} yet: run `{PROG} drill` (or another flow) first")
    return reports[-1]


def _python() -> list[str]:
    return [sys.executable]


def _runbook_args(args: argparse.Namespace) -> list[str]:
    """The runbook's options as pytest takes them; paths always as --opt=PATH."""
    out: list[str] = []
    if args.env:
        out += ["--env", args.env]
    if args.env_file:
        out.append(f"--env-file={args.env_file}")
    if args.evidence_dir:
        out.append(f"--evidence-dir={args.evidence_dir}")
    for option in ("approved_by", "confirm_env", "reason", "runbook_rollback"):
        value = getattr(args, option)
        if value:
            out += ["--" + option.replace("_", "-"), value]
    out += [f"--lab-fault={fault}" for fault in args.lab_fault]
    out += [flag for flag, on in (("--step", args.step), ("--keep-lab", args.keep_lab)) if on]
    return out


def _test_location(cwd: Path) -> list[str]:
    """Nothing in the project's folder (pytest.ini's testpaths); elsewhere the installed runbook_tests, with
    the current folder as pytest's root (its environments/ and reports/ are the operator's)."""
    if (cwd / "runbook_tests").is_dir() and (cwd / "pytest.ini").is_file():
        return []
    import runbook_tests

    return [f"--rootdir={cwd}", str(Path(next(iter(runbook_tests.__path__))))]


def pytest_command(verb: str, args: argparse.Namespace, extra: Sequence[str], cwd: Path) -> list[str]:
    flow = FLOWS[verb]
    env_given = args.env or args.env_file or os.environ.get("RUNBOOK_ENV")
    if flow.default_env and not env_given:
        args.env = flow.default_env
    elif not env_given:
        raise CliError(
            f"{PROG} {verb}: give --env NAME (environments/NAME.toml) or --env-file=PATH: the environment to act on"
        )
    return [*_python(), "-m", "pytest", "-m", flow.marker, *_runbook_args(args), *_test_location(cwd), *extra]


def build_command(args: argparse.Namespace, extra: Sequence[str], cwd: Path) -> list[str]:
    """The command a verb runs (stop-lab and open run in this process: None of them here)."""
    verb: str = args.verb
    if verb in FLOWS:
        return pytest_command(verb, args, extra, cwd)
    if verb == "plan":
        return [*pytest_command(args.flow, args, extra, cwd), "--runbook-plan"]
    if verb in ("verify", "resend"):
        bundle = args.bundle or newest_bundle(evidence_dir(args.evidence_dir, cwd))
        if verb == "verify":
            return [*_python(), "-m", "plugins.evidence", "verify", str(bundle), *extra]
        env_file = [f"--env-file={args.env_file}"] if args.env_file else []
        return [*_python(), "-m", "plugins.notify", "resend", str(bundle), *env_file, *extra]
    raise CliError(f"{PROG} {verb}: runs no command")  # pragma: no cover - main() handles the others


def shown(command: Sequence[str], cwd: Path) -> str:
    """The command as the operator can type it in this shell (the interpreter relative when under cwd)."""
    parts = list(command)
    exe = Path(parts[0])
    if exe.is_absolute() and exe.is_relative_to(cwd):
        parts[0] = str(exe.relative_to(cwd))
    return subprocess.list2cmdline(parts) if os.name == "nt" else shlex.join(parts)


def run(command: Sequence[str], cwd: Path) -> int:
    """Print the command, run it, pass its exit code on. On Ctrl-C this waits for pytest to apply the rollback
    policy and finish instead of leaving it behind; a Ctrl-C that did not reach pytest too (sent to this process
    alone: a container's init, a service manager, `kill -INT`) is passed on to it."""
    print(f"$ {shown(command, cwd)}", flush=True)
    proc = subprocess.Popen(list(command), cwd=cwd)
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            if not interrupt_reached_the_child() and proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            print(f"\n{PROG}: interrupted; waiting for the run to finish what it must do", flush=True)


def interrupt_reached_the_child() -> bool:
    """Whether a Ctrl-C that interrupted this process reached its pytest as well: a terminal's Ctrl-C goes to its
    whole foreground process group, which the child shares; on Windows to every process of the console. Sent
    any other way (no terminal, or this process not in its foreground), it reached this process alone."""
    if os.name == "nt":
        return True
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError, AttributeError):
        return False  # no terminal (stdin closed, a file or a pipe): nothing else got the signal


def stop_lab(lab_dir: Path) -> int:
    """What `make clean-lab` does: stop a kept Lab by the PIDs it recorded, then reap orphaned browsers."""
    from drivers.reaper import describe_reaped, reap_orphans
    from lab import Lab

    print(
        f"Stopping the Lab in {lab_dir} (by the PIDs it recorded) and orphaned browsers (as make clean-lab)"
    )
    lab = Lab.attach(lab_dir)
    if lab is not None:
        lab.stop()
    print(f"Lab in {lab_dir} stopped" if lab else f"No Lab running in {lab_dir}")
    reaped = reap_orphans(None)
    print(describe_reaped(reaped))
    return 1 if any(r.problems for r in reaped) else 0


def display_available() -> bool:
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def open_report(directory: Path, print_only: bool) -> int:
    report = newest_report(directory)
    if print_only:
        print(report)
        return 0
    if os.environ.get(NO_OPEN_ENV) == "1":
        print(f"Report: {report} (not opened: {NO_OPEN_ENV}=1)")
        return 0
    if not display_available():
        print(f"Report: {report} (not opened: no display; open it in a browser)")
        return 0
    print(f"Opening {report} in the default browser")
    if not webbrowser.open(report.resolve().as_uri()):
        print(f"No browser could be started; open {report} yourself")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1 :]
    parser = _parser()
    try:
        args, unknown = parser.parse_known_args(argv)
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 2
    cwd = Path.cwd()
    try:
        if unknown and args.verb not in (*FLOWS, "plan"):
            raise CliError(f"{PROG} {args.verb}: unrecognized arguments: {' '.join(unknown)}")
        if args.verb == "stop-lab":
            return stop_lab(args.lab_dir)
        if args.verb == "open":
            return open_report(evidence_dir(args.evidence_dir, cwd), args.print_only)
        return run(build_command(args, [*unknown, *extra], cwd), cwd)
    except CliError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2


def project_version(root: Path) -> str:
    import tomllib

    return str(tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"])


LAUNCHERS = ("drill", "drill.ps1", "drill.cmd")


def build_offline_zip(root: Path | None = None, wheelhouse: str = "wheelhouse", dist: str = "dist") -> int:
    """`make wheelhouse`'s last step: dist/mcms-runbook-offline-<version>.zip with the project's files (git's
    list: tracked, and new files not ignored), the wheelhouse and the launchers, under one folder."""
    root = Path.cwd() if root is None else root
    wheels = sorted((root / wheelhouse).glob("*.whl"))
    if not wheels:
        print(f"{root / wheelhouse}: no wheels in it; run `make wheelhouse` first", file=sys.stderr)
        return 1
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root, capture_output=True, check=True, timeout=60,
        ).stdout.decode("utf-8").split("\0")  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"{root}: cannot list the project's files with git ({exc})", file=sys.stderr)
        return 1
    files = {name for name in listed if name and (root / name).is_file()}
    files |= {name for name in LAUNCHERS if (root / name).is_file()}
    version = project_version(root)
    top = f"mcms-runbook-offline-{version}"
    target = root / dist / f"{top}.zip"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for name in sorted(files):
            bundle.write(root / name, f"{top}/{name}")  # keeps the launchers' executable bit
        for wheel in wheels:  # wheelhouse/ in the bundle, wherever it was built
            bundle.write(wheel, f"{top}/wheelhouse/{wheel.name}")
    partial.replace(target)
    size = target.stat().st_size / 1e6
    print(f"Offline bundle: {target} ({len(files)} project files, {len(wheels)} wheels, {size:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
