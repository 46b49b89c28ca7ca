"""Router verb: which slot the public address serves, and the switch between blue and green (playbook BG-4).

Backends: `lab` (the embedded Lab's reverse proxy, switched through its control API) and `command` (argv
templates, e.g. an IIS ARR or DNS script: `switch` with {slot}, `active` printing the live slot) and `nginx`
(the live slot's upstream in an include file, written atomically, `nginx -t`, reload, confirmed by the new
workers: drivers/nginx.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drivers.base import ActionResult, DriverError, Registry, timed
from drivers.config import Environment

if TYPE_CHECKING:
    from drivers.nginx import Nginx

SLOTS = ("blue", "green")


class RouterDriver(ABC):
    def __init__(self, env: Environment, context: Mapping[str, Any]) -> None:
        self.env = env
        self.context = context

    @abstractmethod
    def active(self) -> str:
        """The slot the public address serves now."""

    def switch(self, to: str) -> ActionResult:
        """Send new requests to `to`; requests in flight finish where they started.

        A switch must change the live slot: switching to the slot that is already live is an error (it would
        hide that the release never got traffic, or that traffic is not where the runbook thinks), and so is
        a router that still reports the old slot afterwards.
        """
        if to not in SLOTS:
            raise DriverError(f"cannot switch traffic to {to}: the slots are {' and '.join(SLOTS)}")
        before = self.active()
        if before == to:
            raise DriverError(
                f"switch to {to} refused: {to} is already the live slot, so the switch would change nothing"
            )
        action = ActionResult("switch_traffic", to, detail={"from": before})
        with timed(action):
            action.detail.update(self._switch(to))
            after = self.active()
        if after != to:
            raise DriverError(
                f"switched traffic from {before} to {to}, but the router now reports {after} live"
            )
        action.detail["live_after"] = after
        return action

    @abstractmethod
    def _switch(self, to: str) -> dict[str, Any]:
        """Do the switch; return what the router said, for the journal."""

    def check(self) -> dict[str, Any]:
        """PRE, read-only: whether the router could switch now (nginx: `nginx -t`); what it found, for the
        journal; DriverError when it could not. Empty for a router with nothing to check beyond `active()`."""
        return {}


ROUTER_DRIVERS: Registry[RouterDriver] = Registry("router driver")


@ROUTER_DRIVERS.register("lab")
class LabRouterDriver(RouterDriver):
    def _router(self) -> Any:
        lab = self.context.get("lab")
        if lab is None:
            raise DriverError('the lab router driver needs the embedded Lab (kind = "lab")')
        return lab.router

    def active(self) -> str:
        from lab import LabError

        try:
            return str(self._router().active())
        except LabError as exc:
            raise DriverError(str(exc)) from exc

    def _switch(self, to: str) -> dict[str, Any]:
        from lab import LabError

        try:
            result = self._router().switch(to)
        except LabError as exc:
            raise DriverError(str(exc)) from exc
        return {
            "previous": result.previous,
            "generation": result.generation,
            "switched_at": result.switched_at,
        }


@ROUTER_DRIVERS.register("command")
class CommandRouterDriver(RouterDriver):
    """[drivers.command] switch = [..., "{slot}"] and optionally active = [...] (prints blue or green)."""

    def _run(self, verb: str, slot: str = "") -> str:
        from drivers.deploy import run_command_verb

        _, result = run_command_verb(self.env, self.context, verb, slot)
        return result.check().stdout.strip()

    def active(self) -> str:
        out = self._run("active").splitlines()
        slot = out[-1].strip() if out else ""
        if slot not in SLOTS:
            raise DriverError(
                f"[drivers.command] active printed {slot or 'nothing'} on its last line; expected blue or green"
            )
        return slot

    def _switch(self, to: str) -> dict[str, Any]:
        return {"output": self._run("switch", to)[-500:]}


@ROUTER_DRIVERS.register("nginx")
class NginxRouterDriver(RouterDriver):
    """[router.nginx]: the include file holds the live slot's upstream; see drivers/nginx.py for the switch."""

    def __init__(self, env: Environment, context: Mapping[str, Any]) -> None:
        super().__init__(env, context)
        self._nginx: Nginx | None = None

    def nginx(self) -> Nginx:
        """[router.nginx] resolved once (the project root is the context's "root"); DriverError naming the keys."""
        if self._nginx is None:
            from drivers.nginx import Nginx, nginx_settings

            root = Path(self.context.get("root") or Path.cwd())
            self._nginx = Nginx(nginx_settings(self.env, root), self.env.redact)
        return self._nginx

    def check(self) -> dict[str, Any]:
        return self.nginx().check()

    def active(self) -> str:
        return self.nginx().active()

    def _switch(self, to: str) -> dict[str, Any]:
        return self.nginx().switch(to)


def router_driver(name: str, env: Environment, context: Mapping[str, Any]) -> RouterDriver:
    return ROUTER_DRIVERS.get(name)(env, context)
