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


GOALFLOW = [sys.executable, "-m", "goalflow.cli"]


def _offline_env(tmp_path: Path, port: int, **variables: str) -> dict[str, str]:
    """This environment with no endpoint, no goalflow settings and no Prefect API, a
    Prefect home of its own and a local server on ``port``, plus ``variables``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "GOALFLOW_", "PREFECT_API"))
    }
    return env | {
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "GOALFLOW_SERVER_PORT": str(port),
        **variables,
    }


def _goalflow(*arguments: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GOALFLOW, *arguments], env=env, capture_output=True, text=True, timeout=1200, check=False
    )


def test_offline_goal_runs_end_to_end_and_stays_visible(tmp_path: Path) -> None:
    port = _free_port()
    env = _offline_env(tmp_path, port)
    goal = "Translate 'good morning, friends' into French and into Spanish."
    try:
        done = _goalflow("run", goal, "--json", env=env)

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
        subprocess.run([*GOALFLOW, "server", "stop"], env=env, timeout=60, check=False)


def _llama_servers() -> set[int]:
    """The llama.cpp server processes alive now (goalflow starts them as children)."""
    found = subprocess.run(
        ["pgrep", "-f", "llama_cpp.server"], capture_output=True, text=True, check=False
    )
    return {int(pid) for pid in found.stdout.split()}


def test_an_offline_task_model_answers_the_simple_tasks_beside_the_planning_model(
    tmp_path: Path,
) -> None:
    port = _free_port()
    env = _offline_env(
        tmp_path, port, GOALFLOW_LOCAL_TASK_MODEL="0.5b", GOALFLOW_REFLECTION="false"
    )
    # A saved plan, so which tasks are simple does not hang on the planner's marks.
    step = {"kind": "llm", "inputs": [], "acceptance": ""}
    plan = {
        "goal": "Say good morning in French and in Spanish.",
        "deliverables": ["french", "spanish"],
        "tasks": [
            {**step, "id": "fr", "title": "French greeting", "outputs": ["french"],
             "instructions": "Write 'good morning' in French.", "difficulty": "simple"},
            {**step, "id": "es", "title": "Spanish greeting", "outputs": ["spanish"],
             "instructions": "Write 'good morning' in Spanish.", "difficulty": "hard"},
        ],
    }  # fmt: skip
    saved = tmp_path / "plan.json"
    saved.write_text(json.dumps(plan))
    before = _llama_servers()
    try:
        done = _goalflow("run", "--plan", str(saved), "--json", env=env)

        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads(done.stdout)
        assert result["status"] == "completed"
        models = {t["path"]: t["models"] for t in result["tasks"]}
        small, big = "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"
        assert models["es"] == [big]
        assert models["fr"][0] == small  # then the 1.5B, if its answer was rejected
        assert set(result["usage"]["calls_by_model"]) == {small, big}
        assert "tasks marked simple run on qwen2.5-coder-0.5b-instruct" in done.stderr
        assert _llama_servers() <= before  # both servers stopped with the run
    finally:
        subprocess.run([*GOALFLOW, "server", "stop"], env=env, timeout=60, check=False)
