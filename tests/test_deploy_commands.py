"""drivers/deploy.py: the command deploy driver and the refusal to act on the live slot.

No mocks of the code under test: the argv templates run real Python subprocesses that log their argv, and
health is asked of the loopback HTTP stub (tests/http_stub.py).
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from drivers.base import ActionResult, DriverError
from drivers.config import Environment
from drivers.deploy import CommandDeployDriver, deploy_driver
from drivers.packages import Package
from drivers.probe import Prober
from tests.driver_env import command_env, make_package
from tests.http_stub import Reply, Seen, Stub, json_reply

RECORDER = """\
import json
import sys

with open(sys.argv[1], "a", encoding="utf-8") as log:
    log.write(json.dumps(sys.argv[2:]) + "\\n")
"""

FAILER = """\
import sys

print("deploying")
sys.stderr.write("step 1 ok\\nstep 2 ok\\nAccess denied: C:/inetpub/mcms\\nDeploy-CamService failed\\n")
sys.exit(3)
"""

VERSION = """\
import json
import sys

with open(sys.argv[1], "a", encoding="utf-8") as log:
    log.write(json.dumps(sys.argv[2:]) + "\\n")
print("reading C:/inetpub/mcms/version.txt")
print("1.0.0")
"""


@dataclass
class Scripts:
    """Small Python scripts in tmp_path that the argv templates run; they log their argv as JSON lines."""

    dir: Path

    def __post_init__(self) -> None:
        for name, text in (("recorder", RECORDER), ("failer", FAILER), ("version", VERSION)):
            (self.dir / f"{name}.py").write_text(text, encoding="utf-8")
        (self.dir / "sleeper.py").write_text("import time\n\ntime.sleep(5)\n", encoding="utf-8")

    @property
    def log(self) -> Path:
        return self.dir / "calls.jsonl"

    def argv(self, script: str, *args: str) -> list[str]:
        python = Path(sys.executable).as_posix()
        return [python, (self.dir / f"{script}.py").as_posix(), self.log.as_posix(), *args]

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def scripts(tmp_path: Path) -> Scripts:
    directory = tmp_path / "scripts"
    directory.mkdir()
    return Scripts(directory)


def command_driver(env: Environment) -> CommandDeployDriver:
    driver = deploy_driver("command", env, Prober(["127.0.0.1"], timeout_s=1.0, retries=0), {})
    assert isinstance(driver, CommandDeployDriver)
    return driver


def standard_commands(scripts: Scripts) -> dict[str, list[str]]:
    return {
        "stop_site": scripts.argv("recorder", "stop_site", "{env}", "{slot}"),
        "recycle_pool": scripts.argv("recorder", "recycle_pool", "{env}", "{slot}"),
        "deploy": scripts.argv("recorder", "deploy", "--env={env}", "{slot}", "{version}", "{package}"),
        "start_site": scripts.argv("recorder", "start_site", "{env}", "{slot}", "{version}"),
    }


def test_command_deploy_fills_the_placeholders(tmp_path: Path, scripts: Scripts, closed_url: str) -> None:
    env = command_env(tmp_path, closed_url, standard_commands(scripts))
    package = make_package(tmp_path / "offline", "1.0.0")
    action = command_driver(env).deploy(Package("1.0.0", package), "blue")
    assert scripts.calls() == [["deploy", "--env=Stage", "blue", "1.0.0", str(package)]]
    assert (action.name, action.target, action.result) == ("deploy", "blue", "ok")
    assert action.detail == {
        "argv": [*scripts.argv("recorder"), "deploy", "--env=Stage", "blue", "1.0.0", str(package)],
        "exit_code": 0,
        "output_tail": "",
        "stdout": "",
    }
    assert action.duration_s > 0


def test_command_stop_site_runs_stop_then_recycle(tmp_path: Path, scripts: Scripts, closed_url: str) -> None:
    env = command_env(tmp_path, closed_url, standard_commands(scripts))
    steps = command_driver(env).stop_site("active")
    assert [(s.name, s.target, s.result, s.detail["exit_code"]) for s in steps] == [
        ("stop_site", "active", "ok", 0),
        ("recycle_pool", "active", "ok", 0),
    ]
    assert scripts.calls() == [["stop_site", "Stage", "active"], ["recycle_pool", "Stage", "active"]]


def test_command_stop_site_without_recycle_pool(tmp_path: Path, scripts: Scripts, closed_url: str) -> None:
    commands = standard_commands(scripts)
    del commands["recycle_pool"]
    steps = command_driver(command_env(tmp_path, closed_url, commands)).stop_site("green")
    assert [s.name for s in steps] == ["stop_site"]
    assert scripts.calls() == [["stop_site", "Stage", "green"]]


def test_command_nonzero_exit_raises_with_code_and_stderr_tail(
    tmp_path: Path, scripts: Scripts, closed_url: str
) -> None:
    commands = {**standard_commands(scripts), "deploy": scripts.argv("failer", "{package}")}
    driver = command_driver(command_env(tmp_path, closed_url, commands))
    with pytest.raises(DriverError) as info:
        driver.deploy(Package("1.0.0", tmp_path / "MCMS_Setup_1.0.0.zip"), "active")
    assert re.fullmatch(
        r"\[drivers\.command\] deploy exit code 3 after [0-9.]+ s: "
        r"step 2 ok \| Access denied: C:/inetpub/mcms \| Deploy-CamService failed",
        str(info.value),
    ), str(info.value)


def test_command_missing_executable(tmp_path: Path, scripts: Scripts, closed_url: str) -> None:
    commands = {**standard_commands(scripts), "stop_site": ["mcms-no-such-tool-4242", "{slot}"]}
    driver = command_driver(command_env(tmp_path, closed_url, commands))
    with pytest.raises(DriverError) as info:
        driver.stop_site("active")
    assert str(info.value).startswith(
        "[drivers.command] stop_site: mcms-no-such-tool-4242 not found on PATH (searched PATH: "
    ), str(info.value)
    assert scripts.calls() == []  # recycle_pool did not run after the failed stop


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX execute permission")
def test_command_file_that_cannot_be_executed_is_a_driver_error(
    tmp_path: Path, scripts: Scripts, closed_url: str
) -> None:
    script = tmp_path / "Stop-Site.sh"
    script.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    script.chmod(0o644)  # forgot chmod +x
    commands = {**standard_commands(scripts), "stop_site": [script.as_posix(), "{slot}"]}
    driver = command_driver(command_env(tmp_path, closed_url, commands))
    with pytest.raises(DriverError) as info:
        driver.stop_site("active")
    assert str(info.value).startswith(
        f"[drivers.command] stop_site: {script.as_posix()} is not executable: give it execute permission"
    ), str(info.value)


def test_command_bad_placeholder_names_the_known_ones(
    tmp_path: Path, scripts: Scripts, closed_url: str
) -> None:
    commands = {**standard_commands(scripts), "deploy": scripts.argv("recorder", "deploy", "{nope}")}
    env = command_env(tmp_path, closed_url, commands)
    with pytest.raises(DriverError) as info:
        command_driver(env).deploy(Package("1.0.0", tmp_path / "p.zip"), "active")
    assert str(info.value) == (
        "[drivers.command] deploy[4]: unknown placeholder {nope} (allowed here: {env} {slot} {version} {package})"
    )
    assert scripts.calls() == []


def test_command_verb_without_template(tmp_path: Path, scripts: Scripts, closed_url: str) -> None:
    env = command_env(tmp_path, closed_url, standard_commands(scripts))
    with pytest.raises(DriverError) as info:
        command_driver(env).run("current_version", "active")
    assert str(info.value) == f"{env.source}: [drivers.command] current_version: no argv template configured"


def test_command_still_running_after_the_timeout(tmp_path: Path, scripts: Scripts, closed_url: str) -> None:
    commands = {**standard_commands(scripts), "stop_site": scripts.argv("sleeper")}
    env = command_env(tmp_path, closed_url, commands)
    # The timeout comes from the environment file: [drivers.timeouts] stop_site.
    env = dataclasses.replace(env, drivers=dataclasses.replace(env.drivers, timeouts={"stop_site": 0.5}))
    driver = command_driver(env)
    start = time.perf_counter()
    with pytest.raises(DriverError) as info:
        driver.stop_site("active")
    assert str(info.value).startswith(
        "[drivers.command] stop_site timed out after 0.5 s (process tree killed)"
    )
    assert time.perf_counter() - start < 4


def test_command_current_version_from_the_template(tmp_path: Path, scripts: Scripts, stub: Stub) -> None:
    commands = {
        **standard_commands(scripts),
        "current_version": scripts.argv("version", "current_version", "{slot}"),
    }
    stub.route("/health", json_reply(200, {"version": "9.9.9"}))
    driver = command_driver(command_env(tmp_path, stub.url, commands))
    assert driver.current_version("blue") == "1.0.0"
    assert scripts.calls() == [["current_version", "blue"]]
    assert stub.requests == []  # the template answered; the health endpoint was not asked


def test_command_current_version_from_health_without_template(
    tmp_path: Path, scripts: Scripts, stub: Stub, closed_url: str
) -> None:
    stub.route("/health", json_reply(200, {"status": "Healthy", "version": "1.1.0"}))
    driver = command_driver(command_env(tmp_path, stub.url, standard_commands(scripts)))
    assert driver.current_version("active") == "1.1.0"
    assert stub.paths() == ["/health"]
    assert scripts.calls() == []
    down = command_driver(command_env(tmp_path, closed_url, standard_commands(scripts)))
    assert down.current_version("active") is None


def test_command_start_site_waits_until_healthy_on_the_version(
    tmp_path: Path, scripts: Scripts, stub: Stub
) -> None:
    healthy: list[int] = []  # the request numbers answered 200

    def health(seen: Seen) -> Reply:
        if seen.nth == 0 or time.monotonic() - stub.first_at("/health") < 0.3:
            return json_reply(503, {"status": "Starting"})
        healthy.append(seen.nth)
        return json_reply(200, {"status": "Healthy", "version": "1.0.0"})

    stub.route_fn("/health", health)
    limit = 5.0
    driver = command_driver(
        command_env(tmp_path, stub.url, standard_commands(scripts), start_timeout_s=limit)
    )
    action = driver.start_site("active", "1.0.0")
    assert isinstance(action, ActionResult)
    assert (action.name, action.target, action.result) == ("start_site", "active", "ok")
    assert set(action.detail) == {"version", "healthy_after_s"}
    assert action.detail["version"] == "1.0.0"
    # It waited for health (0.3 s of 503s) and stopped at the first healthy answer: that answer was the last
    # request. The limit only catches a wait that ran into [drivers] start_timeout_s.
    assert 0.3 <= action.detail["healthy_after_s"] < limit
    paths = stub.paths()
    assert healthy == [len(paths) - 1]
    assert action.duration_s >= action.detail["healthy_after_s"]
    assert scripts.calls() == [["start_site", "Stage", "active", "1.0.0"]]
    assert len(paths) >= 3
    assert set(paths) == {"/health"}


@pytest.mark.parametrize(
    ("reply", "last"),
    [
        (json_reply(503, {"status": "Starting"}), "HTTP 503, version None"),
        (json_reply(200, {"status": "Healthy", "version": "1.1.0"}), "HTTP 200, version 1.1.0"),
    ],
)
def test_command_start_site_gives_up_after_start_timeout(
    tmp_path: Path, scripts: Scripts, stub: Stub, reply: Reply, last: str
) -> None:
    stub.route("/health", reply)
    driver = command_driver(command_env(tmp_path, stub.url, standard_commands(scripts), start_timeout_s=0.5))
    start = time.perf_counter()
    with pytest.raises(DriverError) as info:
        driver.start_site("active", "1.0.0")
    elapsed = time.perf_counter() - start
    assert str(info.value) == (
        f"active node not healthy on 1.0.0 within 0.5 s ({stub.url}/health: last answer {last})"
    )
    assert 0.5 <= elapsed < 10.0  # bounded by start_timeout_s; the ceiling only catches a hang
    assert scripts.calls() == [["start_site", "Stage", "active", "1.0.0"]]


def test_command_start_site_refused_until_timeout(tmp_path: Path, scripts: Scripts, closed_url: str) -> None:
    driver = command_driver(
        command_env(tmp_path, closed_url, standard_commands(scripts), start_timeout_s=0.5)
    )
    with pytest.raises(DriverError) as info:
        driver.start_site("active", "1.0.0")
    assert str(info.value) == (
        f"active node not healthy on 1.0.0 within 0.5 s ({closed_url}/health: last answer connection refused)"
    )


def test_command_slot_node_needs_its_slot_url(tmp_path: Path, scripts: Scripts, closed_url: str) -> None:
    env = command_env(tmp_path, closed_url, standard_commands(scripts))
    with pytest.raises(DriverError) as info:
        command_driver(env).served_version("green")
    assert str(info.value) == f"{env.source}: [slots] green is not set; cannot reach the green node"


# -- the live slot is never acted on (drivers.deploy.DeployDriver.refuse_live) ------------------------------


def test_deploy_verbs_refuse_the_live_slot(tmp_path: Path, scripts: Scripts, closed_url: str) -> None:
    driver = command_driver(command_env(tmp_path, closed_url, standard_commands(scripts)))
    driver.live_slot = lambda: "green"
    package = Package("1.1.0", tmp_path / "MCMS_Setup_1.1.0.zip")
    with pytest.raises(DriverError, match=r"^refusing to stop green: it is the live slot"):
        driver.stop_site("green")
    with pytest.raises(DriverError, match=r"^refusing to deploy 1\.1\.0 onto green: it is the live slot"):
        driver.deploy(package, "green")
    assert scripts.calls() == [], "no script ran against the live slot"
    driver.stop_site("blue")  # the idle slot may be stopped
    assert scripts.calls() == [["stop_site", "Stage", "blue"], ["recycle_pool", "Stage", "blue"]]


def test_deploy_verbs_refuse_when_nobody_can_tell_which_slot_is_live(
    tmp_path: Path, scripts: Scripts, closed_url: str
) -> None:
    driver = command_driver(command_env(tmp_path, closed_url, standard_commands(scripts)))

    def router_down() -> str:
        raise DriverError("[drivers.command] active exit code 1 after 0.1 s: ARR farm unreachable")

    driver.live_slot = router_down
    with pytest.raises(
        DriverError, match=r"^refusing to stop blue: cannot tell which slot is live \(.*ARR farm"
    ):
        driver.stop_site("blue")
    assert scripts.calls() == []
