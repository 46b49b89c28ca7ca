"""`mcms-runbook` (plugins/cli.py): the commands its verbs build, --help, exit codes passed on, stop-lab and open."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from lab import Lab
from plugins import cli
from tests.lab_checks import assert_refused

ROOT = Path(__file__).resolve().parents[1]
PY = [sys.executable]


def cli_run(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m plugins.cli ARGS` as an operator runs it (the project on PYTHONPATH when cwd is elsewhere)."""
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "plugins.cli", *args],
        cwd=cwd, capture_output=True, text=True, timeout=120, check=False, env=environ,
    )  # fmt: skip


def built(*argv: str, cwd: Path = ROOT) -> list[str]:
    """The command main() would run for argv (parsed exactly as main parses it)."""
    args, unknown = cli._parser().parse_known_args(list(argv))
    return cli.build_command(args, unknown, cwd)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["drill"], ["-m", "pytest", "-m", "rollback", "--env", "Lab"]),
        (["rollback", "--env", "InternalProd"], ["-m", "pytest", "-m", "rollback", "--env", "InternalProd"]),
        (["release", "--env", "Stage"], ["-m", "pytest", "-m", "bluegreen", "--env", "Stage"]),
        (["gate", "--env", "S"], ["-m", "pytest", "-m", "bluegreen and not traffic", "--env", "S"]),
        (["switch", "--env", "S"], ["-m", "pytest", "-m", "bluegreen and traffic", "--env", "S"]),
        (["switch-back", "--env", "S"], ["-m", "pytest", "-m", "switch_back", "--env", "S"]),
        (["smoke", "--env", "P"], ["-m", "pytest", "-m", "dr_smoke", "--env", "P"]),
        (
            ["plan", "release", "--env", "P"],
            ["-m", "pytest", "-m", "bluegreen", "--env", "P", "--runbook-plan"],
        ),
        (["plan", "--env", "P"], ["-m", "pytest", "-m", "rollback", "--env", "P", "--runbook-plan"]),
    ],
)
def test_each_flow_verb_builds_its_pytest_command(argv: list[str], expected: list[str]) -> None:
    assert built(*argv) == [*PY, *expected]


def test_options_pass_on_and_paths_always_go_with_an_equals_sign() -> None:
    command = built(
        "gate", "--env-file", "/srv/runbook/Stage.toml", "--approved-by", "A. Operator", "--confirm-env", "Stage",
        "--reason", "CHG-42 release", "--step", "--evidence-dir", "/srv/reports", "--keep-lab", "-x",
    )  # fmt: skip
    assert command == [
        *PY, "-m", "pytest", "-m", "bluegreen and not traffic", "--env-file=/srv/runbook/Stage.toml",
        "--evidence-dir=/srv/reports", "--approved-by", "A. Operator", "--confirm-env", "Stage",
        "--reason", "CHG-42 release", "--step", "--keep-lab", "-x",
    ]  # fmt: skip


def test_anything_after_double_dash_goes_to_pytest_unchanged(tmp_path: Path) -> None:
    """Through main(): the command is printed first, then run (here: pytest's --version, quick and real)."""
    proc = cli_run("drill", "--", "--version")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    first = proc.stdout.splitlines()[0]
    python = (
        Path(sys.executable).relative_to(ROOT)
        if Path(sys.executable).is_relative_to(ROOT)
        else sys.executable
    )
    assert first == f"$ {python} -m pytest -m rollback --env Lab --version"
    assert "pytest 9" in proc.stdout + proc.stderr


def test_help_lists_every_verb_on_one_line() -> None:
    proc = cli_run("--help")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    verbs = [*cli.FLOWS, *cli.OTHER_VERBS]
    assert len(verbs) == 12
    for verb in verbs:
        (line,) = [x for x in lines if x.split()[:1] == [verb]]
        helptext = cli.FLOWS[verb].help if verb in cli.FLOWS else cli.OTHER_VERBS[verb]
        assert line.split(None, 1) == [verb, helptext], f"{verb}: its help should fit on its line: {line!r}"


def test_make_setup_puts_the_mcms_runbook_command_in_the_venv() -> None:
    """`make setup` installs the project editable: the console script beside this Python lists every verb, from
    any folder (here: the filesystem's root)."""
    script = Path(sys.executable).parent / ("mcms-runbook.exe" if os.name == "nt" else "mcms-runbook")
    if not script.is_file():
        message = f"{script} is missing: `make setup` (or `pip install -e .`) installs it"
        if os.environ.get("RUNBOOK_REQUIRE_TOOLS") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    done = subprocess.run(
        [str(script), "--help"],
        cwd=Path(ROOT.anchor),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    listed = {
        line.split()[0] for line in done.stdout.splitlines() if line.startswith("    ") and line.split()
    }
    assert {*cli.FLOWS, *cli.OTHER_VERBS} <= listed, done.stdout


def test_a_flow_without_an_environment_is_a_usage_error_in_a_sentence() -> None:
    proc = cli_run("release")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip() == (
        "mcms-runbook: mcms-runbook release: give --env NAME (environments/NAME.toml) or --env-file=PATH: "
        "the environment to act on"
    )
    assert "Traceback" not in proc.stderr


def test_the_plan_runs_real_pytest_and_its_exit_code_is_passed_on() -> None:
    plan = cli_run("plan", "--env", "Lab")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert plan.stdout.startswith("$ ")
    assert "--runbook-plan" in plan.stdout.splitlines()[0]
    assert "- [ ] " in plan.stdout
    unknown = cli_run("plan", "--env", "NoSuchEnv")
    assert unknown.returncode == 4, unknown.stdout + unknown.stderr  # pytest's usage error, passed on
    assert "no environments/NoSuchEnv.toml" in unknown.stderr


def test_verify_defaults_to_the_newest_bundle_and_passes_its_exit_code_on(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    for name in ("20260101T000000Z_Lab_rollback", "20260102T000000Z_Lab_rollback"):
        (reports / name).mkdir(parents=True)
        (reports / name / "evidence.jsonl").write_text('{"not": "a chained event"}\n', encoding="utf-8")
    (reports / "notes").mkdir()  # not a bundle
    proc = cli_run("verify", "--evidence-dir", str(reports))
    newest = reports / "20260102T000000Z_Lab_rollback"
    assert proc.stdout.splitlines()[0].endswith(f"-m plugins.evidence verify {newest}"), proc.stdout
    assert proc.returncode == 1, proc.stdout + proc.stderr  # an altered journal: plugins.evidence says 1
    empty = cli_run("verify", "--evidence-dir", str(tmp_path / "none"))
    assert empty.returncode == 2
    assert "no evidence bundle in" in empty.stderr
    assert "mcms-runbook drill" in empty.stderr


def test_resend_builds_the_notify_command() -> None:
    args, _ = cli._parser().parse_known_args(["resend", "reports/B", "--env-file", "/x/Stage.toml"])
    assert cli.build_command(args, [], ROOT) == [
        *PY, "-m", "plugins.notify", "resend", "reports/B", "--env-file=/x/Stage.toml",
    ]  # fmt: skip


def test_open_prints_opens_or_says_why_not(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    older, newer = reports / "20260101T000000Z_Lab_rollback", reports / "20260102T000000Z_Lab_rollback"
    for bundle in (older, newer):
        bundle.mkdir(parents=True)
        (bundle / "report.html").write_text("<h1>report</h1>", encoding="utf-8")
    (reports / "20260103T000000Z_Lab_rollback").mkdir()  # a run killed before its report: not it
    printed = cli_run("open", "--print-only", "--evidence-dir", str(reports))
    assert printed.returncode == 0
    assert printed.stdout == f"{newer / 'report.html'}\n"

    # The default browser, as webbrowser finds it ($BROWSER): a program that records what it was asked to open.
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.py"
    browser.write_text(f"import sys; open({str(opened)!r}, 'w').write(sys.argv[1])\n", encoding="utf-8")
    env = {"BROWSER": f"{sys.executable} {browser} %s", "DISPLAY": ":99", "RUNBOOK_NO_OPEN": ""}
    shown = cli_run("open", "--evidence-dir", str(reports), env=env)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert opened.read_text(encoding="utf-8") == (newer / "report.html").as_uri()

    opened.unlink()
    quiet = cli_run("open", "--evidence-dir", str(reports), env={**env, "RUNBOOK_NO_OPEN": "1"})
    assert quiet.stdout.strip() == f"Report: {newer / 'report.html'} (not opened: RUNBOOK_NO_OPEN=1)"
    headless = cli_run(
        "open", "--evidence-dir", str(reports), env={**env, "DISPLAY": "", "WAYLAND_DISPLAY": ""}
    )
    assert "(not opened: no display" in headless.stdout
    assert not opened.exists()

    nothing = cli_run("open", "--evidence-dir", str(tmp_path / "empty"))
    assert nothing.returncode == 2
    assert "no report.html in" in nothing.stderr


def test_stop_lab_stops_a_kept_lab_by_its_pids_and_says_so(tmp_path: Path) -> None:
    root = tmp_path / "lab"
    code = f"from pathlib import Path; from lab import Lab; Lab(Path({str(root)!r})).start()"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)
    lab = Lab.attach(root)
    assert lab is not None
    public = lab.public_url
    env = {"RUNBOOK_BROWSER_STATE_DIR": str(tmp_path / "browsers")}
    try:
        proc = cli_run("stop-lab", "--lab-dir", str(root), cwd=tmp_path, env=env)
    finally:
        kept = Lab.attach(root)
        if kept is not None:
            kept.stop()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"Lab in {root} stopped" in proc.stdout
    assert "No orphaned browser to reap." in proc.stdout
    assert Lab.attach(root) is None
    assert_refused(public)
    state = json.loads((root / "state.json").read_text(encoding="utf-8"))
    assert state["status"] == "stopped"
    again = cli_run("stop-lab", "--lab-dir", str(root), cwd=tmp_path, env=env)
    assert again.returncode == 0
    assert f"No Lab running in {root}" in again.stdout


def test_unknown_options_of_a_verb_that_runs_no_pytest_are_a_usage_error() -> None:
    proc = cli_run("open", "--bogus")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "mcms-runbook: mcms-runbook open: unrecognized arguments: --bogus"


# A stand-in for pytest: counts the SIGINTs it gets in the second after the first, exits 7 when it got one.
COUNTING_CHILD = """
import signal, sys, time, pathlib
got = []
signal.signal(signal.SIGINT, lambda *_: got.append(time.monotonic()))
pathlib.Path(sys.argv[1]).write_text("ready")
deadline = time.monotonic() + 20
while not got and time.monotonic() < deadline:
    time.sleep(0.02)
time.sleep(1.0)
print(f"child got {len(got)} SIGINT", flush=True)
sys.exit(7 if got else 3)
"""
RUNNER = "import sys; from pathlib import Path; from plugins.cli import run; sys.exit(run(sys.argv[1:], Path.cwd()))"


def _wait_ready(ready: Path, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(500):
        if ready.exists() or proc.poll() is not None:
            return
        time.sleep(0.02)


def test_a_ctrl_c_sent_to_mcms_runbook_alone_is_passed_on_to_pytest(tmp_path: Path) -> None:
    """`kill -INT` to mcms-runbook only (a container's init, a service manager; no terminal): the run it waits
    for gets the Ctrl-C too, once, and its exit code is passed on."""
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, sys.executable, "-c", COUNTING_CHILD, str(ready)],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True,
    )  # fmt: skip
    _wait_ready(ready, proc)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    text = out.decode()
    assert proc.returncode == 7, text
    assert "child got 1 SIGINT" in text
    assert "mcms-runbook: interrupted; waiting for the run to finish what it must do" in text


def test_a_terminals_ctrl_c_reaches_pytest_once_not_twice(tmp_path: Path) -> None:
    """Ctrl-C typed on the terminal goes to the whole foreground process group, pytest included: mcms-runbook
    does not send it a second one (a second Ctrl-C in a rollback would only be deferred, but it is not pressed)."""
    ready = tmp_path / "ready"
    master, slave = pty.openpty()

    def controlling_terminal() -> None:  # in the child, after start_new_session's setsid
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, sys.executable, "-c", COUNTING_CHILD, str(ready)],
        cwd=ROOT, stdin=slave, stdout=slave, stderr=slave, start_new_session=True, close_fds=True,
        preexec_fn=controlling_terminal, env={**os.environ, "PYTHONPATH": str(ROOT)},  # noqa: PLW1509 - TIOCSCTTY needs the child
    )  # fmt: skip
    os.close(slave)
    output = b""
    try:
        _wait_ready(ready, proc)
        os.write(master, b"\x03")  # the terminal's interrupt character: SIGINT to its foreground group
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    output += os.read(master, 65536)
                except OSError:
                    break
        code = proc.wait(timeout=30)
        while select.select([master], [], [], 0.1)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    text = output.decode(errors="replace")
    assert code == 7, text
    assert "child got 1 SIGINT" in text
