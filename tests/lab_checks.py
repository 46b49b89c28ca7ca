"""What the project's own tests check on a Lab and on loopback: the version an address really serves, a slot
proven stopped (nothing answers and no process of it runs), and ports proven closed.

A 503 or a 502 is an answer, not a stopped service: `served_version` fails on it, and only `assert_stopped`
says that a slot is stopped, from the connection being refused and from the processes of that slot.
"""

from __future__ import annotations

import json
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lab.procs import ProcessRecord


def closed_port(host: str = "127.0.0.1") -> int:
    """A loopback port where nothing listens: the system just handed it out free, and it was closed again."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def closed_url(host: str = "127.0.0.1") -> str:
    return f"http://{host}:{closed_port(host)}"


def health(url: str, timeout_s: float = 3.0) -> tuple[int, Any]:
    """GET url (no proxy): (HTTP status, JSON body or None). Raises OSError when nothing answers."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout_s) as response:
            status, raw = int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        status, raw = int(exc.code), exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, None


def served_version(base_url: str) -> str:
    """The version a healthy service reports at base_url/health. Anything else fails the test, saying what
    answered: a 503 (an unhealthy release still running) is never read as "stopped"."""
    url = base_url.rstrip("/") + "/health"
    try:
        status, body = health(url)
    except OSError as exc:
        raise AssertionError(
            f"nothing answers at {url} ({exc}); use assert_stopped to check that a slot is stopped"
        ) from None
    version = body.get("version") if isinstance(body, dict) else None
    assert status == 200, f"{url} answered HTTP {status}: {body!r}"
    assert isinstance(version, str), f"{url} answered HTTP 200 without a version: {body!r}"
    return version


def assert_refused(url: str) -> None:
    """Nothing listens at url's host and port: the connection is refused (not timed out, not answered)."""
    parts = urlsplit(url)
    assert parts.hostname, url
    assert parts.port, url
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=3):
            pass
    except ConnectionRefusedError:
        return
    except OSError as exc:
        raise AssertionError(f"{url}: expected the connection to be refused, got {exc}") from None
    raise AssertionError(f"{url}: something still accepts connections there")


def lab_state(lab_root: Path) -> dict[str, Any]:
    state: dict[str, Any] = json.loads((Path(lab_root) / "state.json").read_text(encoding="utf-8"))
    return state


def processes_running_from(releases: Path, slot: str) -> list[tuple[int, list[str]]]:
    """Every process on this machine whose argv names a file in one of the slot's release directories
    (`releases/<slot>-<version>-<n>/`). Linux reads /proc; elsewhere nothing can be seen cheaply and the list
    is empty. Read only: nothing is signalled."""
    proc = Path("/proc")
    if not sys.platform.startswith("linux") or not proc.is_dir():
        return []

    def in_slot_release(arg: str) -> bool:
        path = Path(arg)
        parts = path.relative_to(releases).parts if path.is_relative_to(releases) else ()
        return bool(parts) and parts[0].startswith(f"{slot}-")

    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        argv = [part.decode(errors="replace") for part in raw.split(b"\0")[:-1]]
        if any(in_slot_release(arg) for arg in argv):
            found.append((int(entry.name), argv))
    return found


def assert_stopped(lab_root: Path, slot: str) -> None:
    """The Lab's slot is stopped: its own address refuses connections, no process recorded for it in the Lab's
    state.json is alive, and no process on this machine runs from one of the slot's release directories."""
    state = lab_state(lab_root)
    node = state["nodes"][slot]
    assert_refused(node["url"])
    records = [ProcessRecord.from_json(r) for r in (node.get("processes") or {}).values()]
    alive = [f"{r.name} (pid {r.pid})" for r in records if r.alive()]
    assert not alive, f"slot {slot}: state.json records live processes {alive}"
    running = processes_running_from(Path(state["root"]) / "releases", slot)
    assert not running, f"slot {slot}: processes still run from its releases: {running}"
