"""The shape of a security scan's findings: ZAP's alerts, whichever engine raised them.

Both engines (a ZAP daemon, and the builtin passive checks) return `ScanResult`s whose alerts serialise exactly
like the alerts of ZAP's traditional JSON report (the one `zap-baseline.py -J` writes): one entry per alert type
with its instances, and the codes as strings. Tools that read zap-baseline reports therefore read ours.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from drivers.base import quoted

__all__ = [
    "CONFIDENCES",
    "RISKS",
    "AlertInstance",
    "ScanResult",
    "ZapAlert",
    "confidence_code",
    "group_alerts",
    "risk_code",
]

# Index = ZAP's riskcode / confidence code.
RISKS: tuple[str, ...] = ("Informational", "Low", "Medium", "High")
CONFIDENCES: tuple[str, ...] = ("False Positive", "Low", "Medium", "High", "Confirmed")


def risk_code(name: str) -> int:
    try:
        return RISKS.index(name)
    except ValueError:
        raise ValueError(f"unknown ZAP risk {quoted(name)} (known: {', '.join(RISKS)})") from None


def confidence_code(name: str) -> int:
    try:
        return CONFIDENCES.index(name)
    except ValueError:
        raise ValueError(f"unknown ZAP confidence {quoted(name)} (known: {', '.join(CONFIDENCES)})") from None


@dataclass(frozen=True)
class AlertInstance:
    """One place an alert was seen: ZAP's instance fields."""

    uri: str
    method: str = "GET"
    param: str = ""
    attack: str = ""
    evidence: str = ""
    otherinfo: str = ""

    def to_json(self) -> dict[str, str]:
        return {
            "uri": self.uri,
            "method": self.method,
            "param": self.param,
            "attack": self.attack,
            "evidence": self.evidence,
            "otherinfo": self.otherinfo,
        }


@dataclass(frozen=True)
class ZapAlert:
    """One alert type with every instance of it, as in ZAP's JSON report."""

    plugin_id: str
    alert_ref: str
    name: str
    riskcode: int
    confidence: int
    desc: str = ""
    solution: str = ""
    reference: str = ""
    cweid: int = -1  # ZAP writes -1 when a rule names no CWE / WASC
    wascid: int = -1
    instances: tuple[AlertInstance, ...] = field(default_factory=tuple)

    @property
    def risk(self) -> str:
        return RISKS[self.riskcode]

    @property
    def confidence_name(self) -> str:
        return CONFIDENCES[self.confidence]

    @property
    def riskdesc(self) -> str:
        return f"{self.risk} ({self.confidence_name})"

    @property
    def count(self) -> int:
        return len(self.instances)

    @property
    def uris(self) -> list[str]:
        """The distinct URLs of the instances, in the order they were found."""
        return list(dict.fromkeys(i.uri for i in self.instances))

    def with_instances(self, instances: Iterable[AlertInstance]) -> ZapAlert:
        return dataclasses.replace(self, instances=tuple(instances))

    def to_json(self) -> dict[str, Any]:
        """ZAP's traditional JSON report entry (codes as strings, as ZAP writes them)."""
        return {
            "pluginId": self.plugin_id,
            "alertRef": self.alert_ref,
            "alert": self.name,
            "name": self.name,
            "riskcode": str(self.riskcode),
            "confidence": str(self.confidence),
            "riskdesc": self.riskdesc,
            "desc": self.desc,
            "instances": [i.to_json() for i in self.instances],
            "count": str(self.count),
            "solution": self.solution,
            "reference": self.reference,
            "cweid": str(self.cweid),
            "wascid": str(self.wascid),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ZapAlert:
        """Read an entry written by `to_json` (or by zap-baseline's JSON report)."""
        plugin_id = str(data.get("pluginId", data.get("pluginid", "")))
        instances = tuple(
            AlertInstance(
                uri=str(i.get("uri", "")),
                method=str(i.get("method", "")),
                param=str(i.get("param", "")),
                attack=str(i.get("attack", "")),
                evidence=str(i.get("evidence", "")),
                otherinfo=str(i.get("otherinfo", "")),
            )
            for i in data.get("instances", [])
        )
        return cls(
            plugin_id=plugin_id,
            alert_ref=str(data.get("alertRef") or plugin_id),
            name=str(data.get("name") or data.get("alert", "")),
            riskcode=int(data.get("riskcode", 0)),
            confidence=int(data.get("confidence", 0)),
            desc=str(data.get("desc", "")),
            solution=str(data.get("solution", "")),
            reference=str(data.get("reference", "")),
            cweid=int(data.get("cweid", -1) or -1),
            wascid=int(data.get("wascid", -1) or -1),
            instances=instances,
        )


def group_alerts(alerts: Iterable[ZapAlert]) -> list[ZapAlert]:
    """Merge alerts of the same type (alertRef, name, risk, confidence) into one entry with all instances,
    highest risk first, then by plugin id: the order of ZAP's report."""
    merged: dict[tuple[str, str, int, int], ZapAlert] = {}
    for alert in alerts:
        key = (alert.alert_ref, alert.name, alert.riskcode, alert.confidence)
        known = merged.get(key)
        merged[key] = alert if known is None else known.with_instances((*known.instances, *alert.instances))
    return sorted(merged.values(), key=lambda a: (-a.riskcode, _numeric(a.plugin_id), a.alert_ref))


def _numeric(plugin_id: str) -> int:
    return int(plugin_id) if plugin_id.isdigit() else 1 << 31


@dataclass
class ScanResult:
    """What one scan of one target found, and how it was done."""

    engine: str  # "zap" | "builtin"
    target: str
    alerts: list[ZapAlert]
    pages: list[str] = field(default_factory=list)  # the URLs fetched (builtin) or spidered (zap)
    engine_version: str = ""
    duration_s: float = 0.0
    report_html: str | None = None  # ZAP's own HTML report (engine zap)
    notes: list[str] = field(default_factory=list)  # what the operator should know (pages that failed, ...)
    spider_stopped: bool = False  # the spider was stopped at [zap] spider_minutes

    def to_json(self) -> dict[str, Any]:
        """artifacts/zap/<target>.json: {"engine", "target", "alerts": [ZAP alert objects]} plus context."""
        return {
            "engine": self.engine,
            "target": self.target,
            "alerts": [a.to_json() for a in self.alerts],
            "engine_version": self.engine_version,
            "pages": list(self.pages),
            "duration_s": self.duration_s,
            "spider_stopped": self.spider_stopped,
            "notes": list(self.notes),
        }
