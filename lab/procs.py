"""Process helpers for the Lab supervisor: start, identify, wait for and stop child processes by PID.

Processes are never found or killed by name. A PID read back from state.json may have been reused by an
unrelated program since, so before signalling a process this Python did not start, its command line is
compared with the argv recorded when it was started (Linux: /proc; other POSIX: ps; Windows: image path,
best effort).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lab import httpc

FORBIDDEN_PORT = 2024  # taken by the workplace's own tooling; the Lab never binds it
_children: dict[int, subprocess.Popen[bytes]] = {}
_handed_out: set[int] = set()


class LabError(RuntimeError):
    """The Lab could not do what was asked; the message says why and carries the relevant log tail."""


@dataclass(frozen=True)
class ProcessRecord:
    name: str
    pid: int
    argv: tuple[str, ...]
    log: Path
    started_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pid": self.pid,
            "argv": list(self.argv),
            "log": str(self.log),
            "started_at": self.started_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProcessRecord:
        return cls(
            name=str(data["name"]),
            pid=int(data["pid"]),
            argv=tuple(str(a) for a in data["argv"]),
            log=Path(data["log"]),
            started_at=float(data["started_at"]),
        )

    def alive(self) -> bool:
        return pid_alive(self.pid) and is_ours(self.pid, self.argv)


def python_executable() -> str:
    # On Windows a venv's python.exe is a launcher that runs the base interpreter as a child: terminating
    # the launcher's PID would leave the real process behind. The Lab's code needs only the standard library.
    if sys.platform == "win32":
        return str(getattr(sys, "_base_executable", None) or sys.executable)
    return sys.executable


def python_argv(script: Path, *args: str) -> list[str]:
    """-I -S: no user site, no site-packages, no PYTHON* variables; faster start and nothing leaks in."""
    return [python_executable(), "-I", "-S", "-B", "-u", str(script), *args]


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) that arrives between a spawn and its record in state.json, and deliver it right
    after: a KeyboardInterrupt in between would leave a process that no record names (nobody could stop it by
    PID). Only in the main thread, where Python runs signal handlers; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held:
            if callable(previous):
                previous(signal.SIGINT, None)  # the handler that owned Ctrl-C: pytest's, or the runbook's
            elif previous != signal.SIG_IGN:
                raise KeyboardInterrupt


def spawn(name: str, argv: Sequence[str], log: Path, cwd: Path | None = None) -> ProcessRecord:
    """Start argv detached in its own session/process group, output appended to log, so it can outlive us."""
    log.parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().astimezone().isoformat(timespec="milliseconds")
    with log.open("ab") as out:
        out.write(f"{stamp} lab starting {name}: {list(argv)}\n".encode())
        out.flush()
        if sys.platform == "win32":
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                creationflags=subprocess.CREATE_NEW_PROCESS_GROUP,
            )
        else:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,
            )
    _children[proc.pid] = proc
    return ProcessRecord(name=name, pid=proc.pid, argv=tuple(argv), log=log, started_at=time.time())


def exit_code(pid: int) -> int | None:
    child = _children.get(pid)
    return None if child is None else child.poll()


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    if sys.platform == "win32":
        return _win_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    # An orphan nobody reaps (PID 1 in some containers does not) still answers kill(pid, 0).
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def command_line(pid: int) -> list[str] | None:
    """The argv of a running process where the platform shows it cheaply; None where it does not."""
    if sys.platform.startswith("linux"):
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return [os.fsdecode(part) for part in raw.split(b"\0")[:-1]]
    return None


def is_ours(pid: int, argv: Sequence[str]) -> bool:
    """Whether pid still runs the command we recorded; a reused PID must never be signalled."""
    if pid in _children:
        return True
    if sys.platform.startswith("linux"):
        return command_line(pid) == list(argv)
    if sys.platform == "win32":
        image = _win_image(pid)
        return image is not None and Path(image).name.lower() == Path(argv[0]).name.lower()
    try:
        shown = subprocess.run(
            ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, timeout=5, check=False
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return False
    return bool(shown) and all(arg in shown for arg in argv[1:])


def stop_pid(pid: int, timeout: float = 10.0, argv: Sequence[str] | None = None) -> bool:
    """Stop a process gracefully, then forcibly. True when it was running and has now exited.

    A PID this Python did not start is signalled only when ``argv`` is given and still matches its command
    line; otherwise it is left alone and False is returned (whatever runs under that PID is not ours).
    """
    if not pid_alive(pid):
        _children.pop(pid, None)
        return False
    if pid not in _children and (argv is None or not is_ours(pid, argv)):
        return False
    graceful = min(timeout, 3.0) if sys.platform == "win32" else timeout
    _request_stop(pid)
    if _wait_gone(pid, graceful):
        return True
    if pid not in _children and argv is not None and not is_ours(pid, argv):
        return True
    _force_stop(pid)
    if _wait_gone(pid, 5.0):
        return True
    raise LabError(f"process {pid} is still running after a forced stop")


def _request_stop(pid: int) -> None:
    try:
        if sys.platform == "win32":
            # Our children run in their own process group: CTRL_BREAK reaches them as SIGBREAK.
            os.kill(pid, signal.CTRL_BREAK_EVENT)
        else:
            os.kill(pid, signal.SIGTERM)
    except OSError:
        _force_stop(pid)


def _force_stop(pid: int) -> None:
    child = _children.get(pid)
    try:
        if child is not None:
            child.kill()
        elif sys.platform == "win32":
            os.kill(pid, signal.SIGTERM)  # TerminateProcess on Windows
        else:
            os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _wait_gone(pid: int, timeout: float) -> bool:
    child = _children.get(pid)
    if child is not None:
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        _children.pop(pid, None)
        return True
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def _win_alive(pid: int) -> bool:
    if sys.platform != "win32":
        return False
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.OpenProcess.restype = wintypes.HANDLE
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return ctypes.get_last_error() == 5  # ERROR_ACCESS_DENIED: exists, owned by someone else
    try:
        code = wintypes.DWORD()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True
        return code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


def _win_image(pid: int) -> str | None:
    if sys.platform != "win32":
        return None
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.OpenProcess.restype = wintypes.HANDLE
    handle = kernel32.OpenProcess(0x1000, False, pid)
    if not handle:
        return None
    try:
        size = wintypes.DWORD(32768)
        buf = ctypes.create_unicode_buffer(size.value)
        if not kernel32.QueryFullProcessImageNameW(handle, 0, buf, ctypes.byref(size)):
            return None
        return buf.value
    finally:
        kernel32.CloseHandle(handle)


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now on host; never 2024, never one already handed out by this process."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(200):
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port != FORBIDDEN_PORT and port not in _handed_out:
            _handed_out.add(port)
            return port
    raise LabError(f"no free port found on {host}")


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            data = fh.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"(no log at {path}: {exc})"
    return "\n".join(data.splitlines()[-lines:])


def describe_exit(record: ProcessRecord) -> str:
    code = exit_code(record.pid)
    how = "exited" if code is None else f"exited with code {code}"
    return f"{record.name} (pid {record.pid}) {how}; last lines of {record.log}:\n{log_tail(record.log)}"


def wait_http(
    url: str,
    timeout: float,
    predicate: Callable[[httpc.HttpReply], bool] | None = None,
    *,
    watch: Sequence[ProcessRecord] = (),
    interval: float = 0.02,
) -> float:
    """Poll url until predicate(reply) holds (any HTTP answer when None); return the seconds waited.

    Raises LabError at the deadline, or at once when a watched process has exited, with its log tail.
    """
    started = time.monotonic()
    deadline = started + timeout
    parts = urlsplit(url)
    address = (parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80))
    last = "no answer yet"
    while True:
        for record in watch:
            if not pid_alive(record.pid):
                raise LabError(f"{url} never became ready: {describe_exit(record)}")
        # A short connect first: Windows retries a refused loopback connect for about 2 s, which would
        # otherwise add seconds to every start that polls before the server has bound its port.
        if port_open(*address, timeout=0.25):
            try:
                reply = httpc.get(url, timeout=max(0.25, min(2.0, deadline - time.monotonic())))
            except OSError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if predicate is None or predicate(reply):
                    return time.monotonic() - started
                # One line: the answer ends up in a "blocked by" reason and the report's headline.
                last = f"HTTP {reply.status}: {' '.join(reply.text.split())[:300]}"
        else:
            last = f"nothing listening on {address[0]}:{address[1]}"
        if time.monotonic() >= deadline:
            tails = "".join(f"\nlast lines of {r.log}:\n{log_tail(r.log)}" for r in watch)
            raise LabError(f"{url} not ready after {timeout:.1f} s (last answer: {last}){tails}")
        time.sleep(interval)
