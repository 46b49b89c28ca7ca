"""Helpers the driver tests share: environment files and offline packages written into a test's tmp_path."""

from __future__ import annotations

import hashlib
import json
import textwrap
from collections.abc import Mapping
from pathlib import Path

from drivers.config import Environment, load_environment


def write_env(tmp_path: Path, text: str, name: str = "Stage.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load_env(tmp_path: Path, text: str) -> Environment:
    """The environment file `text`, written to tmp_path and loaded with no variable set."""
    return load_environment(write_env(tmp_path, text), environ={})


def make_package(directory: Path, version: str, content: bytes | None = None, sha: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"MCMS_Setup_{version}.zip"
    data = content if content is not None else f"package {version}".encode()
    path.write_bytes(data)
    if sha:
        digest = hashlib.sha256(data).hexdigest()
        (directory / f"{path.name}.sha256").write_text(f"{digest}  {path.name}\n", encoding="utf-8")
    return path


def command_env(
    tmp_path: Path, base_url: str, commands: Mapping[str, list[str]], start_timeout_s: float = 5.0
) -> Environment:
    lines = [
        'name = "Stage"',
        'kind = "remote"',
        "[service]",
        f'base_url = "{base_url}"',
        "[drivers]",
        'deploy = "command"',
        f"start_timeout_s = {start_timeout_s}",
        "[drivers.command]",
        # A JSON array of strings is a TOML array too.
        *(f"{verb} = {json.dumps(argv)}" for verb, argv in commands.items()),
    ]
    return load_env(tmp_path, "\n".join(lines) + "\n")
