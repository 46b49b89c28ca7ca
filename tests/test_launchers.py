"""The Windows launchers (drill.ps1, drill.cmd) against ./drill, which the tests run (tests/test_packaging.py).

PowerShell cannot run on these machines, so drill.ps1 is held to ./drill's contract by reading it: the same
virtual environment and install stamp (shared with make), the same Python floor, the same pip commands for the
wheelhouse and the index, the same verbs of plugins.cli, the same environment variables. A change to one
launcher that the other does not follow fails here.
"""

from __future__ import annotations

import re

from tests.tools import ROOT

DRILL = (ROOT / "drill").read_text(encoding="utf-8")
PS1 = (ROOT / "drill.ps1").read_text(encoding="utf-8")
CMD = (ROOT / "drill.cmd").read_text(encoding="utf-8")


def pip_installs(text: str) -> list[str]:
    """Each `-m pip install ...` line's arguments, with the interpreter variable left out."""
    return [" ".join(m.group(1).split()) for m in re.finditer(r"-m pip install ([^\n]+)", text)]


def test_both_launchers_install_the_same_way() -> None:
    assert pip_installs(DRILL) == pip_installs(PS1)
    assert pip_installs(DRILL) == [
        "--quiet --disable-pip-version-check --no-index --find-links wheelhouse -r requirements.txt",
        "--quiet --disable-pip-version-check -r requirements.txt",
    ]


def test_both_launchers_share_the_venv_the_stamp_and_the_python_floor_with_make() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "STAMP := $(VENV)/.installed-requirements" in makefile
    assert 'stamp="$venv/.installed-requirements"' in DRILL
    assert "Join-Path $venv '.installed-requirements'" in PS1
    floor = "sys.exit(sys.version_info < (3, 12))"
    assert floor in DRILL
    assert floor in PS1
    assert floor in makefile
    assert 'venv="${RUNBOOK_VENV:-.venv}"' in DRILL
    assert "if ($env:RUNBOOK_VENV) { $venv = $env:RUNBOOK_VENV }" in PS1


def test_both_launchers_run_the_drill_and_open_its_report_through_the_same_verbs() -> None:
    for verb in ("-m plugins.cli open --print-only", "-m plugins.cli drill"):
        assert verb in DRILL
        assert verb in PS1
    assert '"$py" -m plugins.cli drill "$@"' in DRILL
    assert "& $py -m plugins.cli drill @args" in PS1  # arguments go to the drill on both
    for variable in ("RUNBOOK_NO_OPEN", "PYTHON", "RUNBOOK_VENV"):
        assert variable in DRILL
        assert f"$env:{variable}" in PS1
    # A new report only: the one there before the drill is never opened as if it were the drill's.
    assert '[ "$report" = "$before" ]' in DRILL
    assert "($report -eq $before)" in PS1


def test_every_powershell_file_is_plain_ascii() -> None:
    """Windows PowerShell 5.1 reads a script without a byte-order mark in the ANSI code page: a non-ASCII
    character (a dash, a quote) in a BOM-less .ps1 turns into other characters, and in a string can break it."""
    scripts = [ROOT / "drill.ps1", *sorted((ROOT / "scripts" / "iis").glob("*.ps*1"))]
    assert len(scripts) >= 9
    for script in scripts:
        text = script.read_bytes()
        assert text.isascii() or text.startswith(b"\xef\xbb\xbf"), f"{script.name}: non-ASCII without a BOM"


def test_drill_cmd_runs_drill_ps1_past_the_execution_policy_and_passes_its_exit_code_on() -> None:
    assert 'powershell.exe -NoProfile -ExecutionPolicy Bypass -File "%~dp0drill.ps1" %*' in CMD
    assert "exit /b %rc%" in CMD
    assert 'set "rc=%ERRORLEVEL%"' in CMD
    # Windows reads .cmd files in the console's code page: plain ASCII, CRLF or LF both accepted.
    assert CMD.isascii()
