"""The shared argv runner and process-tree killer (drivers.commands) with real processes, the
[drivers.command] template contract, and PRE's tool checks for the regression command and ZAP."""

from __future__ import annotations

import os
import re
import socket
import sys
import textwrap
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import drivers.commands
from drivers.commands import (
    PLACEHOLDERS,
    VERBS,
    CommandFailed,
    CommandMissing,
    CommandNotExecutable,
    TemplateError,
    fill_template,
    kill_tree,
    missing_programs,
    required_verbs,
    run_argv,
    start_process,
    validate_templates,
)
from drivers.config import E2E, Zap
from drivers.e2e import check_regression_command
from drivers.zap import check_zap_available
from tests.zap_standin import ZapStandin

ROOT = Path(__file__).resolve().parents[1]
POSIX = sys.platform != "win32"
posix_only = pytest.mark.skipif(not POSIX, reason="execute permissions and sessions are POSIX")


def as_is(text: str) -> str:
    return text


def alive(pid: int) -> bool:
    """The process exists and has not exited (a zombie that nobody reaps has exited)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def started_pids() -> Iterator[list[int]]:
    """PIDs a test's scripts started; whatever is left of them is killed afterwards, by PID."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE:
                proc.kill()
        except psutil.NoSuchProcess:
            pass


def script(tmp_path: Path, body: str, name: str = "cmd.py") -> list[str]:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return [sys.executable, str(path)]


# --- running --------------------------------------------------------------------------------------------


def test_stdout_and_stderr_apart_and_invalid_utf8_replaced(tmp_path: Path) -> None:
    argv = script(
        tmp_path,
        """
        import sys
        sys.stdout.buffer.write(b"out \\xff\\xfe ok\\n1.1.0\\n")
        sys.stderr.buffer.write(b"err \\xc3\\x28 done\\n")
        """,
    )
    result = run_argv(
        argv, timeout_s=30, redact=as_is, cwd=tmp_path, verb="[drivers.command] current_version"
    )
    assert (result.exit_code, result.timed_out, result.passed) == (0, False, True)
    assert result.stdout == "out \ufffd\ufffd ok\n1.1.0\n"
    assert result.stderr == "err \ufffd( done\n"
    assert result.output_tail == "out \ufffd\ufffd ok\n1.1.0\nerr \ufffd( done"
    assert result.last_line() == "1.1.0"
    assert result.argv == argv
    assert Path(result.program).samefile(sys.executable)
    assert result.cwd == str(tmp_path)
    assert result.check() is result


@pytest.mark.parametrize("code", [1, 3])
def test_exit_codes_are_results_and_check_says_what_failed(tmp_path: Path, code: int) -> None:
    argv = script(
        tmp_path,
        f"import sys\nprint('working')\nprint('Stop-Site: access denied', file=sys.stderr)\nsys.exit({code})\n",
    )
    result = run_argv(argv, timeout_s=30, redact=as_is, verb="[drivers.command] stop_site")
    assert (result.exit_code, result.passed, result.timed_out) == (code, False, False)
    assert result.describe().startswith(f"exit code {code} after ")
    with pytest.raises(CommandFailed) as caught:
        result.check()
    assert str(caught.value).startswith(f"[drivers.command] stop_site exit code {code} after ")
    assert str(caught.value).endswith(": working | Stop-Site: access denied")


def test_output_path_gets_both_streams_and_the_tail_is_read_from_it(tmp_path: Path) -> None:
    argv = script(
        tmp_path,
        """
        import sys
        for i in range(100):
            print("line", i, flush=True)
        print("to stderr", file=sys.stderr, flush=True)
        print("last", flush=True)
        """,
    )
    out = tmp_path / "logs" / "output.txt"
    result = run_argv(argv, timeout_s=30, redact=as_is, output_path=out, tail_lines=3)
    assert result.passed
    assert (result.stdout, result.stderr, result.output_path) == ("", "", out)
    assert result.output_tail.splitlines() == ["line 99", "to stderr", "last"]
    text = out.read_text(encoding="utf-8")
    assert text.startswith("line 0\n")
    assert text.endswith("line 99\nto stderr\nlast\n")


def test_missing_program_names_it_and_what_was_searched(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    with pytest.raises(CommandMissing) as caught:
        run_argv(
            ["no-such-tool", "-x"],
            timeout_s=5,
            redact=as_is,
            env={"PATH": str(empty)},
            verb="[drivers.command] deploy",
        )
    assert type(caught.value) is CommandMissing
    assert str(caught.value) == (
        f"[drivers.command] deploy: no-such-tool not found on PATH (searched PATH: {empty}); "
        "install it on this machine, or write its full path as the first item of the argv"
    )
    with pytest.raises(CommandMissing, match=r"PowerShell 7 \(https://aka.ms/powershell\)"):
        run_argv(["powershell", "-File", "x.ps1"], timeout_s=5, redact=as_is, env={"PATH": str(empty)})
    with pytest.raises(CommandMissing) as caught:
        run_argv(["scripts/Deploy.sh"], timeout_s=5, redact=as_is, cwd=tmp_path)
    assert (
        str(caught.value)
        == f"command: scripts/Deploy.sh ({tmp_path / 'scripts' / 'Deploy.sh'}): no such file"
    )
    with pytest.raises(CommandMissing, match=r"pwsh.exe: no such file; install PowerShell 7"):
        run_argv([str(tmp_path / "PowerShell" / "pwsh.exe")], timeout_s=5, redact=as_is)
    with pytest.raises(drivers.commands.CommandError, match="command: empty argv: nothing to run"):
        run_argv([], timeout_s=5, redact=as_is)
    with pytest.raises(
        drivers.commands.CommandError, match=r"^command: cannot run in .*nowhere: no such folder$"
    ):
        run_argv([sys.executable, "-V"], timeout_s=5, redact=as_is, cwd=tmp_path / "nowhere")


@posix_only
def test_files_that_cannot_be_executed_are_clear_errors(tmp_path: Path) -> None:
    plain = tmp_path / "deploy.sh"
    plain.write_text("#!/bin/sh\necho hi\n", encoding="utf-8")
    plain.chmod(0o644)
    with pytest.raises(CommandNotExecutable) as caught:
        run_argv(["./deploy.sh"], timeout_s=5, redact=as_is, cwd=tmp_path, verb="[drivers.command] deploy")
    assert str(caught.value) == (
        f"[drivers.command] deploy: ./deploy.sh ({tmp_path / 'deploy.sh'}) is not executable: give it execute "
        'permission (chmod +x), or run it through its interpreter, e.g. ["sh", "./deploy.sh", ...]'
    )
    assert isinstance(caught.value, CommandMissing)  # for the rows: a "tool missing"

    garbage = tmp_path / "garbage"
    garbage.write_text("this is not a program\n", encoding="utf-8")
    garbage.chmod(0o755)
    with pytest.raises(
        CommandNotExecutable, match=rf"command: cannot start {re.escape(str(garbage))}: Exec format error"
    ):
        run_argv([str(garbage)], timeout_s=5, redact=as_is)

    no_interpreter = tmp_path / "needs-interp"
    no_interpreter.write_text("#!/no/such/interpreter\n", encoding="utf-8")
    no_interpreter.chmod(0o755)
    with pytest.raises(CommandMissing, match=r"is the interpreter on its first line \(#!\) installed\?"):
        run_argv([str(no_interpreter)], timeout_s=5, redact=as_is)

    with pytest.raises(CommandNotExecutable, match="is a directory, not a program"):
        run_argv([str(tmp_path) + "/"], timeout_s=5, redact=as_is)


HANG = """
import os, pathlib, shutil, subprocess, sys, time
import psutil
pids = [os.getpid()]
sleep = [shutil.which("sleep") or "", "30"] if os.name != "nt" else [sys.executable, "-c", "import time; time.sleep(30)"]
pids.append(subprocess.Popen(sleep).pid)  # a grandchild of the runner
orphan_parent = -1
if os.name != "nt":
    # A grandchild whose parent exits at once: re-parented away from the tree, still in the session.
    sh = subprocess.run(["sh", "-c", "sleep 30 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True)
    orphan = int(sh.stdout)
    pids.append(orphan)
    orphan_parent = psutil.Process(orphan).ppid()
pathlib.Path(sys.argv[1]).write_text(" ".join(map(str, pids)) + "\\n" + str(orphan_parent))
print("started", flush=True)
time.sleep(30)
"""


def test_timeout_kills_the_whole_process_tree(tmp_path: Path, started_pids: list[int]) -> None:
    pid_file = tmp_path / "pids.txt"
    argv = [*script(tmp_path, HANG), str(pid_file)]
    result = run_argv(argv, timeout_s=1.5, redact=as_is, verb="[drivers.command] deploy", grace_s=2)
    assert pid_file.exists(), (
        f"the script did not get to start its children within 1.5 s: {result.output_tail}"
    )
    first, orphan_parent = pid_file.read_text().splitlines()
    pids = [int(p) for p in first.split()]
    started_pids.extend(pids)
    assert (result.timed_out, result.exit_code, result.passed) == (True, None, False)
    assert result.describe() == "timed out after 1.5 s (process tree killed)"
    assert result.output_tail == "started"
    assert result.duration_s < 30  # a ceiling that only catches a hang
    if POSIX:
        assert int(orphan_parent) != pids[0], "the orphan was not re-parented: the test would prove nothing"
    assert set(pids) <= set(result.killed_pids)
    assert [pid for pid in pids if alive(pid)] == []
    with pytest.raises(
        CommandFailed,
        match=r"^\[drivers.command\] deploy timed out after 1.5 s \(process tree killed\): started$",
    ):
        result.check()


def test_a_grandchild_that_keeps_the_output_open_does_not_hang_the_run(
    tmp_path: Path, started_pids: list[int]
) -> None:
    pid_file = tmp_path / "pid.txt"
    argv = script(
        tmp_path,
        """
        import pathlib, subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])  # inherits stdout
        pathlib.Path(sys.argv[1]).write_text(str(child.pid))
        print("deployed")
        """,
    )
    result = run_argv([*argv, str(pid_file)], timeout_s=15, redact=as_is)
    started_pids.append(int(pid_file.read_text()))
    assert (result.timed_out, result.exit_code, result.stdout) == (False, 0, "deployed\n")


@posix_only
def test_kill_tree_kills_what_ignores_terminate(tmp_path: Path, started_pids: list[int]) -> None:
    argv = script(
        tmp_path,
        """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(30)
        """,
    )
    log = tmp_path / "log.txt"
    with log.open("wb") as out:
        proc = start_process(argv, cwd=tmp_path, env=None, stdout=out, stderr=out)
    started_pids.append(proc.pid)
    deadline = time.monotonic() + 10  # until the script has set its handler; a ceiling for a hang
    while "ready" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "ready" in log.read_text()
    assert kill_tree(proc, grace_s=0.5) == [proc.pid]
    assert proc.returncode == -9
    assert not alive(proc.pid)


def test_tails_are_redacted_before_they_are_cut(tmp_path: Path) -> None:
    secret = "s3cr3t-ABCDEFGHIJ"

    def redact(text: str) -> str:
        return text.replace(secret, "***")

    argv = script(
        tmp_path,
        f"""
        import sys
        print("token={secret}")
        print("failed with {secret}", file=sys.stderr)
        sys.exit(2)
        """,
    )
    result = run_argv(argv, timeout_s=30, redact=redact, verb="[drivers.command] deploy")
    assert result.output_tail == "token=***\nfailed with ***"
    assert secret in result.stdout  # raw, for parsing; the journal has its own redactor
    with pytest.raises(CommandFailed) as caught:
        result.check()
    assert secret not in str(caught.value)
    assert str(caught.value).endswith(": token=*** | failed with ***")

    # Cut first, then redacted, the last 6 characters would be "EFGHIJ": a piece of the secret.
    short = run_argv(argv, timeout_s=30, redact=redact, tail_chars=6)
    assert short.output_tail == "th ***"
    to_file = run_argv(argv, timeout_s=30, redact=redact, tail_chars=6, output_path=tmp_path / "o.txt")
    assert "HIJ" not in to_file.output_tail
    assert to_file.output_tail.endswith("***")


# --- the command-template contract ---------------------------------------------------------------------------


def test_the_verb_table() -> None:
    assert required_verbs("deploy") == ["stop_site", "deploy", "start_site"]
    assert required_verbs("router") == ["switch", "active"]
    assert {v.name for v in VERBS.values() if not v.required} == {"recycle_pool", "current_version"}
    assert VERBS["deploy"].placeholders == PLACEHOLDERS
    assert {name for name, v in VERBS.items() if "version" in v.placeholders} == {"deploy", "start_site"}
    assert {name for name, v in VERBS.items() if "package" in v.placeholders} == {"deploy"}
    assert VERBS["active"].placeholders == ("env",)
    # The module docstring documents the same table.
    doc = drivers.commands.__doc__ or ""
    for v in VERBS.values():
        row = f"{v.name} {v.driver} {'required' if v.required else 'optional'} {v.allowed()}"
        assert row in " ".join(doc.split()), row
    with pytest.raises(ValueError, match=r"no \[drivers.command\] verbs for the nginx driver"):
        required_verbs("nginx")


def test_every_problem_of_a_table_at_once() -> None:
    table = {
        "recycle_pol": ["powershell", "-File", "Restart-AppPool.ps1"],
        "deploy": ["pwsh", "-File", "Deploy.ps1", "-Package", "{pakage}", "-Version", "{version}"],
        "stop_site": [],
        "start_site": ["pwsh", "-File", "Start.ps1", "{package}"],
        "switch": ["pwsh", '-Json={{"slot": "{slot}"}}', "a{b", "c}"],
        "current_version": ["{env}.ps1"],
    }
    needed = [*required_verbs("deploy"), *required_verbs("router"), "deploy"]
    assert validate_templates(table, needed, "Stage.toml") == [
        "Stage.toml: [drivers.command] recycle_pol: unknown verb (known: active, current_version, deploy, "
        "recycle_pool, start_site, stop_site, switch); did you mean recycle_pool?",
        "Stage.toml: [drivers.command] deploy[4]: unknown placeholder {pakage} "
        "(allowed here: {env} {slot} {version} {package}); did you mean {package}?",
        'Stage.toml: [drivers.command] stop_site: empty argv (expected the program and its arguments, e.g. ["powershell", "-File", ...])',
        "Stage.toml: [drivers.command] start_site[3]: placeholder {package} is not filled in for start_site "
        "(allowed here: {env} {slot} {version})",
        "Stage.toml: [drivers.command] switch[2]: unbalanced brace: a lone { at character 2 (write {{ for a literal {)",
        "Stage.toml: [drivers.command] switch[3]: unbalanced brace: a lone } at character 2 (write }} for a literal })",
        "Stage.toml: [drivers.command] current_version[0]: the program may not contain placeholders ({env}): "
        "preflight looks it up before anything runs",
        'Stage.toml: [drivers.command] active: missing; router = "command" needs it to print which slot the '
        "public address serves (placeholders: {env})",
    ]


def test_templates_of_the_example_environments_are_valid() -> None:
    for name in ("InternalStage", "InternalProd"):
        data = tomllib.loads((ROOT / "environments" / f"{name}.toml").read_text(encoding="utf-8"))
        table = data["drivers"]["command"]
        assert validate_templates(table, required_verbs("deploy"), f"{name}.toml") == []


def test_empty_and_wrongly_typed_parts() -> None:
    assert validate_templates({"deploy": ["", "x"], "switch": ["pwsh", 3]}, [], "E.toml") == [  # type: ignore[list-item]
        "E.toml: [drivers.command] deploy[0]: the program is empty",
        "E.toml: [drivers.command] switch[1]: expected a string",
    ]
    assert validate_templates({"deploy": "pwsh -File x.ps1"}, [], "E.toml") == [  # type: ignore[dict-item]
        'E.toml: [drivers.command] deploy: expected an argv list of strings, e.g. ["powershell", "-File", "script.ps1", ...]'
    ]
    with pytest.raises(ValueError, match=r"not a \[drivers.command\] verb: restart"):
        validate_templates({}, ["restart"], "E.toml")


def test_fill_template_fills_known_placeholders_only() -> None:
    template = [
        "pwsh",
        "-File",
        "Deploy.ps1",
        "-Env",
        "{env}-{slot}",
        "-Package",
        "{package}",
        '-Json={{"v": "{version}"}}',
    ]
    values = {
        "env": "Stage",
        "slot": "green",
        "version": "1.1.0",
        "package": "C:/pkg/{version}.zip",
        "extra": "x",
    }
    assert fill_template("deploy", template, values) == [
        "pwsh", "-File", "Deploy.ps1", "-Env", "Stage-green", "-Package", "C:/pkg/{version}.zip", '-Json={"v": "1.1.0"}',
    ]  # fmt: skip
    with pytest.raises(TemplateError, match=r"^\[drivers.command\] deploy: no value for \{package\}$"):
        fill_template("deploy", template, {"env": "Stage", "slot": "green", "version": "1.1.0"})
    with pytest.raises(TemplateError) as caught:
        fill_template("stop_site", ["pwsh", "{version}", "{0}"], values)
    assert str(caught.value) == (
        "[drivers.command] stop_site[1]: placeholder {version} is not filled in for stop_site (allowed here: {env} {slot}); "
        "[drivers.command] stop_site[2]: unknown placeholder {0} (allowed here: {env} {slot})"
    )


def test_missing_programs_before_anything_runs(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    (tmp_path / "scripts").mkdir()
    deploy_sh = tmp_path / "scripts" / "deploy.sh"
    deploy_sh.write_text("#!/bin/sh\n", encoding="utf-8")
    deploy_sh.chmod(0o755)
    table = {
        "stop_site": ["powershell", "-NoProfile", "-File", "scripts/deploy/Stop-Site.ps1"],
        "deploy": ["scripts/deploy.sh", "{package}"],
        "start_site": ["scripts/start.sh"],
        "switch": [sys.executable, "switch.py", "{slot}"],
        "recycle_pool": [],  # a problem of its own, reported by validate_templates
        "current_version": ["no-such-version-tool"],
    }
    problems = missing_programs(
        table, ["stop_site", "deploy", "start_site", "switch", "recycle_pool"], root=tmp_path, source="Stage.toml",
        environ={"PATH": str(empty)},
    )  # fmt: skip
    assert problems == [
        f"Stage.toml: [drivers.command] stop_site[0]: powershell not found on PATH (searched PATH: {empty}); "
        'Windows PowerShell comes with Windows; elsewhere install PowerShell 7 (https://aka.ms/powershell) and write "pwsh"',
        f"Stage.toml: [drivers.command] start_site[0]: scripts/start.sh ({tmp_path / 'scripts' / 'start.sh'}): no such file",
        "Stage.toml: [drivers.command] stop_site[3]: scripts/deploy/Stop-Site.ps1: the script powershell would run "
        f"is not there (no such file, looked in {tmp_path / 'scripts' / 'deploy' / 'Stop-Site.ps1'})",
        f"Stage.toml: [drivers.command] switch[1]: switch.py: the script {sys.executable} would run is not there "
        f"(no such file, looked in {tmp_path / 'switch.py'})",
    ]


def test_missing_programs_names_a_program_missing_for_several_verbs_once(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    scripts = tmp_path / "scripts" / "iis"
    scripts.mkdir(parents=True)
    for name in ("Stop-McmsSite.ps1", "Start-McmsSite.ps1"):
        (scripts / name).write_text("param()\n", encoding="utf-8")
    ps = ["powershell.exe", "-NoProfile", "-ExecutionPolicy", "Bypass", "-File"]
    table = {
        "stop_site": [*ps, "scripts/iis/Stop-McmsSite.ps1", "-Slot", "{slot}"],
        "start_site": [*ps, "scripts/iis/Start-McmsSite.ps1", "-Slot", "{slot}"],
        "deploy": [*ps, "scripts/iis/Deploy-McmsPackage.ps1", "-Package", "{package}"],
        "switch": [*ps, "{slot}.ps1"],  # a placeholder: known only at run time, not checked
    }
    problems = missing_programs(
        table, list(table), root=tmp_path, source="Stage.toml", environ={"PATH": str(empty)}
    )
    assert len(problems) == 2, problems
    assert problems[0].startswith(
        "Stage.toml: [drivers.command] stop_site[0], start_site[0], deploy[0], switch[0]: powershell.exe not found on PATH"
    )
    assert problems[1] == (
        "Stage.toml: [drivers.command] deploy[5]: scripts/iis/Deploy-McmsPackage.ps1: the script powershell.exe would "
        f"run is not there (no such file, looked in {scripts / 'Deploy-McmsPackage.ps1'})"
    )


# --- PRE's tool checks ---------------------------------------------------------------------------------------


def test_regression_command_check(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    environ = {"PATH": str(empty)}
    assert check_regression_command(E2E(), root=tmp_path, source="Stage.toml", environ=environ) is None
    assert check_regression_command(E2E(command=["npm", "run", "test:regression"]), root=tmp_path, source="Stage.toml",
                                    environ=environ) == (
        f"Stage.toml: [e2e] command: npm not found on PATH (searched PATH: {empty}); "
        "install Node.js, which brings npm (https://nodejs.org)"
    )  # fmt: skip
    found = E2E(command=[sys.executable, "regression.py"])
    assert check_regression_command(found, root=tmp_path, source="Stage.toml", environ=environ) is None
    (tmp_path / "run-regression.py").write_text("", encoding="utf-8")
    relative = E2E(command=["./run-regression.py"])
    problem = check_regression_command(relative, root=tmp_path, source="Stage.toml", environ=environ)
    if POSIX:
        assert problem is not None
        assert problem.startswith("Stage.toml: [e2e] command: ./run-regression.py (")
        assert "is not executable: give it execute permission" in problem
        (tmp_path / "run-regression.py").chmod(0o755)
        assert check_regression_command(relative, root=tmp_path, source="Stage.toml", environ=environ) is None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_zap_check_builtin_always_available() -> None:
    assert check_zap_available(Zap(engine="builtin", api_url=f"http://127.0.0.1:{free_port()}")) is None


def test_zap_check_a_daemon_that_answers() -> None:
    with ZapStandin() as zap:
        assert check_zap_available(Zap(engine="zap", api_url=zap.url, api_key="standin-key")) is None
        assert (
            check_zap_available(Zap(engine="zap", api_url=zap.url), environ={"ZAP_API_KEY": "standin-key"})
            is None
        )
        problem = check_zap_available(Zap(engine="zap", api_url=zap.url, api_key="wrong"))
    assert problem is not None
    assert f"ZAP at {zap.url} refused the API key" in problem


def test_zap_check_nothing_answers(tmp_path: Path) -> None:
    api_url = f"http://127.0.0.1:{free_port()}"
    problem = check_zap_available(Zap(engine="zap", api_url=api_url), environ={})
    assert problem is not None
    assert problem.startswith(
        f"no ZAP daemon answers at {api_url} (nothing answers at {api_url} (connection refused))"
    )
    assert "install ZAP (https://www.zaproxy.org/download/)" in problem
    assert 'engine = "builtin"' in problem

    missing = tmp_path / "ZAP" / "zap.sh"
    problem = check_zap_available(Zap(engine="zap", api_url=api_url, path=str(missing)), environ={})
    assert problem == (
        f"no ZAP daemon answers at {api_url} and [zap] path {missing}: no such file "
        "(expected zap.sh, zap.bat or ZAP's directory; ZAP: https://www.zaproxy.org/download/)"
    )

    ran = tmp_path / "ran"
    zap_sh = tmp_path / ("zap.bat" if sys.platform == "win32" else "zap.sh")
    zap_sh.write_text(f"#!/bin/sh\ntouch {ran}\n", encoding="utf-8")
    if POSIX:
        zap_sh.chmod(0o644)
        problem = check_zap_available(Zap(engine="zap", api_url=api_url, path=str(tmp_path)), environ={})
        assert problem is not None
        assert problem.startswith(
            f"no ZAP daemon answers at {api_url} and [zap] path: {zap_sh} is not executable"
        )
        zap_sh.chmod(0o755)
    assert check_zap_available(Zap(engine="zap", api_url=api_url, path=str(tmp_path)), environ={}) is None
    assert not ran.exists(), "the check must not start ZAP"


def test_zap_check_is_bounded_when_something_else_listens() -> None:
    with ZapStandin(hang=True) as zap:
        problem = check_zap_available(Zap(engine="zap", api_url=zap.url), timeout_s=0.5, environ={})
    assert problem is not None
    assert "accepted the connection but did not answer /JSON/core/view/version/ within 0.5 s" in problem
    assert "is something other than ZAP listening there? Check [zap] api_url" in problem


def test_os_environ_is_the_default_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNBOOK_TEST_VALUE", "from-the-environment")
    argv = script(tmp_path, "import os\nprint(os.environ['RUNBOOK_TEST_VALUE'])\n")
    assert run_argv(argv, timeout_s=30, redact=as_is).last_line() == "from-the-environment"
    own = {**os.environ, "RUNBOOK_TEST_VALUE": "given"}
    assert run_argv(argv, timeout_s=30, redact=as_is, env=own).last_line() == "given"
