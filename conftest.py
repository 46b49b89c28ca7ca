"""Loads the runbook's plugins and fixture modules, nothing else."""

pytest_plugins = [
    "plugins.options",
    "plugins.flow",
    "plugins.report",
    "plugins.evidence",
    "plugins.archive",
    "plugins.matrix",
    "plugins.distributed",
    "fixtures.environment",
    "fixtures.probe",
    "fixtures.notify",
    "fixtures.rollback",
    "fixtures.deploy",
    "fixtures.bluegreen",
    "plugins.screenshots",
    "fixtures.browser",
    "fixtures.axe",
    "fixtures.e2e",
    "fixtures.zap",
]
