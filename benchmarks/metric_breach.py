"""A breach only the metrics see: time from the fault's onset, and from the first breaching evaluation, to
traffic restored on blue.

Runs `pytest -m bluegreen --env-file=<Lab.toml + [monitor.metrics]> --lab-fault green-queue-backlog` as an
operator does, with Debian's Prometheus on loopback scraping the Lab's slots (the Lab's
prometheus-targets.json, 1 s scrape and refresh intervals) and the query
`max(mcms_worker_queue_depth{slot="{slot}"})` with max = 5 evaluated every [monitor] interval_s (1 s in the
Lab); alert_after_failures = 2. Per run it reads:

- onset: the time green's portal logged the start of the backlog (lab/logs/app/green-web.log);
- first breaching evaluation: the first of the failed evaluations in a row that made the breach (metrics.csv);
- detection: the monitor's breach note in the journal;
- switched: the journal's switch_traffic action to blue (the router answered);
- restored: the journal's rollback event (blue verified healthy through the public address).

Prints each run and the medians; asserts nothing.

    python -m benchmarks.metric_breach [--runs 5] [--fast]
"""

from __future__ import annotations

import argparse
import csv
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from plugins.journal import read_events

ROOT = Path(__file__).resolve().parents[1]
# Every row, as an operator runs it. Without the browser rows and the scan (--fast) the switch can come before
# Prometheus scrapes green at all: it starts scraping targets a file_sd file adds up to ~6 s after the Lab wrote
# it (the 1 s refresh plus Prometheus' own 5 s throttle of discovery updates), and a query without data for two
# evaluations in a row is a breach of its own ("had no data", no_data = "fail").
MARKEXPR = "bluegreen"
FAST_MARKEXPR = "bluegreen and not dr_axe and not dr_e2e and not dr_zap"
QUERY = 'max(mcms_worker_queue_depth{slot="{slot}"})'


@dataclass
class Run:
    exit_code: int
    onset_to_first_breaching_s: float
    first_breaching_to_detection_s: float
    detection_to_switched_s: float
    onset_to_switched_s: float
    onset_to_restored_s: float
    first_breaching_to_restored_s: float
    breach: str


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def environment(workdir: Path, prom_url: str) -> Path:
    text = (ROOT / "environments" / "Lab.toml").read_text(encoding="utf-8")
    text = text.replace('dir = ".lab"', f'dir = "{(workdir / "lab").as_posix()}"')
    text += (
        f'\n[monitor.metrics]\nurl = "{prom_url}"\ntimeout_s = 2.0\n'
        f"[monitor.metrics.queries.queue_depth]\nquery = '{QUERY}'\nmax = 5\nunit = \"jobs\"\n"
    )
    path = workdir / "Lab.toml"
    path.write_text(text, encoding="utf-8")
    return path


def one_run(workdir: Path, markexpr: str) -> Run:
    from tests.prometheus import Prometheus

    reports = workdir / "reports"
    with Prometheus(workdir / "prometheus", [workdir / "lab" / "prometheus-targets.json"]) as prom:
        env_file = environment(workdir, prom.url)
        cmd = [sys.executable, "-m", "pytest", "-m", markexpr, f"--env-file={env_file}",
               f"--evidence-dir={reports}", "--lab-fault", "green-queue-backlog", "-p", "no:cacheprovider", "-q"]  # fmt: skip
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    (bundle,) = [p for p in reports.iterdir() if p.is_dir() and p.name[:8].isdigit()]
    events = read_events(bundle / "evidence.jsonl")
    log = (workdir / "lab" / "logs" / "app" / "green-web.log").read_text(encoding="utf-8")
    found = re.search(r"^(\S+) web queue backlog: ", log, re.MULTILINE)
    breach = next(
        (e for e in events if e["kind"] == "note" and e["data"]["message"].startswith("monitor breach")), None
    )
    if found is None or breach is None:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise SystemExit(
            f"the run did not breach on the metric (exit {proc.returncode}); its output ends:\n{tail}"
        )
    if "above the maximum" not in breach["data"]["message"]:
        raise SystemExit(f"the breach was not the queue's climb: {breach['data']['message']}")
    onset = _ts(found.group(1))
    rows = list(csv.DictReader((bundle / "artifacts" / "metrics.csv").open(encoding="utf-8")))
    streak = 0
    for row in reversed(rows):
        if row["ok"] != "0":
            break
        streak += 1
    first_breaching = _ts(rows[len(rows) - streak]["ts"])
    detected = _ts(breach["ts"])
    switched = _ts(next(e["ts"] for e in events if e["kind"] == "action"
                        and e["data"]["name"] == "switch_traffic" and e["data"]["target"] == "blue"))  # fmt: skip
    restored = _ts(
        next(e["ts"] for e in events if e["kind"] == "rollback" and e["data"].get("result") == "succeeded")
    )

    def s(a: datetime, b: datetime) -> float:
        return round((b - a).total_seconds(), 3)

    return Run(
        exit_code=proc.returncode,
        onset_to_first_breaching_s=s(onset, first_breaching),
        first_breaching_to_detection_s=s(first_breaching, detected),
        detection_to_switched_s=s(detected, switched),
        onset_to_switched_s=s(onset, switched),
        onset_to_restored_s=s(onset, restored),
        first_breaching_to_restored_s=s(first_breaching, restored),
        breach=str(breach["data"]["message"]),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--fast", action="store_true", help="leave out the browser rows and the scan")
    args = parser.parse_args(argv)
    if shutil.which("prometheus") is None:
        print("prometheus not found: apt-get install prometheus (make setup does)", file=sys.stderr)
        return 2
    markexpr = FAST_MARKEXPR if args.fast else MARKEXPR
    runs: list[Run] = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="metric-breach-") as tmp:
            run = one_run(Path(tmp), markexpr)
        runs.append(run)
        print(
            f"run {i + 1}: exit {run.exit_code}; onset -> first breaching evaluation {run.onset_to_first_breaching_s} s, "
            f"-> detection {run.first_breaching_to_detection_s} s, detection -> switched to blue "
            f"{run.detection_to_switched_s} s; onset -> switched {run.onset_to_switched_s} s, "
            f"onset -> restored (blue verified) {run.onset_to_restored_s} s, "
            f"first breaching evaluation -> restored {run.first_breaching_to_restored_s} s",
            flush=True,
        )
    print(f"breach (last run): {runs[-1].breach}")
    for field in ("onset_to_first_breaching_s", "first_breaching_to_detection_s", "detection_to_switched_s",
                  "onset_to_switched_s", "onset_to_restored_s", "first_breaching_to_restored_s"):  # fmt: skip
        values = [getattr(r, field) for r in runs]
        print(
            f"median {field}: {statistics.median(values):.3f} (min {min(values):.3f}, max {max(values):.3f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
