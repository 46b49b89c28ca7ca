"""Preflight time for a remote environment: how long the runbook takes to check everything before it touches
anything (target: <= 1 s without tools, <= 3 s with PRE's browser version check).

    python -m benchmarks.preflight [--runs 5]

Prints, per run: loading and validating the environment file plus every preflight check of a Blue/Green run
(command templates, programs on PATH, files and folders, scope, evidence directory, approval), in process; the
browser tool check (browser and chromedriver found, `--version` of both, majors compared); and a whole
`pytest --collect-only` of the runbook with that environment (interpreter start, plugins, collection, preflight)
as an operator's command line pays it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from drivers.browser import check_browser_tools
from drivers.config import load_environment
from plugins import preflight
from plugins.state import RunbookRun, RunOptions

ROOT = Path(__file__).resolve().parents[1]


def write_env(base: Path) -> Path:
    for folder in ("offline", "logs"):
        (base / folder).mkdir(exist_ok=True)
    py = json.dumps(sys.executable)
    verbs = {
        "stop_site": "{slot}",
        "recycle_pool": "{slot}",
        "deploy": "{package}",
        "start_site": "{version}",
        "switch": "{slot}",
        "active": "{env}",
    }
    commands = "\n".join(f'{verb} = [{py}, "script.py", "{arg}"]' for verb, arg in verbs.items())
    text = f"""name = "Stage"
kind = "remote"
[service]
base_url = "http://127.0.0.1:9"
[slots]
blue = "http://127.0.0.1:10"
green = "http://127.0.0.1:11"
[packages]
dir = "{(base / "offline").as_posix()}"
[paths]
log_dirs = ["{(base / "logs").as_posix()}"]
timeline_dir = "{(base / "logs").as_posix()}"
[drivers]
deploy = "command"
router = "command"
[drivers.command]
{commands}
[notify]
webhook_url = "http://127.0.0.1:9/hook"
[approval]
required = true
[scope]
allowed_hosts = ["127.0.0.1"]
"""
    path = base / "Stage.toml"
    path.write_text(text, encoding="utf-8")
    return path


def in_process(env_file: Path, evidence: Path) -> tuple[float, int]:
    started = time.perf_counter()
    env = load_environment(env_file)
    run = RunbookRun(env, RunOptions(evidence_dir=evidence, approved_by="A. Operator"), ROOT)
    run.flow = "bluegreen"
    problems = preflight.check(run, ["PRE", "BG-1", "DR-SMOKE", "BG-3", "BG-4", "BG-5"], plan_only=False)
    return time.perf_counter() - started, len(problems)


def command_line(env_file: Path, evidence: Path) -> float:
    cmd = [sys.executable, "-m", "pytest", "-m", "bluegreen", f"--env-file={env_file}",
           f"--evidence-dir={evidence}", "--approved-by", "A. Operator", "--collect-only", "-q", "-p", "no:cacheprovider"]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, capture_output=True, check=False, timeout=120)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="preflight-bench-") as tmp:
        base = Path(tmp)
        (base / "script.py").write_text("")
        env_file = write_env(base)
        checks, tools, lines = [], [], []
        problems = 0
        for _ in range(args.runs):
            seconds, problems = in_process(env_file, base / "reports")
            checks.append(seconds)
            tool = check_browser_tools(load_environment(env_file).browser)
            tools.append(tool.duration_s)
            lines.append(command_line(env_file, base / "reports"))
    print(f"preflight of a remote Blue/Green run, {args.runs} runs, medians:")
    print(f"  environment file + every preflight check (in process): {statistics.median(checks) * 1000:.1f} ms "
          f"({problems} problems; target <= 1 s)")  # fmt: skip
    print(
        f"  PRE browser tool check (find + --version of both):     {statistics.median(tools) * 1000:.1f} ms"
    )
    print(
        f"  with it:                                                {(statistics.median(checks) + statistics.median(tools)) * 1000:.1f} ms (target <= 3 s)"
    )
    print(
        f"  whole `pytest --collect-only` command line:             {statistics.median(lines):.2f} s "
        "(interpreter, plugins, collection, preflight)"
    )


if __name__ == "__main__":
    main()
