"""The runbook's plugin list: the one place that names every plugin and fixture module the runbook loads.

Two ways in, one list:

- installed (`pip install .`): the `pytest11` entry point `mcms_runbook` points at this module, so pytest loads
  it, and with it every module below, in any folder, before the command line is first parsed (so the runbook's
  options are known at once: `pytest --help` shows them, `--env-file PATH` with a space parses);
- from the project's root without installing: the root conftest.py lists `PLUGINS` as its `pytest_plugins`.

pytest registers a plugin module under its module name and skips a name that is already registered, so when
both ways are active (the project installed, pytest run from its root) every module is loaded once.
`-p no:mcms_runbook` turns the entry point off (the pytester projects of the project's own tests do this).
"""

from __future__ import annotations

# The entry point's name in pyproject.toml ([project.entry-points.pytest11]): `-p no:mcms_runbook` blocks it.
ENTRY_POINT = "mcms_runbook"

PLUGINS = [
    "plugins.options",
    "plugins.flow",
    "plugins.report",
    "plugins.evidence",
    "plugins.archive",
    "plugins.matrix",
    "plugins.distributed",
    "plugins.progress",
    "plugins.step",
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

pytest_plugins = PLUGINS
