"""The Lab behind a real nginx (`[lab] router = "nginx"`): Debian's nginx, unprivileged, as the public address.

Instead of the built-in router (lab/router.py), the Lab of topology bluegreen runs

    nginx -p <lab>/nginx -c nginx.conf -e <lab>/nginx/error.log

in the foreground (`daemon off`, so the PID the Lab spawned is nginx's master), listening on a free loopback
port, with its pid file, logs and temporary folders in `<lab>/nginx/`. Its configuration proxies the public
address to the upstream `mcms_live`, which lives in the include `<lab>/nginx/mcms-live.conf`, written here in the
nginx router driver's own format (drivers/nginx.py) with blue live; from then on only that driver switches it.

What the public address does, as the built-in router does it: requests go to the live slot, requests in flight
finish where they started (nginx's graceful reload), HTTP/1.1 keep-alive to the clients and to the slots,
`X-Forwarded-For` / `-Proto` / `-Host` towards the slot, `Via: 1.1 mcms-lab-router (nginx)` both ways (the
token the Lab's releases recognise as "came through the public address", which green-degrades-after-switch
counts from) and `X-Lab-Slot: <slot>` on the response (from the server nginx used). A slot that cannot be
reached answers 502 (504 on a timeout) with `{"error": "bad gateway", "backend": "<slot>"}`.

nginx renames its master process ("nginx: master process <argv>"): `NginxRecord` and `stop_record` know that
title, so a Lab kept by --keep-lab is attached and stopped by PID like every other Lab process, and a process
under a reused PID is still never signalled.

Standard library only, like the rest of the Lab (the include's format comes from drivers/nginx.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab import procs
from lab.procs import LabError, ProcessRecord

UPSTREAM = "mcms_live"
VIA = "1.1 mcms-lab-router (nginx)"
SLOT_HEADER = "X-Lab-Slot"
# Where Debian and most builds put nginx; /usr/sbin is not on every user's PATH.
_SBIN = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")


NGINX_VARIABLE = "RUNBOOK_LAB_NGINX"


def find_nginx() -> tuple[str | None, str]:
    """The nginx binary the Lab runs, or None and why there is none.

    $RUNBOOK_LAB_NGINX names one (it must be an executable file); else nginx on PATH, else where Debian and the
    upstream builds install it (/usr/sbin is not on every user's PATH).
    """
    chosen = os.environ.get(NGINX_VARIABLE)
    if chosen is not None:
        if os.path.isfile(chosen) and os.access(chosen, os.X_OK):
            return chosen, ""
        return None, f"${NGINX_VARIABLE} names {chosen or 'nothing'}, which is not an executable file"
    found = shutil.which("nginx") or next(
        (p for p in _SBIN if os.path.isfile(p) and os.access(p, os.X_OK)), None
    )
    if found is None:
        return (
            None,
            f"no nginx binary was found (not on PATH, not in {', '.join(os.path.dirname(p) for p in _SBIN)})",
        )
    return found, ""


def master_title(argv: Sequence[str]) -> str:
    """What nginx's master shows as its command line once it runs (it rewrites its argv)."""
    return "nginx: master process " + " ".join(argv)


def is_nginx_master(pid: int, argv: Sequence[str]) -> bool:
    """Whether `pid` still runs the nginx started with `argv` (before or after it renamed itself)."""
    return procs.is_ours(pid, argv) or procs.command_line(pid) == [master_title(argv)]


@dataclass(frozen=True)
class NginxRecord(ProcessRecord):
    """The nginx master, recorded like every Lab process; alive while its PID still runs that nginx."""

    def alive(self) -> bool:
        return procs.pid_alive(self.pid) and is_nginx_master(self.pid, self.argv)


def stop_record(record: ProcessRecord, timeout: float) -> bool:
    """Stop a Lab process by PID (procs.stop_pid), knowing nginx's renamed master: True when it was running.

    nginx's master stops its workers itself on SIGTERM; were it killed instead, the workers left in its process
    group (the Lab started it in a session of its own) are killed too.
    """
    title = [master_title(record.argv)]
    if procs.command_line(record.pid) != title:
        return procs.stop_pid(record.pid, timeout, record.argv)
    stopped = procs.stop_pid(record.pid, timeout, title)
    if stopped and sys.platform != "win32":
        with contextlib.suppress(OSError):
            os.killpg(record.pid, 0)  # raises when nothing of the group is left: the usual case
            os.killpg(record.pid, signal.SIGKILL)
    return stopped


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _regex(text: str) -> str:
    return "".join("\\" + c if c in ".[]:" else c for c in text)


class LabNginx:
    """The Lab's nginx: its folder, configuration, include, process and the [router.nginx] keys that drive it."""

    def __init__(self, root: Path, binary: str, host: str, port: int, backends: Mapping[str, str]) -> None:
        self.binary = binary
        self.host = host
        self.port = port
        self.backends = dict(backends)  # slot -> HOST:PORT
        self.dir = Path(root).resolve() / "nginx"
        self.conf = self.dir / "nginx.conf"
        self.include = self.dir / "mcms-live.conf"
        self.pid_file = self.dir / "nginx.pid"
        self.error_log = self.dir / "error.log"
        self.access_log = self.dir / "access.log"

    def __repr__(self) -> str:
        return f"LabNginx({str(self.dir)!r}, port={self.port})"

    @property
    def argv(self) -> list[str]:
        return [self.binary, "-p", str(self.dir), "-c", self.conf.name, "-e", str(self.error_log)]

    def settings(self) -> dict[str, str]:
        """The [router.nginx] keys of this nginx (Environment.with_lab_endpoints fills them in)."""
        return {
            "include": str(self.include),
            "nginx": self.binary,
            "prefix": str(self.dir),
            "conf": str(self.conf),
            "upstream": UPSTREAM,
            **self.backends,
        }

    def configuration(self) -> str:
        d = self.dir
        slot_map = "\n".join(
            f'        "~{_regex(server)}$" {slot};' for slot, server in sorted(self.backends.items())
        )
        temp = "\n".join(
            f"    {kind}_temp_path {d / 'tmp' / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        return f"""# The embedded Lab's public address (lab/nginx.py); written at every Lab start.
daemon off;
worker_processes 1;
pid {self.pid_file};
error_log {self.error_log} notice;
events {{
    worker_connections 1024;
}}
http {{
    server_tokens off;
    log_format lab '$time_iso8601 $remote_addr "$request" $status $body_bytes_sent $request_time '
                   'upstream=$upstream_addr slot=$lab_slot';
    access_log {self.access_log} lab;
{temp}
    keepalive_requests 100000;
    client_max_body_size 32m;
    # The live slot's upstream: rewritten by the nginx router driver (drivers/nginx.py) at every switch.
    include {self.include};
    map $upstream_addr $lab_slot {{
        default "";
{slot_map}
    }}
    server {{
        listen {_address(self.host, self.port)};
        location / {{
            proxy_pass http://{UPSTREAM};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_set_header Via "{VIA}";
            proxy_redirect off;
            proxy_connect_timeout 5s;
            proxy_read_timeout 60s;
            add_header {SLOT_HEADER} $lab_slot always;
            add_header Via "{VIA}" always;
            error_page 502 @bad_gateway;
            error_page 504 @gateway_timeout;
        }}
        location @bad_gateway {{
            default_type application/json;
            add_header {SLOT_HEADER} $lab_slot always;
            return 502 '{{"error": "bad gateway", "backend": "$lab_slot"}}';
        }}
        location @gateway_timeout {{
            default_type application/json;
            add_header {SLOT_HEADER} $lab_slot always;
            return 504 '{{"error": "gateway timeout", "backend": "$lab_slot"}}';
        }}
    }}
}}
"""

    def write_config(self, active: str = "blue") -> None:
        """nginx.conf and the include with `active` live (a fresh Lab starts with blue), before nginx starts."""
        from drivers.nginx import render_include, write_atomically

        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.dir / "tmp" / kind).mkdir(parents=True, exist_ok=True)
        write_atomically(self.conf, self.configuration())
        write_atomically(self.include, render_include(UPSTREAM, active, self.backends[active]), 0o644)
        self.pid_file.unlink(missing_ok=True)

    def spawn(self, log: Path) -> NginxRecord:
        record = procs.spawn("nginx", self.argv, log)
        return NginxRecord(record.name, record.pid, record.argv, record.log, record.started_at)

    def wait_ready(self, record: ProcessRecord, timeout: float) -> float:
        """Until the master wrote its pid file and the public port accepts connections: no request is sent
        (a request through the public address would reach a slot)."""
        started = time.monotonic()
        deadline = started + timeout
        while True:
            if not procs.pid_alive(record.pid):
                raise LabError(
                    f"nginx did not start: {procs.describe_exit(record)}\n"
                    f"last lines of {self.error_log}:\n{procs.log_tail(self.error_log)}"
                )
            with contextlib.suppress(OSError, ValueError):
                if int(self.pid_file.read_text(encoding="ascii").strip()) == record.pid and procs.port_open(
                    self.host, self.port, timeout=0.25
                ):
                    return time.monotonic() - started
            if time.monotonic() >= deadline:
                raise LabError(
                    f"nginx (pid {record.pid}) not serving {_address(self.host, self.port)} after {timeout:.1f} s; "
                    f"last lines of {self.error_log}:\n{procs.log_tail(self.error_log)}"
                )
            time.sleep(0.02)

    def to_json(self) -> dict[str, Any]:
        return {
            "binary": self.binary,
            "host": self.host,
            "port": self.port,
            "backends": self.backends,
            "dir": str(self.dir),
            "conf": str(self.conf),
            "include": str(self.include),
            "pid_file": str(self.pid_file),
            "error_log": str(self.error_log),
            "access_log": str(self.access_log),
        }

    @classmethod
    def from_json(cls, root: Path, data: Mapping[str, Any]) -> LabNginx:
        backends = data["backends"]
        if not isinstance(backends, dict):
            raise TypeError("backends")
        return cls(
            root,
            str(data["binary"]),
            str(data["host"]),
            int(data["port"]),
            {str(k): str(v) for k, v in backends.items()},
        )
