"""A pytest plugin for tests/test_iis_contract.py: record every name lookup and connection, stop after preflight.

    PYTHONPATH=tests/iis_linux pytest -p preflight_guard ...   (MCMS_NET_GUARD_LOG=FILE)

Every host the runbook process resolves or connects to is appended to $MCMS_NET_GUARD_LOG (one JSON line); a host
outside 127.0.0.0/8 and ::1 is refused (OSError) before any packet leaves, so an example host such as
mcms-stage.corp.example can never be looked up, and the test can prove it was not even tried. When preflight
passed (no usage error from the runbook's collection hook) and this is not a plan-only run, the session stops
there with exit code 0 and the line PREFLIGHT PASSED: nothing after preflight (the evidence bundle, PRE, the
phases) runs.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from collections.abc import Generator
from typing import Any

import pytest

_real_getaddrinfo = socket.getaddrinfo
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _loopback(host: object) -> bool:
    if host is None:
        return True  # a passive lookup (bind to all): no name sent anywhere
    name = host.decode() if isinstance(host, bytes) else str(host)
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _record(what: str, host: object) -> None:
    path = os.environ.get("MCMS_NET_GUARD_LOG", "")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(json.dumps({"what": what, "host": repr(host), "loopback": _loopback(host)}) + "\n")
    if not _loopback(host):
        raise OSError(f"preflight_guard: {what} of non-loopback host {host!r} refused")


def _getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    _record("getaddrinfo", host)
    return _real_getaddrinfo(host, *args, **kwargs)


def _gethostbyname(host: str) -> str:
    _record("gethostbyname", host)
    return str(_real_getaddrinfo(host, None)[0][4][0])


def _gethostbyname_ex(host: str) -> Any:
    _record("gethostbyname_ex", host)
    raise OSError("preflight_guard: gethostbyname_ex is not allowed")


def _address_host(address: Any) -> object:
    return address[0] if isinstance(address, tuple) else None  # AF_UNIX paths have no host


def _connect(self: socket.socket, address: Any) -> None:
    _record("connect", _address_host(address))
    _real_connect(self, address)


def _connect_ex(self: socket.socket, address: Any) -> int:
    _record("connect", _address_host(address))
    return _real_connect_ex(self, address)


socket.getaddrinfo = _getaddrinfo
socket.gethostbyname = _gethostbyname
socket.gethostbyname_ex = _gethostbyname_ex
socket.socket.connect = _connect  # type: ignore[method-assign,assignment]
socket.socket.connect_ex = _connect_ex  # type: ignore[method-assign,assignment]


@pytest.hookimpl(wrapper=True)
def pytest_collection_finish(session: pytest.Session) -> Generator[None, None, None]:
    yield  # the runbook's preflight runs here; a problem is a UsageError that passes through (exit 4)
    config = session.config
    if config.getoption("runbook_plan", False) or config.option.collectonly:
        return
    from plugins.state import run_key

    run = config.stash.get(run_key, None)
    flow = getattr(run, "flow", None)
    if run is not None and flow is not None:
        pytest.exit(f"PREFLIGHT PASSED: the {flow} flow on {run.env.name}; stopped before anything ran", 0)
