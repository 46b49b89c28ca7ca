"""The embedded Lab: a real sample MCMS service on loopback, its offline packages and a webhook sink.

``--env Lab`` runs the runbook against it. Only the standard library is used, so the Lab starts on any
operator PC (Windows or Linux) with Python 3.12 and nothing else.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lab.faults import LAB_FAULTS
    from lab.packages import build_package, read_sha256_file, sha256_of
    from lab.procs import LabError
    from lab.supervisor import (
        CURRENT,
        NEXT,
        PREVIOUS_STABLE,
        ROUTERS,
        TOPOLOGIES,
        Lab,
        Node,
        RouterClient,
        StepResult,
        SwitchResult,
    )

# Loaded on first use: importing `lab.faults` (the runbook's options do) must not start up the whole Lab code.
_HOMES = {
    "LAB_FAULTS": "lab.faults",
    "build_package": "lab.packages",
    "read_sha256_file": "lab.packages",
    "sha256_of": "lab.packages",
    "LabError": "lab.procs",
    **dict.fromkeys(
        ("CURRENT", "NEXT", "PREVIOUS_STABLE", "ROUTERS", "TOPOLOGIES", "Lab", "Node", "RouterClient",
         "StepResult", "SwitchResult"),
        "lab.supervisor",
    ),
}  # fmt: skip


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'lab' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


__all__ = [
    "CURRENT",
    "LAB_FAULTS",
    "NEXT",
    "PREVIOUS_STABLE",
    "ROUTERS",
    "TOPOLOGIES",
    "Lab",
    "LabError",
    "Node",
    "RouterClient",
    "StepResult",
    "SwitchResult",
    "build_package",
    "read_sha256_file",
    "sha256_of",
]
