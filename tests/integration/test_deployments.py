"""The CI path, for real: `goalflow server start`, `goalflow setup`, `prefect deploy`,
a process worker, `prefect deployment run ... --watch`, and the exit code.

The Prefect server is a real `prefect server start` on loopback (SQLite, in a temporary
PREFECT_HOME); the worker runs each goal in its own process; the model is the project's
OpenAI-compatible test server in this process.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from goalflow.testing import ChatRequest, OpenAITestServer, Reply
from goalflow.testing.deployment_stack import DeploymentStack, model_env, run_seconds
from tests.helpers import DIAMOND, TEST_KEY, echo_answer, task, task_title

ROOT = Path(__file__).resolve().parents[2]
BACKSTOP_SECONDS = 10

pytestmark = pytest.mark.slow


def _answer(request: ChatRequest) -> str | Reply:
    if request.schema_name == "PlanDraft":
        if "Fail" in request.text:
            plan = {
                "inputs": [],
                "deliverables": ["a"],
                "tasks": [task("left", "Doomed", [], ["a"])],
            }
            return json.dumps(plan)
        return json.dumps(DIAMOND)
    if task_title(request) == "Doomed":
        return Reply(status=400, error_message="refused")
    if "Slow" in request.text:
        return Reply(content=str(echo_answer(request)), delay=60)
    return echo_answer(request)


@pytest.fixture(scope="module")
def llm() -> Iterator[OpenAITestServer]:
    with OpenAITestServer(api_key=TEST_KEY, default=_answer) as server:
        yield server


@pytest.fixture(scope="module")
def stack(llm: OpenAITestServer) -> Iterator[DeploymentStack]:
    worker_env = model_env(llm.base_url, TEST_KEY)
    # The scheduler looks for due schedules every 5 s instead of every minute.
    server_env = {"PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5"}
    with DeploymentStack(
        ROOT,
        worker_env,
        setup_options=("--time-backstop", str(BACKSTOP_SECONDS)),
        server_env=server_env,
    ) as stack:
        yield stack
    assert stack.run("goalflow", "server", "status").returncode == 1


def test_setup_is_idempotent(stack: DeploymentStack) -> None:
    # The stack ran it twice (before and after `prefect deploy`): the second run updated
    # what the first created, and found the reflect trigger `prefect deploy` made.
    assert "automation 'goalflow-budget-exceeded': updated" in stack.setup_output
    assert "automation 'goalflow-reflect-on-stall' is missing" in stack.setup_output
    assert "automation 'goalflow-reflect-on-stall': present (prefect deploy)" in (
        stack.setup_output
    )
    reflect = stack.post(
        "/automations/filter", {"automations": {"name": {"any_": ["goalflow-reflect-on-stall"]}}}
    )
    assert len(reflect) == 1  # one automation, however often deploy and setup ran
    assert reflect[0]["actions"][0]["type"] == "run-deployment"


def test_watch_exits_0_for_a_goal_that_succeeds(stack: DeploymentStack) -> None:
    code, flow_run_id = stack.deployment_run(goal="Write a short report on green tea")

    assert code == 0
    assert stack.flow_run(flow_run_id)["state"]["type"] == "COMPLETED"
    assert "&lt;report from Write report>" in stack.report(flow_run_id)


def test_watch_exits_non_zero_for_a_goal_that_fails(stack: DeploymentStack) -> None:
    code, flow_run_id = stack.deployment_run(goal="Fail on purpose")

    assert code != 0
    state = stack.flow_run(flow_run_id)["state"]
    assert state["type"] == "FAILED" and "a not produced" in state["message"]


def test_tiny_money_budget_stops_the_run_with_spend_within_budget(
    stack: DeploymentStack, tmp_path: Path
) -> None:
    wide = {
        "goal": "Six parts and a summary",
        "inputs": {},
        "deliverables": ["summary"],
        "tasks": [
            *(task(f"part{i}", f"Part {i}", [], [f"p{i}"]) for i in range(6)),
            task(
                "sum",
                "Summarise",
                [f"p{i}" for i in range(6)],
                ["summary"],
                instructions="Weigh every part against the others, in full. " * 12,
            ),
        ],
    }
    plan_file = tmp_path / "wide.json"
    plan_file.write_text(json.dumps(wide))

    # The parts fit (~$0.0001 each, up to ~$0.0008 held at once); the sum's long
    # instructions, counted a token per byte, do not fit what is left.
    code, flow_run_id = stack.deployment_run(
        goal=wide["goal"], plan_file=plan_file, max_usd=0.0012, advanced={"concurrency": 1}
    )

    assert code != 0
    state = stack.flow_run(flow_run_id)["state"]
    # The run stopped itself, so the backstop automation stood down: its own message stays.
    assert state["type"] == "FAILED" and "money budget of $0.0012" in state["message"]
    report = stack.report(flow_run_id)
    assert "money budget of $0.0012" in report
    spent = float(re.search(r"cost: \$([0-9.]+) of a \$0.0012 budget", report).group(1))  # type: ignore[union-attr]
    assert 0 < spent <= 0.0012
    assert "| part0 | Part 0 | llm | completed |" in report


def test_time_budget_is_enforced_by_the_run_itself(stack: DeploymentStack) -> None:
    code, flow_run_id = stack.deployment_run(goal="Slow goal", max_seconds=3)

    assert code != 0
    run = stack.flow_run(flow_run_id)
    assert "time budget of 3 s ran out" in run["state"]["message"]
    # Timed by the server from Running to the end (a worker's pick-up is not the run's
    # doing): stopped long before the backstop or the test server's 60 s answers.
    assert run_seconds(run) < BACKSTOP_SECONDS


def test_with_the_in_run_guard_off_the_automation_stops_the_run(stack: DeploymentStack) -> None:
    code, flow_run_id = stack.deployment_run(
        job_env={"GOALFLOW_TIME_GUARD": "false"}, goal="Slow goal, guard off", max_seconds=3
    )

    assert code != 0
    run = stack.flow_run(flow_run_id)
    # Only the server's proactive automation can stop it: not the run (guard off, so not
    # at 3 s), not its answers (60 s each).
    assert run["state"]["type"] == "CANCELLED"
    assert "cancel" in (run["state"]["message"] or "").lower()
    assert BACKSTOP_SECONDS <= run_seconds(run) < 50


def test_a_run_that_overruns_its_spent_money_budget_is_cancelled_by_the_automation(
    stack: DeploymentStack,
) -> None:
    # Only the money backstop may act here: move the time backstop out of the way.
    assert stack.run("goalflow", "setup", "--time-backstop", "300").returncode == 0
    try:
        _, flow_run_id = stack.deployment_run(watch=False, goal="Slow goal, deaf to money")
        stack.wait_for_state(flow_run_id, {"RUNNING"})
        # What a run emits when its money runs out; this one then goes on regardless.
        goal = f"goalflow.goal.{flow_run_id}"
        related = [{"prefect.resource.id": f"prefect.flow-run.{flow_run_id}",
                    "prefect.resource.role": "flow-run"}]  # fmt: skip
        emitted = stack.run(
            "prefect", "event", "emit", "goalflow.budget.exceeded",
            "--resource-id", goal, "--related", json.dumps(related),
        )  # fmt: skip
        assert emitted.returncode == 0, emitted.stderr
        sent = datetime.now(UTC)

        run = stack.wait_for_state(flow_run_id, {"CANCELLED", "FAILED", "COMPLETED"})
    finally:
        stack.run("goalflow", "setup", "--time-backstop", str(BACKSTOP_SECONDS))

    assert run["state"]["type"] == "CANCELLED"
    # After the 10 s grace for the run to stop itself; long before its 60 s answers.
    waited = (datetime.fromisoformat(run["end_time"]) - sent).total_seconds()
    assert 9 <= waited < 40


def test_a_parameter_that_cannot_work_is_refused_when_the_run_is_created(
    stack: DeploymentStack,
) -> None:
    before = len(stack.flow_runs("achieve-goal"))

    said = []
    for params in (["goal=Anything", 'advanced={"concurrency": 0}'], ["max_usd=1"]):
        done = stack.run(
            "prefect", "deployment", "run", "achieve-goal/goal",
            *(arg for param in params for arg in ("--param", param)),
        )  # fmt: skip
        assert done.returncode != 0
        said.append(" ".join((done.stdout + done.stderr).split()))

    assert "'advanced.concurrency'. Failure reason: 0 is less than the minimum of 1" in said[0]
    assert "'goal' is a required property" in said[1], said[1]
    assert len(stack.flow_runs("achieve-goal")) == before  # no run was created


def test_a_goal_whose_process_is_killed_is_marked_crashed_within_two_minutes(
    stack: DeploymentStack, llm: OpenAITestServer
) -> None:
    # Only the lost-run automation may act here: move the time backstop out of the way.
    assert stack.run("goalflow", "setup", "--time-backstop", "600").returncode == 0
    goal = f"Slow goal, killed {time.time()}"
    env = stack.env | model_env(llm.base_url, TEST_KEY)
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("goalflow")), "run", goal],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not (runs := [r for r in stack.flow_runs("achieve-goal") if goal in r["name"]]):
            assert time.monotonic() < deadline and process.poll() is None, "no run started"
            time.sleep(0.5)
        flow_run_id = runs[0]["id"]
        stack.wait_for_state(flow_run_id, {"RUNNING"})
        time.sleep(2)  # its first heartbeat is out
        process.kill()
        killed = time.monotonic()

        run = stack.wait_for_state(flow_run_id, {"CRASHED", "CANCELLED", "FAILED"}, timeout=150)
    finally:
        process.kill()
        process.wait()
        stack.run("goalflow", "setup", "--time-backstop", str(BACKSTOP_SECONDS))

    assert run["state"]["type"] == "CRASHED"
    assert "heartbeats" in (run["state"]["message"] or "")
    assert time.monotonic() - killed < 120


def test_recurring_deployment_runs_its_saved_plan_on_schedule(
    stack: DeploymentStack, llm: OpenAITestServer
) -> None:
    deployment = stack.get("/deployments/name/achieve-goal/weekly-green-tea-digest")
    plannings = sum(r.schema_name == "PlanDraft" for r in llm.requests)
    due = datetime.now(UTC) + timedelta(seconds=15)
    # A second schedule for the same deployment, first due in 15 s (the weekly cron
    # would not fire during the test); Prefect's scheduler creates the run.
    created = stack.run(
        "prefect", "deployment", "schedule", "create", "achieve-goal/weekly-green-tea-digest",
        "--interval", "3600", "--anchor-date", due.isoformat(),
    )  # fmt: skip
    assert created.returncode == 0, created.stdout + created.stderr

    run = _first_finished_run(stack, deployment["id"], timeout=150)

    assert run["auto_scheduled"] and run["state"]["type"] == "COMPLETED"
    assert datetime.fromisoformat(run["expected_start_time"]) >= due - timedelta(seconds=1)
    assert "&lt;digest from Write digest>" in stack.report(run["id"])
    assert sum(r.schema_name == "PlanDraft" for r in llm.requests) == plannings


def _first_finished_run(
    stack: DeploymentStack, deployment_id: str, timeout: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = stack.post(
            "/flow_runs/filter",
            {
                "deployments": {"id": {"any_": [deployment_id]}},
                "flow_runs": {"state": {"type": {"any_": ["COMPLETED", "FAILED", "CRASHED"]}}},
                "limit": 1,
                "sort": "EXPECTED_START_TIME_ASC",
            },
        )
        if runs:
            return dict(runs[0])
        time.sleep(2)
    raise AssertionError(f"no run of the scheduled deployment finished in {timeout} s")
