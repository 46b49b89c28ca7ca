"""The faults a drill can inject into the Lab (`--lab-fault NAME`): a module of its own, so that the runbook's
options can offer the names without loading the Lab."""

from __future__ import annotations

LAB_FAULTS = (
    "service-stopped",
    "bad-package-hash",
    "green-unhealthy",
    "green-degrades-after-switch",
    "webhook-down",
    "a11y-regression",
    "insecure-headers",
    "green-queue-backlog",
)
