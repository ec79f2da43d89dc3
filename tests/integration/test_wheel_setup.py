"""`goalflow setup` from a built wheel, away from the source tree: the automations and the
Kubernetes job template it applies ship inside the package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]


def test_setup_works_from_a_wheel_install(prefect_server: str, tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("goalflow-*.whl")
    site = tmp_path / "site"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), wheel],
        capture_output=True,
        text=True,
    )
    assert installed.returncode == 0, installed.stderr
    # The wheel's package, not the checkout's: run from elsewhere, with it first on the path.
    env = {**os.environ, "PYTHONPATH": str(site), "PREFECT_API_URL": prefect_server}
    where = subprocess.run(
        [sys.executable, "-c", "import goalflow; print(goalflow.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.stdout.startswith(str(site)), where.stdout + where.stderr

    setup = subprocess.run(
        [sys.executable, "-m", "goalflow.cli", "setup"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert setup.returncode == 0, setup.stdout + setup.stderr
    automations = httpx.post(f"{prefect_server}/automations/filter", json={}).json()
    names = {automation["name"] for automation in automations}
    assert {"goalflow-budget-exceeded", "goalflow-time-backstop", "goalflow-lost-run"} <= names
