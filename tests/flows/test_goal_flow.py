"""The goal flow on a real Prefect server, with the model served by the test server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    LogFilter,
    LogFilterFlowRunId,
    LogFilterTaskRunId,
)
from prefect.logging.handlers import APILogHandler

from goalflow.core.plan import Plan
from goalflow.errors import ConfigError, GoalFailedError, PlanFileError
from goalflow.orchestration.goal_flow import achieve_goal
from goalflow.testing import OpenAITestServer, Reply
from tests.helpers import (
    DIAMOND,
    TEST_KEY,
    asked_tasks,
    asks_for,
    children,
    echo_answer,
    is_plan,
    task,
    task_requests,
)

pytestmark = pytest.mark.usefixtures("prefect_server")


async def test_diamond_runs_middle_tasks_concurrently_and_passes_outputs_by_name(
    llm_server: OpenAITestServer,
) -> None:
    llm_server.script(is_plan, json.dumps(DIAMOND))
    llm_server.script(
        asks_for("TaskAnswer"),
        lambda r: Reply(content=str(echo_answer(r)), delay=1.0),
    )

    result = await achieve_goal("Write a short report on green tea")

    assert result.status == "completed"
    pros, cons = (
        task_requests(llm_server, "List pros")[0],
        task_requests(llm_server, "List cons")[0],
    )
    # Both middle tasks were asked before either could have been answered (1 s latency).
    assert abs(pros.received_at - cons.received_at) < 0.5
    # Values travel by name: each consumer sees exactly its producers' outputs.
    assert "<facts from Gather facts>" in pros.last_user
    report = task_requests(llm_server, "Write report")[0]
    assert "<pros from List pros>" in report.last_user
    assert "<cons from List cons>" in report.last_user
    assert "green tea" in task_requests(llm_server, "Gather facts")[0].last_user
    assert result.deliverables == {"report": "<report from Write report>"}
    assert [t.status for t in result.tasks] == ["completed"] * 4
    assert result.usage.calls == 5 and result.usage.prompt_tokens > 0

    seen = await children(UUID(result.flow_run_id))
    assert {
        "plan goal",
        "task: Gather facts",
        "task: List pros",
        "task: List cons",
        "task: Write report",
    } <= set(seen["task_runs"])
    assert all(run.state.is_completed() for run in seen["task_runs"].values())
    artifacts = seen["artifacts"]
    assert "| pros | List pros | llm | facts | pros |" in artifacts["goal-plan"]
    assert "```mermaid" in artifacts["goal-graph"] and "-->|pros|" in artifacts["goal-graph"]
    # Escaped, or the UI would drop it as an HTML tag (tests/integration/test_ui.py).
    assert "&lt;report from Write report>" in artifacts["goal-report"]
    assert "&lt;cons from List cons>" in artifacts["Output of cons"]


async def test_composite_task_runs_as_a_subflow_with_its_subplan(
    llm_server: OpenAITestServer,
) -> None:
    plan = {
        "inputs": [],
        "deliverables": ["essay"],
        "tasks": [
            task("brief", "Write brief", [], ["brief"]),
            {**task("draft", "Draft essay", ["brief"], ["essay"]), "kind": "composite"},
        ],
    }
    subplan = {
        "tasks": [
            task("outline", "Make outline", ["brief"], ["outline"]),
            task("write", "Write from outline", ["outline"], ["essay"]),
        ]
    }
    llm_server.script(is_plan, json.dumps(plan))
    llm_server.script(lambda r: r.schema_name == "SubPlanDraft", json.dumps(subplan))

    result = await achieve_goal("Write an essay")

    assert result.deliverables == {"essay": "<essay from Write from outline>"}
    assert [t.path for t in result.tasks] == ["brief", "draft", "draft/outline", "draft/write"]
    refine = next(r for r in llm_server.requests if r.schema_name == "SubPlanDraft")
    assert "Its inputs: brief" in refine.last_user and "Its outputs: essay" in refine.last_user
    seen = await children(UUID(result.flow_run_id))
    assert "composite: Draft essay" in seen["subflows"]
    subflow = seen["subflows"]["composite: Draft essay"]
    assert subflow.state.is_completed()
    inner = await children(subflow.id)
    assert {"task: Make outline", "task: Write from outline"} == set(inner["task_runs"])
    # How long each leaf task run and the subflow took to start once ready is reported.
    delays = {t.path: t.start_delay for t in result.tasks}
    assert all(delay is not None and 0 <= delay < 30 for delay in delays.values()), delays


async def test_the_deliverable_is_the_value_in_the_form_asked_with_each_settlement_logged(
    llm_server: OpenAITestServer,
) -> None:
    plan = {
        "inputs": [{"name": "text", "value": "Bob met Ada"}],
        "deliverables": ["answer"],  # the one task makes 'names'
        "tasks": [
            task("names", "List names", ["text"], ["names"], format="names, comma-separated")
        ],
    }
    llm_server.script(is_plan, json.dumps(plan))
    llm_server.script(
        asks_for("TaskAnswer"), json.dumps({"names": "Sure! Here are the names:\nBob\nAda"})
    )

    result = await achieve_goal("Which names are in 'Bob met Ada'? Comma-separated.")

    assert result.status == "completed"
    assert result.deliverables == {"names": "Bob, Ada"}
    assert "names, comma-separated" in task_requests(llm_server, "List names")[0].last_user
    await APILogHandler.aflush()
    async with get_client() as client:
        logs = await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(result.flow_run_id)])),
            limit=200,
            offset=0,
        )
    settled = [log.message for log in logs if log.message.startswith("settled: ")]
    assert any("'answer'" in line and "'names'" in line for line in settled), settled
    assert any(line.startswith("settled: deliverable 'names'") for line in settled), settled


async def test_saved_plan_runs_without_a_planning_call(llm_server: OpenAITestServer) -> None:
    plan = Plan.from_draft("Write a short report on green tea", _draft(DIAMOND))

    result = await achieve_goal(plan.goal, plan=plan)

    assert result.status == "completed"
    assert not [r for r in llm_server.requests if r.schema_name == "PlanDraft"]
    assert len(llm_server.requests) == 4


async def test_a_saved_plan_made_for_another_goal_is_refused_before_any_call(
    llm_server: OpenAITestServer, tmp_path: Path
) -> None:
    plan = Plan.from_draft("Write a short report on green tea", _draft(DIAMOND))
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(plan.model_dump_json())

    with pytest.raises(ConfigError, match="was made for the goal 'Write a short report on"):
        await achieve_goal("A report on coffee", plan=plan)
    with pytest.raises(ConfigError, match="as plan or as plan_file, not both"):
        await achieve_goal(plan.goal, plan=plan, plan_file=str(plan_file))

    assert llm_server.requests == []


def _draft(data: dict[str, Any]) -> Any:
    from goalflow.core.plan import PlanDraft

    return PlanDraft.model_validate(data)


async def test_invalid_plans_are_re_asked_with_the_errors_then_the_goal_runs_as_one_step(
    llm_server: OpenAITestServer,
) -> None:
    cyclic = {
        "inputs": [],
        "deliverables": ["b"],
        "tasks": [task("x", "X", ["b"], ["a"]), task("y", "Y", ["a"], ["b"])],
    }
    llm_server.script(is_plan, json.dumps(cyclic))

    result = await achieve_goal("Go round in circles")

    plan_requests = [r for r in llm_server.requests if is_plan(r)]
    assert len(plan_requests) == 3
    assert "tasks form a cycle" in plan_requests[1].text  # the errors went back to the model
    assert result.status == "completed"
    assert [t.instructions for t in result.plan.tasks] == ["Go round in circles"]
    assert list(result.deliverables) == ["b"]
    assert asked_tasks(llm_server) == ["Do the whole goal"]


async def test_an_invalid_plan_corrected_on_re_ask_is_run(llm_server: OpenAITestServer) -> None:
    ghost = {
        **DIAMOND,
        "tasks": [*DIAMOND["tasks"][:3], task("report", "R", ["pros", "ghost"], ["report"])],
    }
    llm_server.script(is_plan, json.dumps(ghost), times=1)
    llm_server.script(is_plan, json.dumps(DIAMOND))

    result = await achieve_goal("Write a short report on green tea")

    assert result.status == "completed"
    second = [r for r in llm_server.requests if is_plan(r)][1]
    assert "task 'report' consumes 'ghost', which no task produces" in second.text


async def test_failed_task_fails_its_dependants_and_independent_branches_go_on(
    llm_server: OpenAITestServer,
) -> None:
    plan = {
        "inputs": [],
        "deliverables": ["left_done", "right_done"],
        "tasks": [
            task("left", "Left start", [], ["left_mid"]),
            task("left2", "Left end", ["left_mid"], ["left_done"]),
            task("right", "Right only", [], ["right_done"]),
        ],
    }
    llm_server.script(is_plan, json.dumps(plan))
    llm_server.script(
        asks_for("TaskAnswer", "Left start"),
        Reply(status=400, error_message="this request is malformed"),
    )

    with pytest.raises(GoalFailedError) as caught:
        await achieve_goal("Two branches")

    result = caught.value.result
    by_path = {t.path: t for t in result.tasks}
    assert by_path["left"].status == "failed" and "HTTP 400" in (by_path["left"].error or "")
    assert by_path["left2"].status == "skipped" and "'left'" in (by_path["left2"].error or "")
    assert by_path["right"].status == "completed"
    assert result.deliverables == {"right_done": "<right_done from Right only>"}
    assert "left_done not produced" in result.message
    async with get_client() as client:
        run = await client.read_flow_run(UUID(result.flow_run_id))
    assert run.state is not None and run.state.is_failed()


async def test_rejected_answer_is_retried_with_the_reviewers_reason(
    llm_server: OpenAITestServer,
) -> None:
    plan = {
        "inputs": [],
        "deliverables": ["poem"],
        "tasks": [task("poem", "Write poem", [], ["poem"], acceptance="exactly three lines")],
    }
    llm_server.script(is_plan, json.dumps(plan))
    llm_server.script(
        lambda r: r.schema_name == "Verdict",
        json.dumps({"passed": False, "reason": "it has two lines, not three"}),
        times=1,
    )

    result = await achieve_goal("A poem")

    asks = [r for r in llm_server.requests if r.schema_name == "TaskAnswer"]
    assert result.status == "completed"
    assert len(asks) == 2
    assert "it has two lines, not three" in asks[1].last_user
    assert len([r for r in llm_server.requests if r.schema_name == "Verdict"]) == 2


async def test_code_task_without_sandbox_fails_with_a_clear_reason(
    llm_server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOALFLOW_SANDBOX", "off")
    data = {
        "inputs": [{"name": "numbers", "value": "3 1 2"}],
        "deliverables": ["sorted_numbers"],
        "tasks": [
            {**task("sort", "Sort numbers", ["numbers"], ["sorted_numbers"]), "kind": "code"}
        ],
    }
    plan = Plan.from_draft("Sort the numbers", _draft(data))

    with pytest.raises(GoalFailedError) as caught:
        # Without reflection: with it, the failure is a stall worth one reflection call.
        await achieve_goal(plan.goal, plan=plan, advanced={"reflection": False})

    assert "no sandbox is configured" in (caught.value.result.tasks[0].error or "")
    assert not llm_server.requests  # no model call was paid for


async def test_invalid_saved_plan_is_refused_before_any_model_call(
    llm_server: OpenAITestServer,
) -> None:
    data = {**DIAMOND, "deliverables": ["missing"]}
    plan = Plan.from_draft("Broken", _draft(data))

    with pytest.raises(PlanFileError, match="deliverable 'missing' is not produced"):
        await achieve_goal(plan.goal, plan=plan)

    assert not llm_server.requests


async def test_llm_provider_block_supplies_endpoint_key_and_prices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pydantic import SecretStr

    from goalflow.core.prices import Price
    from goalflow.orchestration.blocks import LLMProvider

    server = OpenAITestServer(api_key=TEST_KEY, default=echo_answer)
    server.script(is_plan, json.dumps(DIAMOND))
    async with server:
        await LLMProvider(
            base_url=server.base_url,
            api_key=SecretStr(TEST_KEY),
            model="test-model",
            prices={"test-model": Price(input=1.0, output=2.0)},
        ).asave("test-endpoint", overwrite=True)

        result = await achieve_goal("Report on tea", advanced={"llm_block": "test-endpoint"})

    assert result.status == "completed"
    usage = result.usage
    expected = (usage.prompt_tokens * 1.0 + usage.completion_tokens * 2.0) / 1e6
    assert usage.cost_usd == pytest.approx(expected) and usage.cost_usd > 0
    assert TEST_KEY not in result.model_dump_json()


async def test_missing_llm_provider_block_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="no LLMProvider block named 'nope'"):
        await achieve_goal("Anything", advanced={"llm_block": "nope"})


async def test_a_composite_task_that_cannot_be_broken_down_runs_as_one_step(
    llm_server: OpenAITestServer,
) -> None:
    plan = {
        "inputs": [],
        "deliverables": ["essay"],
        "tasks": [{**task("draft", "Draft essay", [], ["essay"]), "kind": "composite"}],
    }
    llm_server.script(is_plan, json.dumps(plan))
    # Every breakdown misses the parent's output.
    broken = {"tasks": [task("outline", "Make outline", [], ["outline"])]}
    llm_server.script(lambda r: r.schema_name == "SubPlanDraft", json.dumps(broken))

    result = await achieve_goal("Write an essay")

    assert len([r for r in llm_server.requests if r.schema_name == "SubPlanDraft"]) == 3
    assert result.status == "completed"
    assert result.deliverables == {"essay": "<essay from Draft essay>"}
    assert [(t.path, t.kind) for t in result.tasks] == [("draft", "llm")]


async def test_a_plan_over_the_artifact_limit_logs_each_output_on_its_task_run(
    llm_server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOALFLOW_OUTPUT_ARTIFACTS", "3")  # DIAMOND has 4 leaf tasks
    llm_server.script(is_plan, json.dumps(DIAMOND))

    result = await achieve_goal("Write a short report on green tea")

    assert result.status == "completed"
    seen = await children(UUID(result.flow_run_id))
    assert not [key for key in seen["artifacts"] if key.startswith("Output of")]
    assert "&lt;report from Write report>" in seen["artifacts"]["goal-report"]
    await APILogHandler.aflush()
    async with get_client() as client:
        cons = seen["task_runs"]["task: List cons"]
        logs = await client.read_logs(
            log_filter=LogFilter(task_run_id=LogFilterTaskRunId(any_=[cons.id])), limit=50, offset=0
        )
    assert "produced cons: <cons from List cons>" in [log.message for log in logs]
