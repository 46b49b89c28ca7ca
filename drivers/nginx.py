"""The nginx router mechanics behind the `nginx` router driver (drivers/router.py `NginxRouterDriver`).

The live slot's upstream lives in one include file, `[router.nginx] include`, that the operator's nginx
configuration includes at http level and proxies the public address to (`proxy_pass http://mcms_live;`). The
driver owns that file; it holds a marker comment naming the slot and the upstream block of that slot's server:

    # mcms-runbook live slot: green
    upstream mcms_live {
        server 10.0.0.12:8080;
        keepalive 16;
    }

`switch(to)` (BG-4 and every rollback after the switch):

1. the new include is written atomically: a temporary file in the include's own folder (its name ends in
   `.tmp`, so an `include conf.d/*.conf;` never reads it), flushed and fsynced, then `os.replace`d over the
   include (the folder is fsynced too). nginx never reads half a file;
2. `nginx -t` (with `-p PREFIX` / `-c CONF` when configured) checks the whole configuration with the new
   include. When it fails (or passes its timeout, which kills its process tree), the old include is put back,
   atomically, and the switch fails with nginx's own words (its stderr lines): the running nginx never saw the
   new file;
3. the reload: `[router.nginx] reload` (e.g. `["systemctl", "reload", "nginx"]`) or `nginx [-p] [-c] -s reload`.
   A reload that fails puts the old include back and reloads nothing (the running nginx still has the old one);
4. confirmation. A reload is asynchronous: `nginx -s reload` only sends SIGHUP to the master and returns. The
   master then parses the configuration again and, only when that succeeds, starts NEW worker processes with
   it and lets the old ones finish the requests they have in flight (graceful shutdown). So "switched" means:
   the include names the new slot AND the master (PID from its pid file) has started new workers since the
   signal, within `timeout_s`. Every request accepted from then on goes to the new slot; requests in flight
   finish on the old one. A master that starts no new worker within `timeout_s` did not take the
   configuration (its error log says why): the old include is put back, nginx is reloaded once more so that
   what runs matches the file whatever happened, and the switch fails. When the pid file cannot be read (not
   found, no permission), the switch is recorded as unconfirmed, with the reason, in the journal.

`active()` reads the include back: the marker and the upstream's one server line must agree with the slot
servers (`[router.nginx] blue` / `green` as HOST:PORT, else host and port of `[slots] blue` / `green`).
Anything else (no marker, another upstream, two servers, a server of neither slot, a marker that names one
slot while the server line is the other's) is an error that says what the file holds: the runbook never
guesses where traffic goes.

Paths: `include`, `prefix` and a relative `nginx` path are relative to the project root (the folder the
runbook runs nginx in); a relative `conf` is relative to `prefix` when it is set (as nginx reads `-c`), else
to the project root. The driver passes absolute paths to nginx.

Plain Python, no pytest import. `settings_problems` is what preflight reports.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from drivers.base import DriverError, plain_error
from drivers.commands import CommandMissing, CommandResult, resolve_program, run_argv
from drivers.config import Environment

__all__ = [
    "MARKER",
    "SLOTS",
    "Nginx",
    "NginxSettings",
    "nginx_settings",
    "parse_include",
    "render_include",
    "settings_problems",
    "write_atomically",
]

SLOTS = ("blue", "green")
MARKER = "# mcms-runbook live slot:"
KEEPALIVE = (
    16  # idle keep-alive connections per worker to the live slot (used when the proxy speaks HTTP/1.1)
)
_POLL_S = 0.01
_HOST_PORT = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):([0-9]{1,5})")
_UPSTREAM_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_UPSTREAM_BLOCK = re.compile(r"\bupstream\s+([^\s{]+)\s*\{([^{}]*)\}")
_COMMENT = re.compile(r"#[^\n]*")


# --- settings ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NginxSettings:
    """[router.nginx] with every path resolved and the slot servers derived."""

    source: str  # the environment file, for messages
    include: Path
    nginx: str  # as written: a name on PATH or a path
    prefix: Path | None
    conf: Path | None
    reload: tuple[str, ...]  # empty = nginx [-p] [-c] -s reload
    upstream: str
    servers: Mapping[str, str]  # slot -> HOST:PORT
    timeout_s: float
    root: Path  # where nginx and the reload command run


def _path(root: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else root / path


def slot_server(env: Environment, slot: str) -> tuple[str, str]:
    """The HOST:PORT nginx sends `slot`'s traffic to and the key it came from; ("", why) when there is none."""
    own = getattr(env.router.nginx, slot).strip()
    if own:
        return own, f"[router.nginx] {slot}"
    url = getattr(env.slots, slot)
    if not url:
        return "", f"[router.nginx] {slot}"
    parts = urlsplit(url)
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        return "", f"[slots] {slot}"
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{port}", f"[slots] {slot}"


def _server_problem(value: str) -> str | None:
    m = _HOST_PORT.fullmatch(value)
    if m is None:
        return (
            f'expected HOST:PORT (e.g. "10.0.0.12:8080" or "[::1]:8080"), got "{value}": it is written into '
            "the nginx include as it stands, so nothing else is accepted"
        )
    if not 0 < int(m.group(1)) < 65536:
        return f'expected a port from 1 to 65535, got "{value}"'
    return None


def settings_problems(env: Environment, root: Path) -> list[str]:
    """Every problem of [router.nginx] for a run that switches through nginx, each naming the file and the key.

    Checks what can be checked without running nginx: the include (set, its folder writable, the file there),
    the nginx binary and the reload command's program, prefix and conf, the upstream name and the slot servers.
    `nginx -t` itself runs in PRE (`Nginx.check`).
    """
    return [*_include_problems(env, root), *_program_problems(env, root), *_server_problems(env)]


def _include_problems(env: Environment, root: Path) -> list[str]:
    cfg, src = env.router.nginx, str(env.source)
    if not cfg.include.strip():
        return [
            f'{src}: [router.nginx] include: required for [drivers] router = "nginx": the file that holds the live '
            "slot's upstream block, included by the nginx configuration (e.g. /etc/nginx/conf.d/mcms-live.conf)"
        ]
    found: list[str] = []
    include = _path(root, cfg.include)
    folder = include.parent
    if not folder.is_dir():
        found.append(f'{src}: [router.nginx] include = "{cfg.include}": its folder {folder} does not exist')
    elif not os.access(folder, os.W_OK | os.X_OK):
        found.append(
            f'{src}: [router.nginx] include = "{cfg.include}": its folder {folder} is not writable by this '
            "user: the switch writes the new include there first (temporary file + rename)"
        )
    if folder.is_dir() and not include.is_file():
        seen = "it is a folder" if include.is_dir() else "no such file"
        found.append(
            f'{src}: [router.nginx] include = "{cfg.include}": expected an existing file ({seen}): write the '
            f'live slot\'s block there first, the marker line "{MARKER} blue" then '
            f'"upstream {cfg.upstream} {{ server HOST:PORT; }}" (the runbook reads the live slot from it)'
        )
    return found


def _program_problems(env: Environment, root: Path) -> list[str]:
    cfg, src = env.router.nginx, str(env.source)
    found: list[str] = []
    try:
        resolve_program(cfg.nginx, cwd=root, what=f"{src}: [router.nginx] nginx")
    except CommandMissing as exc:
        hint = (
            "; Debian installs it as /usr/sbin/nginx (apt-get install nginx), which is not on every user's "
            'PATH: write nginx = "/usr/sbin/nginx"'
            if "/" not in cfg.nginx
            else ""
        )
        found.append(f"{exc}{hint}")
    prefix = _path(root, cfg.prefix) if cfg.prefix else None
    if prefix is not None and not prefix.is_dir():
        found.append(f'{src}: [router.nginx] prefix = "{cfg.prefix}": expected an existing folder ({prefix})')
    if cfg.conf:
        conf = _path(prefix or root, cfg.conf)
        if not conf.is_file():
            found.append(f'{src}: [router.nginx] conf = "{cfg.conf}": expected an existing file ({conf})')
    if cfg.reload and not cfg.reload[0].strip():
        found.append(f"{src}: [router.nginx] reload[0]: the program is empty")
    elif cfg.reload:
        try:
            resolve_program(cfg.reload[0], cwd=root, what=f"{src}: [router.nginx] reload[0]")
        except CommandMissing as exc:
            found.append(str(exc))
    return found


def _server_problems(env: Environment) -> list[str]:
    cfg, src = env.router.nginx, str(env.source)
    found: list[str] = []
    if not _UPSTREAM_NAME.fullmatch(cfg.upstream):
        found.append(
            f'{src}: [router.nginx] upstream = "{cfg.upstream}": expected a name of letters, digits, "_", "." '
            'or "-" (the upstream block the include defines and proxy_pass names)'
        )
    servers: dict[str, str] = {}
    for slot in SLOTS:
        server, key = slot_server(env, slot)
        if not server:
            found.append(
                f'{src}: {key}: no server for {slot}: set [router.nginx] {slot} = "HOST:PORT" (where nginx sends '
                f"{slot}'s traffic) or [slots] {slot} = its URL"
            )
            continue
        problem = _server_problem(server)
        if problem:
            found.append(f"{src}: {key}: {problem}")
        else:
            servers[slot] = server
    if len(servers) == 2 and servers["blue"].lower() == servers["green"].lower():
        found.append(
            f"{src}: [router.nginx] blue and green are the same server ({servers['blue']}): the include could "
            "not tell which slot is live"
        )
    return found


def nginx_settings(env: Environment, root: Path) -> NginxSettings:
    """[router.nginx] resolved; DriverError with every problem when it cannot be used."""
    problems = settings_problems(env, root)
    if problems:
        raise DriverError("the nginx router cannot be used: " + "; ".join(problems))
    cfg = env.router.nginx
    prefix = _path(root, cfg.prefix) if cfg.prefix else None
    return NginxSettings(
        source=str(env.source),
        include=_path(root, cfg.include),
        nginx=cfg.nginx,
        prefix=prefix,
        conf=_path(prefix or root, cfg.conf) if cfg.conf else None,
        reload=tuple(cfg.reload),
        upstream=cfg.upstream,
        servers={slot: slot_server(env, slot)[0] for slot in SLOTS},
        timeout_s=cfg.timeout_s,
        root=root,
    )


# --- the include file ----------------------------------------------------------------------------------


def render_include(upstream: str, slot: str, server: str) -> str:
    """The include that sends the public address to `slot` (whose server is HOST:PORT `server`)."""
    return (
        "# Written by the MCMS DR runbook (nginx router driver) at every switch: the live slot's upstream.\n"
        "# Change [router.nginx] in the environment file, not this file.\n"
        f"{MARKER} {slot}\n"
        f"upstream {upstream} {{\n"
        f"    server {server};\n"
        f"    keepalive {KEEPALIVE};\n"
        "}\n"
    )


def _servers_of(body: str) -> list[str]:
    found = []
    for statement in body.split(";"):
        words = statement.split()
        if words and words[0] == "server":
            found.append(" ".join(words[1:]))
    return found


def parse_include(text: str, *, path: Path, upstream: str, servers: Mapping[str, str]) -> str:
    """The live slot the include names; DriverError saying what the file holds when it is not one the runbook
    wrote for these slot servers."""
    where = f"[router.nginx] include {path}"
    names = ", ".join(f"{slot} {servers[slot]}" for slot in SLOTS)
    if not text.strip():
        raise DriverError(f"{where} is empty: it must hold the live slot's upstream block ({MARKER} ...)")
    markers = [
        line.strip()[len(MARKER) :].strip() for line in text.splitlines() if line.strip().startswith(MARKER)
    ]
    code = _COMMENT.sub("", text)
    blocks = _UPSTREAM_BLOCK.findall(code)
    rest = " ".join(_UPSTREAM_BLOCK.sub(" ", code).split())
    held = "; ".join(
        f"upstream {name} with server {', '.join(_servers_of(body)) or 'none'}" for name, body in blocks
    )
    holds = f"it holds {held}" if held else "it holds no upstream block"
    if rest:
        shown = rest if len(rest) <= 80 else rest[:77] + "..."
        raise DriverError(
            f"{where} holds more than the runbook writes ({holds}, and also: {shown}): the driver rewrites this "
            "file at every switch, so nothing else may live in it"
        )
    if not markers:
        raise DriverError(
            f'{where} has no "{MARKER} <slot>" line ({holds}): it was not written by the runbook, or was edited '
            "by hand; the runbook will not guess which slot is live"
        )
    if len(set(markers)) > 1:
        raise DriverError(f"{where} names more than one live slot ({', '.join(markers)}; {holds})")
    slot = markers[0]
    if slot not in SLOTS:
        raise DriverError(f'{where} names "{slot}" as the live slot ({holds}); expected blue or green')
    ours = [body for name, body in blocks if name == upstream]
    if len(ours) != 1:
        others = f"; {holds}" if blocks else ""
        count = "no" if not ours else f"{len(ours)}"
        raise DriverError(
            f"{where} names {slot} live but has {count} upstream {upstream} block{'s' if len(ours) > 1 else ''}"
            f'{others} ([router.nginx] upstream = "{upstream}")'
        )
    found = _servers_of(ours[0])
    if len(found) != 1:
        raise DriverError(
            f"{where} names {slot} live but its upstream {upstream} has {len(found)} server lines "
            f"({', '.join(found) or 'none'}); the runbook writes exactly one, the live slot's ({names})"
        )
    server = found[0]
    if server.lower() == servers[slot].lower():
        return slot
    owner = next((s for s in SLOTS if servers[s].lower() == server.lower()), None)
    if owner is not None:
        raise DriverError(
            f"{where} disagrees with itself: its marker names {slot} live, but its server line {server} is "
            f"{owner}'s server ({names}); fix the file (or switch by hand) before the runbook acts"
        )
    raise DriverError(
        f"{where} names {slot} live, but its server line {server} is neither slot's server ({names}): the file "
        "was edited by hand or written for other servers"
    )


def _fsync_folder(folder: Path) -> None:
    if sys.platform == "win32":
        return
    with suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomically(path: Path, text: str, mode: int | None = None) -> None:
    """Replace `path` by `text` so that a reader sees the old file or the new one, never a part: a temporary
    file in the same folder (its name ends in .tmp), fsynced, then renamed over `path`; the folder is fsynced."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_folder(path.parent)


# --- nginx itself --------------------------------------------------------------------------------------


_LOG_PREFIX = re.compile(r"^(?:nginx: )?(?:\d{4}/\d\d/\d\d \d\d:\d\d:\d\d )?(\[\w+\] )?(?:\d+#\d+: )?")


def _nginx_words(result: CommandResult) -> str:
    """nginx's own message: its stderr (then stdout) lines, each as "[emerg] what, in file:line", without the
    "nginx: " or the time and PID#TID that start them."""
    text = result.stderr.strip() or result.stdout.strip()
    lines = [_LOG_PREFIX.sub(r"\1", line.strip()) for line in text.splitlines() if line.strip()]
    return "; ".join(lines[-8:])


def _master_workers(pid: int) -> set[int] | None:
    """The PIDs of the processes the nginx master `pid` runs (workers, cache helpers); None when they cannot be
    seen (the master is gone, or this user may not look)."""
    import psutil

    try:
        master = psutil.Process(pid)
        if master.status() == psutil.STATUS_ZOMBIE:
            return None
        return {child.pid for child in master.children()}
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return None


def _still_accepting(pids: set[int]) -> set[int]:
    """Of the old workers, those still taking new connections: neither gone nor "worker process is shutting
    down" (the title a worker sets in the same step as it closes its listening sockets)."""
    import psutil

    left = set()
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE or "shutting down" in " ".join(proc.cmdline()):
                continue
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        except psutil.AccessDenied:
            pass
        left.add(pid)
    return left


class Nginx:
    """One nginx, as [router.nginx] describes it: the include, `nginx -t`, the reload and its confirmation."""

    def __init__(self, settings: NginxSettings, redact: Callable[[str], str] = lambda text: text) -> None:
        self.settings = settings
        self.redact = redact
        self._compiled: dict[str, str] | None = None

    # -- commands

    def _base_argv(self) -> list[str]:
        s = self.settings
        argv = [s.nginx]
        if s.prefix is not None:
            argv += ["-p", str(s.prefix)]
        if s.conf is not None:
            argv += ["-c", str(s.conf)]
        return argv

    def _run(self, argv: list[str], verb: str) -> CommandResult:
        return run_argv(
            argv, timeout_s=self.settings.timeout_s, redact=self.redact, cwd=self.settings.root, verb=verb
        )

    def _programs(self) -> None:
        """Look the programs up before anything is written: a missing nginx must not leave a new include."""
        s = self.settings
        resolve_program(s.nginx, cwd=s.root, what=f"{s.source}: [router.nginx] nginx")
        if s.reload:
            resolve_program(s.reload[0], cwd=s.root, what=f"{s.source}: [router.nginx] reload[0]")

    def test(self) -> CommandResult:
        """`nginx -t`: the whole configuration as nginx would load it now; DriverError in nginx's words."""
        argv = [*self._base_argv(), "-t"]
        result = self._run(argv, "nginx -t")
        if not result.passed:
            words = _nginx_words(result)
            raise DriverError(
                f"nginx -t {result.describe()}" + (f": {self.redact(words)}" if words else " (no output)")
            )
        return result

    def reload_argv(self) -> list[str]:
        return list(self.settings.reload) if self.settings.reload else [*self._base_argv(), "-s", "reload"]

    # -- the master process

    def _compiled_in(self) -> dict[str, str]:
        """nginx -V's --prefix, --conf-path and --pid-path (asked once)."""
        if self._compiled is None:
            found: dict[str, str] = {}
            with suppress(DriverError):
                result = self._run([self.settings.nginx, "-V"], "nginx -V")
                for key in ("prefix", "conf-path", "pid-path"):
                    m = re.search(rf"--{key}=(\S+)", result.stderr + result.stdout)
                    if m:
                        found[key] = m.group(1)
            self._compiled = found
        return self._compiled

    def pid_file(self) -> Path:
        """Where the master writes its PID: the conf's top-level `pid` directive, else nginx's compiled-in path;
        a relative one is relative to the prefix."""
        s = self.settings
        compiled = self._compiled_in()
        prefix = s.prefix or Path(compiled.get("prefix", "/usr/local/nginx"))
        conf = s.conf or _path(prefix, compiled.get("conf-path", "conf/nginx.conf"))
        value = compiled.get("pid-path", "logs/nginx.pid")
        with suppress(OSError, UnicodeDecodeError):
            code = _COMMENT.sub("", conf.read_text(encoding="utf-8"))
            depth, statement = 0, ""
            for char in code:
                if char == "{":
                    depth, statement = depth + 1, ""
                elif char == "}":
                    depth, statement = depth - 1, ""
                elif char == ";":
                    words = statement.split()
                    if depth == 0 and len(words) == 2 and words[0] == "pid":
                        value = words[1].strip("\"'")
                    statement = ""
                else:
                    statement += char
        return _path(prefix, value)

    def master_pid(self) -> tuple[int | None, str]:
        """The running master's PID, or None and why not."""
        path = self.pid_file()
        try:
            text = path.read_text(encoding="ascii").strip()
        except OSError as exc:
            return None, f"cannot read nginx's pid file {path}: {plain_error(exc)}"
        if not text.isdigit():
            return None, f"nginx's pid file {path} holds no PID"
        pid = int(text)
        if _master_workers(pid) is None:
            return (
                None,
                f"nginx's pid file {path} names PID {pid}, which is not running (or not visible to this user)",
            )
        return pid, ""

    # -- the verbs

    def read(self) -> str:
        path = self.settings.include
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise DriverError(
                f"[router.nginx] include {path} does not exist: it must hold the live slot's upstream block"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise DriverError(f"cannot read [router.nginx] include {path}: {plain_error(exc)}") from None

    def active(self) -> str:
        s = self.settings
        return parse_include(self.read(), path=s.include, upstream=s.upstream, servers=s.servers)

    def check(self) -> dict[str, Any]:
        """PRE, read-only: `nginx -t` passes on the configuration as it is, and the include names a live slot."""
        result = self.test()
        live = self.active()
        pid, why = self.master_pid()
        return {
            "nginx_t": self.redact(_nginx_words(result)),
            "include": str(self.settings.include),
            "live": live,
            "master_pid": pid,
            **({"master": why} if why else {}),
        }

    def _restore(self, old: str, mode: int | None) -> str:
        """Put the old include back (atomically); what happened, in words."""
        path = self.settings.include
        try:
            write_atomically(path, old, mode)
        except OSError as exc:
            return (
                f"putting the previous include back in {path} FAILED ({plain_error(exc)}): restore it by hand"
            )
        return f"the previous include was put back in {path}"

    def switch(self, to: str) -> dict[str, Any]:
        """Write, test, reload, confirm (module docstring); what nginx said, for the journal."""
        s = self.settings
        path = s.include
        self._programs()
        old = self.read()
        before = parse_include(old, path=path, upstream=s.upstream, servers=s.servers)
        try:
            mode: int | None = path.stat().st_mode & 0o7777
        except OSError:
            mode = None
        new = render_include(s.upstream, to, s.servers[to])
        try:
            write_atomically(path, new, mode)
        except OSError as exc:
            raise DriverError(
                f"cannot write the new include {path} ({plain_error(exc)}): nothing changed, {before} stays live"
            ) from None
        try:
            tested = self.test()
        except DriverError as exc:
            restored = self._restore(old, mode)
            raise DriverError(
                f"nginx rejected the switch to {to}: {exc}; {restored}, nginx was not reloaded and {before} "
                "stays live"
            ) from None
        pid, why = self.master_pid()
        workers = _master_workers(pid) if pid is not None else None
        signalled = time.monotonic()
        reload_argv = self.reload_argv()
        reloaded = self._run(reload_argv, "nginx reload")
        if not reloaded.passed:
            restored = self._restore(old, mode)
            words = _nginx_words(reloaded)
            raise DriverError(
                f"the nginx reload ({' '.join(reload_argv)}) {reloaded.describe()}"
                + (f": {self.redact(words)}" if words else "")
                + f"; {restored} and nothing was reloaded: {before} stays live"
            )
        detail: dict[str, Any] = {
            "include": str(path),
            "server": s.servers[to],
            "nginx_t": self.redact(_nginx_words(tested)),
            "reload": reload_argv,
            "reload_s": reloaded.duration_s,
        }
        if pid is None or workers is None:
            detail |= {"confirmed": False, "why_unconfirmed": why or "the nginx master is not running"}
            return detail
        fresh, seconds, problem = self._took(pid, workers, signalled)
        if problem:
            restored = self._restore(old, mode)
            again = self._run(reload_argv, "nginx reload")
            tail = "reloaded again" if again.passed else f"the second reload {again.describe()}"
            raise DriverError(
                f"nginx (master PID {pid}) {problem}: it did not take the configuration that sends traffic to {to} "
                f"(its error log says why); {restored} and nginx was {tail}, so {before} stays live"
            )
        detail |= {"confirmed": True, "master_pid": pid, "new_workers": sorted(fresh),
                   "old_workers": sorted(workers), "confirmed_s": round(seconds, 4)}  # fmt: skip
        return detail

    def _took(self, pid: int, before: set[int], since: float) -> tuple[set[int], float, str]:
        """Wait (up to timeout_s from the signal) until the master runs new workers and every old worker has
        stopped accepting: then each new connection reaches the new configuration. The new workers, the seconds
        from the signal, and what was not seen ("" when all was)."""
        deadline = since + self.settings.timeout_s
        fresh: set[int] = set()
        while True:
            now = _master_workers(pid)
            if now is None:
                return fresh, 0.0, "exited (or could no longer be seen) after the reload"
            fresh = now - before
            accepting = _still_accepting(before & now) if fresh else before
            if fresh and not accepting:
                return fresh, time.monotonic() - since, ""
            if time.monotonic() >= deadline:
                if not fresh:
                    return (
                        fresh,
                        0.0,
                        f"started no new worker process within {self.settings.timeout_s:g} s of the reload",
                    )
                return (
                    fresh,
                    0.0,
                    (
                        f"started new workers, but its old worker(s) {', '.join(map(str, sorted(accepting)))} were "
                        f"still taking connections {self.settings.timeout_s:g} s after the reload"
                    ),
                )
            time.sleep(_POLL_S)
