"""drivers/base.py: the registries of driver names."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.base import DriverError, Registry
from drivers.deploy import DEPLOY_DRIVERS, deploy_driver
from drivers.probe import Prober
from tests.driver_env import load_env


def test_registry_unknown_name_lists_the_known_ones(tmp_path: Path) -> None:
    assert DEPLOY_DRIVERS.names() == ["command", "lab"]
    with pytest.raises(DriverError) as info:
        DEPLOY_DRIVERS.get("ansible")
    assert str(info.value) == 'unknown deploy driver "ansible" (known: command, lab)'
    env = load_env(tmp_path, 'name = "Stage"\n')
    with pytest.raises(DriverError) as info:
        deploy_driver("ansible", env, Prober([]), {})
    assert str(info.value) == 'unknown deploy driver "ansible" (known: command, lab)'

    widgets: Registry[object] = Registry("widget driver")
    assert widgets.names() == []
    with pytest.raises(DriverError) as info:
        widgets.get("x")
    assert str(info.value) == 'unknown widget driver "x" (known: )'

    class Plain:
        pass

    assert widgets.register("plain")(Plain) is Plain
    assert widgets.get("plain") is Plain
    assert widgets.names() == ["plain"]
