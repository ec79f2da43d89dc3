"""Code tasks end to end: a real Prefect server, the test model server, real Docker."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import pytest

from goalflow.agent.prompts.planning import kind_description
from goalflow.core.plan import Plan, PlanDraft
from goalflow.errors import GoalFailedError
from goalflow.orchestration.goal_flow import achieve_goal
from goalflow.testing import ChatRequest, OpenAITestServer
from tests.helpers import NUMBERS, NUMBERS_PLAN, SUMS, asks_for, children, is_plan

pytestmark = pytest.mark.usefixtures("prefect_server")

BROKEN = "open('total', 'w').write(str(int(open('numbers').read())))\n"
PRINTS_SUM = "print(sum(int(x) for x in numbers.split()))\n"
PRINTS_WORDS = "print('one hundred and eight')\n"


def _is_program(request: ChatRequest) -> bool:
    return request.schema_name == "Program"


def _program(code: str) -> str:
    return json.dumps({"code": code})


@pytest.fixture
def numbers(llm_server: OpenAITestServer) -> OpenAITestServer:
    llm_server.script(is_plan, json.dumps(NUMBERS_PLAN))
    llm_server.script(asks_for("TaskAnswer", "List numbers"), json.dumps({"numbers": NUMBERS}))
    return llm_server


async def test_a_code_task_computes_from_an_upstream_output(numbers: OpenAITestServer) -> None:
    numbers.script(_is_program, _program(PRINTS_SUM))

    result = await achieve_goal("Add up some numbers")

    assert result.status == "completed"
    assert result.deliverables == {"total": "108"}  # what it printed, from the variable
    plan_request = next(r for r in numbers.requests if is_plan(r))
    assert kind_description(("llm", "code", "composite")) in plan_request.text  # offered
    ask = next(r for r in numbers.requests if _is_program(r))
    assert f"the str variable numbers, {len(NUMBERS)} characters):\n{NUMBERS}" in ask.last_user
    assert "print(total)" in ask.last_user
    # The acceptance is prose: the model's review of it is asked, as advice.
    verdicts = [r for r in numbers.requests if r.schema_name == "Verdict"]
    assert len(verdicts) == 1 and "total:\n108" in verdicts[0].last_user
    seen = await children(UUID(result.flow_run_id))
    assert seen["task_runs"]["code attempt 1: Sum numbers"].state.is_completed()
    artifact = seen["artifacts"]["Code attempt 1 of sum"]
    assert "Code attempt 1 of `sum`: succeeded" in artifact and PRINTS_SUM in artifact


async def test_a_failing_program_is_fixed_on_the_next_attempt(numbers: OpenAITestServer) -> None:
    numbers.script(_is_program, _program(BROKEN), times=1)
    numbers.script(_is_program, _program(SUMS))

    result = await achieve_goal("Add up some numbers")

    assert result.deliverables == {"total": "108"}
    asks = [r for r in numbers.requests if _is_program(r)]
    assert len(asks) == 2
    feedback = asks[1].last_user
    assert feedback.startswith("That program failed: it exited with code 1 (ValueError: ")
    assert "ValueError: invalid literal for int()" in feedback
    seen = await children(UUID(result.flow_run_id))
    assert {"code attempt 1: Sum numbers", "code attempt 2: Sum numbers"} <= set(seen["task_runs"])
    assert "ValueError" in seen["artifacts"]["Code attempt 1 of sum"]


async def test_a_reviewer_s_doubt_about_a_code_task_s_outputs_is_only_advice(
    numbers: OpenAITestServer,
) -> None:
    numbers.script(_is_program, _program(PRINTS_WORDS))
    numbers.script(
        lambda r: r.schema_name == "Verdict" and "one hundred" in r.last_user,
        json.dumps({"passed": False, "reason": "it is words, not an integer"}),
    )

    result = await achieve_goal("Add up some numbers")

    assert result.deliverables == {"total": "one hundred and eight"}
    assert len([r for r in numbers.requests if _is_program(r)]) == 1
    assert [r for r in numbers.requests if r.schema_name == "Verdict"]  # asked, not obeyed


async def test_an_executable_acceptance_check_runs_in_the_sandbox_and_decides(
    llm_server: OpenAITestServer,
) -> None:
    plan: dict[str, Any] = json.loads(json.dumps(NUMBERS_PLAN))
    plan["tasks"][1]["acceptance"] = "int(total) == sum(int(x) for x in numbers.split())"
    llm_server.script(is_plan, json.dumps(plan))
    llm_server.script(asks_for("TaskAnswer", "List numbers"), json.dumps({"numbers": NUMBERS}))
    llm_server.script(_is_program, _program(PRINTS_WORDS), times=1)
    llm_server.script(_is_program, _program(PRINTS_SUM))

    result = await achieve_goal("Add up some numbers")

    assert result.deliverables == {"total": "108"}
    assert not [r for r in llm_server.requests if r.schema_name == "Verdict"]
    second = [r for r in llm_server.requests if _is_program(r)][1]
    assert "did not pass the acceptance check int(total) == sum(" in second.last_user
    assert "ValueError: invalid literal for int()" in second.last_user  # the check's traceback
    seen = await children(UUID(result.flow_run_id))
    assert seen["task_runs"]["acceptance check 1: Sum numbers"].state.is_completed()
    assert "Acceptance check 2 of `sum`: passed" in seen["artifacts"]["Acceptance check 2 of sum"]


async def test_a_program_that_never_works_fails_the_task_with_the_last_reason(
    numbers: OpenAITestServer,
) -> None:
    for seconds in (0.1, 0.2, 0.3):  # each retry changes the program, none prints anything
        numbers.script(_is_program, _program(f"import time\ntime.sleep({seconds})"), times=1)

    with pytest.raises(GoalFailedError) as caught:
        await achieve_goal("Add up some numbers")

    error = caught.value.result.tasks[1].error or ""
    # Three identical failures are a stuck signal: the task stops there, with the reason.
    assert "failed 3 times with the same inputs and the same failure" in error
    assert error.endswith("it printed nothing: print the value of total")
    assert len([r for r in numbers.requests if _is_program(r)]) == 3


async def test_with_no_engine_code_tasks_fail_saying_how_to_fix_it(
    llm_server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/goalflow/docker.sock")
    data: dict[str, Any] = {**NUMBERS_PLAN, "inputs": [{"name": "numbers", "value": NUMBERS}]}
    data["tasks"] = NUMBERS_PLAN["tasks"][1:]
    plan = Plan.from_draft("Add up some numbers", PlanDraft.model_validate(data))

    with pytest.raises(GoalFailedError) as caught:
        await achieve_goal(plan.goal, plan=plan)

    error = caught.value.result.tasks[0].error or ""
    assert "no sandbox is configured" in error and "goalflow sandbox check" in error
    # No program was asked for, none ran on the host (reflection may still look at it).
    assert not [r for r in llm_server.requests if _is_program(r)]
