"""DR-ZAP: security scan of the release under test (playbook §8, OWASP ZAP baseline): no High or Medium alerts.

A ZAP daemon, or the builtin passive engine where there is no Java, scans the matrix target within [scope];
every alert is kept in artifacts/zap/ and listed in the report with the gate's decision."""

from __future__ import annotations

import pytest

from fixtures.zap import ZapScan

pytestmark = [
    pytest.mark.rollback,
    pytest.mark.bluegreen,
    pytest.mark.dr_zap,
    pytest.mark.phase("DR-ZAP"),
]


def test_security_scan_reaches_the_release(zap_scan: ZapScan) -> None:
    """The scanner reached the release under test (green's own address in Blue/Green) and scanned its pages,
    staying within [scope] allowed_hosts."""
    result = zap_scan.result
    if not result.pages:
        pytest.fail(f"DR-ZAP: the scan of {result.target} looked at no page ({result.engine})", pytrace=False)


def test_no_high_or_medium_alerts(zap_scan: ZapScan) -> None:
    """No alert at a risk in [zap] fail_on (High and Medium by default) unless the rules file IGNOREs it, and
    none the rules file marks FAIL; WARN and INFO alerts are reported, not failed."""
    gate = zap_scan.gate
    if gate.passed:
        return
    details = "\n".join(
        f"  {g.alert.plugin_id} {g.alert.name} ({g.alert.risk}, {g.alert.count} instance(s), "
        f"e.g. {(g.alert.uris or [''])[0]}): {g.reason}"
        for g in gate.failures
    )
    others = ", ".join(
        f"{g.alert.alert_ref} ({g.alert.risk}, {g.decision})" for g in gate.alerts if not g.failed
    )
    pytest.fail(
        f"DR-ZAP gate failed on plugin id(s) {', '.join(gate.failed_ids())} "
        f"(fail_on {', '.join(gate.fail_on)}; rules {gate.rules_source}):\n{details}"
        + (f"\n  also reported, not failing: {others}" if others else ""),
        pytrace=False,
    )
