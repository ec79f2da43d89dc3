"""A short goal, end to end, on the real offline model, through the real command line.

No key, no endpoint and no ``PREFECT_API_URL``: goalflow starts llama.cpp's server with
the verified weights and a local Prefect server, plans, runs the tasks as Prefect runs
and prints the result, as a new user's first ``goalflow run`` does. Afterwards the run
is still on that server, for the UI.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.offline_model


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_offline_goal_runs_end_to_end_and_stays_visible(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "GOALFLOW_", "PREFECT_API"))
    }
    port = _free_port()
    env |= {"PREFECT_HOME": str(tmp_path / "prefect"), "GOALFLOW_SERVER_PORT": str(port)}
    goalflow = [sys.executable, "-m", "goalflow.cli"]
    goal = "Translate 'good morning, friends' into French and into Spanish."
    try:
        done = subprocess.run(
            [*goalflow, "run", goal, "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )

        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads(done.stdout)
        assert result["status"] == "completed"
        assert result["deliverables"]
        assert all(v.strip() for v in result["deliverables"].values())
        assert {t["status"] for t in result["tasks"]} == {"completed"}
        assert result["usage"]["calls"] >= 2 and result["usage"]["completion_tokens"] > 0
        assert result["usage"]["cost_usd"] == 0  # a local model sends no bill
        api = f"http://127.0.0.1:{port}/api"
        run = httpx.get(f"{api}/flow_runs/{result['flow_run_id']}", timeout=10).json()
        assert run["state"]["type"] == "COMPLETED"
        tasks = httpx.post(
            f"{api}/task_runs/filter",
            json={"flow_runs": {"id": {"any_": [result["flow_run_id"]]}}, "limit": 50},
            timeout=10,
        ).json()
        assert {"plan goal"} < {t["name"] for t in tasks}
    finally:
        subprocess.run([*goalflow, "server", "stop"], env=env, timeout=60, check=False)
