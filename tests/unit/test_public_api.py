"""Every goalflow module says what it exports, and exports what it says."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import goalflow

MODULES = sorted(
    name for _, name, _ in pkgutil.walk_packages(goalflow.__path__, prefix="goalflow.")
)


@pytest.mark.parametrize("name", MODULES)
def test_module_exports_exist(name: str) -> None:
    module = importlib.import_module(name)

    exported = getattr(module, "__all__", None)

    assert exported, f"{name} has no __all__"
    assert sorted(exported) == sorted(set(exported)), f"{name} lists a name twice"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name} exports names it lacks: {missing}"
