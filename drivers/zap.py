"""Security scan verb (DR-ZAP): one scanner interface, two engines behind a registry.

- `zap` (drivers.zap_daemon): a real ZAP daemon through its API (drivers.zap_client). It connects to
  `[zap] api_url` with the API key, or, when nothing answers there and `[zap] path` is set, starts
  `zap.sh -daemon` (`zap.bat` on Windows), waits (bounded) until its API answers and stops it by PID
  afterwards. Then, like zap-baseline: new session, access the target, spider it for at most `spider_minutes`,
  wait (bounded, polled) until the passive scan queue is empty, fetch the alerts for the target's base URL and
  ZAP's own HTML report.
- `builtin` (drivers.zap_crawler): for machines without Java or ZAP. A same-origin crawl from the base URL
  (GET only, no cookies, no proxy; `max_pages`, `max_depth`, and `spider_minutes` as a time bound) and the
  passive checks of drivers.zap_passive, which carry ZAP's plugin ids, names and risks: a SUBSET of ZAP's
  passive rules.

Both return a `ScanResult` whose alerts have ZAP's shape. Scope is checked first, in the base class: a target
outside `[scope] allowed_hosts` is refused before any request is sent, to the target or to ZAP.

This module is the interface: the engine registry and `zap_scanner`, the abstract `Scanner`, the errors and
`target_slug`. Each engine registers itself in the module that defines it, and those modules import this one;
so this one imports them on first use (of the registry, or of an engine's name re-exported here), never at
import time: no import cycle, whichever module is imported first.
Plain Python, no pytest import. Every wait is bounded in time and every request has a timeout.
"""

from __future__ import annotations

import importlib
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from drivers.base import DriverError, Registry
from drivers.config import Zap
from drivers.probe import Prober, ScopeError
from drivers.zap_alerts import ScanResult

if TYPE_CHECKING:  # at run time, from __getattr__ below
    from drivers.zap_crawler import BuiltinScanner, builtin_rules
    from drivers.zap_daemon import ZapDaemonScanner, check_zap_available

__all__ = [
    "SCANNERS",
    "BuiltinScanner",
    "ScanResult",
    "Scanner",
    "ScannerMissing",
    "ScopeError",
    "ZapApiError",
    "ZapDaemonScanner",
    "ZapError",
    "ZapUnreachable",
    "builtin_rules",
    "check_zap_available",
    "target_slug",
    "zap_scanner",
]

USER_AGENT = "mcms-dr-runbook/1 (DR-ZAP builtin)"

# The engines' public names re-exported here -> the module that defines them (and registers its engine).
_ENGINE_NAMES = {
    "BuiltinScanner": "drivers.zap_crawler",
    "builtin_rules": "drivers.zap_crawler",
    "ZapDaemonScanner": "drivers.zap_daemon",
    "check_zap_available": "drivers.zap_daemon",
}


class ZapError(DriverError):
    """The scan could not be done; the message says what, where, and what was seen."""


class ScannerMissing(ZapError):
    """No scanner to run: no ZAP daemon answers and none can be started. The runbook reports "tool missing"."""


class ZapUnreachable(ZapError):
    """Nothing accepts connections at the ZAP API address."""


class ZapNotAnswering(ZapError):
    """Something accepts connections at the ZAP API address but does not answer in time."""


class ZapApiError(ZapError):
    """ZAP answered with an API error (its JSON {"code", "message"})."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


def target_slug(target: str) -> str:
    """A file name for a target URL: host, port and path (http://127.0.0.1:8080/mcms -> 127.0.0.1_8080_mcms)."""
    parts = urlsplit(target)
    raw = "_".join(p for p in (parts.hostname or "target", str(parts.port or ""), parts.path.strip("/")) if p)
    return "".join(c if c.isalnum() or c in "-." else "_" for c in raw)[:120]


class Scanner(ABC):
    """One security scan of one target; backends say how, the base class enforces scope and times it."""

    engine: ClassVar[str]

    def __init__(
        self,
        settings: Zap,
        allowed_hosts: Iterable[str],
        *,
        timeout_s: float = 5.0,
        ca_file: str = "",
        workdir: Path | None = None,
        poll_s: float = 1.0,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self.ca_file = ca_file
        self.workdir = workdir
        self.poll_s = poll_s
        self.environ = os.environ if environ is None else environ
        # The probe verb's scope rule, shared: one definition of "in scope" for probes and scans.
        self._scope = Prober(allowed_hosts, timeout_s=timeout_s, ca_file=ca_file)

    def check_scope(self, url: str) -> None:
        self._scope.check_scope(url)

    def scan(self, target: str) -> ScanResult:
        """Scan `target` (its base URL); ScopeError before anything is sent when its host is out of scope."""
        self.check_scope(target)
        started = time.perf_counter()
        result = self._scan(target)
        result.duration_s = round(time.perf_counter() - started, 3)
        return result

    @abstractmethod
    def _scan(self, target: str) -> ScanResult:
        """Run the scan; the target is already known to be in scope."""

    @abstractmethod
    def describe(self, result: ScanResult | None = None) -> str:
        """Which engine ran, in plain words for the report."""

    def rules_checked(self) -> list[str]:
        """The alert types this engine is limited to, for the report; empty = whatever the engine runs."""
        return []


class _EngineRegistry(Registry[Scanner]):
    """The `[zap] engine` registry; the engine modules are imported (and so register themselves) on first use."""

    def get(self, name: str) -> type[Scanner]:
        _import_engines()
        return super().get(name)

    def names(self) -> list[str]:
        _import_engines()
        return super().names()


def _import_engines() -> None:
    for module in sorted(set(_ENGINE_NAMES.values())):
        importlib.import_module(module)


SCANNERS: Registry[Scanner] = _EngineRegistry("[zap] engine")


def zap_scanner(engine: str, settings: Zap, allowed_hosts: Iterable[str], **options: Any) -> Scanner:
    return SCANNERS.get(engine)(settings, allowed_hosts, **options)


def __getattr__(name: str) -> object:
    """An engine's public name (`from drivers.zap import BuiltinScanner`), from the module that defines it."""
    if name not in _ENGINE_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_ENGINE_NAMES[name]), name)
