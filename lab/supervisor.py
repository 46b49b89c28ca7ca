"""The embedded Lab: a real MCMS sample on loopback, started and stopped by the runbook suite.

Layout under ``root``::

    artifacts/offline/          MCMS_Setup_<version>.zip + .sha256 (the playbook's offline package output)
    artifacts/offline/logs/     offline log collection path (playbook §3.4)
    logs/deploy/notifications/  the webhook sink's notifications_<date>.jsonl
    logs/app/                   one log per process: <slot>-web.log, <slot>-worker.log
    logs/app/router.log         the router's log (topology bluegreen): start, stop, switches, errors
    releases/<slot>-<version>-<n>/  unzipped releases (disposable, like an IIS site folder)
    data/                       the database and outbox, kept across releases and shared by slots
    shared/                     the "shared drive" the worker mirrors to
    router/state.json           the router's active slot, kept across router restarts (topology bluegreen)
    nginx/                      router "nginx": nginx.conf, the live slot's include, pid file, error/access logs
    state.json                  topology, ports, PIDs with their argv, versions, release dirs, faults, URLs
    prometheus-targets.json     each slot's address with its ``slot`` label, for Prometheus' file_sd_configs

Two topologies:

* ``rollback`` (default): one node, blue, serving CURRENT on the public address; the single-node rollback
  drill stops it and lays out PREVIOUS_STABLE in its place.
* ``bluegreen``: nodes blue and green, each on its own port, behind a router (lab/router.py) on the public
  address. Blue serves PREVIOUS_STABLE and is active; green is empty, the slot that BG-1 deploys CURRENT to.
  ``Lab.router`` switches traffic. The data dir and the shared drive are shared by both slots, like a database.
  With ``router="nginx"`` the public address is a real nginx instead (lab/nginx.py), switched by the nginx router
  driver through its include file; without an nginx binary the Lab falls back to the built-in router and says
  why in ``router_note``.

Every process is tracked by PID and the argv it was started with; nothing is ever stopped by name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any

from lab import httpc, procs
from lab.faults import LAB_FAULTS
from lab.httpc import HttpReply
from lab.nginx import LabNginx, NginxRecord, find_nginx, stop_record
from lab.packages import build_package, check_version, package_name, write_sha256_file
from lab.procs import LabError, ProcessRecord

PREVIOUS_STABLE = "1.0.0"
CURRENT = "1.1.0"
NEXT = "1.2.0"
"""A later release that `Lab.publish` delivers into the offline folder, so a kept Lab can take a second release."""
TOPOLOGIES = ("rollback", "bluegreen")
ROUTERS = ("builtin", "nginx")
"""What serves the public address of topology bluegreen: the built-in router (lab/router.py) or nginx."""
DEGRADE_AFTER_SWITCH_S = 3.0
"""green-degrades-after-switch: seconds from the first request through the router to the first 500."""
QUEUE_BACKLOG_AFTER_SWITCH_S = 1.0
"""green-queue-backlog: seconds from the first request through the router to green's queue starting to grow."""
PROMETHEUS_TARGETS = "prometheus-targets.json"

STATE_SCHEMA = 1
SINK_SCRIPT = Path(__file__).resolve().parent / "sink.py"
ROUTER_SCRIPT = Path(__file__).resolve().parent / "router.py"
_REQUIRED_ENTRIES = ("release.json", "mcms/web.py", "mcms/worker.py")


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@dataclass(frozen=True)
class StepResult:
    """One operator-visible step (stop site, recycle app pool) with what it found and how long it took."""

    name: str
    pid: int | None
    result: str  # "stopped" | "already stopped"
    duration_s: float


@dataclass(frozen=True)
class SwitchResult:
    """What the router answered to a switch; ``duration_s`` is the control call's round trip."""

    active: str
    previous: str
    switched_at: str
    generation: int
    duration_s: float


class RouterClient:
    """The router's control API (loopback only): which slot takes traffic, switching it, counters."""

    def __init__(self, control_url: str, timeout: float = 5.0) -> None:
        self.control_url = control_url
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"RouterClient({self.control_url!r})"

    def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        url = self.control_url + path
        try:
            reply = httpc.request(method, url, json_body=body, timeout=self.timeout)
        except OSError as exc:
            raise LabError(f"the router's control API at {url} is not answering: {exc}") from exc
        try:
            data = reply.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise LabError(f"router: {method} {path} answered HTTP {reply.status}: {reply.text[:300]}")
        if reply.status != 200:
            raise LabError(f"router: {data.get('error') or f'HTTP {reply.status}'}")
        return data

    def state(self) -> dict[str, Any]:
        """``{"active", "backends", "switched_at", "generation"}``."""
        return self._call("GET", "/active")

    def active(self) -> str:
        return str(self.state()["active"])

    def switch(self, to: str) -> SwitchResult:
        """Switch new requests to slot ``to`` at once (requests in flight finish where they started).
        Switching to the active slot changes nothing (same generation, ``previous == active``)."""
        started = time.perf_counter()
        data = self._call("POST", "/switch", {"to": to})
        return SwitchResult(
            active=str(data["active"]),
            previous=str(data["previous"]),
            switched_at=str(data["switched_at"]),
            generation=int(data["generation"]),
            duration_s=round(time.perf_counter() - started, 4),
        )

    def stats(self) -> dict[str, Any]:
        """Requests proxied per slot, router-made errors per slot (``errors``, total ``router_errors``),
        ``in_flight``, ``retries`` (stale keep-alive connections resent), ``rejected`` (malformed requests),
        ``switches``, plus the ``/active`` fields."""
        return self._call("GET", "/stats")


class Node:
    """One slot (blue, later green): a port that stays put, the release laid out there, its two processes."""

    def __init__(self, lab: Lab, slot: str, port: int) -> None:
        self.lab = lab
        self.slot = slot
        self.port = port
        self.release_dir: Path | None = None
        self.processes: dict[str, ProcessRecord] = {}

    def __repr__(self) -> str:
        return f"Node({self.slot!r}, url={self.url!r}, version={self.deployed_version()!r})"

    @property
    def url(self) -> str:
        return _url(self.lab.host, self.port)

    def deployed_version(self) -> str | None:
        """The version of the release laid out on this node, running or not."""
        if self.release_dir is None:
            return None
        try:
            data = json.loads((self.release_dir / "release.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        version = data.get("version") if isinstance(data, dict) else None
        return version if isinstance(version, str) else None

    def is_running(self) -> bool:
        return any(record.alive() for record in self.processes.values())

    def stop(self, timeout: float = 10.0) -> list[StepResult]:
        """Stop the site (web), then recycle the pool (worker), like Stop-WebSite + Stop-WebAppPool."""
        steps = []
        for key, name in (("web", "stop site"), ("worker", "recycle app pool")):
            record = self.processes.get(key)
            started = time.perf_counter()
            stopped = record is not None and procs.stop_pid(record.pid, timeout, record.argv)
            self.processes.pop(key, None)
            steps.append(
                StepResult(
                    name=name,
                    pid=record.pid if record else None,
                    result="stopped" if stopped else "already stopped",
                    duration_s=round(time.perf_counter() - started, 3),
                )
            )
        self.lab.save_state()
        return steps

    def deploy(self, package: Path) -> Path:
        """Unzip package into releases/<slot>-<version>-<n>/ and make it this node's release.

        The package hash is not checked here: verifying it is the runbook's job (its driver does it), and a
        drill must be able to watch what happens when nobody checks.
        """
        if self.is_running():
            raise LabError(f"node {self.slot} is running; stop it before deploying {package.name}")
        try:
            with zipfile.ZipFile(package) as zf:
                names = zf.namelist()
                for name in names:
                    pure = PurePosixPath(name)
                    if pure.is_absolute() or ".." in pure.parts or ":" in name or "\\" in name:
                        raise LabError(f"{package}: unsafe entry {name!r}")
                missing = [n for n in _REQUIRED_ENTRIES if n not in names]
                if missing:
                    raise LabError(f"{package}: not an MCMS package, missing {', '.join(missing)}")
                version = check_version(str(json.loads(zf.read("release.json"))["version"]))
                releases = self.lab.releases_dir
                releases.mkdir(parents=True, exist_ok=True)
                taken = [p.name.rpartition("-")[2] for p in releases.glob(f"{self.slot}-{version}-*")]
                n = 1 + max((int(t) for t in taken if t.isdigit()), default=0)
                target = releases / f"{self.slot}-{version}-{n}"
                partial = releases / f".{target.name}.partial"
                shutil.rmtree(partial, ignore_errors=True)
                zf.extractall(partial)
        except (OSError, zipfile.BadZipFile, KeyError, ValueError) as exc:
            raise LabError(f"cannot deploy {package}: {exc}") from exc
        # Laid out under a temporary name and renamed: a half-unzipped release is never current.
        partial.rename(target)
        self.release_dir = target
        self.lab.save_state()
        return target

    def start(self, timeout: float = 15.0, *, require_healthy: bool = True) -> float:
        """Start the worker, then the web, from the current release; return seconds from spawn to ready.

        Ready means /health answers with this release's version and this worker's heartbeat, and (unless
        ``require_healthy`` is False, for releases built to be unhealthy) status 200 Healthy. On failure both
        processes are stopped and LabError carries the log tails.
        """
        if self.release_dir is None:
            raise LabError(f"nothing is deployed on node {self.slot}")
        if self.is_running():
            raise LabError(f"node {self.slot} is already running")
        version = self.deployed_version()
        if version is None:
            raise LabError(f"{self.release_dir} has no readable release.json")
        lab = self.lab
        app = self.release_dir / "mcms"
        common = ["--data", str(lab.data_dir), "--shared", str(lab.shared_dir), "--node", self.slot]
        worker_argv = procs.python_argv(app / "worker.py", *common)
        web_argv = procs.python_argv(app / "web.py", "--host", lab.host, "--port", str(self.port), *common)
        started = time.monotonic()
        # On record right after each spawn: a runner killed in between leaves nothing state.json does not name.
        with procs.interrupts_deferred():  # a Ctrl-C between spawn and record is delivered after the record
            worker = procs.spawn(
                f"{self.slot}-worker", worker_argv, lab.app_log_dir / f"{self.slot}-worker.log"
            )
            self.processes["worker"] = worker
            lab.save_state()
        with procs.interrupts_deferred():
            web = procs.spawn(f"{self.slot}-web", web_argv, lab.app_log_dir / f"{self.slot}-web.log")
            self.processes["web"] = web
            lab.save_state()

        def ready(reply: HttpReply) -> bool:
            if reply.status not in (200, 503):
                return False
            try:
                health = reply.json()
                worker_pid = health["components"]["worker"]["pid"]
            except (ValueError, KeyError, TypeError):
                return False
            if health.get("version") != version or worker_pid != worker.pid:
                return False
            return not require_healthy or (reply.status == 200 and health.get("status") == "Healthy")

        try:
            procs.wait_http(f"{self.url}/health", timeout, ready, watch=(worker, web))
        except LabError as exc:
            self.stop()
            raise LabError(f"node {self.slot} ({version}) did not start: {exc}") from exc
        return time.monotonic() - started

    def to_json(self) -> dict[str, Any]:
        return {
            "slot": self.slot,
            "port": self.port,
            "url": self.url,
            "release_dir": str(self.release_dir) if self.release_dir else None,
            "version": self.deployed_version(),
            "processes": {key: record.to_json() for key, record in self.processes.items()},
        }


class Lab:
    """The embedded Lab. ``Lab(root, faults).start()`` ... ``stop()``; or ``with Lab(root) as lab:``.

    ``topology`` is ``"rollback"`` (one node on the public address) or ``"bluegreen"`` (blue and green behind
    a router on the public address); see the module docstring.
    """

    def __init__(
        self,
        root: Path,
        faults: Iterable[str] = (),
        host: str = "127.0.0.1",
        topology: str = "rollback",
        *,
        fault_release: str | None = None,
        router: str = "builtin",
    ) -> None:
        # fault_release: the package that carries the release faults, when not the drill's own (a matrix-only
        # run checks what is already serving, so its faults belong in the running release).
        self.fault_release = fault_release
        if router not in ROUTERS:
            raise ValueError(f"unknown Lab router {router!r}; known: {', '.join(ROUTERS)}")
        self.router_requested = router
        # What serves the public address once started (bluegreen): "nginx" only when nginx was found.
        self.router_kind = "builtin"
        self.router_note: str | None = None  # why the built-in router serves although nginx was asked for
        self.nginx: LabNginx | None = None
        self.faults = tuple(faults)
        unknown = [f for f in self.faults if f not in LAB_FAULTS]
        if unknown:
            raise ValueError(
                f"unknown Lab fault(s) {', '.join(map(repr, unknown))}; known: {', '.join(LAB_FAULTS)}"
            )
        if topology not in TOPOLOGIES:
            raise ValueError(f"unknown Lab topology {topology!r}; known: {', '.join(TOPOLOGIES)}")
        self.topology = topology
        self.root = Path(root).resolve()
        self.host = host
        self.packages_dir = self.root / "artifacts" / "offline"
        self.log_dirs = [
            self.packages_dir / "logs",
            self.root / "logs" / "deploy",
            self.root / "logs" / "app",
        ]
        self.notifications_log_dir = self.root / "logs" / "deploy" / "notifications"
        self.app_log_dir = self.root / "logs" / "app"
        self.releases_dir = self.root / "releases"
        self.data_dir = self.root / "data"
        self.shared_dir = self.root / "shared"
        self.state_path = self.root / "state.json"
        self.router_state_path = self.root / "router" / "state.json"
        self.slots: dict[str, Node] = {}
        self.sink: ProcessRecord | None = None
        self.webhook_port: int | None = None
        self.router_process: ProcessRecord | None = None
        self.router_port: int | None = None
        self.router_control_port: int | None = None
        self.status = "new"

    def __repr__(self) -> str:
        return (
            f"Lab({str(self.root)!r}, faults={self.faults!r}, topology={self.topology!r}, "
            f"status={self.status!r})"
        )

    def __enter__(self) -> Lab:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- addresses

    @property
    def public_url(self) -> str:
        """The router's address (bluegreen), or node blue's own (rollback: its port is the public one)."""
        if self.topology == "bluegreen":
            if self.router_port is None:
                raise LabError("the Lab is not started")
            return _url(self.host, self.router_port)
        return self.node("blue").url

    @property
    def router_control_url(self) -> str:
        if self.topology != "bluegreen":
            raise LabError(
                f"the {self.topology} topology has no router (start the Lab with topology='bluegreen')"
            )
        if self.nginx is not None:
            raise LabError(
                f"the Lab's public address is nginx (include {self.nginx.include}): it has no control API; "
                'switch it with the nginx router driver ([drivers] router = "nginx")'
            )
        if self.router_control_port is None:
            raise LabError("the Lab is not started")
        return _url(_loopback(self.host), self.router_control_port)

    @property
    def router(self) -> RouterClient:
        """The router's control API; topology bluegreen only (LabError otherwise)."""
        return RouterClient(self.router_control_url)

    @property
    def webhook_url(self) -> str:
        if self.webhook_port is None:
            raise LabError("the Lab is not started")
        return f"{_url(self.host, self.webhook_port)}/webhook"

    def node(self, slot: str = "blue") -> Node:
        try:
            return self.slots[slot]
        except KeyError:
            raise LabError(
                f"no slot {slot!r} (slots: {', '.join(self.slots) or 'none, not started'})"
            ) from None

    def urls(self) -> dict[str, str]:
        urls = {"public": self.public_url}
        urls |= {slot: node.url for slot, node in self.slots.items()}
        if self.topology == "bluegreen" and self.nginx is None:
            urls["router_control"] = self.router_control_url
        urls["webhook"] = self.webhook_url
        return urls

    def package(self, version: str) -> Path:
        return self.packages_dir / package_name(version)

    def publish(self, version: str = NEXT) -> Path:
        """Deliver a further release into the offline folder, as a build pipeline would (no fault in it)."""
        path = build_package(version, self.packages_dir)
        self.save_state()
        return path

    @property
    def drill_version(self) -> str:
        """The version this topology's drill deploys and then checks: PREVIOUS_STABLE for the rollback drill
        (RB-3), CURRENT for Blue/Green (BG-1 to green)."""
        return CURRENT if self.topology == "bluegreen" else PREVIOUS_STABLE

    # -- life cycle

    def start(self, timeout: float = 15.0) -> None:
        """Build the offline packages, start the webhook sink and the topology's nodes.

        rollback: node blue serving CURRENT on the public address. bluegreen: node blue serving PREVIOUS_STABLE,
        node green with nothing deployed, and the router on the public address with blue active.
        """
        if self.status in ("starting", "running"):
            raise LabError(f"the Lab in {self.root} is already {self.status}")
        deadline = time.monotonic() + timeout
        self._stop_leftovers()
        for directory in (*self.log_dirs, self.notifications_log_dir, self.releases_dir, self.data_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self.shared_dir.mkdir(parents=True, exist_ok=True)
        stable = build_package(PREVIOUS_STABLE, self.packages_dir, self._release_faults(PREVIOUS_STABLE))
        current = build_package(CURRENT, self.packages_dir, self._release_faults(CURRENT))
        if "bad-package-hash" in self.faults:
            # A well-formed digest of other bytes: what a truncated copy or a swapped file looks like. It is
            # the package that the drill deploys that gets it, so the drill's hash check is what catches it.
            tampered = self.package(self.drill_version)
            write_sha256_file(tampered, hashlib.sha256(b"not " + tampered.read_bytes()).hexdigest())
        bluegreen = self.topology == "bluegreen"
        self.slots = {slot: Node(self, slot, procs.free_port(self.host)) for slot in self._slot_names()}
        self.webhook_port = procs.free_port(self.host)
        self._write_prometheus_targets()
        if bluegreen:
            self.router_port = procs.free_port(self.host)
            self._choose_router()
            if self.router_kind == "builtin":
                self.router_control_port = procs.free_port(_loopback(self.host))
        self.status = "starting"
        try:
            if "webhook-down" not in self.faults:
                argv = procs.python_argv(
                    SINK_SCRIPT,
                    "--host",
                    self.host,
                    "--port",
                    str(self.webhook_port),
                    "--log-dir",
                    str(self.notifications_log_dir),
                )
                with procs.interrupts_deferred():
                    self.sink = procs.spawn(
                        "webhook-sink", argv, self.root / "logs" / "deploy" / "webhook-sink.log"
                    )
                    self.save_state()
            # else: webhook_url keeps pointing at a port where nothing listens.
            with procs.interrupts_deferred():
                if bluegreen:
                    self._spawn_router()  # comes up while blue starts; it only needs blue once requests arrive
                self.save_state()
            blue = self.slots["blue"]
            blue.deploy(stable if bluegreen else current)
            if "service-stopped" not in self.faults:
                blue.start(timeout=max(1.0, deadline - time.monotonic()))
            # else: laid out but never started, as the playbook's Lab run found it (§4). Behind the router
            # (bluegreen) the public address then answers 502 bad gateway instead of refusing.
            if self.router_process is not None and self.nginx is not None:
                self.nginx.wait_ready(self.router_process, max(1.0, deadline - time.monotonic()))
            elif self.router_process is not None:
                procs.wait_http(
                    self.router_control_url + "/active",
                    max(1.0, deadline - time.monotonic()),
                    lambda reply: reply.status == 200,
                    watch=(self.router_process,),
                )
            if self.sink is not None:
                procs.wait_http(
                    _url(self.host, self.webhook_port) + "/",
                    max(1.0, deadline - time.monotonic()),
                    lambda reply: reply.status == 200,
                    watch=(self.sink,),
                )
        except BaseException:
            self.stop()
            raise
        self.status = "running"
        self.save_state()

    def _write_prometheus_targets(self) -> None:
        """<root>/prometheus-targets.json: each slot's /metrics address labelled with its slot, in the format of
        Prometheus' file_sd_configs (re-read on change), written atomically once the ports are chosen."""
        targets = [
            {"targets": [f"[{self.host}]:{node.port}" if ":" in self.host else f"{self.host}:{node.port}"],
             "labels": {"slot": slot}}
            for slot, node in self.slots.items()
        ]  # fmt: skip
        path = self.root / PROMETHEUS_TARGETS
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(targets, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    def _slot_names(self) -> tuple[str, ...]:
        return ("blue", "green") if self.topology == "bluegreen" else ("blue",)

    def _choose_router(self) -> None:
        """nginx when asked for and found; else the built-in router, with the reason in router_note."""
        self.router_kind, self.router_note, self.nginx = "builtin", None, None
        if self.router_requested != "nginx":
            return
        binary, why = find_nginx()
        if binary is None:
            self.router_note = (
                f'nginx was asked for ([lab] router = "nginx") but {why}: the Lab\'s built-in router serves the '
                "public address instead, switched by the lab router driver; install nginx (apt-get install nginx, "
                "make setup does) to run behind it"
            )
            return
        if self.router_port is None:
            raise LabError("router ports are not assigned")
        host = f"[{self.host}]" if ":" in self.host else self.host
        backends = {slot: f"{host}:{node.port}" for slot, node in self.slots.items()}
        self.router_kind = "nginx"
        self.nginx = LabNginx(self.root, binary, self.host, self.router_port, backends)

    def _spawn_router(self) -> None:
        if self.nginx is not None:
            self.nginx.write_config("blue")  # a fresh Lab starts with blue live, like the built-in router
            self.router_process = self.nginx.spawn(self.app_log_dir / "nginx.log")
            return
        if self.router_port is None or self.router_control_port is None:
            raise LabError("router ports are not assigned")
        # A fresh Lab starts with blue active: a state file left by an earlier Lab in this root must not
        # bring back its slot.
        self.router_state_path.unlink(missing_ok=True)
        backends = [arg for slot, node in self.slots.items() for arg in ("--backend", f"{slot}={node.url}")]
        argv = procs.python_argv(
            ROUTER_SCRIPT,
            "--host",
            self.host,
            "--port",
            str(self.router_port),
            "--control-host",
            _loopback(self.host),
            "--control-port",
            str(self.router_control_port),
            *backends,
            "--active",
            "blue",
            "--state-file",
            str(self.router_state_path),
        )
        self.router_process = procs.spawn("router", argv, self.app_log_dir / "router.log")

    def _release_faults(self, version: str) -> tuple[str, ...]:
        """Release faults (see lab.packages.RELEASE_FAULTS) that this Lab's faults build into a package.

        Only the package that the topology's drill deploys and then checks (``drill_version``) carries them:

        * bluegreen: CURRENT (1.1.0, the release under test that BG-1 deploys to green).
          green-unhealthy -> ``unhealthy`` (/health 503 once started); green-degrades-after-switch ->
          ``degrade-after-routed:3`` (healthy when probed on green's own address; 3 s after the first request
          through the router, i.e. after the switch, every request answers 500 after 0.3 s);
          green-queue-backlog -> ``queue-backlog-after-routed:1`` (1 s after the switch green's own job queue
          grows by 10 jobs/s and its worker does not drain it; /health and pages stay 200 and fast: only
          ``mcms_worker_queue_depth`` on green's /metrics shows it);
          a11y-regression and insecure-headers -> the release faults of the same names.
        * rollback: PREVIOUS_STABLE (1.0.0, the package RB-3 lays out and the matrix then checks), so a
          rollback drill with ``--lab-fault a11y-regression`` (or insecure-headers) ends with the checked
          release carrying the regression. green-unhealthy and green-degrades-after-switch do nothing here:
          there is no green.

        The other Lab faults (service-stopped, bad-package-hash, webhook-down) act on processes and files,
        not on what a package serves.
        """
        if version != (self.fault_release or self.drill_version):
            return ()
        mapping = {"a11y-regression": "a11y-regression", "insecure-headers": "insecure-headers"}
        if self.topology == "bluegreen":
            mapping["green-unhealthy"] = "unhealthy"
            mapping["green-degrades-after-switch"] = f"degrade-after-routed:{DEGRADE_AFTER_SWITCH_S:g}"
            mapping["green-queue-backlog"] = f"queue-backlog-after-routed:{QUEUE_BACKLOG_AFTER_SWITCH_S:g}"
        return tuple(mapping[fault] for fault in self.faults if fault in mapping)

    def stop(self) -> None:
        """Stop every process by PID: the router first (the public address goes dark), then each node's web
        then worker, then the sink. Safe to call twice."""
        errors: list[str] = []
        if self.router_process is not None:
            try:
                stop_record(self.router_process, 10.0)
                self.router_process = None
            except LabError as exc:
                errors.append(str(exc))
        for node in self.slots.values():
            try:
                node.stop()
            except LabError as exc:
                errors.append(str(exc))
        if self.sink is not None:
            try:
                procs.stop_pid(self.sink.pid, 10.0, self.sink.argv)
                self.sink = None
            except LabError as exc:
                errors.append(str(exc))
        if self.status != "new":
            self.status = "stopped"
            self.save_state()
        if errors:
            raise LabError("the Lab did not stop cleanly: " + "; ".join(errors))

    def _stop_leftovers(self) -> None:
        """A Lab kept running earlier in this root would hold ports and files: stop its processes first."""
        for record in _records(_read_state(self.state_path)):
            with contextlib.suppress(LabError):
                stop_record(record, 5.0)  # nginx's master renames itself; stop_record knows its title

    # -- state

    def processes(self) -> list[ProcessRecord]:
        records = [self.router_process] if self.router_process is not None else []
        records += [r for node in self.slots.values() for r in node.processes.values()]
        return records + ([self.sink] if self.sink is not None else [])

    def _router_json(self) -> dict[str, Any] | None:
        if self.topology != "bluegreen":
            return None
        kinds = {"kind": self.router_kind, "requested": self.router_requested, "note": self.router_note}
        if self.nginx is not None:
            return {
                **kinds,
                "port": self.router_port,
                "control_port": None,
                "url": self.public_url,
                "control_url": None,
                "nginx": self.nginx.to_json(),
                "process": self.router_process.to_json() if self.router_process else None,
            }
        started = self.router_port is not None and self.router_control_port is not None
        return {
            **kinds,
            "port": self.router_port,
            "control_port": self.router_control_port,
            "url": self.public_url if started else None,
            "control_url": self.router_control_url if started else None,
            "state_file": str(self.router_state_path),
            "process": self.router_process.to_json() if self.router_process else None,
        }

    def state(self) -> dict[str, Any]:
        return {
            "schema": STATE_SCHEMA,
            "status": self.status,
            "updated_at": datetime.now().astimezone().isoformat(timespec="milliseconds"),
            "root": str(self.root),
            "host": self.host,
            "topology": self.topology,
            "faults": list(self.faults),
            "urls": self.urls() if self.slots and self.webhook_port else {},
            "webhook_port": self.webhook_port,
            "sink": self.sink.to_json() if self.sink else None,
            "router": self._router_json(),
            "packages": {
                "dir": str(self.packages_dir),
                "previous_stable": PREVIOUS_STABLE,
                "current": CURRENT,
            },
            "nodes": {slot: node.to_json() for slot, node in self.slots.items()},
        }

    def save_state(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_name(f".state.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.state(), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.state_path)

    @classmethod
    def attach(cls, root: Path) -> Lab | None:
        """The Lab kept running in root (``--keep-lab``), when state.json says so and its processes live.

        Restores the topology, every node (a bluegreen green included, deployed or not) and the router, so a
        later session can switch traffic to a green that an earlier one verified.
        """
        state = _read_state(Path(root).resolve() / "state.json")
        if state is None or state.get("status") != "running":
            return None
        try:
            lab = cls(
                Path(root),
                state.get("faults", []),
                str(state.get("host", "127.0.0.1")),
                str(state.get("topology") or "rollback"),
            )
            lab.webhook_port = state.get("webhook_port")
            lab.sink = ProcessRecord.from_json(state["sink"]) if state.get("sink") else None
            for slot, data in state.get("nodes", {}).items():
                node = Node(lab, slot, int(data["port"]))
                node.release_dir = Path(data["release_dir"]) if data.get("release_dir") else None
                node.processes = {k: ProcessRecord.from_json(v) for k, v in data.get("processes", {}).items()}
                lab.slots[slot] = node
            router = state.get("router")
            if lab.topology == "bluegreen":
                if not isinstance(router, dict) or not router.get("process"):
                    return None
                lab.router_port = int(router["port"])
                lab.router_requested = str(router.get("requested") or "builtin")
                lab.router_note = router.get("note")
                if router.get("kind") == "nginx":
                    lab.router_kind = "nginx"
                    lab.nginx = LabNginx.from_json(lab.root, router["nginx"])
                    lab.router_process = NginxRecord.from_json(router["process"])
                else:
                    lab.router_control_port = int(router["control_port"])
                    lab.router_process = ProcessRecord.from_json(router["process"])
        except (KeyError, TypeError, ValueError):
            return None
        if set(lab._slot_names()) - set(lab.slots):
            return None
        if not all(record.alive() for record in lab.processes()):
            return None
        lab.status = "running"
        return lab


def _loopback(host: str) -> str:
    """The loopback address of host's family: the router's control API listens there only."""
    return "::1" if ":" in host else "127.0.0.1"


def _read_state(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _records(state: dict[str, Any] | None) -> list[ProcessRecord]:
    if not state:
        return []
    raw = [state.get("sink")]
    router = state.get("router")
    if isinstance(router, dict):
        raw.append(router.get("process"))
    for node in (state.get("nodes") or {}).values():
        raw.extend((node.get("processes") or {}).values())
    records = []
    for item in raw:
        with contextlib.suppress(KeyError, TypeError, ValueError):
            if item:
                records.append(ProcessRecord.from_json(item))
    return records


__all__ = [
    "CURRENT",
    "LAB_FAULTS",
    "NEXT",
    "PREVIOUS_STABLE",
    "TOPOLOGIES",
    "Lab",
    "LabError",
    "Node",
    "RouterClient",
    "StepResult",
    "SwitchResult",
]
