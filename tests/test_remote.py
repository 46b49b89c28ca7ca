"""The runbook against a remote environment made of loopback services and command scripts, not the Lab.

Blue and green are slot servers started by the environment's own scripts (tests/remote_site/site_ctl.py, the
Linux stand-in for the IIS PowerShell scripts), behind a real reverse proxy (lab/router.py, standing in for the
load balancer) on the public address. Unlike the Lab, this site starts with GREEN live. Every script call is
logged, so a test can prove which slot the runbook touched. A single-node rollback behind a proxy (that router,
or a real nginx) shows that RB-2 takes the proxy's 502 for a stopped site, and says so.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab import build_package, procs
from lab.nginx import LabNginx, stop_record
from plugins.journal import read_events, verify_bundle
from tests.lab_checks import assert_refused, closed_url
from tests.tools import system_tool

ROOT = Path(__file__).resolve().parents[1]
SITE_CTL = ROOT / "tests" / "remote_site" / "site_ctl.py"
pytestmark = [pytest.mark.drill]
NOT_BROWSER = "bluegreen and not dr_e2e and not dr_axe and not dr_zap"
ROLLBACK = "rollback and not dr_e2e and not dr_axe and not dr_zap"


@dataclass
class RemoteSite:
    dir: Path
    ports: dict[str, int]
    router_port: int
    control_port: int
    webhook_port: int
    processes: list[procs.ProcessRecord]

    @property
    def public_url(self) -> str:
        return f"http://127.0.0.1:{self.router_port}"

    def url(self, slot: str) -> str:
        return f"http://127.0.0.1:{self.ports[slot]}"

    def ctl(self, verb: str, slot: str = "", package: str = "") -> str:
        argv = [sys.executable, str(SITE_CTL), str(self.dir), verb, "--slot", slot, "--package", package]
        done = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30)
        return done.stdout

    def calls(self) -> list[dict[str, Any]]:
        path = self.dir / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def version_at(self, url: str) -> str | None:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(url + "/health", timeout=3) as response:
                return str(json.load(response)["version"])
        except OSError:
            return None

    def env_file(self, **overrides: str) -> Path:
        """The environment file, written to the documented format; `overrides` replace whole lines by key."""
        py = json.dumps(sys.executable)
        ctl = f"{py}, {json.dumps(str(SITE_CTL))}, {json.dumps(str(self.dir))}"
        lines = {
            "name": 'name = "RemoteStage"',
            "kind": 'kind = "remote"',
            "service": f'[service]\nbase_url = "{self.public_url}"\ntimeout_s = 2.0\nretries = 1',
            "slots": f'[slots]\nblue = "{self.url("blue")}"\ngreen = "{self.url("green")}"',
            "packages": f'[packages]\ndir = "{(self.dir / "offline").as_posix()}"',
            "paths": f'[paths]\nlog_dirs = ["{(self.dir / "logs").as_posix()}"]\n'
            f'timeline_dir = "{(self.dir / "logs").as_posix()}"',
            "drivers": '[drivers]\ndeploy = "command"\nrouter = "command"\nstart_timeout_s = 10.0\ncommand_timeout_s = 30',
            "command": "[drivers.command]\n"
            f'stop_site = [{ctl}, "stop_site", "--slot", "{{slot}}"]\n'
            f'recycle_pool = [{ctl}, "recycle_pool", "--slot", "{{slot}}"]\n'
            f'deploy = [{ctl}, "deploy", "--slot", "{{slot}}", "--package", "{{package}}"]\n'
            f'start_site = [{ctl}, "start_site", "--slot", "{{slot}}", "--version", "{{version}}"]\n'
            f'switch = [{ctl}, "switch", "--slot", "{{slot}}"]\n'
            f'active = [{ctl}, "active"]',
            "notify": f'[notify]\nwebhook_url = "http://127.0.0.1:{self.webhook_port}/webhook"\nformat = "teams"',
            "monitor": "[monitor]\nduration_s = 3\ninterval_s = 0.5\nsla_p95_ms = 800\nmax_error_rate = 0.01\n"
            "alert_after_failures = 2",
            "approval": "[approval]\nrequired = true",
            "scope": '[scope]\nallowed_hosts = ["127.0.0.1"]',
            "matrix": '[matrix]\nrequired = ["DR-SMOKE"]',
        }
        lines.update(overrides)
        path = self.dir / "RemoteStage.toml"
        path.write_text("\n".join(v for v in lines.values() if v) + "\n", encoding="utf-8")
        return path


@pytest.fixture
def remote_site(tmp_path: Path) -> Iterator[RemoteSite]:
    """Green live on 1.0.0, blue a standby on 0.9.0, a release 1.1.0 in the offline folder."""
    site_dir = tmp_path / "site"
    (site_dir / "logs").mkdir(parents=True)
    offline = site_dir / "offline"
    for version in ("0.9.0", "1.0.0", "1.1.0"):
        build_package(version, offline)
    ports = {"blue": procs.free_port(), "green": procs.free_port()}
    router_port, control_port, webhook_port = procs.free_port(), procs.free_port(), procs.free_port()
    (site_dir / "site.json").write_text(
        json.dumps({"ports": ports, "control": f"http://127.0.0.1:{control_port}"}), encoding="utf-8"
    )
    started: list[procs.ProcessRecord] = []
    router_argv = procs.python_argv(
        ROOT / "lab" / "router.py", "--port", str(router_port), "--control-port", str(control_port),
        "--backend", f"blue=http://127.0.0.1:{ports['blue']}", "--backend", f"green=http://127.0.0.1:{ports['green']}",
        "--active", "green", "--state-file", str(site_dir / "router-state.json"),
    )  # fmt: skip
    started.append(procs.spawn("router", router_argv, site_dir / "logs" / "router.log"))
    sink_argv = procs.python_argv(
        ROOT / "lab" / "sink.py",
        "--port",
        str(webhook_port),
        "--log-dir",
        str(site_dir / "logs" / "notifications"),
    )
    started.append(procs.spawn("sink", sink_argv, site_dir / "logs" / "sink.log"))
    site = RemoteSite(site_dir, ports, router_port, control_port, webhook_port, started)
    try:
        for slot, version in (("green", "1.0.0"), ("blue", "0.9.0")):
            site.ctl("deploy", slot, str(offline / f"MCMS_Setup_{version}.zip"))
            site.ctl("start_site", slot)
        procs.wait_http(
            f"http://127.0.0.1:{control_port}/active", 10, lambda r: r.status == 200, watch=started
        )
        for url in (site.url("green"), site.url("blue"), site.public_url):
            procs.wait_http(url + "/health", 10, lambda r: r.status == 200)
        (site_dir / "calls.jsonl").unlink()
        yield site
    finally:
        for slot in ports:
            state = site_dir / "state" / f"{slot}.json"
            if state.exists() and json.loads(state.read_text()).get("pid"):
                site.ctl("stop_site", slot)
        for record in started:
            procs.stop_pid(record.pid, 5.0, record.argv)


def run_runbook(site: RemoteSite, *args: str, env_file: Path | None = None) -> tuple[int, str, Path]:
    reports = site.dir.parent / "reports"
    env_file = env_file or site.env_file()
    cmd = [sys.executable, "-m", "pytest", f"--env-file={env_file}", f"--evidence-dir={reports}",
           "-p", "no:cacheprovider", "-rs", *args]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    return proc.returncode, proc.stdout + proc.stderr, reports


def only_bundle(reports: Path) -> Path:
    (bundle,) = [p for p in reports.iterdir() if p.is_dir() and p.name[:8].isdigit()]
    return bundle


def test_release_goes_to_the_idle_slot_when_green_is_live(remote_site: RemoteSite) -> None:
    rc, output, reports = run_runbook(remote_site, "-m", NOT_BROWSER, "--approved-by", "A. Operator")
    assert rc == 0, output
    calls = remote_site.calls()
    # Nothing that takes a slot out of service ever ran on green, the slot serving production.
    touched = {(c["verb"], c["slot"]) for c in calls if c["verb"] in ("stop_site", "recycle_pool", "deploy")}
    assert touched == {("stop_site", "blue"), ("recycle_pool", "blue"), ("deploy", "blue")}, calls
    assert [c["slot"] for c in calls if c["verb"] == "switch"] == ["blue"]
    deploy = next(c for c in calls if c["verb"] == "deploy")
    assert deploy["package"].endswith("MCMS_Setup_1.1.0.zip")
    assert remote_site.ctl("active").strip() == "blue"
    assert remote_site.version_at(remote_site.public_url) == "1.1.0"
    assert remote_site.version_at(remote_site.url("green")) == "1.0.0", "green stays up as the warm standby"
    bundle = only_bundle(reports)
    events = read_events(bundle / "evidence.jsonl")
    (slots,) = [e["data"] for e in events if e["kind"] == "slots"]
    assert (slots["live"], slots["idle"], slots["live_version"], slots["idle_version"]) == (
        "green",
        "blue",
        "1.0.0",
        "0.9.0",
    )
    # DR-SMOKE looked at blue's own address, before any traffic went there.
    smoke = [e["data"]["url"] for e in events if e["kind"] == "probe" and e["phase"] == "DR-SMOKE"]
    assert smoke
    assert all(url.startswith(remote_site.url("blue")) for url in smoke)
    approvals = [(e["phase"], e["data"]["approver"]) for e in events if e["kind"] == "approval"]
    assert approvals == [("PRE", "A. Operator"), ("BG-3", "A. Operator")]
    (watch,) = [
        e["data"]
        for e in events
        if e["kind"] == "note" and "probes" in e["data"] and "failed_before_switch" in e["data"]
    ]
    assert watch["probes"] >= 5
    assert (watch["failed_before_switch"], watch["failed_after_switch"]) == (0, 0), watch
    (end,) = [e["data"] for e in events if e["kind"] == "run.end"]
    assert (end["version_from"], end["version_to"]) == ("1.0.0", "1.1.0")
    assert verify_bundle(bundle).ok


def test_placeholder_typo_is_refused_before_anything_is_touched(remote_site: RemoteSite) -> None:
    py = json.dumps(sys.executable)
    ctl = f"{py}, {json.dumps(str(SITE_CTL))}, {json.dumps(str(remote_site.dir))}"
    command = remote_site.env_file().read_text().split("[drivers.command]\n", 1)[1].split("\n[notify]")[0]
    broken = command.replace('"--package", "{package}"', '"--package", "{pakage}"')
    broken += f'\nrecycle_pol = [{ctl}, "recycle_pool", "--slot", "{{slot}}"]'
    env_file = remote_site.env_file(command="[drivers.command]\n" + broken)
    rc, output, reports = run_runbook(
        remote_site, "-m", NOT_BROWSER, "--approved-by", "A. Operator", env_file=env_file
    )
    assert rc == 4, output
    assert "preflight found 2 problems before anything was touched" in output
    assert "[drivers.command] deploy[7]: unknown placeholder {pakage}" in output
    assert "did you mean {package}?" in output
    assert "[drivers.command] recycle_pol: unknown verb" in output
    assert remote_site.calls() == [], "not even the router was asked"
    assert not reports.exists()
    assert remote_site.version_at(remote_site.public_url) == "1.0.0"


def test_a_rollback_without_approval_is_refused_up_front(remote_site: RemoteSite) -> None:
    rc, output, reports = run_runbook(
        remote_site, "-m", "rollback and not dr_e2e and not dr_axe and not dr_zap"
    )
    assert rc == 4, output
    assert "--approved-by NAME: required up front for the rollback flow on RemoteStage" in output
    assert f"rerun with --env-file={remote_site.dir / 'RemoteStage.toml'} --approved-by NAME" in output
    assert remote_site.calls() == []
    assert not reports.exists()


def test_protected_environment_needs_its_name_repeated(remote_site: RemoteSite) -> None:
    env_file = remote_site.env_file(kind='kind = "remote"\nprotect = true')
    args = ("-m", NOT_BROWSER, "--approved-by", "A. Operator")
    rc, output, _ = run_runbook(remote_site, *args, env_file=env_file)
    assert rc == 4, output
    assert "--confirm-env RemoteStage: required for the bluegreen flow" in output
    rc, output, _ = run_runbook(remote_site, *args, "--confirm-env", "RemoteProd", env_file=env_file)
    assert rc == 4, output
    assert "--confirm-env RemoteProd: does not repeat the environment's name RemoteStage" in output
    assert remote_site.calls() == []


def test_missing_tool_of_a_required_row_fails_pre_and_nothing_is_stopped(remote_site: RemoteSite) -> None:
    env_file = remote_site.env_file(
        matrix=f'[matrix]\nrequired = ["DR-SMOKE", "DR-ZAP"]\n[zap]\nengine = "zap"\napi_url = "{closed_url()}"'
    )
    rc, output, reports = run_runbook(
        remote_site,
        "-m",
        "bluegreen and not dr_e2e and not dr_axe",
        "--approved-by",
        "A. Operator",
        env_file=env_file,
    )
    assert rc == 1, output
    assert "tools missing for required matrix rows; nothing was stopped or deployed" in output
    assert "DR-ZAP: " in output
    verbs = [c["verb"] for c in remote_site.calls()]
    assert set(verbs) <= {"active"}, verbs  # PRE may ask which slot is live; nothing else ran
    events = read_events(only_bundle(reports) / "evidence.jsonl")
    outcomes = {e["phase"]: e["data"]["outcome"] for e in events if e["kind"] == "phase.end"}
    assert outcomes["PRE"] == "failed"
    assert outcomes["BG-1"] == "blocked"
    assert remote_site.version_at(remote_site.public_url) == "1.0.0"


def test_a_restore_that_fails_leaves_the_loudest_line_of_the_run(remote_site: RemoteSite) -> None:
    """Single node: RB-3's deploy fails after RB-2 stopped the site, and so does the restore of what was serving:
    SITE DOWN in the terminal, the report's headline and the journal, an Alert notification, exit code 1."""
    fail = remote_site.dir / "fail"
    fail.mkdir()
    (fail / "deploy").write_text("Access denied: D:/MCMS/releases")
    env_file = remote_site.env_file(
        service=f'[service]\nbase_url = "{remote_site.url("blue")}"\ntimeout_s = 2.0\nretries = 0',
        slots="",
        drivers='[drivers]\ndeploy = "command"\nstart_timeout_s = 5.0\ncommand_timeout_s = 30',
    )
    rc, output, reports = run_runbook(
        remote_site, "-m", "rollback and not dr_e2e and not dr_axe and not dr_zap", "--approved-by", "A. Operator",
        env_file=env_file,
    )  # fmt: skip
    assert rc == 1, output
    assert "SITE DOWN: restoring 0.9.0 on the active node failed" in output
    last = output.rstrip().splitlines()[-1]
    assert last.strip("! ").startswith("SITE DOWN on RemoteStage: the runbook could not bring it back"), last
    bundle = only_bundle(reports)
    events = read_events(bundle / "evidence.jsonl")
    (down,) = [e["data"] for e in events if e["kind"] == "site.down"]
    assert "restoring 0.9.0 on the active node failed" in down["what"]
    assert [e["data"]["event_type"] for e in events if e["kind"] == "notify"][-2:] == ["Alert", "Failed"]
    (end,) = [e["data"] for e in events if e["kind"] == "run.end"]
    assert end["outcome"] == "failed"
    assert end["site_down"] == down["what"]
    report = (bundle / "report.html").read_text(encoding="utf-8")
    assert report.index('id="runbook-site-down"') < report.index("Runbook summary")
    assert_refused(remote_site.url("blue") + "/health")
    pid = json.loads((remote_site.dir / "state" / "blue.json").read_text()).get("pid")
    assert not pid, f"the site's state still names a running blue (pid {pid})"


def test_a_parallel_matrix_run_on_the_remote_site_leaves_one_sealed_bundle(remote_site: RemoteSite) -> None:
    """`-n 2` against a remote environment: one bundle, one chain; the rows checked what serves (green, live) and
    nothing was stopped, deployed or switched."""
    # The slot servers send no security headers (Medium alerts): this run gates on High only.
    env_file = remote_site.env_file(zap='[zap]\nengine = "builtin"\nmax_pages = 5\nfail_on = ["High"]')
    rc, output, reports = run_runbook(remote_site, "-n", "2", "-m", "dr_smoke or dr_zap", env_file=env_file)
    assert rc == 0, output
    bundle = only_bundle(reports)
    check = verify_bundle(bundle)
    assert (check.ok, check.sealed) == (True, True), check.problems
    assert (bundle / "report.html").is_file()
    events = read_events(bundle / "evidence.jsonl")
    ends = {e["phase"]: e["data"]["outcome"] for e in events if e["kind"] == "phase.end"}
    assert ends == {"DR-SMOKE": "passed", "DR-ZAP": "passed"}
    assert {e["data"]["url"].rsplit("/", 1)[0] for e in events if e["kind"] == "probe"} <= {
        remote_site.public_url,
        f"{remote_site.public_url}/swagger",
        f"{remote_site.public_url}/auth",
    }
    assert not [c for c in remote_site.calls() if c["verb"] != "active"], "a matrix run changes nothing"


def test_a_remote_release_logs_every_notification_beside_the_timeline(remote_site: RemoteSite) -> None:
    """Playbook §3.2: a remote environment's notifications also go to <timeline_dir>/notifications/<env>.jsonl,
    line for line as the bundle's outbox has them; the webhook (the Lab's sink here) gets Teams Workflows cards."""
    from tests.test_notify_formats import STANDARD_FACTS, check_payload

    env_file = remote_site.env_file(
        notify=f'[notify]\nwebhook_url = "http://127.0.0.1:{remote_site.webhook_port}/webhook"\n'
        'format = "teams-workflow"'
    )
    rc, output, reports = run_runbook(remote_site, "-m", NOT_BROWSER, "--approved-by", "A. Operator",
                                      env_file=env_file)  # fmt: skip
    assert rc == 0, output
    bundle = only_bundle(reports)
    outbox = (bundle / "artifacts" / "notifications.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["state"] for line in outbox] == ["queued", "delivered"] * 2
    mirror = remote_site.dir / "logs" / "notifications" / "RemoteStage.jsonl"
    assert mirror.read_text(encoding="utf-8").splitlines() == outbox
    received = [
        json.loads(line)["body"]
        for path in sorted((remote_site.dir / "logs" / "notifications").glob("notifications_*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
    ]
    seen = [check_payload("teams-workflow", body) for body in received]
    assert [title for title, _, _ in seen] == ["MCMS Approved: RemoteStage", "MCMS Switched: RemoteStage"]
    facts = seen[1][2]
    assert set(STANDARD_FACTS) <= set(facts)
    assert (facts["Versions"], facts["Slots"], facts["Approver"]) == (
        "1.0.0 -> 1.1.0",
        "live green -> idle blue; traffic now on blue",
        "A. Operator",
    )
    assert verify_bundle(bundle).ok


@dataclass(frozen=True)
class Front:
    """The reverse proxy on a single-node site's public address: its URL and the Server header it answers with."""

    url: str
    server: str


@pytest.fixture(params=["router", "nginx"])
def proxied_node(request: pytest.FixtureRequest, remote_site: RemoteSite, tmp_path: Path) -> Iterator[Front]:
    """A single-node site whose public address is a reverse proxy in front of its one node (blue, serving 1.1.0):
    the remote site's own router (lab/router.py) switched to blue, or a real nginx (lab/nginx.py's configuration)
    in front of blue, stopped by its PID."""
    site = remote_site
    site.ctl("stop_site", "blue")
    site.ctl("deploy", "blue", str(site.dir / "offline" / "MCMS_Setup_1.1.0.zip"))
    site.ctl("start_site", "blue")
    if request.param == "router":
        site.ctl("switch", "blue")
        procs.wait_http(site.public_url + "/health", 10, lambda r: r.status == 200)
        (site.dir / "calls.jsonl").unlink()
        yield Front(site.public_url, "mcms-lab-router")
        return
    front = LabNginx(tmp_path / "front", system_tool("nginx"), "127.0.0.1", procs.free_port(),
                     {"blue": f"127.0.0.1:{site.ports['blue']}"})  # fmt: skip
    front.write_config("blue")
    record = front.spawn(tmp_path / "front" / "nginx.log")
    try:
        front.wait_ready(record, 10.0)
        public = f"http://127.0.0.1:{front.port}"
        procs.wait_http(public + "/health", 10, lambda r: r.status == 200)
        (site.dir / "calls.jsonl").unlink()
        yield Front(public, "nginx")
    finally:
        stop_record(record, 5.0)


def rollback_behind(remote_site: RemoteSite, public: str) -> tuple[int, str, Path]:
    """`-m rollback` on the site's single node (command driver) with the proxy's address as the public one."""
    env_file = remote_site.env_file(
        service=f'[service]\nbase_url = "{public}"\ntimeout_s = 2.0\nretries = 1',
        slots="",
        drivers='[drivers]\ndeploy = "command"\nstart_timeout_s = 10.0\ncommand_timeout_s = 30',
    )
    return run_runbook(remote_site, "-m", ROLLBACK, "--approved-by", "A. Operator", env_file=env_file)


def test_a_single_node_rollback_behind_a_proxy_passes_rb2_on_the_proxys_502(
    remote_site: RemoteSite, proxied_node: Front
) -> None:
    """After stop_site the proxy in front answers 502 instead of refusing: RB-2 passes and says so in a sentence,
    then the previous stable release is deployed and verified through the same proxy."""
    public = proxied_node.url
    assert remote_site.version_at(public) == "1.1.0"
    rc, output, reports = rollback_behind(remote_site, public)
    assert rc == 0, output
    calls = [(c["verb"], c["slot"]) for c in remote_site.calls()]
    assert [c for c in calls if c[0] != "current_version"] == [
        ("stop_site", "active"),
        ("recycle_pool", "active"),
        ("deploy", "active"),
        ("start_site", "active"),
    ]
    bundle = only_bundle(reports)
    assert verify_bundle(bundle).ok
    events = read_events(bundle / "evidence.jsonl")
    outcomes = {e["phase"]: e["data"]["outcome"] for e in events if e["kind"] == "phase.end"}
    assert outcomes["RB-2"] == "passed", outcomes
    # What RB-2 saw: the proxy's 502 at the public address, not a refused connection.
    (after,) = [e["data"] for e in events if e["kind"] == "probe" and e["phase"] == "RB-2"]
    assert (after["url"], after["status"]) == (f"{public}/health", 502)
    sentence = (
        f"the public address answers 502 from the proxy in front (Server: {proxied_node.server}): "
        "nothing serves behind it"
    )
    (note,) = [e["data"] for e in events if e["kind"] == "note" and e["phase"] == "RB-2"]
    assert (note["message"], note["status"]) == (sentence, 502)
    assert sentence in (bundle / "timeline.md").read_text(encoding="utf-8")
    (end,) = [e["data"] for e in events if e["kind"] == "run.end"]
    assert (end["version_from"], end["version_to"], end["outcome"]) == ("1.1.0", "1.0.0", "passed")
    assert remote_site.version_at(public) == "1.0.0"


def test_a_site_already_down_behind_a_proxy_is_seen_as_stopped_and_redeployed(
    remote_site: RemoteSite, proxied_node: Front
) -> None:
    """The DR case behind a proxy: the node is down before the run, so the public address answers only the
    proxy's 502. PRE treats the service as fully stopped (as it does for a refused connection), RB-2 accepts
    the 502, and the previous stable release is laid out and serves through the proxy."""
    public = proxied_node.url
    remote_site.ctl("stop_site", "blue")
    (remote_site.dir / "calls.jsonl").unlink()
    rc, output, reports = rollback_behind(remote_site, public)
    assert rc == 0, output
    events = read_events(only_bundle(reports) / "evidence.jsonl")
    (pre,) = [e["data"] for e in events if e["kind"] == "note" and e["data"].get("service_state")]
    assert pre["service_state"] == "stopped", pre
    assert pre["message"] == (
        f"the public address answers 502 from the proxy in front (Server: {proxied_node.server}): nothing serves "
        "behind it: the service is treated as fully stopped (playbook §4); the flow goes on to redeploy"
    )
    assert remote_site.version_at(public) == "1.0.0"
