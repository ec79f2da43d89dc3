"""The package's layers, as folders: imports point down only, and the lowest two layers
(and the agent's unit tests) run without prefect, openai or docker installed."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import goalflow

PACKAGE = Path(goalflow.__file__).parent

# What each layer may import from goalflow (besides itself). errors.py is the floor.
BELOW: dict[str, set[str]] = {
    "errors": set(),
    "core": {"errors"},
    "agent": {"errors", "core"},
    "llm": {"errors", "core"},
    "sandbox": {"errors", "core"},
    "settings": {"errors", "core", "llm", "sandbox"},
    "orchestration": {"errors", "core", "agent", "llm", "sandbox", "settings"},
    "deploy": {"errors", "core", "agent", "llm", "sandbox", "settings", "orchestration"},
    "cli": {"errors", "core", "agent", "llm", "sandbox", "settings", "orchestration", "deploy"},
}
BELOW["testing"] = set(BELOW) - {"testing"}
BELOW["__init__"] = {"errors", "core", "orchestration"}  # the public API
THIRD_PARTY_FREE = ("core", "agent")
AGENT_TESTS = ("test_planner.py", "test_executor.py", "test_coder.py")


def _layer(module: str) -> str:
    """``goalflow.core.plan`` -> ``core``; ``goalflow.errors`` -> ``errors``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).with_suffix("")
        parts = [p for p in relative.parts if p != "__init__"]
        found.append((".".join(["goalflow", *parts]), path))
    return found


def _goalflow_imports(path: Path) -> list[tuple[int, str]]:
    """Every goalflow module ``path`` imports at run time, lazily imported ones included
    (imports under ``if TYPE_CHECKING:`` are for annotations only)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
        for inner in ast.walk(node)
    }
    imports = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        imports += [(node.lineno, n) for n in names if n.split(".")[0] == "goalflow"]
    return imports


def test_every_module_belongs_to_a_known_layer() -> None:
    unknown = {module for module, _ in _modules() if _layer(module) not in BELOW}

    assert not unknown, f"modules outside the layers of tests/unit/test_layers.py: {unknown}"


@pytest.mark.parametrize(("module", "path"), _modules(), ids=lambda v: str(v))
def test_imports_point_down(module: str, path: Path) -> None:
    layer = _layer(module)
    wrong = [
        f"line {line}: {name}"
        for line, name in _goalflow_imports(path)
        if _layer(name) != layer and _layer(name) not in BELOW[layer]
    ]

    assert not wrong, f"{module} ({layer}) imports a layer above it: {wrong}"


def _blocking_third_party(script: str) -> str:
    """``script``, run after a hook that makes any import of prefect, openai or docker fail."""
    return (
        """
import importlib, importlib.abc, sys

class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("prefect", "openai", "docker"):
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, Blocked())
"""
        + script
    )


def test_core_and_agent_import_without_prefect_openai_or_docker() -> None:
    modules = [m for m, _ in _modules() if _layer(m) in THIRD_PARTY_FREE]
    script = _blocking_third_party(f"""
for name in {modules!r}:
    importlib.import_module(name)
print(len({modules!r}))
""")
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )

    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == len(modules) > 10


def test_the_agent_unit_tests_run_without_prefect_openai_or_docker() -> None:
    # Without the conftest, whose fixtures are for the Prefect tests.
    paths = [str(Path(__file__).with_name(name)) for name in AGENT_TESTS]
    script = _blocking_third_party(f"""
import pytest
sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "--noconftest", *{paths!r}]))
""")
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[2],
    )

    assert done.returncode == 0, done.stdout + done.stderr
