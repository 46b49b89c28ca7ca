"""DR-AXE serial vs pytest-xdist: ``python -m benchmarks.parallel_axe [--runs 3] [--warmup 1]``.

Runs the DR-AXE row as an operator does, a whole pytest process against the embedded Lab, on 10 pages:

    python -m pytest -m dr_axe --env-file=<copy> --evidence-dir=<tmp>/reports -p no:cacheprovider -q
    ... the same with -n 2 (two workers, two browsers, still one evidence bundle)

`<copy>` is environments/Lab.toml with its own Lab directory (`[lab] dir = "<tmp>/lab"`) and `[axe] pages` set
to PAGES. Before anything is timed, a Lab started by this script proves that each page answers 200 with HTML
to the signed-in operator (no redirect followed).

The two variants alternate, and the order flips every round (serial, parallel, parallel, serial, ...), so a
drift of the machine's load weighs on both; `--warmup` untimed rounds come first (bytecode, Chromium's files
in the page cache). Each figure is the wall time of the whole process (time.perf_counter around
subprocess.run: interpreter start, collection, the Lab's start and stop, the browsers, the scans, the evidence
bundle and its seal). A run counts only when it passed: exit 0, every test passed (the 10 page tests and the
baseline review, "11 passed"), exactly one new bundle directory that `python -m plugins.evidence verify`
accepts, its journal holding one axe.scan per page and as many browser.start as workers, and no Lab left
running; otherwise the benchmark prints BENCHMARK INVALID with the output's tail and exits 1.

Prints figures; asserts nothing about time. The reference machine has 2 cores and may be busy with other work:
the load average is printed next to the figures.
"""

from __future__ import annotations

import argparse
import http.cookiejar
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from benchmarks._project import children_cpu_s, load_words, passed_count
from lab import Lab
from plugins.journal import read_events

ROOT = Path(__file__).resolve().parents[1]
WORKERS = 2
TIMEOUT_S = 300.0
# The 5 pages of environments/Lab.toml, the API documentation page, and variants the Lab serves: the sign-in
# form with a `next` (lab/mcms/web.py login_form puts it in the form's hidden field) and the items list with a
# query string (the handler ignores it: same page, another URL).
PAGES = [
    "/",
    "/login",
    "/dashboard",
    "/items",
    "/items/new",
    "/swagger/index.html",
    "/login?next=/items",
    "/login?next=/items/new",
    "/login?next=/swagger/index.html",
    "/items?view=all",
]
# Besides one test per page, DR-AXE has one review of the baseline (test_accepted_findings_are_still_needed).
EXPECTED_PASSED = len(PAGES) + 1
_SUMMARY_BAD = re.compile(r"\b\d+ (failed|errors?|skipped|xfailed|xpassed)\b")
_SESSION_S = re.compile(r" in (\d+(?:\.\d+)?)s\b")


@dataclass(frozen=True)
class Run:
    variant: str  # "serial" or "-n 2"
    wall_s: float
    pytest_s: float  # pytest's own "in N s" (from its session start; no interpreter start, no exit)
    cpu_s: float  # user + system of pytest and the descendants waited for (NaN where unknown)
    bundle: str
    browsers: int
    load_1m: float  # the 1-minute load average when the run had ended (NaN where unknown)


def invalid(what: str, output: str = "") -> NoReturn:
    tail = "\n".join(output.strip().splitlines()[-30:])
    print(f"BENCHMARK INVALID: {what}; a figure of a broken run means nothing.", flush=True)
    if tail:
        print(f"Last lines:\n{tail}", flush=True)
    sys.exit(1)


def write_env(workdir: Path) -> Path:
    """environments/Lab.toml with its own Lab directory and [axe] pages = PAGES."""
    text = (ROOT / "environments" / "Lab.toml").read_text(encoding="utf-8")
    lab_line = 'dir = ".lab"'
    pages_line = re.compile(r"^pages = \[.*\]$", re.MULTILINE)
    if text.count(lab_line) != 1 or len(pages_line.findall(text)) != 1:
        invalid(f"environments/Lab.toml: expected one line {lab_line!r} and one 'pages = [...]' line")
    text = text.replace(lab_line, f'dir = "{(workdir / "lab").as_posix()}"')
    quoted = ", ".join(f'"{p}"' for p in PAGES)
    text = pages_line.sub(lambda _m: f"pages = [{quoted}]", text)
    env_file = workdir / "Lab.toml"
    env_file.write_text(text, encoding="utf-8")
    data = tomllib.loads(text)
    if data["axe"]["pages"] != PAGES or data["lab"]["dir"] != (workdir / "lab").as_posix():
        invalid(f"{env_file}: the copy does not say [axe] pages = PAGES and [lab] dir = <tmp>/lab")
    return env_file


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx is the answer, not something to follow


def status_of(
    opener: urllib.request.OpenerDirector, url: str, data: bytes | None = None
) -> tuple[int, str, str]:
    """Status, Content-Type and body of one request, redirects not followed."""
    try:
        with opener.open(url, data=data, timeout=10) as response:
            body = response.read().decode("utf-8", "replace")
            return response.status, response.headers.get("Content-Type", ""), body
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), ""


def check_pages(lab_dir: Path, username: str, password: str) -> list[tuple[str, int, str]]:
    """Start a Lab, sign in as the operator (as DR-AXE does with [axe] login), GET every page of PAGES."""
    lab = Lab(lab_dir)
    lab.start()
    try:
        base = lab.public_url
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
            _NoRedirect(),
        )
        status, _, form = status_of(opener, base + "/login")
        token = re.search(r'name="__RequestVerificationToken" value="([^"]+)"', form)
        if status != 200 or token is None:
            invalid(f"{base}/login: HTTP {status}, no sign-in form to check the pages behind it")
        fields = {"user": username, "password": password, "next": "/dashboard"}
        fields["__RequestVerificationToken"] = token.group(1)
        status, _, _ = status_of(opener, base + "/login", urllib.parse.urlencode(fields).encode())
        if status != 303:
            invalid(f"{base}/login: signing in as {username} answered HTTP {status}, not 303")
        return [(page, *status_of(opener, base + page)[:2]) for page in PAGES]
    finally:
        lab.stop()


def bundles(reports: Path) -> set[Path]:
    return {p for p in reports.iterdir() if p.is_dir()} if reports.is_dir() else set()


def environ() -> dict[str, str]:
    """This process's environment without what would change the runbook's run (the command line says it)."""
    drop = ("PYTEST_ADDOPTS", "RUNBOOK_ENV", "RUNBOOK_EVIDENCE_DIR")
    return {k: v for k, v in os.environ.items() if k not in drop}


def one_run(parallel: bool, env_file: Path, reports: Path, lab_dir: Path) -> Run:
    variant = f"-n {WORKERS}" if parallel else "serial"
    xdist = ["-n", str(WORKERS)] if parallel else []
    command = [sys.executable, "-m", "pytest", *xdist, "-m", "dr_axe", f"--env-file={env_file}",
               f"--evidence-dir={reports}", "-p", "no:cacheprovider", "-q"]  # fmt: skip
    before = bundles(reports)
    cpu_before = children_cpu_s()
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S, check=False, env=environ()
        )
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        left = Lab.attach(lab_dir)
        if left is not None:
            left.stop()
        invalid(f"{variant}: no exit within {TIMEOUT_S:.0f} s", out)
    wall = time.perf_counter() - started
    cpu = children_cpu_s() - cpu_before
    output = proc.stdout + "\n" + proc.stderr
    left = Lab.attach(lab_dir)
    if left is not None:
        left.stop()
        invalid(f"{variant}: the run left its Lab running in {lab_dir} (now stopped)", output)
    summary = next((ln for ln in reversed(proc.stdout.splitlines()) if ln.strip()), "")
    passed = passed_count(proc.stdout)
    if proc.returncode != 0 or passed != EXPECTED_PASSED or _SUMMARY_BAD.search(summary):
        invalid(
            f"{variant}: exit {proc.returncode}, {passed} passed (expected {EXPECTED_PASSED}: "
            f"{len(PAGES)} pages + the baseline review, nothing else): {summary.strip()!r}",
            output,
        )
    new = bundles(reports) - before
    if len(new) != 1:
        invalid(f"{variant}: {len(new)} new bundle directories in {reports}, expected exactly one", output)
    (bundle,) = new
    verify = subprocess.run(
        [sys.executable, "-m", "plugins.evidence", "verify", str(bundle)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=environ(),
    )
    if verify.returncode != 0:
        invalid(
            f"{variant}: plugins.evidence verify {bundle.name} exited {verify.returncode}",
            verify.stdout + verify.stderr,
        )
    events = read_events(bundle / "evidence.jsonl")
    actions = [e["data"] for e in events if e["kind"] == "action"]
    scanned = sorted(str(a.get("detail", {}).get("page")) for a in actions if a.get("name") == "axe.scan")
    browsers = sum(a.get("name") == "browser.start" for a in actions)
    if scanned != sorted(PAGES) or browsers != (WORKERS if parallel else 1):
        invalid(
            f"{variant}: the journal of {bundle.name} has {len(scanned)} axe.scan (expected one per page: "
            f"{sorted(set(PAGES) - set(scanned))} missing) and {browsers} browser.start "
            f"(expected {WORKERS if parallel else 1})",
            output,
        )
    found = _SESSION_S.search(summary)
    pytest_s = float(found.group(1)) if found else float("nan")
    load_1m = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return Run(variant, wall, pytest_s, cpu, bundle.name, browsers, load_1m)


def describe(run: Run) -> str:
    return (
        f"{run.variant:>6}: wall {run.wall_s:6.2f} s (pytest's own {run.pytest_s:6.2f} s), "
        f"CPU {run.cpu_s:5.2f} s, {run.browsers} browser(s), {len(PAGES) / run.wall_s:4.2f} pages/s, "
        f"bundle {run.bundle} verified, 1-min load {run.load_1m:.2f}"
    )


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):6.2f} s (min {min(values):.2f}, max {max(values):.2f}, n={len(values)})"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each variant (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs >= 1, --warmup >= 0")
    with tempfile.TemporaryDirectory(prefix="parallel-axe-bench-") as tmp:
        workdir = Path(tmp)
        env_file = write_env(workdir)
        lab_dir, reports = workdir / "lab", workdir / "reports"
        e2e = tomllib.loads(env_file.read_text(encoding="utf-8"))["e2e"]
        checked = check_pages(workdir / "check-lab", e2e["username"], e2e["password"])
        print(f"[axe] pages ({len(PAGES)}), each checked on a Lab of this script as {e2e['username']}, "
              "redirects not followed:")  # fmt: skip
        for page, status, content_type in checked:
            print(f"  {page:<34} HTTP {status}  {content_type}")
        bad = [p for p, status, ctype in checked if status != 200 or not ctype.startswith("text/html")]
        if bad or len(set(PAGES)) != len(PAGES):
            invalid(f"pages that do not answer 200 with HTML, or repeated: {bad or PAGES}")
        print(f"environment file: copy of environments/Lab.toml, [lab] dir = {lab_dir}")
        print(f"{load_words()} before the runs")
        for i in range(args.warmup):
            for parallel in (False, True):
                run = one_run(parallel, env_file, reports, lab_dir)
                print(f"warm-up {i + 1} {describe(run)} (not counted)", flush=True)
        runs: list[Run] = []
        for i in range(args.runs):
            order = (False, True) if i % 2 == 0 else (True, False)
            for parallel in order:
                run = one_run(parallel, env_file, reports, lab_dir)
                runs.append(run)
                print(f"run {i + 1} {describe(run)}", flush=True)
        after = load_words()
    serial = [r.wall_s for r in runs if r.variant == "serial"]
    par = [r.wall_s for r in runs if r.variant != "serial"]
    s_med, p_med = statistics.median(serial), statistics.median(par)
    s_own = statistics.median(r.pytest_s for r in runs if r.variant == "serial")
    p_own = statistics.median(r.pytest_s for r in runs if r.variant != "serial")
    s_cpu = statistics.median(r.cpu_s for r in runs if r.variant == "serial")
    p_cpu = statistics.median(r.cpu_s for r in runs if r.variant != "serial")
    print(f"\nDR-AXE on {len(PAGES)} pages, whole pytest process, {args.runs} run(s) each, alternating:")
    print(f"  serial        wall {spread(serial)}  pytest's own {s_own:.2f} s  CPU {s_cpu:.2f} s")
    print(f"  -n {WORKERS}          wall {spread(par)}  pytest's own {p_own:.2f} s  CPU {p_cpu:.2f} s")
    print(f"  ratio parallel/serial   {p_med / s_med:.2f}  (median wall times)")
    print(f"  speed-up serial/parallel {s_med / p_med:.2f}x")
    print(
        f"  pages/s       serial {len(PAGES) / s_med:.2f}, -n {WORKERS} {len(PAGES) / p_med:.2f} (pages / median wall)"
    )
    print(f"  {after} after the runs (os.cpu_count() = {os.cpu_count()}).")
    print(
        "  The machine has 2 cores and may be busy with other work meanwhile: two workers mean two browsers\n"
        "  and two pytest processes competing for those cores with the Lab and with whatever else runs, so\n"
        "  the figures hold for this load, not for an idle machine. CPU = user + system seconds of pytest and\n"
        "  the descendants it waited for."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
