"""The public API: ``goalflow.__all__`` is complete and sorted, and every goalflow
module says what it exports, exports what it says, and lists every public class and
function it defines."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import goalflow
from goalflow import errors

MODULES = sorted(
    name
    for _, name, is_package in pkgutil.walk_packages(goalflow.__path__, prefix="goalflow.")
    if not is_package and not name.endswith(".__main__")  # a command, not a module
)


def test_the_public_api_is_sorted_and_names_what_it_has() -> None:
    assert goalflow.__all__ == sorted(goalflow.__all__)
    missing = [name for name in goalflow.__all__ if not hasattr(goalflow, name)]
    assert not missing, f"goalflow.__all__ names what goalflow lacks: {missing}"


def test_the_public_api_has_the_goal_flow_its_options_result_and_every_error() -> None:
    wanted = {"achieve_goal", "GoalOptions", "GoalResult", "Plan"}
    wanted |= {"GoalflowError", "ConfigError", "GoalFailedError", "GoalStoppedError"}

    assert wanted | set(errors.__all__) <= set(goalflow.__all__)
    assert goalflow.achieve_goal.name == "achieve-goal"
    assert issubclass(goalflow.GoalStoppedError, errors.GoalflowError)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = goalflow.nothing  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", MODULES)
def test_module_exports_exist(name: str) -> None:
    module = importlib.import_module(name)

    exported = getattr(module, "__all__", None)

    assert exported, f"{name} has no __all__"
    assert sorted(exported) == sorted(set(exported)), f"{name} lists a name twice"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name} exports names it lacks: {missing}"
    defined = [
        n
        for n, value in vars(module).items()
        if not n.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__ == name
    ]
    unlisted = [n for n in defined if n not in exported]
    assert not unlisted, f"{name} defines public names its __all__ leaves out: {unlisted}"
