"""The evidence bundle: reports/<UTC yyyymmddThhmmssZ>_<env>_<flow>/ (DESIGN.md "Evidence bundle").

Created when the run starts (after collection and every usage check), written as things happen (journal and
timeline are appended and flushed per event), sealed at the end (junit.xml, report.html, manifest.json).
`python -m plugins.evidence verify <bundle>` checks the chain and the manifest and says what was altered.
"""

from __future__ import annotations

import html
import json
import sys
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest

from drivers.base import plain_error
from drivers.config import redact_text
from plugins import journal as journal_mod
from plugins.flow import one_line, phase_of
from plugins.report import attach_html_report, html_unavailable, run_context
from plugins.state import RunbookRun, describe, run_key


class JournalWriter:
    name = "evidence.jsonl"

    def __init__(self, run: RunbookRun, path: Path) -> None:
        assert run.flow is not None
        self.journal = journal_mod.Journal(path, run.run_id, run.env.name, run.flow, redact=run.env.redact)

    def write(self, event: Mapping[str, Any]) -> None:
        self.journal.append(
            event["kind"], event["data"], phase=event["phase"], nodeid=event["nodeid"], ts=event["ts"]
        )

    def close(self) -> None:
        self.journal.close()


class TimelineWriter:
    """timeline.md: one row per step with its time, appended as it happens (playbook §6.5, §9)."""

    name = "timeline.md"

    def __init__(self, run: RunbookRun, path: Path) -> None:
        self.path, self.redact = path, run.env.redact
        header = (
            f"# Timeline: {run.env.name}, {run.flow}, run {run.run_id}\n\n"
            "| time (UTC) | phase | step |\n|---|---|---|\n"
        )
        self._file = path.open("a", encoding="utf-8")  # kept open; every row is flushed as it is written
        self._append(header)

    def write(self, event: Mapping[str, Any]) -> None:
        text = self.redact(describe(event)).replace("|", "\\|").replace("\n", " ")
        self._append(f"| {event['ts'][11:23]} | {event['phase'] or ''} | {text} |\n")

    def _append(self, text: str) -> None:
        self._file.write(text)
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _bundle_dir(run: RunbookRun) -> Path:
    base = run.options.evidence_dir / f"{run.run_id}_{_safe(run.env.name)}_{run.flow}"
    path, n = base, 1
    while path.exists():  # two runs in one second: never mix their evidence
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def start_bundle(session: pytest.Session, run: RunbookRun) -> None:
    config = session.config
    run.bundle = _bundle_dir(run)
    (run.bundle / "artifacts").mkdir(parents=True)
    run.writers = [
        JournalWriter(run, run.bundle / "evidence.jsonl"),
        TimelineWriter(run, run.bundle / "timeline.md"),
    ]
    run.record(
        "run.start",
        {
            "env": run.env.name,
            "env_file": str(run.env.source),
            "flow": run.flow,
            "rows": sorted(run.rows),
            "options": {
                "markexpr": config.option.markexpr,
                "approved_by": run.options.approved_by,
                "lab_faults": list(run.options.lab_faults),
                "keep_lab": run.options.keep_lab,
                "evidence_dir": str(run.options.evidence_dir),
            },
            **run_context(run),  # reason, who ran it (OS user @ host), the operator's local time zone
        },
        phase=None,
    )
    attach_html_report(session, run, run.bundle / "report.html")


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, object, object]:
    config = session.config
    run = config.stash.get(run_key, None)
    if (
        run is not None
        and run.flow is not None
        and not run.worker  # a worker of a parallel run writes into its controller's bundle
        and not (run.options.plan or config.option.collectonly)
    ):
        start_bundle(session, run)
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> Generator[None, object, object]:
    run = session.config.stash.get(run_key, None)
    active = run is not None and run.bundle is not None and not run.worker
    if active:
        assert run is not None
        failed = any(p.outcome == "failed" for p in run.phases.values()) or session.testsfailed > 0
        if run.site_down and session.exitstatus == 0:
            # A site left down is a failed run, whatever the tests said: exit code 1.
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
            exitstatus = int(session.exitstatus)
        outcome = "failed" if failed or run.site_down or exitstatus not in (0,) else "passed"
        run.record(
            "run.end",
            {
                "outcome": outcome,
                "exitstatus": int(exitstatus),
                "version_from": run.version_from,
                "version_to": run.version_to,
                "rollback_ran": run.rollback_ran,
                "rollback_result": run.rollback_result,
                "restore_result": run.restore_result,
                "blocked_by": run.blocked_by[0] if run.blocked_by else None,
                "warnings": len(run.warnings),
                "site_down": run.site_down,
            },
            phase=None,
        )
    try:
        return (yield)
    finally:
        if active:
            assert run is not None
            seal_bundle(session, run)


def seal_bundle(session: pytest.Session, run: RunbookRun) -> None:
    assert run.bundle is not None
    try:
        write_junit(session, run, run.bundle / "junit.xml")
    except Exception as exc:  # noqa: BLE001 - one writer failing must not lose the others
        run.writer_errors.append(f"junit.xml writer failed: {plain_error(exc)}")
    writer = run.writers[0] if run.writers else None
    for other in run.writers:
        if not isinstance(other, JournalWriter):
            other.close()  # every other writer is done before its file is scrubbed; the journal closes at the seal
    for path in sorted(run.bundle.rglob("*")):
        # The journal redacts before hashing; rewriting it here would break its chain.
        if path.name == "evidence.jsonl":
            continue
        if path.is_file() and path.suffix in (".html", ".xml", ".md", ".json", ".jsonl", ".csv", ".txt"):
            scrub_file(path, run.env.secrets)
    if isinstance(writer, JournalWriter):
        # The journal stays open until here: its last event, the seal, covers manifest.json, which covers
        # every other file. The seal's hash is the one the operator keeps with the change record.
        try:
            run.journal_last_hash = writer.journal.seal()["hash"]
        except Exception as exc:  # noqa: BLE001 - an unsealed bundle is reported, the run's outcome stands
            run.writer_errors.append(f"sealing the evidence bundle failed: {exc}")
    run.close_writers()
    try:
        session.config.hook.pytest_runbook_bundle_sealed(run=run)
    except Exception as exc:  # noqa: BLE001 - archiving a sealed bundle must not change the run's outcome
        run.writer_errors.append(f"after the seal: {plain_error(exc)}")


def scrub_file(path: Path, secrets: frozenset[str]) -> None:
    """Last line of defence: no secret, nor a fragment of one, survives in a written file, in any escaping."""
    if not secrets:
        return
    text = path.read_text(encoding="utf-8", errors="surrogateescape")
    escaped = {
        form
        for s in secrets
        for form in (html.escape(s), json.dumps(s)[1:-1], html.escape(json.dumps(s)[1:-1]))
    }
    cleaned = redact_text(text, secrets | escaped)
    if cleaned != text:
        path.write_text(cleaned, encoding="utf-8", errors="surrogateescape")


def write_junit(session: pytest.Session, run: RunbookRun, path: Path) -> None:
    """junit.xml for CI, from the same reports: one testcase per runbook test, its phase as a property."""
    reports = run.reports
    suite = ET.Element("testsuite", name=f"runbook {run.flow} {run.env.name}", timestamp=run.run_id)
    props = ET.SubElement(suite, "properties")
    for key, value in (
        ("env", run.env.name),
        ("flow", run.flow),
        ("run_id", run.run_id),
        ("version_from", run.version_from),
        ("version_to", run.version_to),
        ("rollback_ran", str(run.rollback_ran).lower()),
        ("outcome", run.outcome),
    ):
        ET.SubElement(props, "property", name=key, value=str(value or ""))
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    total = 0.0
    for item in session.items:
        item_reports = reports.get(item.nodeid, [])
        if not item_reports:
            continue
        duration = sum(r.duration for r in item_reports)
        total += duration
        counts["tests"] += 1
        module, _, name = item.nodeid.partition("::")
        case = ET.SubElement(
            suite,
            "testcase",
            classname=module.removesuffix(".py").replace("/", "."),
            name=name,
            time=f"{duration:.3f}",
        )
        case_props = ET.SubElement(case, "properties")
        ET.SubElement(case_props, "property", name="phase", value=phase_of(item) or "")
        for report in item_reports:
            if report.failed:
                tag = "failure" if report.when == "call" else "error"
                counts["failures" if tag == "failure" else "errors"] += 1
                node = ET.SubElement(case, tag, message=one_line(report))
                node.text = report.longreprtext
                break
            if report.skipped:
                counts["skipped"] += 1
                ET.SubElement(case, "skipped", message=one_line(report))
                break
    for key, count in counts.items():
        suite.set(key, str(count))
    suite.set("time", f"{total:.3f}")
    root = ET.Element("testsuites")
    root.append(suite)
    tree = ET.ElementTree(root)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    run = config.stash.get(run_key, None)
    if run is None or run.bundle is None:
        return
    tr = terminalreporter
    if run.site_down:
        tr.write_sep("!", f"SITE DOWN: {run.env.redact(run.site_down)}", red=True, bold=True)
    tr.section("runbook evidence")
    tr.write_line(f"Outcome:  {run.env.redact(run.outcome_words())}", red=bool(run.site_down))
    if run.version_from or run.version_to:
        tr.write_line(f"Versions: {run.versions_words()}")
    tr.write_line(
        f"Rollback: {'ran (' + (run.rollback_result or 'result unknown') + ')' if run.rollback_ran else 'did not run'}"
    )
    for warning in run.warnings:
        tr.write_line(f"WARNING:  {warning}", yellow=True)
    for error in run.writer_errors:
        tr.write_line(f"EVIDENCE WRITER ERROR: {error}", red=True)
    tr.write_line(f"Evidence: {run.bundle}")
    if run.journal_last_hash:
        tr.write_line(f"Journal:  last hash {run.journal_last_hash} (keep it with the change record)")
    report = run.bundle / "report.html"
    tr.write_line(
        f"Report:   {report}" if report.exists() else f"Report:   {html_unavailable(config) or 'not written'}"
    )
    lab = run.lab
    if lab and (run.options.keep_lab or lab.get("reused")):
        tr.write_line("Lab left running: " + ", ".join(f"{k} {v}" for k, v in lab["urls"].items()))
        tr.write_line("          stop it with `make clean-lab`")


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """A site left down is also the very last line the operator sees, after pytest's own summary."""
    run = config.stash.get(run_key, None)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if run is None or not run.site_down or reporter is None:
        return
    reporter.write_sep(
        "!", f"SITE DOWN on {run.env.name}: the runbook could not bring it back; restore it by hand now",
        red=True, bold=True,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    return journal_mod.main(argv)


if __name__ == "__main__":
    sys.exit(main())
