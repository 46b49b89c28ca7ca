"""Loads the runbook's plugins and fixture modules from the project's root, nothing else.

The list is plugins/entry.py's (the `pytest11` entry point of an installed runbook loads the same module): when
the entry point already loaded them, pytest skips every name here, so each module is registered once.
"""

from plugins.entry import PLUGINS

pytest_plugins = PLUGINS
