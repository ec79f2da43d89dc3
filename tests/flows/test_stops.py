"""A goal stops cleanly: money or time budget spent, cancelled on the server, or signalled."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client

from goalflow.core.plan import Plan, PlanDraft
from goalflow.errors import GoalStoppedError
from goalflow.orchestration.goal_flow import achieve_goal
from goalflow.testing import ChatRequest, OpenAITestServer, Reply
from tests.helpers import (
    DIAMOND,
    asks_for,
    echo_answer,
    is_plan,
    run_plan,
    task,
    wait_for,
    wait_for_run,
)

pytestmark = pytest.mark.usefixtures("prefect_server")

# Six independent tasks and a final one that needs them all.
WIDE = {
    "inputs": [],
    "deliverables": ["summary"],
    "tasks": [
        *(task(f"part{i}", f"Part {i}", [], [f"p{i}"]) for i in range(6)),
        task("sum", "Summarise", [f"p{i}" for i in range(6)], ["summary"]),
    ],
}


def _wide_plan(goal: str) -> Plan:
    return Plan.from_draft(goal, PlanDraft.model_validate(WIDE))


def _slow(seconds: float) -> Callable[[ChatRequest], Reply]:
    return lambda r: Reply(content=str(echo_answer(r)), delay=seconds)


async def _state(flow_run_id: str) -> tuple[str, str]:
    async with get_client() as client:
        run = await client.read_flow_run(UUID(flow_run_id))
    assert run.state is not None
    return run.state.type.value, run.state.message or ""


async def _budget_events(flow_run_id: str) -> list[dict[str, Any]]:
    async with get_client() as client:
        response = await client.request(
            "POST",
            "/events/filter",
            json={
                "filter": {
                    "event": {"prefix": ["goalflow.budget."]},
                    "occurred": {"since": "2000-01-01T00:00:00Z"},
                    "order": "DESC",
                },
                "limit": 50,
            },
        )
    resource = f"goalflow.goal.{flow_run_id}"
    return [
        e for e in response.json()["events"] if e["resource"]["prefect.resource.id"] == resource
    ]


async def test_money_budget_stops_the_goal_keeps_finished_results_and_never_overspends(
    llm_server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOALFLOW_PRICES", json.dumps({"test-model": {"input": 1, "output": 1}}))
    llm_server.script(asks_for("TaskAnswer"), _slow(0.3))
    # A part's call holds ~800 tokens at worst at first, fewer once the provider has
    # counted a prompt like it, and spends ~$0.0001: the parts finish. The sum's long
    # instructions, counted a token per byte, do not fit what is left.
    budget = 0.0012
    plan = _wide_plan("Wide goal")
    plan.tasks[-1].instructions = "Weigh every part against the others, in full. " * 12

    with pytest.raises(GoalStoppedError) as caught:
        await run_plan(plan, max_usd=budget, advanced={"concurrency": 1})

    result = caught.value.result
    assert result.status == "stopped"
    assert "the money budget of $0.0012 cannot cover" in result.message
    assert 0 < result.usage.cost_usd <= budget
    finished = [t for t in result.tasks if t.status == "completed"]
    assert finished and "summary" not in result.deliverables
    total = next(t for t in result.tasks if t.path == "sum")
    assert total.status != "completed" and "money budget" in (total.error or "")
    assert result.flow_run_id is not None
    state, message = await _state(result.flow_run_id)
    assert state == "FAILED" and "money budget of $0.0012 cannot cover" in message
    for _ in range(60):  # events reach the server asynchronously
        events = await _budget_events(result.flow_run_id)
        if events:
            break
        await asyncio.sleep(0.5)
    assert [e["event"] for e in events] == ["goalflow.budget.exceeded"]
    assert events[0]["payload"]["spent_usd"] == pytest.approx(result.usage.cost_usd)
    assert (
        events[0]["related"][0]["prefect.resource.id"] == f"prefect.flow-run.{result.flow_run_id}"
    )


async def test_a_call_too_large_for_the_money_left_fails_only_its_task(
    llm_server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOALFLOW_PRICES", json.dumps({"test-model": {"input": 1, "output": 1}}))
    # After the first part, a task whose prompt alone is worth more than the money left
    # is ready beside four small ones: its call is refused, and theirs still go out.
    draft = {
        "inputs": [],
        "deliverables": ["p1", "p2", "p3", "p4", "essay"],
        "tasks": [
            task("part0", "Part 0", [], ["p0"], value=10),
            *(task(f"part{i}", f"Part {i}", ["p0"], [f"p{i}"]) for i in range(1, 5)),
            task("big", "Big", ["p0"], ["essay"], instructions="Weigh every word. " * 70, value=9),
        ],
    }
    plan = Plan.from_draft("One large call", PlanDraft.model_validate(draft))

    with pytest.raises(GoalStoppedError) as caught:
        await run_plan(plan, max_usd=0.0013, advanced={"concurrency": 1})

    result = caught.value.result
    statuses = {t.title: t.status for t in result.tasks}
    assert statuses.pop("Big") == "failed" and set(statuses.values()) == {"completed"}
    big = next(t for t in result.tasks if t.title == "Big")
    assert "money budget of $0.0013 cannot cover another model call" in (big.error or "")
    assert result.status == "stopped" and "money budget of $0.0013 cannot cover" in result.message
    assert {"p1", "p2", "p3", "p4"} <= set(result.deliverables)
    assert 0 < result.usage.cost_usd <= 0.0013


async def test_a_call_the_money_cannot_cover_stops_the_goal_only_after_the_running_tasks(
    llm_server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOALFLOW_PRICES", json.dumps({"test-model": {"input": 1, "output": 1}}))
    # A code task's program is paid for, then runs in the sandbox for a while, holding
    # no money; meanwhile another task's call is refused: its prompt alone is worth more
    # than the budget.
    program = "import time\ntime.sleep(2)\nprint(42)\n"
    llm_server.script(lambda r: r.schema_name == "Program", json.dumps({"code": program}))
    draft = {
        "inputs": [],
        "deliverables": ["essay", "answer"],
        "tasks": [
            task("big", "Big", [], ["essay"], instructions="Consider every word. " * 150),
            task("count", "Count", [], ["answer"], kind="code", value=10),
        ],
    }
    plan = Plan.from_draft("Two tasks", PlanDraft.model_validate(draft))

    with pytest.raises(GoalStoppedError) as caught:
        await run_plan(plan, max_usd=0.002, advanced={"concurrency": 2})

    # The program that was paid for runs to its end: the goal stops after it.
    result = caught.value.result
    assert {t.title: t.status for t in result.tasks} == {"Big": "failed", "Count": "completed"}
    assert result.deliverables.get("answer") == "42"
    assert "money budget of $0.002 cannot cover" in result.message
    assert result.usage.cost_usd <= 0.002


async def test_a_budget_that_pays_for_the_goal_finishes_it_however_much_is_in_flight(
    llm_server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOALFLOW_PRICES", json.dumps({"test-model": {"input": 1, "output": 1}}))
    llm_server.script(asks_for("TaskAnswer"), _slow(0.3))
    # Seven calls of ~$0.0002 each, ~$0.0015 held by each in flight: six at once would
    # hold $0.009. They wait for each other's settlements instead of stopping the goal.
    budget = 0.004

    result = await run_plan(_wide_plan("Paid for"), max_usd=budget, advanced={"concurrency": 6})

    assert result.status == "completed" and "summary" in result.deliverables
    assert result.usage.calls == 7 and result.usage.cost_usd <= budget


async def test_a_budget_below_one_planning_call_fails_without_a_model_call(
    llm_server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOALFLOW_PRICES", json.dumps({"test-model": {"input": 1, "output": 1}}))

    with pytest.raises(GoalStoppedError) as caught:
        await achieve_goal("Anything", max_usd=0.00001)

    assert not llm_server.requests
    # What planning needs, and what to change.
    said = caught.value.result.message
    assert re.search(
        r"money budget of \$1e-05 cannot cover the next model call \(up to \$0\.\d{4}\)", said
    )
    assert "Raise the budget (--max-usd" in said


async def test_a_later_goal_on_the_endpoint_is_planned_within_a_budget_the_first_could_not_plan(
    llm_server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOALFLOW_PRICES", json.dumps({"test-model": {"input": 1, "output": 1}}))
    llm_server.script(is_plan, json.dumps(DIAMOND))
    # The planning prompt, counted a token per byte, and a whole plan's answer are worth
    # more than the budget: a first goal on this endpoint cannot be planned within it.
    budget = 0.006
    with pytest.raises(GoalStoppedError, match=r"money budget of \$0.006 cannot cover"):
        await achieve_goal("Write a short report on green tea", max_usd=budget)
    assert not llm_server.requests
    await achieve_goal("Write a short report on oolong tea")  # the endpoint counts its prompts

    # The next goal's planning prompt repeats the counted one but for its goal.
    result = await achieve_goal("Write a short report on green tea", max_usd=budget)

    assert result.status == "completed" and result.usage.cost_usd <= budget


async def test_money_budget_with_an_unpriced_model_is_refused(
    llm_server: OpenAITestServer,
) -> None:
    from goalflow.errors import ConfigError

    with pytest.raises(ConfigError, match="no price is known for model 'test-model'"):
        await achieve_goal("Anything", max_usd=1.0)

    assert not llm_server.requests


async def test_time_budget_stops_the_goal_and_keeps_finished_results(
    llm_server: OpenAITestServer,
) -> None:
    llm_server.script(asks_for("TaskAnswer", "Part 0"), _slow(0.1))
    llm_server.script(asks_for("TaskAnswer"), _slow(30))
    started = time.monotonic()

    with pytest.raises(GoalStoppedError) as caught:
        await run_plan(_wide_plan("Slow goal"), max_seconds=3, advanced={"concurrency": 6})

    assert time.monotonic() - started < 10
    result = caught.value.result
    assert "the time budget of 3 s ran out" in result.message
    by_path = {t.path: t for t in result.tasks}
    assert by_path["part0"].status == "completed"
    assert by_path["part1"].status == "failed" and by_path["part1"].error == "cancelled"
    assert result.flow_run_id is not None
    state, message = await _state(result.flow_run_id)
    assert state == "FAILED" and "time budget of 3 s ran out" in message


async def test_a_directly_started_goal_obeys_prefect_flow_run_cancel(
    llm_server: OpenAITestServer, prefect_server: str
) -> None:
    llm_server.script(asks_for("TaskAnswer"), _slow(60))
    goal = f"Cancel me {time.time()}"
    running = asyncio.create_task(run_plan(_wide_plan(goal), advanced={"concurrency": 6}))
    flow_run_id = await wait_for_run(f"goal: {goal}")
    await wait_for(lambda: len(llm_server.requests) >= 6)

    cancelled_at = time.monotonic()
    cancel = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("prefect")),
        "flow-run",
        "cancel",
        str(flow_run_id),
        env={**os.environ, "PREFECT_API_URL": prefect_server},
        stdout=subprocess.DEVNULL,
    )
    assert await cancel.wait() == 0
    with pytest.raises(GoalStoppedError) as caught:
        await running

    assert time.monotonic() - cancelled_at < 10
    result = caught.value.result
    assert "cancelled on the Prefect server" in result.message
    assert {t.status for t in result.tasks} == {"failed", "pending"}
    # The run ends Cancelled at once, with goalflow's reason (not after Prefect's timeout).
    state, message = await _state(str(flow_run_id))
    assert state == "CANCELLED" and "cancelled on the Prefect server" in message


@pytest.mark.parametrize(("number", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
async def test_a_signal_stops_a_command_line_run_as_cancelled(
    llm_server: OpenAITestServer,
    prefect_server: str,
    tmp_path: Path,
    number: signal.Signals,
    code: int,
) -> None:
    llm_server.script(asks_for("TaskAnswer"), _slow(60))
    goal = f"Signal me {number.name} {time.time()}"
    plan = tmp_path / "plan.json"
    plan.write_text(_wide_plan(goal).model_dump_json())
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "goalflow.cli",
        "run",
        "--plan",
        str(plan),
        "--concurrency",
        "6",
        env={**os.environ, "PREFECT_API_URL": prefect_server},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    flow_run_id = await wait_for_run(f"goal: {goal}")
    await wait_for(lambda: len(llm_server.requests) >= 6)

    process.send_signal(number)
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)

    said = stderr.decode()
    assert process.returncode == code, said
    assert f"stopped: the process got {number.name}" in said and "Traceback" not in said
    state, message = await _state(str(flow_run_id))
    assert state == "CANCELLED" and number.name in message
