"""Deploy verb: stop the site and recycle its pool, lay out a package, start it and wait until healthy.

Backends: `lab` (the embedded Lab's node supervisor) and `command` (argv templates, e.g. the playbook's
PowerShell scripts: Stop-Site.ps1, Deploy-CamService.ps1). The base class carries the shared work (waiting for
health with a bounded timeout, reading the served version), so each backend only says how to act.
"""

from __future__ import annotations

import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from drivers.base import ActionResult, DriverError, Registry, timed
from drivers.config import Environment
from drivers.packages import Package
from drivers.probe import Prober, url_at

if TYPE_CHECKING:
    from lab import Lab

# "active" is the single node of a single-node environment (playbook §6): what the public address serves.
NODES = ("active", "blue", "green")


class DeployDriver(ABC):
    def __init__(self, env: Environment, prober: Prober, context: Mapping[str, Any]) -> None:
        self.env = env
        self.prober = prober
        self.context = context

    def node_url(self, node: str) -> str:
        if node == "active":
            return self.env.service.base_url
        url = getattr(self.env.slots, node, "")
        if not url:
            raise DriverError(f"{self.env.source}: [slots] {node} is not set; cannot reach the {node} node")
        return str(url)

    def served_version(self, node: str) -> str | None:
        """The version the node's health endpoint reports, or None when it does not answer."""
        result = self.prober.get(
            "health", url_at(self.node_url(node), self.env.service.health_path), retries=0
        )
        body = result.json() if result.status in (200, 503) else None
        return str(body["version"]) if isinstance(body, dict) and "version" in body else None

    def current_version(self, node: str) -> str | None:
        """The version laid out on the node (even when it is stopped), as far as the backend can tell."""
        return self.served_version(node)

    def start_site(self, node: str, expect_version: str) -> ActionResult:
        """Start the node and wait, bounded by [drivers] start_timeout_s, until it is healthy on that version."""
        action = ActionResult("start_site", node, detail={"version": expect_version})
        with timed(action):
            self._start(node, expect_version)
            waited = self.wait_healthy(node, expect_version, self.env.drivers.start_timeout_s)
            action.detail["healthy_after_s"] = waited
        return action

    def wait_healthy(self, node: str, expect_version: str, timeout_s: float) -> float:
        url = url_at(self.node_url(node), self.env.service.health_path)
        start = time.perf_counter()
        last = "no answer yet"
        while True:
            result = self.prober.get("health", url, retries=0)
            body = result.json()
            version = body.get("version") if isinstance(body, dict) else None
            if result.status == 200 and version in (expect_version, None):
                return round(time.perf_counter() - start, 4)
            last = result.error or f"HTTP {result.status}, version {version}"
            if time.perf_counter() - start > timeout_s:
                raise DriverError(
                    f"{node} node not healthy on {expect_version} within {timeout_s:g} s ({url}: last answer {last})"
                )
            time.sleep(0.05)

    @abstractmethod
    def stop_site(self, node: str) -> list[ActionResult]:
        """Stop the site, then recycle its application pool (web process, then worker)."""

    @abstractmethod
    def deploy(self, package: Package, node: str) -> ActionResult:
        """Lay out `package` on the stopped node."""

    @abstractmethod
    def _start(self, node: str, version: str) -> None:
        """Start the node; waiting for health is the base class's job."""


DEPLOY_DRIVERS: Registry[DeployDriver] = Registry("deploy driver")


@DEPLOY_DRIVERS.register("lab")
class LabDeployDriver(DeployDriver):
    """The embedded Lab: real processes on loopback, managed by lab.Lab."""

    @property
    def lab(self) -> Lab:
        lab = self.context.get("lab")
        if lab is None:
            raise DriverError('the lab deploy driver needs the embedded Lab (kind = "lab")')
        return lab  # type: ignore[no-any-return]

    def _node(self, node: str) -> Any:
        return self.lab.node("blue" if node == "active" else node)

    @contextmanager
    def _lab_errors(self) -> Iterator[None]:
        from lab import LabError

        try:
            yield
        except LabError as exc:
            raise DriverError(str(exc)) from exc

    def current_version(self, node: str) -> str | None:
        version = self._node(node).deployed_version()
        return None if version is None else str(version)

    def stop_site(self, node: str) -> list[ActionResult]:
        names = {"stop site": "stop_site", "recycle app pool": "recycle_pool"}
        with self._lab_errors():
            steps = self._node(node).stop()
        return [
            ActionResult(
                names.get(step.name, step.name), node, step.result, step.duration_s, {"pid": step.pid}
            )
            for step in steps
        ]

    def deploy(self, package: Package, node: str) -> ActionResult:
        action = ActionResult(
            "deploy", node, detail={"package": package.path.name, "version": package.version}
        )
        with timed(action), self._lab_errors():
            release = self._node(node).deploy(package.path)
            action.detail["release_dir"] = str(release)
        return action

    def _start(self, node: str, version: str) -> None:
        with self._lab_errors():
            self._node(node).start(timeout=self.env.drivers.start_timeout_s)


@DEPLOY_DRIVERS.register("command")
class CommandDeployDriver(DeployDriver):
    """Argv templates from [drivers.command]; {env} {slot} {version} {package} are filled in.

    Verbs: stop_site, recycle_pool (optional), deploy, start_site, current_version (optional: prints the
    version on stdout). Each runs without a shell, with a timeout, and its output tail is kept as evidence.
    """

    TIMEOUT_S = 600.0

    def run(self, verb: str, node: str, **values: str) -> ActionResult:
        template = self.env.drivers.command.get(verb)
        if template is None:
            raise DriverError(f"{self.env.source}: [drivers.command] {verb}: no argv template configured")
        fill = {"env": self.env.name, "slot": node, "version": "", "package": "", **values}
        try:
            argv = [part.format_map(fill) for part in template]
        except (KeyError, ValueError, AttributeError, IndexError) as exc:
            raise DriverError(
                f"{self.env.source}: [drivers.command] {verb}: bad placeholder {exc} "
                "(known: {env} {slot} {version} {package})"
            ) from None
        action = ActionResult(verb, node, detail={"argv": argv})
        with timed(action):
            try:
                done = subprocess.run(
                    argv, capture_output=True, text=True, timeout=self.TIMEOUT_S, check=False
                )
            except FileNotFoundError:
                raise DriverError(f"[drivers.command] {verb}: {argv[0]!r} not found on PATH") from None
            except OSError as exc:  # e.g. a script without its execute bit or interpreter line
                raise DriverError(
                    f"[drivers.command] {verb}: cannot run {argv[0]!r}: {exc.strerror or exc}"
                ) from None
            except subprocess.TimeoutExpired:
                raise DriverError(
                    f"[drivers.command] {verb}: still running after {self.TIMEOUT_S:g} s"
                ) from None
        action.detail.update(exit_code=done.returncode, output_tail=_tail(done.stdout + done.stderr))
        if done.returncode != 0:
            raise DriverError(f"[drivers.command] {verb} exited {done.returncode}: {_tail(done.stderr, 3)}")
        action.detail["stdout"] = done.stdout.strip()[-200:]
        return action

    def current_version(self, node: str) -> str | None:
        if "current_version" in self.env.drivers.command:
            out = str(self.run("current_version", node).detail["stdout"]).strip()
            return out.splitlines()[-1] if out else None
        return self.served_version(node)

    def stop_site(self, node: str) -> list[ActionResult]:
        steps = [self.run("stop_site", node)]
        if "recycle_pool" in self.env.drivers.command:
            steps.append(self.run("recycle_pool", node))
        return steps

    def deploy(self, package: Package, node: str) -> ActionResult:
        return self.run("deploy", node, version=package.version, package=str(package.path))

    def _start(self, node: str, version: str) -> None:
        self.run("start_site", node, version=version)


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def deploy_driver(name: str, env: Environment, prober: Prober, context: Mapping[str, Any]) -> DeployDriver:
    return DEPLOY_DRIVERS.get(name)(env, prober, context)


__all__: Sequence[str] = ["DEPLOY_DRIVERS", "NODES", "CommandDeployDriver", "DeployDriver", "LabDeployDriver"]
