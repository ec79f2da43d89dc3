"""A short goal, end to end, on the real offline model, through the real command line.

No key and no endpoint: goalflow starts llama.cpp's server with the verified weights,
plans, runs the tasks as Prefect runs and prints the result, as a new user's first
``goalflow run`` does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.offline_model


def test_offline_goal_runs_end_to_end(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "GOALFLOW_"))}
    env["PREFECT_HOME"] = str(tmp_path / "prefect")  # a fresh Prefect database
    goal = "Translate 'good morning, friends' into French and into Spanish."

    done = subprocess.run(
        [sys.executable, "-m", "goalflow.cli", "run", goal, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["status"] == "completed"
    assert result["deliverables"] and all(v.strip() for v in result["deliverables"].values())
    assert {t["status"] for t in result["tasks"]} == {"completed"}
    assert result["usage"]["calls"] >= 2 and result["usage"]["completion_tokens"] > 0
    assert result["usage"]["cost_usd"] == 0  # a local model sends no bill
