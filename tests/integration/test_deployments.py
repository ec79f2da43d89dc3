"""The CI path, for real: `goalflow server start`, `goalflow setup`, `prefect deploy --all`,
a process worker, `prefect deployment run ... --watch`, and the exit code.

The Prefect server is a real `prefect server start` on loopback (SQLite, in a temporary
PREFECT_HOME); the worker runs each goal in its own process; the model is the project's
OpenAI-compatible test server in this process.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from goalflow.testing import ChatRequest, Reply
from tests.conftest import echo_answer
from tests.flows.test_goal_flow import DIAMOND, _task
from tests.integration.stack import Stack, running_stack

BACKSTOP_SECONDS = 10


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


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("prefect-home")
    with running_stack(home, _answer, "--time-backstop", str(BACKSTOP_SECONDS)) as stack:
        yield stack


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
