"""The DR-ZAP gate and its rules file, in zap-baseline's format so that operators bring the file they have.

Rules file (the format of `zap-baseline.py -c`), one rule a line, fields separated by TAB:

    10020<TAB>FAIL<TAB>Anti-clickjacking header missing: always a release blocker
    10096<TAB>IGNORE<TAB>Timestamp disclosure: the status pages show heartbeat times on purpose
    OUTOFSCOPE<TAB>10202<TAB>.*/legacy/.*
    OUTOFSCOPE<TAB>*<TAB>^https://mcms.corp.example/static/

`#` starts a comment line; blank lines are skipped. The id is a plugin id (10020) or, more precisely, an alert
reference (10020-1); an alert reference's rule wins over its plugin id's. OUTOFSCOPE takes one id, several
separated by commas, or `*` for every rule, and a regular expression matched (like zap-baseline, with
`re.match`: anchored at the start) against each instance's URL; matching instances are dropped.

Gate: an alert whose risk is in `[zap] fail_on` fails unless the rules file says IGNORE for it; a FAIL rule
fails the alert whatever its risk; WARN and INFO alerts (and alerts without a rule below `fail_on`) are
reported, not failed. A malformed line is a `RulesError` naming the file and the line, raised before any scan.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from drivers.base import quoted
from drivers.zap_alerts import RISKS, ZapAlert

__all__ = [
    "ACTIONS",
    "DECISIONS",
    "GateResult",
    "GatedAlert",
    "OutOfScope",
    "Rule",
    "Rules",
    "RulesError",
    "apply_gate",
    "load_rules",
    "parse_rules",
]

ACTIONS = ("IGNORE", "INFO", "WARN", "FAIL")
# What the gate decided for an alert, in the report's words.
DECISIONS = ("FAIL", "WARN", "INFO", "IGNORE", "OUTOFSCOPE")
_ID = re.compile(r"\d{1,9}(?:-\d{1,4})?")


class RulesError(ValueError):
    """A malformed rules file: names the file, the line and what was expected (a usage error)."""

    def __init__(self, source: str, line: int, message: str) -> None:
        self.source, self.line = source, line
        super().__init__(f"{source}:{line}: {message}" if line else f"{source}: {message}")


@dataclass(frozen=True)
class Rule:
    id: str
    action: str
    comment: str
    line: int


@dataclass(frozen=True)
class OutOfScope:
    ids: frozenset[str]  # plugin ids or alert references; "*" = every rule
    pattern: re.Pattern[str]
    line: int

    def applies(self, alert: ZapAlert, uri: str) -> bool:
        named = "*" in self.ids or alert.plugin_id in self.ids or alert.alert_ref in self.ids
        return named and self.pattern.match(uri) is not None


@dataclass(frozen=True)
class Rules:
    source: str = ""
    by_id: Mapping[str, Rule] = field(default_factory=dict)
    out_of_scope: tuple[OutOfScope, ...] = ()

    def rule_for(self, alert: ZapAlert) -> Rule | None:
        return self.by_id.get(alert.alert_ref) or self.by_id.get(alert.plugin_id)


def parse_rules(text: str, source: str) -> Rules:
    by_id: dict[str, Rule] = {}
    out_of_scope: list[OutOfScope] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise RulesError(
                source,
                number,
                f"expected TAB-separated fields: id<TAB>IGNORE|INFO|WARN|FAIL<TAB>comment or "
                f"OUTOFSCOPE<TAB>id|*<TAB>url regex; got {quoted(line.strip()[:60])}",
            )
        key = fields[0].strip()
        if key == "OUTOFSCOPE":
            out_of_scope.append(_out_of_scope(source, number, fields))
            continue
        if not _ID.fullmatch(key):
            raise RulesError(
                source,
                number,
                f"expected a ZAP plugin id (e.g. 10020) or alert reference (10020-1), got {quoted(key)}",
            )
        action = fields[1].strip()
        if action not in ACTIONS:
            raise RulesError(
                source,
                number,
                f"{key}: expected one of {', '.join(ACTIONS)} (upper case), got {quoted(action)}",
            )
        if key in by_id:
            raise RulesError(source, number, f"{key} already has a rule on line {by_id[key].line}")
        by_id[key] = Rule(key, action, "\t".join(fields[2:]).strip(), number)
    return Rules(source, by_id, tuple(out_of_scope))


def _out_of_scope(source: str, number: int, fields: Sequence[str]) -> OutOfScope:
    if len(fields) < 3 or not fields[2].strip():
        raise RulesError(source, number, "OUTOFSCOPE needs an id (or *) and a URL regular expression")
    ids = frozenset(part.strip() for part in fields[1].split(","))
    bad = sorted(i for i in ids if i != "*" and not _ID.fullmatch(i))
    if bad or not ids:
        raise RulesError(
            source, number, f"OUTOFSCOPE: expected plugin ids or *, got {quoted(fields[1].strip())}"
        )
    expression = "\t".join(fields[2:]).strip()
    try:
        pattern = re.compile(expression)
    except re.error as exc:
        raise RulesError(
            source, number, f"OUTOFSCOPE: invalid regular expression {quoted(expression)}: {exc}"
        ) from None
    return OutOfScope(ids, pattern, number)


def load_rules(path: Path, source: str = "") -> Rules:
    """Read and parse a rules file; `source` is how messages name it (default: the path)."""
    name = source or str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # files saved by Windows editors often start with a BOM
    except OSError as exc:
        raise RulesError(name, 0, f"cannot read the rules file ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise RulesError(name, 0, f"not UTF-8 text ({exc.reason})") from None
    return parse_rules(text, name)


# --- the gate ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GatedAlert:
    alert: ZapAlert  # the instances in scope (all of them when the decision is OUTOFSCOPE)
    decision: str  # one of DECISIONS
    reason: str
    dropped: int = 0  # instances removed by OUTOFSCOPE rules

    @property
    def failed(self) -> bool:
        return self.decision == "FAIL"


@dataclass(frozen=True)
class GateResult:
    alerts: tuple[GatedAlert, ...]
    fail_on: tuple[str, ...]
    rules_source: str

    @property
    def failures(self) -> list[GatedAlert]:
        return [g for g in self.alerts if g.failed]

    @property
    def passed(self) -> bool:
        return not self.failures

    def failed_ids(self) -> list[str]:
        """The plugin ids that fail the gate, each once, in report order."""
        return list(dict.fromkeys(g.alert.plugin_id for g in self.failures))

    def count(self, decision: str) -> int:
        return sum(1 for g in self.alerts if g.decision == decision)


def apply_gate(alerts: Iterable[ZapAlert], rules: Rules, fail_on: Iterable[str]) -> GateResult:
    fail_risks = tuple(fail_on)
    unknown = [r for r in fail_risks if r not in RISKS]
    if unknown:
        raise ValueError(f"fail_on: unknown risk(s) {unknown} (known: {', '.join(RISKS)})")
    gated: list[GatedAlert] = []
    for alert in alerts:
        kept = [i for i in alert.instances if not any(o.applies(alert, i.uri) for o in rules.out_of_scope)]
        dropped = alert.count - len(kept)
        if alert.instances and not kept:
            line = next(o.line for o in rules.out_of_scope if o.applies(alert, alert.instances[0].uri))
            reason = f"every URL is out of scope (rules line {line})"
            gated.append(GatedAlert(alert, "OUTOFSCOPE", reason, dropped))
            continue
        decision, reason = _decide(alert, rules.rule_for(alert), fail_risks)
        if dropped:
            reason += f"; {dropped} URL(s) out of scope"
        gated.append(GatedAlert(alert.with_instances(kept), decision, reason, dropped))
    return GateResult(tuple(gated), fail_risks, rules.source)


def _decide(alert: ZapAlert, rule: Rule | None, fail_on: tuple[str, ...]) -> tuple[str, str]:
    where = f"rules line {rule.line}: {rule.action}" if rule else ""
    if rule is not None and rule.action == "IGNORE":
        return "IGNORE", where + (f" ({rule.comment})" if rule.comment else "")
    if alert.risk in fail_on:
        return "FAIL", f"risk {alert.risk} is in fail_on" + (f"; {where}" if where else "")
    if rule is not None and rule.action == "FAIL":
        return "FAIL", where + (f" ({rule.comment})" if rule.comment else "")
    if rule is not None:
        return rule.action, where
    return "WARN", f"no rule; risk {alert.risk} is not in fail_on"
