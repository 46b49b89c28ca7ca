"""report.html of real Lab drills, read as an operator reads it: the headline first, in words; printed to PDF by
Chromium (`--print-to-pdf`) with the headline on page 1, rendered to PNG by pdftoppm (poppler-utils); the
monitoring chart of a rolled-back release marks the switch and the rollback and comes before the scanners."""

from __future__ import annotations

import getpass
import html
import json
import re
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REASON, Drill
from tests.tools import system_tool

pytestmark = [pytest.mark.lab, pytest.mark.drill]


def text_of(markup: str) -> str:
    """What a reader sees of a piece of HTML, white space collapsed."""
    markup = re.sub(r"<(style|script)\b.*?</\1>", "", markup, flags=re.DOTALL)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", markup)).split())


def headline_of(report: str) -> str:
    found = re.search(r'<h1 id="runbook-headline"[^>]*>(.*?)</h1>', report, flags=re.DOTALL)
    assert found, "report.html has no headline"
    return text_of(found.group(1))


def print_to_pdf(report: Path, pdf: Path, profile: Path) -> None:
    """Chromium prints the report as a reader's browser would (its scripts run; nothing leaves the machine: no
    name is resolved, no proxy is used, a fresh profile)."""
    chromium = system_tool("chromium")
    subprocess.run(
        [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
         "--no-proxy-server", "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={profile}",
         f"--print-to-pdf={pdf}", report.as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    assert pdf.read_bytes()[:5] == b"%PDF-", f"Chromium wrote no PDF to {pdf}"


def test_a_rollback_drill_report_says_what_happened_first_and_prints_with_the_headline_on_page_1(
    rollback_drill: Drill, tmp_path: Path
) -> None:
    d = rollback_drill  # --reason REASON, in the zone KST; shared (tests/conftest.py): only read here
    assert d.returncode == 0, d.output
    (start,) = d.kinds("run.start")
    assert start["data"]["reason"] == REASON
    assert start["data"]["operator"] == {"user": getpass.getuser(), "host": socket.gethostname()}
    assert start["data"]["local_time"] == {"name": "KST", "utc_offset": "UTC+09:00", "offset_s": 32400}
    report_path = d.bundle / "report.html"
    report = report_path.read_text(encoding="utf-8")
    head = headline_of(report)
    t = r"\d\d:\d\d:\d\d"
    assert re.fullmatch(
        r"MCMS on Lab was rolled back from 1\.1\.0 to 1\.0\.0 and is serving 1\.0\.0\. "
        rf"Approved automatically \(a Lab drill\) at \d\d:\d\d KST; run by {re.escape(getpass.getuser())}@"
        rf"{re.escape(socket.gethostname())} from {t} to {t} UTC \({t} to {t} KST\)\.",
        head,
    ), head
    # The headline is the first thing on the page; then the facts, the phases, and pytest-html's own part.
    body = report[report.index("<body>") :]
    assert text_of(body).startswith(head)
    order = [body.index(s) for s in ('id="runbook-headline"', REASON, 'id="runbook-phases"',
                                     'id="environment"', 'id="results-table"')]  # fmt: skip
    assert order == sorted(order)
    facts = text_of(body[: body.index('id="runbook-phases"')])
    assert re.search(
        r"Started 20\d\d-\d\d-\d\d \d\d:\d\d:\d\d UTC; 20\d\d-\d\d-\d\d \d\d:\d\d:\d\d KST \(UTC\+09:00\)",
        facts,
    )
    # The hash of the last event the report could see is the one manifest.json records at the seal; the
    # manifest's own hash and the seal's cannot be in a file the manifest covers: the report says where they are.
    manifest = json.loads((d.bundle / "manifest.json").read_text(encoding="utf-8"))
    assert (
        f"the last one (event {manifest['journal_events']}, run.end) has hash {manifest['journal_last_hash']}"
        in facts
    )
    seal = d.events[-1]
    assert seal["kind"] == "seal"
    assert seal["data"]["manifest_sha256"] not in report
    assert seal["hash"] not in report
    assert f"python -m plugins.evidence verify {d.bundle}" in facts

    pdf = tmp_path / "report.pdf"
    print_to_pdf(report_path, pdf, tmp_path / "profile")
    pdftoppm = system_tool("pdftoppm")
    subprocess.run([pdftoppm, "-r", "50", "-png", str(pdf), str(tmp_path / "page")], check=True, timeout=120)
    pages = sorted(tmp_path.glob("page-*.png"))
    print(f"report.pdf: {len(pages)} pages")
    assert pages, "pdftoppm rendered no page"
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pages)
    pdftotext = str(Path(pdftoppm).with_name("pdftotext"))  # poppler-utils ships both
    first = subprocess.run(
        [pdftotext, "-f", "1", "-l", "1", str(pdf), "-"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert head in " ".join(first.split()), first[:800]
    assert REASON in " ".join(first.split())
    if len(pages) > 1:
        second = subprocess.run(
            [pdftotext, "-f", "2", "-l", "2", str(pdf), "-"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        assert head not in " ".join(second.split())


def test_a_rolled_back_release_report_charts_the_switch_and_the_rollback_before_the_scanners(
    rolled_back_release_drill: Drill,
) -> None:
    d = rolled_back_release_drill  # in the zone KST; shared (tests/conftest.py): only read here
    assert d.returncode == 1, d.output
    report = (d.bundle / "report.html").read_text(encoding="utf-8")
    head = headline_of(report)
    assert re.match(
        r"Release 1\.1\.0 of MCMS on Lab was rolled back: traffic was on green for \d+\.\d s, then went back to "
        r"blue when BG-4 \(switch traffic to the idle slot and monitor\) failed; blue serves 1\.0\.0 again\. ",
        head,
    ), head
    assert 'data-kind="release-rolled-back"' in report
    monitor = report.index('id="runbook-monitor"')
    assert monitor < report.index('id="runbook-zap"')
    assert monitor < report.index('id="runbook-axe"')
    section = report[monitor : report.index("</div>", monitor)]
    # Axes with their titles, a legend, and the two moments, each at the time the journal gives it.
    assert "probe latency (ms)" in section
    assert re.search(r"seconds after the switch at \d\d:\d\d:\d\d UTC \(\d\d:\d\d:\d\d KST\)", section)
    for label in ("probe latency", "probe OK", "probe failed", "SLA p95 800 ms", "switch", "rollback"):
        assert f">{label}</text></g>" in section, label
    marks = re.findall(r'<line class="mark (switch|rollback)" x1="([\d.]+)"', section)
    assert [kind for kind, _ in marks] == ["switch", "rollback"], marks
    marks = [(x, kind) for kind, x in marks]
    assert float(marks[0][0]) < float(marks[1][0])
    switched, back = [e for e in d.kinds("action") if e["data"]["name"] == "switch_traffic"]
    assert (switched["data"]["target"], back["data"]["target"]) == ("green", "blue")
    window = text_of(section)
    assert f"switch to green at {switched['ts'][11:19]} UTC" in window
    assert f"traffic back to blue (rollback) at {back['ts'][11:19]} UTC" in window
    # The red probes sit between the two moments.
    dots = re.findall(r'<circle cx="([\d.]+)" cy="[\d.]+" r="4" fill="#a4262c">', section)
    assert dots
    assert all(float(marks[0][0]) < float(x) <= float(marks[1][0]) for x in dots)
