"""Loads the runbook's plugins and fixture modules, nothing else."""

pytest_plugins = [
    "plugins.options",
    "plugins.flow",
    "plugins.evidence",
    "plugins.report",
    "plugins.matrix",
    "fixtures.environment",
    "fixtures.probe",
    "fixtures.notify",
    "fixtures.rollback",
    "fixtures.deploy",
    "fixtures.bluegreen",
    "fixtures.browser",
    "fixtures.zap",
]
