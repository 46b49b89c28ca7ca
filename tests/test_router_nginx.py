"""The nginx router driver (drivers/nginx.py) against a real nginx on loopback, and the Lab behind nginx.

The driver tests start Debian's nginx unprivileged (`nginx -p DIR -c nginx.conf`, in the foreground, stopped by
PID) with an operator-style configuration: the include at http level, `proxy_pass http://mcms_live`, and one more
include (`extra.conf`) that a test breaks to make `nginx -t` fail. The slots are two loopback stubs
(tests/http_stub.py) that answer with their own name, so every request shows where traffic went.

The drills run the Blue/Green flow as an operator does (tests/conftest.py DrillRunner) on environments/
LabNginx.toml: the Lab's public address is a real nginx, and a fault's rollback goes through it.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.base import DriverError
from drivers.config import Environment
from drivers.nginx import MARKER, render_include, settings_problems
from drivers.router import NginxRouterDriver, router_driver
from lab import Lab, procs
from tests.driver_env import load_env
from tests.http_stub import Reply, Seen, Stub, json_reply
from tests.tools import system_tool

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.lab


# -- a real nginx in front of two stub slots ------------------------------------------------------------


class Slot:
    """A loopback stub that answers every request with its slot's name."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.stub = Stub(keep_alive=True)
        self.stub.otherwise_fn(self.answer)

    def answer(self, seen: Seen) -> Reply:
        return json_reply(200, {"slot": self.name, "via": seen.headers.get("via", "")})

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.stub.port}"


@dataclasses.dataclass
class Site:
    """nginx on `port`, proxying to the upstream in `include`; `env` drives it with the nginx router driver."""

    dir: Path
    port: int
    include: Path
    extra: Path
    proc: subprocess.Popen[bytes]
    blue: Slot
    green: Slot
    nginx: str

    def env(self, **router: Any) -> Environment:
        keys = {"include": str(self.include), "nginx": self.nginx, "prefix": str(self.dir), "conf": "nginx.conf",
                "timeout_s": 10, **router}  # fmt: skip
        lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in keys.items())
        return load_env(
            self.dir,
            f"""\
            name = "Stage"
            kind = "remote"
            [service]
            base_url = "http://127.0.0.1:{self.port}"
            [slots]
            blue = "{self.blue.stub.url}"
            green = "{self.green.stub.url}"
            [drivers]
            router = "nginx"
            [router.nginx]
            """
            + textwrap.indent(lines, " " * 12)
            + "\n",
        )

    def driver(self, **router: Any) -> NginxRouterDriver:
        driver = router_driver("nginx", self.env(**router), {"root": ROOT})
        assert isinstance(driver, NginxRouterDriver)
        return driver

    def served_by(self, requests: int = 6) -> set[str]:
        """Which slots answered `requests` GETs through nginx, each on a fresh connection."""
        seen = set()
        for _ in range(requests):
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                conn.request("GET", "/who")
                resp = conn.getresponse()
                assert resp.status == 200, resp.read()
                seen.add(json.loads(resp.read())["slot"])
            finally:
                conn.close()
        return seen

    def workers(self) -> set[int]:
        import psutil

        return {p.pid for p in psutil.Process(self.proc.pid).children()}


CONF = """\
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log notice;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    include {include};
    include {extra};
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://mcms_live;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    nginx = system_tool("nginx")
    blue, green = Slot("blue"), Slot("green")
    directory = tmp_path / "nginx"
    (directory / "tmp").mkdir(parents=True)
    include, extra = directory / "conf.d" / "mcms-live.conf", directory / "extra.conf"
    include.parent.mkdir()
    include.write_text(render_include("mcms_live", "blue", blue.server), encoding="utf-8")
    extra.write_text("# more of the operator's configuration\n", encoding="utf-8")
    port = procs.free_port()
    (directory / "nginx.conf").write_text(
        CONF.format(dir=directory, include=include, extra=extra, port=port), encoding="utf-8"
    )
    argv = [nginx, "-p", str(directory), "-c", "nginx.conf", "-e", str(directory / "error.log")]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    the_site = Site(directory, port, include, extra, proc, blue, green, nginx)
    try:
        deadline = time.monotonic() + 10
        while not ((directory / "nginx.pid").is_file() and procs.port_open("127.0.0.1", port)):
            assert proc.poll() is None, (directory / "error.log").read_text()
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.02)
        yield the_site
    finally:
        proc.send_signal(signal.SIGTERM)  # the master stops its workers
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        blue.stub.stop()
        green.stub.stop()


def leftovers(site: Site) -> list[str]:
    return sorted(p.name for p in site.include.parent.iterdir() if p.name != site.include.name)


def test_a_switch_moves_traffic_both_ways(site: Site) -> None:
    driver = site.driver()
    assert driver.active() == "blue"
    assert site.served_by() == {"blue"}
    check = driver.check()
    assert check["live"] == "blue"
    assert "test is successful" in check["nginx_t"]
    assert check["master_pid"] == site.proc.pid

    before = site.workers()
    action = driver.switch("green")
    # Switched means: the new include, and every new connection reaches the new workers (the old ones stopped
    # accepting), so the very next requests go to green, and none reaches blue any more.
    blue_seen = len(site.blue.stub.requests)
    assert site.served_by() == {"green"}
    assert len(site.blue.stub.requests) == blue_seen
    assert action.detail["confirmed"] is True
    assert action.detail["live_after"] == "green"
    assert set(action.detail["old_workers"]) == before
    assert not set(action.detail["new_workers"]) & before
    assert action.detail["server"] == site.green.server
    text = site.include.read_text(encoding="utf-8")
    assert f"{MARKER} green" in text
    assert f"server {site.green.server};" in text
    assert leftovers(site) == [], "the temporary file was renamed over the include"

    back = driver.switch("blue")  # the rollback
    assert site.served_by() == {"blue"}
    assert (back.detail["from"], back.detail["live_after"]) == ("green", "blue")
    assert driver.active() == "blue"
    with pytest.raises(DriverError, match=r"^switch to blue refused: blue is already the live slot"):
        driver.switch("blue")


def test_nginx_t_failing_keeps_the_old_include_and_traffic(site: Site) -> None:
    driver = site.driver()
    old = site.include.read_bytes()
    site.extra.write_text("bogus_directive on;\n", encoding="utf-8")  # what a bad edit elsewhere does
    with pytest.raises(DriverError) as failed:
        driver.switch("green")
    message = str(failed.value)
    assert message.startswith("nginx rejected the switch to green: nginx -t exit code 1 after ")
    # nginx's own words, file and line included, then what the driver did about it.
    assert f'[emerg] unknown directive "bogus_directive" in {site.extra}:1;' in message
    assert "test failed" in message
    assert f"the previous include was put back in {site.include}" in message
    assert "nginx was not reloaded and blue stays live" in message
    assert "Traceback" not in message
    assert "None" not in message
    assert site.include.read_bytes() == old
    assert leftovers(site) == []
    assert site.served_by() == {"blue"}
    assert driver.active() == "blue"
    # PRE finds the same broken configuration before anything is touched.
    with pytest.raises(
        DriverError, match=r"^nginx -t exit code 1 after [0-9.]+ s: \[emerg\] unknown directive "
    ):
        driver.check()


def test_a_failing_reload_restores_the_include_and_reloads_nothing(site: Site) -> None:
    refuse = [
        sys.executable,
        "-c",
        "import sys; sys.stderr.write('reload refused: change freeze\\n'); sys.exit(3)",
    ]
    driver = site.driver(reload=refuse)
    old = site.include.read_bytes()
    workers = site.workers()
    with pytest.raises(DriverError) as failed:
        driver.switch("green")
    message = str(failed.value)
    assert "the nginx reload (" in message
    assert "exit code 3" in message
    assert "reload refused: change freeze" in message
    assert "the previous include was put back" in message
    assert "nothing was reloaded: blue stays live" in message
    assert site.include.read_bytes() == old
    assert site.workers() == workers, "nothing reloaded nginx"
    assert site.served_by() == {"blue"}


def test_a_reload_that_does_not_reach_nginx_is_caught(site: Site) -> None:
    """A reload command that exits 0 without signalling nginx (a wrong service name, a stale pid file): the
    master starts no new worker, so the switch is not confirmed, the include goes back and the switch fails."""
    driver = site.driver(reload=[sys.executable, "-c", "pass"], timeout_s=1)
    old = site.include.read_bytes()
    with pytest.raises(DriverError) as failed:
        driver.switch("green")
    message = str(failed.value)
    assert (
        f"nginx (master PID {site.proc.pid}) started no new worker process within 1 s of the reload"
        in message
    )
    assert "it did not take the configuration that sends traffic to green" in message
    assert "blue stays live" in message
    assert site.include.read_bytes() == old
    assert site.served_by() == {"blue"}


def test_nginx_t_past_its_timeout_is_killed_and_the_switch_undone(site: Site, tmp_path: Path) -> None:
    """An nginx -t that hangs (here: a stand-in that sleeps) is killed with its process tree at timeout_s, and
    the switch is undone like any failed test."""
    hanging = tmp_path / "hanging-nginx"
    hanging.write_text(f"#!/bin/sh\necho $$ > {tmp_path / 'pid'}\nexec sleep 60\n", encoding="utf-8")
    hanging.chmod(0o755)
    driver = site.driver(nginx=str(hanging), timeout_s=1)
    old = site.include.read_bytes()
    started = time.monotonic()
    with pytest.raises(DriverError, match=r"^nginx rejected the switch to green: nginx -t timed out after 1 s "
                       r"\(process tree killed\) \(no output\); the previous include was put back"):  # fmt: skip
        driver.switch("green")
    assert time.monotonic() - started < 15
    assert site.include.read_bytes() == old
    assert not procs.pid_alive(int((tmp_path / "pid").read_text())), "the hung nginx -t was killed"
    assert site.served_by() == {"blue"}


GARBLED = {
    "empty": ("", r"is empty"),
    "no marker": (
        "upstream mcms_live {{ server {blue}; }}\n",
        r'has no "# mcms-runbook live slot: <slot>" line \(it holds upstream mcms_live with server {blue}\)',
    ),
    "marker and server disagree": (
        "# mcms-runbook live slot: blue\nupstream mcms_live {{ server {green}; }}\n",
        r"disagrees with itself: its marker names blue live, but its server line {green} is green's server",
    ),
    "server of neither slot": (
        "# mcms-runbook live slot: green\nupstream mcms_live {{ server 10.9.9.9:80; }}\n",
        r"names green live, but its server line 10\.9\.9\.9:80 is neither slot's server \(blue {blue}, green {green}\)",
    ),
    "two servers": (
        "# mcms-runbook live slot: blue\nupstream mcms_live {{ server {blue}; server {green}; }}\n",
        r"its upstream mcms_live has 2 server lines \({blue}, {green}\); the runbook writes exactly one",
    ),
    "unknown slot": (
        "# mcms-runbook live slot: purple\nupstream mcms_live {{ server {blue}; }}\n",
        r'names "purple" as the live slot \(it holds upstream mcms_live with server {blue}\); expected blue or green',
    ),
    "another upstream": (
        "# mcms-runbook live slot: blue\nupstream legacy {{ server {blue}; }}\n",
        r"names blue live but has no upstream mcms_live block; it holds upstream legacy with server {blue} "
        r'\(\[router.nginx\] upstream = "mcms_live"\)',
    ),
    "more than the block": (
        "# mcms-runbook live slot: blue\nupstream mcms_live {{ server {blue}; }}\nserver {{ listen 81; }}\n",
        r"holds more than the runbook writes \(it holds upstream mcms_live with server {blue}, and also: server",
    ),
    "cut short": (
        "# mcms-runbook live slot: blue\nupstream mcms_live {{ server {blue};\n",
        r"holds more than the runbook writes \(it holds no upstream block, and also: upstream mcms_live",
    ),
}


@pytest.mark.parametrize("case", list(GARBLED))
def test_active_on_a_hand_edited_include_says_what_the_file_holds(site: Site, case: str) -> None:
    text, pattern = GARBLED[case]
    servers = {"blue": site.blue.server, "green": site.green.server}
    site.include.write_text(text.format(**servers), encoding="utf-8")
    driver = site.driver()
    escaped = {k: v.replace(".", r"\.") for k, v in servers.items()}
    with pytest.raises(DriverError, match=pattern.format(**escaped)) as failed:
        driver.active()
    assert str(failed.value).startswith(f"[router.nginx] include {site.include} ")
    # A switch reads the include first: it refuses to act on a file it cannot read, and leaves it as it is.
    with pytest.raises(DriverError):
        driver.switch("green")
    assert site.include.read_text(encoding="utf-8") == text.format(**servers)


def test_a_missing_include_and_a_missing_nginx_are_refused_before_anything_is_written(site: Site) -> None:
    site.include.unlink()
    with pytest.raises(
        DriverError, match=r"\[router.nginx\] include = .*expected an existing file \(no such file\)"
    ):
        site.driver().active()
    site.include.write_text(render_include("mcms_live", "blue", site.blue.server), encoding="utf-8")
    with pytest.raises(DriverError, match=r"\[router.nginx\] nginx: no-such-nginx not found on PATH"):
        site.driver(nginx="no-such-nginx").switch("green")
    assert f"{MARKER} blue" in site.include.read_text(encoding="utf-8")


# -- preflight ------------------------------------------------------------------------------------------


def test_settings_problems_name_the_key_and_the_file(tmp_path: Path) -> None:
    nginx = system_tool("nginx")
    env = load_env(
        tmp_path,
        f"""\
        name = "Stage"
        kind = "remote"
        [service]
        base_url = "http://127.0.0.1:9"
        [slots]
        blue = "https://blue.invalid"
        [drivers]
        router = "nginx"
        [router.nginx]
        include = "{tmp_path}/no-such-folder/live.conf"
        nginx = "{nginx}"
        prefix = "{tmp_path}/no-prefix"
        conf = "nginx.conf"
        reload = ["no-such-reloader", "-s"]
        upstream = "mcms live"
        green = "10.0.0.1:80; include /etc/passwd"
        """,
    )
    src = str(env.source)
    problems = settings_problems(env, ROOT)
    assert problems == [
        f'{src}: [router.nginx] include = "{tmp_path}/no-such-folder/live.conf": its folder '
        f"{tmp_path}/no-such-folder does not exist",
        f'{src}: [router.nginx] prefix = "{tmp_path}/no-prefix": expected an existing folder ({tmp_path}/no-prefix)',
        f'{src}: [router.nginx] conf = "nginx.conf": expected an existing file ({tmp_path}/no-prefix/nginx.conf)',
        problems[3],
        f'{src}: [router.nginx] upstream = "mcms live": expected a name of letters, digits, "_", "." or "-" (the '
        "upstream block the include defines and proxy_pass names)",
        f'{src}: [router.nginx] green: expected HOST:PORT (e.g. "10.0.0.12:8080" or "[::1]:8080"), got '
        '"10.0.0.1:80; include /etc/passwd": it is written into the nginx include as it stands, so nothing else '
        "is accepted",
    ]
    assert problems[3].startswith(f"{src}: [router.nginx] reload[0]: no-such-reloader not found on PATH")
    # blue comes from [slots] blue (https: port 443), so it needs no key of its own.

    (tmp_path / "conf.d").mkdir()
    env2 = dataclasses.replace(
        env,
        router=dataclasses.replace(
            env.router,
            nginx=dataclasses.replace(
                env.router.nginx,
                include="conf.d/live.conf",
                nginx="no-such-nginx",
                prefix="",
                conf="",
                reload=[],
                upstream="mcms_live",
                green="blue.invalid:443",
            ),
        ),
    )
    problems = settings_problems(env2, tmp_path)
    assert problems[0] == (
        f'{src}: [router.nginx] include = "conf.d/live.conf": expected an existing file (no such file): write the '
        f'live slot\'s block there first, the marker line "{MARKER} blue" then "upstream mcms_live {{ server '
        'HOST:PORT; }" (the runbook reads the live slot from it)'
    )
    assert problems[1].startswith(f"{src}: [router.nginx] nginx: no-such-nginx not found on PATH")
    assert problems[1].endswith('which is not on every user\'s PATH: write nginx = "/usr/sbin/nginx"')
    assert problems[2] == (
        f"{src}: [router.nginx] blue and green are the same server (blue.invalid:443): the include could not "
        "tell which slot is live"
    )
    assert len(problems) == 3


def run_preflight(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    env_file = tmp_path / "Stage.toml"
    env_file.write_text(textwrap.dedent(text), encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "bluegreen", f"--env-file={env_file}",
         f"--evidence-dir={tmp_path / 'reports'}", "-p", "no:cacheprovider", "-q"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_preflight_refuses_a_bluegreen_run_through_a_broken_nginx_setup(tmp_path: Path) -> None:
    proc = run_preflight(
        tmp_path,
        f"""\
        name = "Stage"
        kind = "remote"
        [service]
        base_url = "http://127.0.0.1:9"
        [slots]
        blue = "http://127.0.0.1:10"
        green = "http://127.0.0.1:11"
        [notify]
        webhook_url = "http://127.0.0.1:12/hook"
        [paths]
        log_dirs = ["{tmp_path}"]
        timeline_dir = "{tmp_path}"
        [approval]
        required = false
        [drivers]
        deploy = "command"
        router = "nginx"
        [drivers.command]
        stop_site = ["{sys.executable}", "-c", "pass"]
        deploy = ["{sys.executable}", "-c", "pass", "{{package}}"]
        start_site = ["{sys.executable}", "-c", "pass"]
        [router.nginx]
        nginx = "{tmp_path}/sbin/nginx"
        """,
    )
    assert proc.returncode == 4, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    assert "preflight found" in out
    assert '[router.nginx] include: required for [drivers] router = "nginx"' in out
    assert f"[router.nginx] nginx: {tmp_path}/sbin/nginx: no such file" in out
    assert not (tmp_path / "reports").exists() or not any((tmp_path / "reports").iterdir())


def test_preflight_refuses_a_lab_whose_router_and_driver_disagree(tmp_path: Path) -> None:
    text = (ROOT / "environments" / "LabNginx.toml").read_text(encoding="utf-8")
    text = text.replace('dir = ".lab"\nrouter = "nginx"', f'dir = "{tmp_path / "lab"}"\nrouter = "builtin"')
    text += '\n[router.nginx]\ninclude = "/etc/nginx/conf.d/mcms-live.conf"\n'
    proc = run_preflight(tmp_path, text)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 4, out
    assert '[drivers] router = "nginx" in the Lab needs [lab] router = "nginx"' in out
    assert '[router.nginx] include: must be left out when kind = "lab"' in out
    assert not (tmp_path / "lab").exists(), "preflight runs before the Lab starts"


# -- the Lab behind nginx -------------------------------------------------------------------------------


def lab_nginx_env(text: str) -> str:
    """DrillRunner's copy of Lab.toml (its dir already pointed at the test's Lab) turned into LabNginx.toml."""
    lab_dir = text.split('dir = "', 1)[1].split('"', 1)[0]
    nginx_text = (ROOT / "environments" / "LabNginx.toml").read_text(encoding="utf-8")
    assert 'dir = ".lab"' in nginx_text
    return nginx_text.replace('dir = ".lab"', f'dir = "{lab_dir}"')


def switches(d: Any) -> list[dict[str, Any]]:
    return [e["data"] for e in d.kinds("action") if e["data"]["name"] == "switch_traffic"]


def access_log_slots(lab_dir: Path) -> list[tuple[int, str]]:
    """(status, slot) of each request nginx logged, in order."""
    found = []
    for line in (lab_dir / "nginx" / "access.log").read_text(encoding="utf-8").splitlines():
        status = int(line.split('" ', 1)[1].split()[0])
        found.append((status, line.rsplit("slot=", 1)[1]))
    return found


@pytest.mark.drill
def test_lab_nginx_release_goes_through_a_real_nginx(drill: Any) -> None:
    system_tool("nginx")  # else the Lab would fall back to its own router (tested below)
    d = drill(marker="bluegreen", edit_env=lab_nginx_env)
    assert d.returncode == 0, d.output
    assert set(d.phase_outcomes().values()) == {"passed"}
    start = next(e for e in d.kinds("action") if e["data"]["name"] == "lab.start")["data"]
    assert start["detail"]["router"] == "nginx"
    assert "router_control" not in start["detail"]["urls"]
    # PRE ran nginx -t on the Lab's configuration before anything was touched.
    (check,) = [e for e in d.kinds("action") if e["data"]["name"] == "router.check"]
    assert check["phase"] == "PRE"
    assert check["data"]["target"] == "nginx"
    assert "test is successful" in check["data"]["detail"]["nginx_t"]
    (switch,) = switches(d)
    assert switch["detail"]["confirmed"] is True
    assert switch["detail"]["include"] == str(d.lab_dir / "nginx" / "mcms-live.conf")
    assert d.served_version() == "1.1.0"

    lab = Lab.attach(d.lab_dir)
    assert lab is not None
    assert lab.nginx is not None
    assert lab.router_process is not None
    state = json.loads((d.lab_dir / "state.json").read_text(encoding="utf-8"))
    assert state["router"]["kind"] == "nginx"
    assert state["router"]["process"]["pid"] == lab.router_process.pid
    assert procs.command_line(lab.router_process.pid) == ["nginx: master process " + " ".join(lab.nginx.argv)]
    conn = http.client.HTTPConnection("127.0.0.1", lab.nginx.port, timeout=5)
    try:
        conn.request("GET", "/health")
        resp = conn.getresponse()
        resp.read()
    finally:
        conn.close()
    assert resp.getheader("Server") == "nginx"
    assert resp.getheader("Via") == "1.1 mcms-lab-router (nginx)"
    assert resp.getheader("X-Lab-Slot") == "green"
    logged = access_log_slots(d.lab_dir)
    assert "blue" in {slot for _, slot in logged}
    assert logged[-1] == (200, "green")


@pytest.mark.drill
def test_lab_nginx_fault_rolls_traffic_back_through_nginx(drill: Any) -> None:
    system_tool("nginx")  # else the Lab would fall back to its own router (tested below)
    d = drill("--lab-fault", "green-degrades-after-switch", marker="bluegreen", edit_env=lab_nginx_env)
    assert d.returncode == 1, d.output
    assert d.phase_outcomes()["BG-4"] == "failed"
    to_green, to_blue = switches(d)
    assert (to_green["target"], to_blue["target"]) == ("green", "blue")
    assert to_blue["detail"]["confirmed"] is True
    assert to_blue["detail"]["include"] == str(d.lab_dir / "nginx" / "mcms-live.conf")
    rollback = next(e["data"] for e in d.kinds("rollback") if e["data"].get("to_slot") == "blue")
    assert rollback["result"] == "succeeded"
    assert d.served_version() == "1.0.0"
    # nginx itself saw it: green's 500s through the public address, then blue serving again.
    logged = access_log_slots(d.lab_dir)
    first_500 = next(i for i, entry in enumerate(logged) if entry == (500, "green"))
    assert logged[-1] == (200, "blue")
    assert (200, "blue") in logged[first_500:]


@pytest.mark.drill
def test_without_nginx_the_lab_falls_back_to_its_router_and_says_so(drill: Any, tmp_path: Path) -> None:
    missing = tmp_path / "no-nginx-here"
    env = {**os.environ, "RUNBOOK_LAB_NGINX": str(missing)}
    d = drill(marker="bluegreen", edit_env=lab_nginx_env, env=env)
    assert d.returncode == 0, d.output
    start = next(e for e in d.kinds("action") if e["data"]["name"] == "lab.start")["data"]
    assert start["detail"]["router"] == "builtin"
    (note,) = [
        e["data"] for e in d.kinds("note") if e["data"]["message"].startswith("the Lab runs without nginx")
    ]
    assert f"$RUNBOOK_LAB_NGINX names {missing}, which is not an executable file" in note["message"]
    (warning,) = [e["data"]["message"] for e in d.kinds("warning") if "not nginx" in e["data"]["message"]]
    assert "the Lab's built-in router serves the public address instead" in warning
    assert "WARNING:  the Lab's public address is its built-in router, not nginx: nginx was asked" in d.output
    (switch,) = switches(d)
    assert "generation" in switch["detail"], "the lab router driver switched the built-in router"
    assert d.served_version() == "1.1.0"


@pytest.mark.drill
def test_lab_nginx_two_step_gate_switches_the_kept_nginx(drill: Any) -> None:
    """The CI gate run keeps the Lab (--keep-lab); the switch run, another process, attaches to the same nginx by
    its PID (its master renamed itself meanwhile) and switches it."""
    system_tool("nginx")
    gate = drill(marker="bluegreen and not traffic", edit_env=lab_nginx_env)
    assert gate.returncode == 0, gate.output
    kept = Lab.attach(gate.lab_dir)
    assert kept is not None
    assert kept.router_process is not None
    master = kept.router_process.pid
    assert gate.served_version() == "1.0.0"
    switch = drill("--approved-by", "Alice Example", marker="bluegreen and traffic", edit_env=lab_nginx_env)
    assert switch.returncode == 0, switch.output
    (action,) = switches(switch)
    assert action["detail"]["master_pid"] == master
    assert action["detail"]["confirmed"] is True
    assert switch.served_version() == "1.1.0"
