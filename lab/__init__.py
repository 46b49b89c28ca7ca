"""The embedded Lab: a real sample MCMS service on loopback, its offline packages and a webhook sink.

``--env Lab`` runs the runbook against it. Only the standard library is used, so the Lab starts on any
operator PC (Windows or Linux) with Python 3.12 and nothing else.
"""

from __future__ import annotations

from lab.packages import build_package, read_sha256_file, sha256_of
from lab.procs import LabError
from lab.supervisor import (
    CURRENT,
    LAB_FAULTS,
    NEXT,
    PREVIOUS_STABLE,
    TOPOLOGIES,
    Lab,
    Node,
    RouterClient,
    StepResult,
    SwitchResult,
)

__all__ = [
    "CURRENT",
    "LAB_FAULTS",
    "NEXT",
    "PREVIOUS_STABLE",
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
