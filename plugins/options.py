"""Runbook options, and the environment file validated before anything runs.

Precedence for the environment and the evidence directory: command line > process environment
(RUNBOOK_ENV, RUNBOOK_EVIDENCE_DIR) > ini (runbook_env, runbook_evidence_dir). Every bad value is a
`pytest.UsageError` (exit 4) that names the option or file and key, and what is allowed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from drivers.config import ConfigError, ConfigProblems, available_environments, load_environment
from lab.faults import LAB_FAULTS  # the Lab owns its fault names; the option only offers them
from plugins.state import RunbookRun, RunOptions, run_key

ROLLBACK_POLICIES = ("on-failure", "always", "never")
HELP_ENV = "environment to run against: environments/NAME.toml (e.g. Lab, InternalStage, InternalProd)."
HELP_EVIDENCE = "directory for evidence bundles (default: reports/)."


def approver_name(value: str) -> str:
    if not re.fullmatch(r"[\w .@'-]{1,80}", value) or not value.strip():
        raise ValueError(value)
    return value.strip()


approver_name.__name__ = "approver name (letters, digits, space . @ ' -)"


REASON_MAX = 300


def reason_text(value: str) -> str:
    """--reason TEXT: one line of words; runs of white space (a pasted line break) become one space."""
    text = " ".join(value.split())
    if not text or len(text) > REASON_MAX or any(not c.isprintable() for c in text):
        raise ValueError(value)
    return text


reason_text.__name__ = f"reason (one line of words, 1 to {REASON_MAX} characters)"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("runbook", "DR & rollback runbook")
    group.addoption("--env", dest="runbook_env", metavar="NAME", help=HELP_ENV)
    group.addoption(
        "--env-file", dest="runbook_env_file", metavar="PATH", type=Path, help="any environment file (TOML)."
    )
    group.addoption("--evidence-dir", dest="runbook_evidence_dir", metavar="DIR", help=HELP_EVIDENCE)
    group.addoption(
        "--evidence-zip",
        dest="runbook_evidence_zip",
        action="store_true",
        help="after the seal, also write the bundle as <evidence dir>/<bundle>.zip (written under a temporary "
        "name, then renamed); unzipped, `python -m plugins.evidence verify <bundle>` checks it.",
    )
    group.addoption(
        "--approved-by",
        dest="runbook_approved_by",
        metavar="NAME",
        type=approver_name,
        help="approval for BG-3 (required outside Lab); recorded in the journal and the notification.",
    )
    group.addoption(
        "--reason",
        dest="runbook_reason",
        metavar="TEXT",
        type=reason_text,
        help='why this run, in words (e.g. "CHG-1234 quarterly DR drill"); journalled and shown in the report.',
    )
    group.addoption(
        "--lab-fault",
        dest="runbook_lab_faults",
        action="append",
        default=[],
        choices=LAB_FAULTS,
        metavar="NAME",
        help="Lab only: inject a fault for a drill (repeatable). One of: " + ", ".join(LAB_FAULTS) + ".",
    )
    group.addoption(
        "--runbook-rollback",
        dest="runbook_rollback",
        choices=ROLLBACK_POLICIES,
        default="on-failure",
        metavar="POLICY",
        help="both flows: on-failure (default: a failure after the site was stopped restores the release that "
        "was serving; a failure after a Blue/Green switch sends traffic back to the previously live slot at "
        "once), always (also after success: a drill), never (leave it to the operator, loudly).",
    )
    group.addoption(
        "--selenium-remote",
        dest="runbook_selenium_remote",
        metavar="URL",
        help="run the browser rows (DR-AXE, DR-E2E) on a Selenium Grid (remote WebDriver) at URL.",
    )
    group.addoption(
        "--confirm-env",
        dest="runbook_confirm_env",
        metavar="NAME",
        help="repeat the environment's name; required for flows that change a system when the environment "
        "file says protect = true.",
    )
    group.addoption(
        "--runbook-plan",
        dest="runbook_plan",
        action="store_true",
        help="print the ordered phases with their docstrings as a Markdown checklist; run nothing.",
    )
    group.addoption(
        "--keep-lab",
        dest="runbook_keep_lab",
        action="store_true",
        help="leave the embedded Lab running after the session (prints its URLs).",
    )
    parser.addini("runbook_env", HELP_ENV, default="")
    parser.addini("runbook_evidence_dir", HELP_EVIDENCE, default="reports")


def _setting(config: pytest.Config, option: str, envvar: str, ini: str) -> tuple[str, str]:
    """The value and where it came from, for error messages."""
    value = config.getoption(option)
    if value:
        return str(value), "--" + option.removeprefix("runbook_").replace("_", "-")
    if os.environ.get(envvar):
        return os.environ[envvar], envvar
    return str(config.getini(ini) or ""), f"ini {ini}"


def env_argument(config: pytest.Config) -> str:
    """How this run was given its environment, for rerun hints: --env NAME, --env-file=PATH or RUNBOOK_ENV."""
    env_file = config.getoption("runbook_env_file")
    if env_file:
        return f"--env-file={env_file}"
    name, _ = _setting(config, "runbook_env", "RUNBOOK_ENV", "runbook_env")
    return f"--env {name or 'NAME'}"


def resolve_env_path(config: pytest.Config) -> Path | None:
    env_file = config.getoption("runbook_env_file")
    name, source = _setting(config, "runbook_env", "RUNBOOK_ENV", "runbook_env")
    if env_file and name:
        raise pytest.UsageError(
            f"--env-file {env_file}: give either --env or --env-file, not both (--env from {source})"
        )
    if env_file:
        path = Path(env_file)
        if not path.is_file():
            raise pytest.UsageError(f"--env-file {env_file}: no such file")
        return path
    if not name:
        return None
    env_dir = config.rootpath / "environments"
    path = env_dir / f"{name}.toml"
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or not path.is_file():
        have = ", ".join(available_environments(env_dir)) or "none"
        raise pytest.UsageError(f"{source} {name}: no environments/{name}.toml (have: {have})")
    return path


# The runbook's options whose value is a path. pytest chooses its root folder and ini file from the test paths of
# its very first parse of the command line, before any conftest's options are known (an installed runbook's are,
# plugins/entry.py): there `--env-file PATH` reads PATH as a test path.
PATH_OPTIONS = ("--env-file", "--evidence-dir")


def check_separated_paths(config: pytest.Config) -> None:
    """`--env-file PATH` (with a space) works when pytest chose the same root folder and ini file as it would
    have for `--env-file=PATH`; otherwise a usage error says to write `--env-file=PATH`."""
    if hasattr(config, "workerinput"):
        return
    args = [str(a) for a in config.invocation_params.args]
    separated = [(opt, args[i + 1]) for i, opt in enumerate(args[:-1]) if opt in PATH_OPTIONS]
    if not separated:
        return
    try:
        from _pytest.config.findpaths import determine_setup

        rootpath, inipath, *_ = determine_setup(
            inifile=config.option.inifilename,
            override_ini=config.option.override_ini,
            args=[str(a) for a in config.option.file_or_dir],
            rootdir_cmd_arg=config.option.rootdir or None,
            invocation_dir=config.invocation_params.dir,
        )
        same = rootpath == config.rootpath and inipath == config.inipath
    except (ImportError, TypeError, ValueError):
        # pytest's private API changed: judge by the root folder alone.
        same = all(
            (config.invocation_params.dir / value).resolve().is_relative_to(config.rootpath)
            for _, value in separated
        )
        rootpath = config.invocation_params.dir
    if same:
        return
    opt, value = separated[0]
    ini = f"{config.inipath}" if config.inipath else "no pytest.ini"
    raise pytest.UsageError(
        f"{opt} {value}: write {opt}={value} (with '='): pytest read {value} as a test path before the "
        f"runbook's options were known, and so took {config.rootpath} ({ini}) as the project folder instead "
        f"of {rootpath}"
    )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    faults = tuple(config.getoption("runbook_lab_faults") or ())
    check_separated_paths(config)
    path = resolve_env_path(config)
    if path is None:
        if faults:
            raise pytest.UsageError("--lab-fault: needs --env Lab (faults exist only in the embedded Lab)")
        return
    # Problems in the file itself are reported by preflight together with everything else the selected flow
    # needs (one usage error with every problem); a file that cannot even be read stops here.
    problems: list[ConfigError] = []
    try:
        env = load_environment(path)
    except ConfigProblems as exc:
        if exc.env is None:
            raise pytest.UsageError(str(exc)) from None
        env, problems = exc.env, exc.problems
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    option_problems = []
    if faults and not env.is_lab:
        option_problems.append(
            f'--lab-fault {faults[0]}: only for the embedded Lab; {path} has kind = "{env.kind}"'
        )
    if config.getoption("runbook_keep_lab") and not env.is_lab:
        option_problems.append(f'--keep-lab: only for the embedded Lab; {path} has kind = "{env.kind}"')
    evidence, _ = _setting(config, "runbook_evidence_dir", "RUNBOOK_EVIDENCE_DIR", "runbook_evidence_dir")
    evidence_dir = Path(evidence or "reports")
    if not evidence_dir.is_absolute():
        evidence_dir = config.rootpath / evidence_dir
    worker_input = getattr(config, "workerinput", None)
    parallel = (
        worker_input is None
        and not config.option.collectonly
        and getattr(config.option, "dist", "no") != "no"
        and bool(getattr(config.option, "tx", None))
    )
    options = RunOptions(
        evidence_dir=evidence_dir,
        approved_by=config.getoption("runbook_approved_by"),
        lab_faults=faults,
        keep_lab=bool(config.getoption("runbook_keep_lab")),
        plan=bool(config.getoption("runbook_plan")),
        rollback_policy=str(config.getoption("runbook_rollback")),
        selenium_remote=config.getoption("runbook_selenium_remote") or env.browser.remote,
        confirm_env=config.getoption("runbook_confirm_env"),
        reason=config.getoption("runbook_reason") or "",
        env_argument=env_argument(config),
        parallel=f"-n {len(config.option.tx)}" if parallel else "",
        dist=str(getattr(config.option, "dist", "no")),
    )
    run = RunbookRun(
        env, options, config.rootpath, worker_of=worker_input.get("runbook_run_id") if worker_input else None
    )
    run.config_problems = [str(p) for p in problems] + option_problems
    config.stash[run_key] = run
    config.pluginmanager.register(run, "runbook")
