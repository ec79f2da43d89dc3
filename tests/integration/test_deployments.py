"""The CI path, for real: `goalflow server start`, `goalflow setup`, `prefect deploy --all`,
a process worker, `prefect deployment run ... --watch`, and the exit code.

The Prefect server is a real `prefect server start` on loopback (SQLite, in a temporary
PREFECT_HOME); the worker runs each goal in its own process; the model is the project's
OpenAI-compatible test server in this process.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from goalflow.testing import ChatRequest, OpenAITestServer, Reply
from tests.conftest import TEST_KEY, echo_answer
from tests.flows.test_goal_flow import DIAMOND, _task

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BACKSTOP_SECONDS = 10


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answer(request: ChatRequest) -> str | Reply:
    if request.schema_name == "PlanDraft":
        if "Fail" in request.text:
            plan = {
                "inputs": [],
                "deliverables": ["a"],
                "tasks": [_task("left", "Doomed", [], ["a"])],
            }
            return json.dumps(plan)
        return json.dumps(DIAMOND)
    if "Your task: Doomed" in request.last_user:
        return Reply(status=400, error_message="refused")
    if "Slow" in request.text:
        return Reply(content=str(echo_answer(request)), delay=60)
    return echo_answer(request)


class Stack:
    def __init__(self, env: dict[str, str], llm: OpenAITestServer) -> None:
        self.env, self.llm = env, llm

    def run(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args, env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
        )

    def deployment_run(self, **params: object) -> tuple[int, str]:
        """Exit code of `prefect deployment run --watch` and the flow run id."""
        command = [str(BIN / "prefect"), "deployment", "run", "achieve-goal/goal", "--watch"]
        for key, value in params.items():
            command += ["--param", f"{key}={value}"]
        done = self.run(*command, "--watch-timeout", "180")
        found = re.search(r"UUID: ([0-9a-f-]{36})", done.stdout)
        assert found, done.stdout + done.stderr
        return done.returncode, found.group(1)

    def flow_run(self, flow_run_id: str) -> dict[str, Any]:
        response = httpx.get(f"{self.env['PREFECT_API_URL']}/flow_runs/{flow_run_id}")
        return dict(response.json())

    def report(self, flow_run_id: str) -> str:
        response = httpx.post(
            f"{self.env['PREFECT_API_URL']}/artifacts/filter",
            json={
                "artifacts": {
                    "flow_run_id": {"any_": [flow_run_id]},
                    "key": {"any_": ["goal-report"]},
                }
            },
        )
        return str(response.json()[0]["data"])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("prefect-home")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "GOALFLOW_", "OPENAI_"))
    }
    env |= {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "GOALFLOW_SERVER_PORT": str(_free_port()),
    }
    llm = OpenAITestServer(api_key=TEST_KEY, default=_answer)
    with llm:
        stack = Stack(env, llm)
        started = stack.run(str(BIN / "goalflow"), "server", "start")
        assert started.returncode == 0, started.stderr
        url = f"http://127.0.0.1:{env['GOALFLOW_SERVER_PORT']}/api"
        assert stack.run(str(BIN / "goalflow"), "server", "status").returncode == 0
        env["PREFECT_API_URL"] = url
        worker = None
        try:
            setup = stack.run(
                str(BIN / "goalflow"), "setup", "--time-backstop", str(BACKSTOP_SECONDS)
            )
            assert setup.returncode == 0, setup.stderr
            again = stack.run(
                str(BIN / "goalflow"), "setup", "--time-backstop", str(BACKSTOP_SECONDS)
            )
            assert "automation 'goalflow-budget-exceeded': updated" in again.stderr
            for name in ("goal", "weekly-green-tea-digest", "reflect"):
                # prefect 3.9.1's `deploy` creates the deployment, then fails (exit 1) on
                # its own "is a worker online?" query (HTTP 422: limit null), so `--all`
                # stops after the first one. Deploy by name and check what was created.
                deployed = stack.run(str(BIN / "prefect"), "--no-prompt", "deploy", "-n", name)
                assert "successfully created" in deployed.stdout, deployed.stdout
            worker_env = env | {
                "OPENAI_BASE_URL": llm.base_url,
                "OPENAI_API_KEY": TEST_KEY,
                "GOALFLOW_MODEL": "test-model",
                "GOALFLOW_SANDBOX": "off",
                "GOALFLOW_PRICES": json.dumps({"test-model": {"input": 1, "output": 1}}),
            }
            worker = subprocess.Popen(
                [str(BIN / "prefect"), "worker", "start", "--pool", "goalflow-process"],
                env=worker_env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            yield stack
        finally:
            if worker is not None:
                os.killpg(worker.pid, signal.SIGTERM)
                worker.wait(timeout=30)
            env.pop("PREFECT_API_URL")
            assert stack.run(str(BIN / "goalflow"), "server", "stop").returncode == 0
            assert stack.run(str(BIN / "goalflow"), "server", "status").returncode == 1


def test_watch_exits_0_for_a_goal_that_succeeds(stack: Stack) -> None:
    code, flow_run_id = stack.deployment_run(goal="Write a short report on green tea")

    assert code == 0
    assert stack.flow_run(flow_run_id)["state"]["type"] == "COMPLETED"
    assert "<report from Write report>" in stack.report(flow_run_id)


def test_watch_exits_non_zero_for_a_goal_that_fails(stack: Stack) -> None:
    code, flow_run_id = stack.deployment_run(goal="Fail on purpose")

    assert code != 0
    state = stack.flow_run(flow_run_id)["state"]
    assert state["type"] == "FAILED" and "a not produced" in state["message"]


def test_tiny_money_budget_stops_the_run_with_spend_within_budget(
    stack: Stack, tmp_path: Path
) -> None:
    wide = {
        "goal": "Six parts and a summary",
        "inputs": {},
        "deliverables": ["summary"],
        "tasks": [
            *(_task(f"part{i}", f"Part {i}", [], [f"p{i}"]) for i in range(6)),
            _task("sum", "Summarise", [f"p{i}" for i in range(6)], ["summary"]),
        ],
    }
    plan_file = tmp_path / "wide.json"
    plan_file.write_text(json.dumps(wide))

    code, flow_run_id = stack.deployment_run(plan_file=plan_file, max_usd=0.002, concurrency=1)

    assert code != 0
    state = stack.flow_run(flow_run_id)["state"]
    assert state["type"] in ("FAILED", "CANCELLED")
    report = stack.report(flow_run_id)
    assert "money budget of $0.002" in report
    spent = float(re.search(r"cost: \$([0-9.]+) of a \$0.002 budget", report).group(1))  # type: ignore[union-attr]
    assert 0 < spent <= 0.002
    assert "| part0 | Part 0 | llm | completed |" in report


def test_time_budget_is_enforced_by_the_run_itself(stack: Stack) -> None:
    code, flow_run_id = stack.deployment_run(goal="Slow goal", max_seconds=3)

    assert code != 0
    run = stack.flow_run(flow_run_id)
    assert "time budget of 3 s ran out" in run["state"]["message"]
    # Timed by the server from Running to the end (a worker's pick-up is not the run's
    # doing): stopped long before the test server's 60 s answers could arrive.
    ran = datetime.fromisoformat(run["end_time"]) - datetime.fromisoformat(run["start_time"])
    assert ran.total_seconds() < 30


def test_a_goal_without_a_time_budget_is_cancelled_by_the_backstop_automation(
    stack: Stack,
) -> None:
    code, flow_run_id = stack.deployment_run(goal="Slow goal, no limit")

    assert code != 0
    run = stack.flow_run(flow_run_id)
    # Nothing but the automation cancels this run; its answers would take 60 s each.
    assert run["state"]["type"] in ("CANCELLED", "FAILED")
    assert "cancel" in (run["state"]["message"] or "").lower()
