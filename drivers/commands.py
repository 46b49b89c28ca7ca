"""One argv runner and one process-tree killer for every command the runbook starts; the command-template contract.

Running (`run_argv`): an argv list, never a shell. The program (argv[0]) is looked up first, like preflight
does: a bare name on the PATH of the command's environment (on Windows through PATHEXT, so `npm` finds
`npm.cmd`), a name with a path separator relative to the working directory. A program that is not there is
`CommandMissing`, one that cannot be executed `CommandNotExecutable` (a subclass: both are "tool missing"),
each naming the program and what was searched. The child runs in its own session (POSIX) or process group
(Windows), stdin closed, stdout and stderr into files (never pipes: a grandchild that keeps them open cannot
hang the run), decoded as UTF-8 with replacement characters. The caller gives the timeout (no defaults here:
`[drivers] command_timeout_s`, `[drivers.timeouts]`, `[e2e] command_timeout_s`); when it passes, or the run
is interrupted, the WHOLE process tree is stopped by `kill_tree`: terminate, then kill after a grace period.
The result's `output_tail` is passed through the caller's `redact` before anything else sees it; `stdout`
and `stderr` are the raw text, for parsing (a version, a slot name), and go to the journal only through its
redactor.

Templates (`[drivers.command]`): `VERBS` is the one table of the verbs, the driver that uses each, whether
that driver needs it, and the placeholders each may use:

    verb             driver  when "command"  placeholders                     last stdout line
    stop_site        deploy  required        {env} {slot}
    recycle_pool     deploy  optional        {env} {slot}
    deploy           deploy  required        {env} {slot} {version} {package}
    start_site       deploy  required        {env} {slot} {version}
    current_version  deploy  optional        {env} {slot}                     the version laid out
    switch           router  required        {env} {slot}
    active           router  required        {env}                            blue or green

{env} is the environment's name, {slot} the node acted on (blue or green; "active" for the single node of a
single-node environment; for switch the slot traffic goes to), {version} the version being laid out or
started, {package} the package file's path. Only deploy gets {package} and only deploy and start_site get
{version}: the other verbs are not called with one, and a placeholder that would silently become an empty
string is a mistake caught before the run. `active` asks which slot is live, so it has no {slot}.

Syntax: `{name}` is a placeholder; `{{` and `}}` are a literal `{` and `}` (as in str.format, so the
templates read the same as before). Any other brace, an unknown name or a known name the verb does not get
is a problem reported by `validate_templates`, with every other problem of the table at once. Filling
(`fill_template`) replaces placeholders only, never interprets the values (a value with braces stays as it
is; no format specs, no attribute or index lookups). The program (argv[0]) may not contain placeholders:
preflight looks it up (`missing_programs`) before anything is touched.

Plain Python, no pytest import.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from drivers.base import DriverError

if TYPE_CHECKING:
    import psutil  # imported where a process tree is stopped: most runs never load it

__all__ = [
    "KILL_GRACE_S",
    "PLACEHOLDERS",
    "VERBS",
    "CommandError",
    "CommandFailed",
    "CommandMissing",
    "CommandNotExecutable",
    "CommandResult",
    "CommandVerb",
    "TemplateError",
    "fill_template",
    "kill_tree",
    "missing_programs",
    "required_verbs",
    "resolve_program",
    "run_argv",
    "start_process",
    "template_problems",
    "validate_templates",
]

# How long a terminated process tree gets to exit before it is killed, and again before giving up on it.
KILL_GRACE_S = 5.0


class CommandError(DriverError):
    """A command could not be run, or did not do its job; the message says which, where and why."""


class CommandMissing(CommandError):
    """The program is not there: a "tool missing". Names the program and what was searched."""


class CommandNotExecutable(CommandMissing):
    """The program is there but cannot be executed (no execute permission, a directory, not a program)."""


class CommandFailed(CommandError):
    """The command ran but exited non-zero or was killed at its timeout (raised by `CommandResult.check`)."""


class TemplateError(CommandError):
    """A [drivers.command] template cannot be filled in (see `validate_templates`)."""


# --- running ---------------------------------------------------------------------------------------------

# How to get a program preflight or a run did not find; keyed by the program's name without extension.
_INSTALL_HINTS = {
    "powershell": 'Windows PowerShell comes with Windows; elsewhere install PowerShell 7 (https://aka.ms/powershell) and write "pwsh"',
    "pwsh": "install PowerShell 7 (https://aka.ms/powershell)",
    "node": "install Node.js (https://nodejs.org)",
    "npm": "install Node.js, which brings npm (https://nodejs.org)",
    "npx": "install Node.js, which brings npx (https://nodejs.org)",
}
_GENERIC_HINT = "install it on this machine, or write its full path as the first item of the argv"


def _hint(program: str) -> str:
    name = re.split(r"[\\/]", program)[-1].lower()
    return _INSTALL_HINTS.get(name.rsplit(".", 1)[0] if "." in name else name, _GENERIC_HINT)


def _search_path(environ: Mapping[str, str]) -> str:
    if sys.platform == "win32":  # a hand-made environment may spell it "Path"
        return next((v for k, v in environ.items() if k.upper() == "PATH"), os.defpath)
    return environ.get("PATH", os.defpath)


def resolve_program(
    program: str, *, cwd: Path, environ: Mapping[str, str] | None = None, what: str = "command"
) -> str:
    """The path of the program to execute, as the run will find it; CommandMissing / CommandNotExecutable.

    A name with a path separator is a file, relative to `cwd` unless absolute; a bare name is looked up on
    the PATH of `environ` (default: this process's). `what` starts every message ("[e2e] command").
    """
    environ = os.environ if environ is None else environ
    if not program.strip():
        raise CommandMissing(f"{what}: the program (the first item of the argv) is empty")
    if "/" in program or "\\" in program:
        candidate = Path(program).expanduser()
        if not candidate.is_absolute():
            candidate = cwd / candidate
        found = shutil.which(str(candidate))  # also checks the execute bit; PATHEXT on Windows
        if found is not None:
            return found
        shown = program if str(candidate) == program else f"{program} ({candidate})"
        if candidate.is_dir():
            raise CommandNotExecutable(f"{what}: {shown} is a directory, not a program")
        if candidate.exists():
            raise CommandNotExecutable(
                f"{what}: {shown} is not executable: give it execute permission (chmod +x), or run it "
                f'through its interpreter, e.g. ["sh", "{program}", ...]'
            )
        hint = _hint(program)
        raise CommandMissing(
            f"{what}: {shown}: no such file" + ("" if hint == _GENERIC_HINT else f"; {hint}")
        )
    search = _search_path(environ)
    found = shutil.which(program, path=search)
    if found is None:
        searched = f"searched PATH: {search}" if search.strip(os.pathsep) else "PATH is empty"
        raise CommandMissing(f"{what}: {program} not found on PATH ({searched}); {_hint(program)}")
    return found


def start_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str] | None,
    stdout: IO[bytes] | int,
    stderr: IO[bytes] | int,
    what: str = "command",
) -> subprocess.Popen[bytes]:
    """Start argv (argv[0] already resolved) where `kill_tree` can reach everything it starts.

    POSIX: a new session, so the child's descendants share its session and process group even after their
    own parent exited. Windows: a new process group (no Ctrl+C from the operator's console reaches it; the
    tree is found through parent PIDs). stdin is closed: nothing may wait for an answer from the operator.
    """
    try:
        if sys.platform == "win32":
            return subprocess.Popen(
                list(argv), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                creationflags=subprocess.CREATE_NEW_PROCESS_GROUP,
            )  # fmt: skip
        return subprocess.Popen(
            list(argv), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
            start_new_session=True,
        )  # fmt: skip
    except OSError as exc:
        program = argv[0]
        reason = exc.strerror or str(exc)
        if isinstance(exc, FileNotFoundError) and Path(program).is_file():
            # The file is there, so what is missing is the interpreter its first line names.
            raise CommandMissing(
                f"{what}: cannot start {program}: {reason}: is the interpreter on its first line (#!) installed?"
            ) from None
        if isinstance(exc, FileNotFoundError):
            raise CommandMissing(f"{what}: cannot start {program}: {reason}") from None
        raise CommandNotExecutable(f"{what}: cannot start {program}: {reason}") from None


def _alive(proc: psutil.Process) -> bool:
    import psutil

    # A zombie has exited; in a container whose PID 1 never reaps, it would otherwise look alive forever.
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def _tree(pid: int) -> dict[int, psutil.Process]:
    """The process `pid` and everything it started that is still there."""
    import psutil

    found: dict[int, psutil.Process] = {}
    with suppress(psutil.NoSuchProcess):
        root = psutil.Process(pid)
        found[pid] = root
        for child in root.children(recursive=True):
            found[child.pid] = child
    if sys.platform != "win32":
        # A grandchild whose parent exited was re-parented away from the tree, but it stays in the session
        # (and process group) start_process gave the child: both ids are the child's PID.
        me = os.getpid()
        for proc in psutil.process_iter():
            if proc.pid in found or proc.pid == me:
                continue
            try:
                if os.getsid(proc.pid) == pid or os.getpgid(proc.pid) == pid:
                    found[proc.pid] = proc
            except OSError:
                continue
    return found


def _wait_gone(procs: Iterable[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """Wait (bounded) until the processes have exited; the ones still alive."""
    deadline = time.monotonic() + timeout_s
    left = [p for p in procs if _alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = [p for p in left if _alive(p)]
    return left


def kill_tree(proc: subprocess.Popen[Any], *, grace_s: float = KILL_GRACE_S) -> list[int]:
    """Stop the process we started and every process it started; the PIDs that were signalled.

    Terminate all of them (SIGTERM; TerminateProcess on Windows), wait up to `grace_s`, kill what is left or
    was started meanwhile, wait again, and reap our own child. Only the tree of this Popen is touched, never
    anything found by name.
    """
    import psutil

    signalled: set[int] = set()
    first = _tree(proc.pid)
    for p in first.values():
        with suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            p.terminate()
            signalled.add(p.pid)
    left = {p.pid: p for p in _wait_gone(first.values(), grace_s)}
    left.update({pid: p for pid, p in _tree(proc.pid).items() if pid not in left and _alive(p)})
    for p in left.values():
        with suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            p.kill()
            signalled.add(p.pid)
    _wait_gone(left.values(), grace_s)
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    return sorted(signalled)


@dataclass
class CommandResult:
    """One run of an argv, as the journal records it: `output_tail` is already redacted."""

    argv: list[str]  # as given, program as written
    cwd: str
    exit_code: int | None  # None when it was killed at the timeout
    timed_out: bool
    timeout_s: float
    duration_s: float
    output_tail: str  # the last lines of stdout then stderr (or of output_path), redacted
    stdout: str = ""  # raw; empty when the output went to output_path
    stderr: str = ""
    output_path: Path | None = None
    verb: str = "command"
    program: str = ""  # the resolved path of argv[0]
    killed_pids: list[int] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.timed_out and self.exit_code == 0

    def describe(self) -> str:
        if self.timed_out:
            return f"timed out after {self.timeout_s:g} s (process tree killed)"
        if self.exit_code is not None and self.exit_code < 0 and sys.platform != "win32":
            return f"killed by signal {-self.exit_code} after {self.duration_s:g} s"
        return f"exit code {self.exit_code} after {self.duration_s:g} s"

    def last_line(self) -> str:
        """The last non-empty line of stdout, stripped: what current_version and active print."""
        lines = [line.strip() for line in self.stdout.splitlines() if line.strip()]
        return lines[-1] if lines else ""

    def check(self, lines: int = 3) -> CommandResult:
        """This result when the command passed; else CommandFailed with its last (redacted) lines."""
        if self.passed:
            return self
        tail = " | ".join(self.output_tail.splitlines()[-lines:])
        raise CommandFailed(f"{self.verb} {self.describe()}" + (f": {tail}" if tail else " (no output)"))


def _tail(text: str, lines: int, chars: int) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])[-chars:]


def _file_tail(path: Path, lines: int, chars: int, redact: Callable[[str], str], encoding: str) -> str:
    # Redact before cutting: a secret cut in half at the cut would no longer be recognised. The extra
    # margin keeps a secret split at the start of the window out of the part that is returned.
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - (chars * 4 + 8192)))
            data = f.read()
    except OSError:
        return ""
    return _tail(redact(data.decode(encoding, "replace")), lines, chars)


def _read(f: IO[bytes], encoding: str) -> str:
    f.seek(0)
    return f.read().decode(encoding, "replace")


def run_argv(
    argv: Sequence[str],
    *,
    timeout_s: float,
    redact: Callable[[str], str],
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    output_path: Path | None = None,
    verb: str = "command",
    tail_lines: int = 20,
    tail_chars: int = 4000,
    grace_s: float = KILL_GRACE_S,
    encoding: str = "utf-8",
) -> CommandResult:
    """Run argv without a shell, bounded by `timeout_s`; its whole process tree is killed at the timeout.

    `verb` names it in every message ("[drivers.command] deploy", "[e2e] command"). `env` is the complete
    environment of the command (default: this process's). Without `output_path`, stdout and stderr are kept
    apart in the result; with it, both go to that file, interleaved as written, and the result's stdout and
    stderr are empty. A non-zero exit or a timeout is in the result (see `check`), not an exception; a
    missing or non-executable program is CommandMissing / CommandNotExecutable before anything starts.
    """
    if not argv:
        raise CommandError(f"{verb}: empty argv: nothing to run")
    if not (timeout_s > 0 and math.isfinite(timeout_s)):
        raise ValueError(f"{verb}: the timeout must be a positive number of seconds, not {timeout_s}")
    workdir = Path.cwd() if cwd is None else cwd
    if not workdir.is_dir():  # else the start would fail as if the program were missing
        raise CommandError(f"{verb}: cannot run in {workdir}: no such folder")
    environ = dict(os.environ if env is None else env)
    program = resolve_program(argv[0], cwd=workdir, environ=environ, what=verb)
    killed: list[int] = []
    with ExitStack() as files:
        out: IO[bytes]
        err_file: IO[bytes] | None = None
        if output_path is not None:
            output_path.parent.mkdir(parents=True, exist_ok=True)
            out = files.enter_context(output_path.open("wb"))
        else:
            out = files.enter_context(tempfile.TemporaryFile())
            err_file = files.enter_context(tempfile.TemporaryFile())
        started = time.perf_counter()
        proc = start_process(
            [program, *argv[1:]], cwd=workdir, env=environ, stdout=out,
            stderr=subprocess.STDOUT if err_file is None else err_file, what=verb,
        )  # fmt: skip
        try:
            exit_code: int | None = proc.wait(timeout=timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            killed = kill_tree(proc, grace_s=grace_s)
            exit_code, timed_out = None, True
        except BaseException:  # an interrupted run (Ctrl+C) must not leave the command running
            kill_tree(proc, grace_s=grace_s)
            raise
        duration_s = round(time.perf_counter() - started, 3)
        stdout = stderr = tail = ""
        if err_file is not None:
            stdout, stderr = _read(out, encoding), _read(err_file, encoding)
            joined = stdout.rstrip("\n") + ("\n" if stdout.strip() and stderr.strip() else "") + stderr
            tail = _tail(redact(joined), tail_lines, tail_chars)
    if output_path is not None:
        tail = _file_tail(output_path, tail_lines, tail_chars, redact, encoding)
    return CommandResult(
        argv=list(argv),
        cwd=str(workdir),
        exit_code=exit_code,
        timed_out=timed_out,
        timeout_s=timeout_s,
        duration_s=duration_s,
        output_tail=tail,
        stdout=stdout,
        stderr=stderr,
        output_path=output_path,
        verb=verb,
        program=program,
        killed_pids=killed,
    )


# --- the command-template contract -------------------------------------------------------------------------

PLACEHOLDERS = ("env", "slot", "version", "package")


@dataclass(frozen=True)
class CommandVerb:
    """One [drivers.command] verb: who uses it, whether it is needed, what it may say and must do."""

    name: str
    driver: str  # the [drivers] key ("deploy" or "router") whose value "command" uses this verb
    required: bool  # needed whenever that driver is "command"
    placeholders: tuple[str, ...]
    does: str  # what the command must do, for messages and the docs
    prints: str = ""  # what its last stdout line must say, when the driver reads it

    def allowed(self) -> str:
        return " ".join("{" + p + "}" for p in self.placeholders)


_NODE = ("env", "slot")
VERBS: Mapping[str, CommandVerb] = {
    v.name: v
    for v in (
        CommandVerb("stop_site", "deploy", True, _NODE, "stop the site on {slot} (RB-2)"),
        CommandVerb(
            "recycle_pool", "deploy", False, _NODE, "recycle the application pool of {slot} after the stop"
        ),
        CommandVerb(
            "deploy",
            "deploy",
            True,
            PLACEHOLDERS,
            "lay out {package} (version {version}) on the stopped {slot}",
        ),
        CommandVerb(
            "start_site", "deploy", True, ("env", "slot", "version"), "start {slot} serving {version}"
        ),
        CommandVerb(
            "current_version",
            "deploy",
            False,
            _NODE,
            "print the version laid out on {slot}",
            prints="the version",
        ),
        CommandVerb("switch", "router", True, _NODE, "send the public address to {slot} (BG-4)"),
        CommandVerb(
            "active",
            "router",
            True,
            ("env",),
            "print which slot the public address serves",
            prints="blue or green",
        ),
    )
}


def required_verbs(driver: str) -> list[str]:
    """The verbs a driver ("deploy" or "router") needs when it is "command"; optional ones are checked when set."""
    if driver not in {v.driver for v in VERBS.values()}:
        raise ValueError(f"no [drivers.command] verbs for the {driver} driver")
    return [v.name for v in VERBS.values() if v.driver == driver and v.required]


# {{ and }} are literal braces, {name} a placeholder, any other brace a mistake.
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


def _part_problems(spec: CommandVerb, index: int, part: object) -> list[str]:
    where = f"{spec.name}[{index}]"
    if not isinstance(part, str):
        return [f"{where}: expected a string"]
    if index == 0 and not part.strip():
        return [f"{where}: the program is empty"]
    problems = []
    for m in _TOKEN.finditer(part):
        token, name = m.group(0), m.group(1)
        if token in ("{{", "}}"):
            continue
        if name is None:
            problems.append(
                f"{where}: unbalanced brace: a lone {token} at character {m.start() + 1} "
                f"(write {token}{token} for a literal {token})"
            )
        elif index == 0:
            problems.append(
                f"{where}: the program may not contain placeholders ({token}): preflight looks it up "
                "before anything runs"
            )
        elif name not in PLACEHOLDERS:
            close = difflib.get_close_matches(name, PLACEHOLDERS, n=1)
            guess = f"; did you mean {{{close[0]}}}?" if close else ""
            problems.append(f"{where}: unknown placeholder {token} (allowed here: {spec.allowed()}){guess}")
        elif name not in spec.placeholders:
            problems.append(
                f"{where}: placeholder {token} is not filled in for {spec.name} (allowed here: {spec.allowed()})"
            )
    return problems


def template_problems(verb: str, template: object) -> list[str]:
    """Every problem of one template, each starting with `verb` or `verb[index]`; empty when it is good."""
    spec = VERBS.get(verb)
    if spec is None:
        known = ", ".join(sorted(VERBS))
        close = difflib.get_close_matches(verb, list(VERBS), n=1)
        return [f"{verb}: unknown verb (known: {known})" + (f"; did you mean {close[0]}?" if close else "")]
    if isinstance(template, str) or not isinstance(template, Sequence):
        return [f'{verb}: expected an argv list of strings, e.g. ["powershell", "-File", "script.ps1", ...]']
    if not template:
        return [
            f'{verb}: empty argv (expected the program and its arguments, e.g. ["powershell", "-File", ...])'
        ]
    return [problem for i, part in enumerate(template) for problem in _part_problems(spec, i, part)]


def validate_templates(table: Mapping[str, Sequence[str]], needed: Iterable[str], source: str) -> list[str]:
    """Every problem of a [drivers.command] table at once, each naming `source` and the key.

    `needed`: the verbs the selected flow and its restore path will call (see `required_verbs`); a needed
    verb that is missing is a problem. Every configured verb is checked, needed or not.
    """
    where = f"{source}: [drivers.command]"
    problems = [f"{where} {p}" for verb, template in table.items() for p in template_problems(verb, template)]
    for verb in dict.fromkeys(needed):
        spec = VERBS.get(verb)
        if spec is None:
            raise ValueError(f"not a [drivers.command] verb: {verb}")
        if verb not in table:
            problems.append(
                f'{where} {verb}: missing; {spec.driver} = "command" needs it to {spec.does} '
                f"(placeholders: {spec.allowed()})"
            )
    return problems


def fill_template(verb: str, template: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """The argv of `template` with its placeholders replaced by `values` (which may hold more names).

    TemplateError when the template has a problem `validate_templates` reports, or uses a placeholder
    `values` does not give. Values are inserted as they are: never formatted, never scanned for braces.
    """
    problems = template_problems(verb, template)
    if problems:
        raise TemplateError("; ".join(f"[drivers.command] {p}" for p in problems))

    def replace(m: re.Match[str]) -> str:
        token, name = m.group(0), m.group(1)
        if token in ("{{", "}}"):
            return token[0]
        if name not in values:
            raise TemplateError(f"[drivers.command] {verb}: no value for {token}")
        return values[name]

    return [_TOKEN.sub(replace, part) for part in template]


_SCRIPT_HOSTS = {"powershell", "pwsh"}  # -File SCRIPT
_INTERPRETERS = {"sh", "bash", "python", "python3", "py"}  # SCRIPT as the first argument


def script_argument(template: Sequence[str]) -> tuple[int, str] | None:
    """The script file an interpreter in `template` will run, with its index: the item after `-File` for
    powershell / pwsh, the first argument of sh, bash and python when it is not an option. None when there is
    none, or when it holds a placeholder (filled in only at run time)."""
    if not template:
        return None
    name = Path(template[0].replace("\\", "/")).name.lower().removesuffix(".exe")
    index: int | None = None
    if name in _SCRIPT_HOSTS:
        index = next(
            (i + 1 for i, arg in enumerate(template[1:-1], start=1) if arg.lower() in ("-file", "-f")), None
        )
    elif name in _INTERPRETERS or re.fullmatch(r"python3\.\d+", name):
        index = 1 if len(template) > 1 and not template[1].startswith("-") else None
    if index is None or index >= len(template) or "{" in template[index]:
        return None
    return index, template[index]


def missing_programs(
    table: Mapping[str, Sequence[str]],
    verbs: Iterable[str],
    *,
    root: Path,
    source: str,
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """For each of `verbs` configured in `table`: a problem when its program (argv[0]) cannot be found, or the
    script an interpreter runs (`powershell -File X`, `sh X`, `python X`) is not there.

    As the run will look: a bare name on PATH, a path relative to `root` (the directory the commands run in,
    the project root). Templates with problems of their own are left to `validate_templates`. A program missing
    for several verbs is one problem naming them all: one thing to install, one line.
    """
    missing: dict[str, tuple[list[str], CommandMissing]] = {}
    problems: list[str] = []
    for verb in dict.fromkeys(verbs):
        template = table.get(verb)
        if not template or template_problems(verb, template):
            continue
        try:
            resolve_program(template[0], cwd=root, environ=environ, what="")
        except CommandMissing as exc:
            missing.setdefault(template[0], ([], exc))[0].append(verb)
        script = script_argument(template)
        if script is not None:
            index, value = script
            path = Path(value).expanduser()
            path = path if path.is_absolute() else root / path
            if not path.is_file():
                seen = "it is a folder" if path.is_dir() else "no such file"
                problems.append(
                    f"{source}: [drivers.command] {verb}[{index}]: {value}: the script {template[0]} would run "
                    f"is not there ({seen}, looked in {path})"
                )
    programs = [
        f"{source}: [drivers.command] {', '.join(f'{v}[0]' for v in verbs_missing)}{exc}"
        for verbs_missing, exc in missing.values()
    ]
    return programs + problems
