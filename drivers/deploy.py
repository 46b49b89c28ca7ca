"""Deploy verb: stop the site and recycle its pool, lay out a package, start it and wait until healthy.

Backends: `lab` (the embedded Lab's node supervisor) and `command` (argv templates, e.g. the playbook's
PowerShell scripts: Stop-Site.ps1, Deploy-CamService.ps1). The base class carries the shared work (waiting for
health with a bounded timeout, reading the served version), so each backend only says how to act.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from drivers import commands
from drivers.base import ActionResult, DriverError, Registry, timed
from drivers.commands import CommandResult
from drivers.config import Environment
from drivers.packages import Package
from drivers.probe import Prober, url_at

if TYPE_CHECKING:
    from lab import Lab

# "active" is the single node of a single-node environment (playbook §6): what the public address serves.
NODES = ("active", "blue", "green")


class DeployDriver(ABC):
    """The deploy verbs of one environment. In a Blue/Green flow `live_slot` asks the router which slot is
    live, and the verbs that take a slot out of service (stop, recycle, deploy onto it) refuse the live one:
    the one place where "never act on the live slot" is enforced, whatever the caller."""

    def __init__(self, env: Environment, prober: Prober, context: Mapping[str, Any]) -> None:
        self.env = env
        self.prober = prober
        self.context = context
        self.live_slot: Callable[[], str] | None = None

    def refuse_live(self, node: str, verb: str) -> None:
        """Raise DriverError when `node` is the live slot, or when nobody can tell which slot is live."""
        if self.live_slot is None or node not in ("blue", "green"):
            return
        try:
            live = self.live_slot()
        except DriverError as exc:
            raise DriverError(f"refusing to {verb} {node}: cannot tell which slot is live ({exc})") from None
        if live == node:
            raise DriverError(
                f"refusing to {verb} {node}: it is the live slot (the public address is served by {node})"
            )

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
        return result.reported_version() if result.status in (200, 503) else None

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
            version = result.reported_version()
            if result.status == 200 and version in (expect_version, None):
                return round(time.perf_counter() - start, 4)
            last = result.error or f"HTTP {result.status}, version {version}"
            if time.perf_counter() - start > timeout_s:
                raise DriverError(
                    f"{node} node not healthy on {expect_version} within {timeout_s:g} s ({url}: last answer {last})"
                )
            time.sleep(0.05)

    def stop_site(self, node: str) -> list[ActionResult]:
        """Stop the site, then recycle its application pool (web process, then worker); never the live slot."""
        self.refuse_live(node, "stop")
        return self._stop_site(node)

    def deploy(self, package: Package, node: str) -> ActionResult:
        """Lay out `package` on the stopped node; never on the live slot."""
        self.refuse_live(node, f"deploy {package.version} onto")
        return self._deploy(package, node)

    @abstractmethod
    def _stop_site(self, node: str) -> list[ActionResult]:
        """Stop the site and recycle its pool; the live-slot guard is the base class's job."""

    @abstractmethod
    def _deploy(self, package: Package, node: str) -> ActionResult:
        """Lay out `package` on the stopped node; the live-slot guard is the base class's job."""

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

    def _stop_site(self, node: str) -> list[ActionResult]:
        names = {"stop site": "stop_site", "recycle app pool": "recycle_pool"}
        with self._lab_errors():
            steps = self._node(node).stop()
        return [
            ActionResult(
                names.get(step.name, step.name), node, step.result, step.duration_s, {"pid": step.pid}
            )
            for step in steps
        ]

    def _deploy(self, package: Package, node: str) -> ActionResult:
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

    def run(self, verb: str, node: str, **values: str) -> ActionResult:
        """Run one verb's argv (drivers.commands: no shell, [drivers.timeouts] / command_timeout_s, the whole
        process tree killed at the timeout); its redacted output tail is kept for the journal."""
        argv, result = run_command_verb(self.env, self.context, verb, node, **values)
        action = ActionResult(verb, node, detail={"argv": argv})
        action.duration_s = result.duration_s
        action.detail.update(exit_code=result.exit_code, output_tail=result.output_tail)
        result.check()
        action.detail["stdout"] = self.env.redact(result.last_line())[-200:]
        return action

    def current_version(self, node: str) -> str | None:
        if "current_version" in self.env.drivers.command:
            out = str(self.run("current_version", node).detail["stdout"]).strip()
            return out or None
        return self.served_version(node)

    def _stop_site(self, node: str) -> list[ActionResult]:
        steps = [self.run("stop_site", node)]
        if "recycle_pool" in self.env.drivers.command:
            steps.append(self.run("recycle_pool", node))
        return steps

    def _deploy(self, package: Package, node: str) -> ActionResult:
        return self.run("deploy", node, version=package.version, package=str(package.path))

    def _start(self, node: str, version: str) -> None:
        self.run("start_site", node, version=version)


def run_command_verb(
    env: Environment, context: Mapping[str, Any], verb: str, node: str, **values: str
) -> tuple[list[str], CommandResult]:
    """Fill and run one [drivers.command] verb in the project root (the deploy and router drivers share it)."""
    template = env.drivers.command.get(verb)
    if template is None:
        raise DriverError(f"{env.source}: [drivers.command] {verb}: no argv template configured")
    fill = {"env": env.name, "slot": node, **values}
    try:
        argv = commands.fill_template(verb, template, fill)
        result = commands.run_argv(
            argv,
            timeout_s=env.drivers.timeout_for(verb),
            redact=env.redact,
            cwd=context.get("root"),
            verb=f"[drivers.command] {verb}",
        )
    except commands.CommandError as exc:
        raise DriverError(str(exc)) from None
    return argv, result


def deploy_driver(name: str, env: Environment, prober: Prober, context: Mapping[str, Any]) -> DeployDriver:
    return DEPLOY_DRIVERS.get(name)(env, prober, context)


__all__: Sequence[str] = ["DEPLOY_DRIVERS", "NODES", "CommandDeployDriver", "DeployDriver", "LabDeployDriver"]
