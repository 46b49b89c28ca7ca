"""A remote environment's deploy and router scripts, as [drivers.command] calls them (the Linux stand-in for the
IIS PowerShell scripts). Every call is appended to calls.jsonl first, so a test can prove which slot was touched.

    site_ctl.py SITE stop_site|recycle_pool|deploy|start_site|current_version|active|switch --slot S
                [--package ZIP] [--version V]

SITE holds site.json (slot ports, router control URL), state/<slot>.json (pid, argv, version laid out) and
logs/. Exit 0 on success; any other exit code with a message on stderr is a failure, as the contract says.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _state(site: Path, slot: str) -> dict[str, object]:
    path = site / "state" / f"{slot}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _save(site: Path, slot: str, state: dict[str, object]) -> None:
    path = site / "state" / f"{slot}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie child of an exited starter still answers kill(0)
        return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0
    except OSError:
        return True


def _control(site: Path, method: str, path: str, body: dict[str, str] | None = None) -> dict[str, object]:
    cfg = json.loads((site / "site.json").read_text())
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(cfg["control"] + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=5) as response:
        return dict(json.load(response))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("site", type=Path)
    parser.add_argument("verb")
    parser.add_argument("--slot", default="")
    parser.add_argument("--package", default="")
    parser.add_argument("--version", default="")
    args = parser.parse_args()
    site: Path = args.site
    with (site / "calls.jsonl").open("a") as log:
        log.write(json.dumps({"verb": args.verb, "slot": args.slot, "package": args.package, "version": args.version,
                              "t": time.time()}) + "\n")  # fmt: skip
    cfg = json.loads((site / "site.json").read_text())
    if (site / "slow" / args.verb).exists():
        time.sleep(float((site / "slow" / args.verb).read_text()))
    if (site / "fail" / args.verb).exists():
        print(f"{args.verb} failed: {(site / 'fail' / args.verb).read_text()}", file=sys.stderr)
        return 1
    if args.verb == "active":
        print(_control(site, "GET", "/active")["active"])
        return 0
    if args.verb == "switch":
        _control(site, "POST", "/switch", {"to": args.slot})
        print(f"switched to {args.slot}")
        return 0
    slot = "blue" if args.slot == "active" else args.slot  # a single-node site's one node is blue
    if slot not in cfg["ports"]:
        print(f"unknown slot {slot!r}", file=sys.stderr)
        return 2
    state = _state(site, slot)
    pid = int(state.get("pid") or 0)
    if args.verb == "stop_site":
        if pid and _alive(pid):
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if not _alive(pid):
                    break
                time.sleep(0.05)
        state["pid"] = 0
        _save(site, slot, state)
        print(f"{slot} stopped")
        return 0
    if args.verb == "recycle_pool":
        print(f"{slot} pool recycled")
        return 0
    if args.verb == "deploy":
        if pid and _alive(pid):
            print(f"{slot} is running: stop it before deploying", file=sys.stderr)
            return 3
        with zipfile.ZipFile(args.package) as zf:
            state["version"] = json.loads(zf.read("release.json"))["version"]
        _save(site, slot, state)
        print(f"{slot} has {state['version']}")
        return 0
    if args.verb == "start_site":
        if pid and _alive(pid):
            return 0
        argv = [sys.executable, str(HERE / "slot_server.py"), "--port", str(cfg["ports"][slot]),
                "--version", str(state.get("version") or ""), "--slot", slot]  # fmt: skip
        logs = site / "logs"
        logs.mkdir(exist_ok=True)
        with (logs / f"{slot}.log").open("ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=out, start_new_session=True)
        state["pid"] = proc.pid
        _save(site, slot, state)
        print(f"{slot} started (pid {proc.pid})")
        return 0
    if args.verb == "current_version":
        print(state.get("version") or "")
        return 0
    print(f"unknown verb {args.verb}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
