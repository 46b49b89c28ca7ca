"""Preflight: a corpus of malformed environment files and option combinations, each refused before anything is
touched (exit 4, naming the file and key or the option), with a listener on every address the file names proving
that nothing was contacted, and no Lab or evidence bundle created."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.drill]


class Listener:
    """A loopback TCP listener that counts every connection made to it."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@dataclass
class World:
    dir: Path
    listeners: dict[str, Listener]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.listeners[name].port}"

    def contacted(self) -> int:
        return sum(listener.connections for listener in self.listeners.values())


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("preflight")
    for folder in ("offline", "logs"):
        (base / folder).mkdir()
    listeners = {name: Listener() for name in ("public", "blue", "green", "webhook", "zap")}
    yield World(base, listeners)
    for listener in listeners.values():
        listener.close()


def valid_env(w: World) -> dict[str, str]:
    """A complete remote environment for both flows, section by section (a case replaces or adds lines)."""
    py = json.dumps(sys.executable)
    return {
        "top": 'name = "Stage"\nkind = "remote"',
        "service": f'[service]\nbase_url = "{w.url("public")}"\ntimeout_s = 2.0\nretries = 1',
        "slots": f'[slots]\nblue = "{w.url("blue")}"\ngreen = "{w.url("green")}"',
        "packages": f'[packages]\ndir = "{(w.dir / "offline").as_posix()}"',
        "paths": f'[paths]\nlog_dirs = ["{(w.dir / "logs").as_posix()}"]\ntimeline_dir = "{(w.dir / "logs").as_posix()}"',
        "drivers": '[drivers]\ndeploy = "command"\nrouter = "command"',
        "command": "[drivers.command]\n"
        f'stop_site = [{py}, "-c", "pass", "{{slot}}"]\n'
        f'deploy = [{py}, "-c", "pass", "{{slot}}", "{{package}}"]\n'
        f'start_site = [{py}, "-c", "pass", "{{slot}}"]\n'
        f'switch = [{py}, "-c", "pass", "{{slot}}"]\n'
        f'active = [{py}, "-c", "print(1)"]',
        "notify": f'[notify]\nwebhook_url = "{w.url("webhook")}/hook"',
        "monitor": "[monitor]\nduration_s = 1\ninterval_s = 0.5",
        "approval": "[approval]\nrequired = true",
    }


@dataclass(frozen=True)
class Case:
    id: str
    expect: str  # a fragment of the usage error
    change: dict[str, str | None]  # section -> new text (None removes it)
    args: tuple[str, ...] = ("-m", "rollback")
    approve: bool = True  # add --approved-by A.Operator
    hidden: str = ""  # must not appear in the output (a password)


def py(code: str) -> str:
    return json.dumps(sys.executable) + f', "-c", "{code}"'


CASES = [
    Case(
        "unknown-top-key",
        "Stage.toml: colour: unknown key",
        {"top": 'name = "Stage"\nkind = "remote"\ncolour = "blue"'},
    ),
    Case("unknown-key", "[service] base_uri: unknown key", {"service+": "base_uri = 'x'"}),
    Case(
        "wrong-type", "[service] timeout_s: expected a number, got a string", {"service+": 'timeout_s = "5"'}
    ),
    Case("empty-name", "name: expected a name of 1 to 64 letters", {"top": 'name = ""\nkind = "remote"'}),
    Case(
        "name-with-slash",
        "name: expected a name of 1 to 64 letters",
        {"top": 'name = "Stage/1"\nkind = "remote"'},
    ),
    Case("unknown-kind", 'kind: expected "lab" or "remote"', {"top": 'name = "Stage"\nkind = "cloud"'}),
    Case(
        "userinfo",
        "[service] base_url: must not carry a user name or password",
        {"service": None, "service2": '[service]\nbase_url = "http://ops:S3cr3t-pw@127.0.0.1:1"'},
        hidden="S3cr3t-pw",
    ),
    Case(
        "query",
        "[service] base_url: must not have a query",
        {"service": None, "service2": '[service]\nbase_url = "http://127.0.0.1:1/?x=1"'},
    ),
    Case(
        "fragment",
        "[service] base_url: must not have a query (?...) or fragment",
        {"service": None, "service2": '[service]\nbase_url = "http://127.0.0.1:1/#top"'},
    ),
    Case(
        "not-http",
        "[service] base_url: expected an http(s) URL with a host",
        {"service": None, "service2": '[service]\nbase_url = "ftp://127.0.0.1/"'},
    ),
    Case(
        "port-not-a-number",
        "[service] base_url: expected an http(s) URL with a host and a numeric port",
        {"service": None, "service2": '[service]\nbase_url = "http://127.0.0.1:port/"'},
    ),
    Case(
        "same-slots",
        "[slots] green: is the same address as [slots] blue",
        {"slots": '[slots]\nblue = "http://127.0.0.1:7"\ngreen = "http://127.0.0.1:7/"'},
        args=("-m", "bluegreen"),
    ),
    Case(
        "slot-is-public",
        "[slots] blue: is the same address as [service] base_url",
        {"slots": None, "slots2": '[slots]\nblue = "{public}"\ngreen = "http://127.0.0.1:8"'},
        args=("-m", "bluegreen"),
    ),
    Case(
        "nan",
        "[monitor] max_error_rate: expected a finite number, got nan",
        {"monitor+": "max_error_rate = nan"},
        args=("-m", "bluegreen"),
    ),
    Case(
        "inf",
        "[monitor] interval_s: expected a finite number, got inf",
        {"monitor": "[monitor]\nduration_s = 1\ninterval_s = inf"},
        args=("-m", "bluegreen"),
    ),
    Case(
        "negative", "[service] timeout_s: expected a number >= 0.1, got -1.0", {"service+": "timeout_s = -1"}
    ),
    Case(
        "float-for-int",
        "[service] retries: expected a whole number, got a number 1.5",
        {"service+": "retries = 1.5"},
    ),
    Case(
        "unset-vars",
        "[notify] webhook_url: ${NO_SUCH_HOOK_4242} is not set",
        {"notify": '[notify]\nwebhook_url = "${NO_SUCH_HOOK_4242}"'},
    ),
    Case(
        "placeholder-typo",
        "[drivers.command] deploy[3]: unknown placeholder {pakage}",
        {"command+": f'deploy = [{py("pass")}, "{{pakage}}"]'},
    ),
    Case(
        "unknown-verb",
        "[drivers.command] recycle_pol: unknown verb",
        {"command+": f"recycle_pol = [{py('pass')}]"},
    ),
    Case(
        "missing-verb",
        "[drivers.command] start_site: missing",
        {"command": f"[drivers.command]\nstop_site = [{py('pass')}]\ndeploy = [{py('pass')}]"},
    ),
    Case("empty-argv", "[drivers.command] stop_site: empty argv", {"command+": "stop_site = []"}),
    Case(
        "program-missing",
        "no-such-powershell-4242 not found on PATH",
        {"command+": 'stop_site = ["no-such-powershell-4242", "-File", "Stop-Site.ps1"]'},
    ),
    Case(
        "timeout-unknown-verb",
        "[drivers.timeouts] deploi: unknown verb",
        {"drivers+": "[drivers.timeouts]\ndeploi = 60"},
    ),
    Case(
        "router-without-driver",
        '[drivers] router: no router driver "haproxy" (known: command, lab, nginx)',
        {"drivers": '[drivers]\ndeploy = "command"\nrouter = "haproxy"'},
        args=("-m", "bluegreen"),
    ),
    Case(
        "zap-engine-unknown",
        '[zap] engine: no scan engine "w3af" (known: builtin, zap)',
        {"zap": '[zap]\nengine = "w3af"'},
        args=("-m", "dr_zap"),
    ),
    Case(
        "notify-format-unknown",
        '[notify] format: no notify format "email" (known: generic, slack, teams, teams-workflow)',
        {"notify+": 'format = "email"'},
    ),
    Case(
        "lab-driver-remote",
        '[drivers] deploy: "lab" drives the embedded Lab only',
        {"drivers": '[drivers]\ndeploy = "lab"'},
    ),
    Case("ca-file-missing", "[service] ca_file = ", {"service+": 'ca_file = "no/such/ca.pem"'}),
    Case("paths-missing", "[paths]: required for the rollback flow outside the Lab", {"paths": None}),
    Case(
        "log-dir-missing",
        "[paths] log_dirs[0] = ",
        {"paths": '[paths]\nlog_dirs = ["no/such/logs"]\ntimeline_dir = "no/such/logs"'},
    ),
    Case("packages-missing", "[packages] dir = ", {"packages": '[packages]\ndir = "no/such/offline"'}),
    Case(
        "off-scope",
        "[service] base_url: host 127.0.0.1 is outside [scope] allowed_hosts",
        {"scope": '[scope]\nallowed_hosts = ["mcms.corp.example"]'},
    ),
    Case(
        "baseline-missing",
        "[axe] baseline = ",
        {"axe": '[axe]\nbaseline = "no/such/baseline.tsv"'},
        args=("-m", "dr_axe"),
    ),
    Case(
        "zap-rules-missing",
        "[zap] rules = ",
        {"zap": '[zap]\nrules = "no/such/rules.tsv"'},
        args=("-m", "dr_zap"),
    ),
    Case(
        "no-approver",
        "--approved-by NAME: required up front for the rollback flow on Stage",
        {},
        approve=False,
    ),
    Case(
        "protect-no-confirm",
        "--confirm-env Stage: required for the rollback flow",
        {"top": 'name = "Stage"\nkind = "remote"\nprotect = true'},
    ),
    Case(
        "confirm-wrong-name",
        "--confirm-env Prod: does not repeat the environment's name Stage",
        {},
        args=("-m", "rollback", "--confirm-env", "Prod"),
    ),
    Case(
        "evidence-dir-is-a-file",
        "--evidence-dir",
        {},
        args=("-m", "rollback", "--evidence-dir={file}/reports"),
    ),
    Case(
        "lab-fault-remote",
        "--lab-fault service-stopped: only for the embedded Lab",
        {},
        args=("-m", "rollback", "--lab-fault", "service-stopped"),
    ),
    Case(
        "keep-lab-remote", "--keep-lab: only for the embedded Lab", {}, args=("-m", "rollback", "--keep-lab")
    ),
    Case(
        "both-flows",
        "selects phases of both the rollback and the bluegreen flow",
        {},
        args=("-m", "rollback or bluegreen"),
    ),
    Case("invalid-toml", "not valid TOML", {"top": 'name = "Stage'}),
    Case(
        "many-at-once",
        "preflight found 4 problems",
        {"monitor+": "max_error_rate = nan", "service+": 'timeout_s = "5"', "paths": None},
        approve=False,
    ),
]


def set_lines(section: str, added: str) -> str:
    """Add `key = value` lines to a section; a key it already has gets the new value (TOML forbids both)."""
    lines = section.splitlines()
    for line in added.splitlines():
        key = line.split("=", 1)[0].strip()
        at = next(
            (i for i, old in enumerate(lines) if "=" in old and old.split("=", 1)[0].strip() == key), None
        )
        if at is None or line.startswith("["):
            lines.append(line)
        else:
            lines[at] = line
    return "\n".join(lines)


def render(w: World, case: Case) -> str:
    sections = valid_env(w)
    for key, text in case.change.items():
        if key.endswith("+"):
            sections[key[:-1]] = set_lines(sections[key[:-1]], str(text))
        elif text is None:
            sections.pop(key, None)
        else:
            sections[key] = text.replace("{public}", w.url("public"))
    return "\n".join(sections.values()) + "\n"


def run_case(w: World, case: Case) -> tuple[int, str, Path]:
    case_dir = w.dir / case.id
    case_dir.mkdir()
    env_file = case_dir / "Stage.toml"
    env_file.write_text(render(w, case), encoding="utf-8")
    blocker = case_dir / "not-a-folder"
    blocker.write_text("a file where the evidence directory should go")
    args = [a.replace("{file}", str(blocker)) for a in case.args]
    evidence = (
        []
        if any(a.startswith("--evidence-dir") for a in args)
        else [f"--evidence-dir={case_dir / 'reports'}"]
    )
    approve = ["--approved-by", "A. Operator"] if case.approve else []
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        f"--env-file={env_file}",
        *evidence,
        *approve,
        "-p",
        "no:cacheprovider",
        *args,
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    return proc.returncode, proc.stdout + proc.stderr, case_dir


def test_every_malformed_case_is_refused_before_anything_is_touched(world: World) -> None:
    lab_dir = ROOT / ".lab"
    lab_before = sorted(p.name for p in lab_dir.iterdir()) if lab_dir.exists() else None
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda c: (c, run_case(world, c)), CASES))
    wrong = []
    for case, (rc, output, case_dir) in results:
        if rc != 4 or case.expect not in output:
            wrong.append(f"{case.id}: exit {rc}, expected 4 with {case.expect!r}:\n{output[-1500:]}")
        if case.hidden and case.hidden in output:
            wrong.append(f"{case.id}: the output shows the password")
        if (case_dir / "reports").exists():
            wrong.append(f"{case.id}: an evidence directory was created")
        if "Traceback" in output or "INTERNALERROR" in output:
            wrong.append(f"{case.id}: a traceback reached the operator:\n{output[-1500:]}")
    assert not wrong, "\n\n".join(wrong)
    assert len(CASES) >= 30
    assert world.contacted() == 0, "a malformed run contacted a service"
    assert (sorted(p.name for p in lab_dir.iterdir()) if lab_dir.exists() else None) == lab_before


def test_a_lab_file_with_addresses_is_refused_before_the_lab_starts(tmp_path: Path) -> None:
    lab_dir = tmp_path / "lab"
    text = (
        (ROOT / "environments" / "Lab.toml")
        .read_text(encoding="utf-8")
        .replace('dir = ".lab"', f'dir = "{lab_dir.as_posix()}"')
    )
    env_file = tmp_path / "Lab.toml"
    env_file.write_text(
        text.replace("[service]\n", '[service]\nbase_url = "http://127.0.0.1:9"\n', 1), encoding="utf-8"
    )
    cmd = [sys.executable, "-m", "pytest", "-m", "rollback", f"--env-file={env_file}", f"--evidence-dir={tmp_path / 'r'}",
           "-p", "no:cacheprovider"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert '[service] base_url: must be left out when kind = "lab"' in proc.stderr
    assert not lab_dir.exists(), "the Lab must not start before preflight passed"
    assert not (tmp_path / "r").exists()
