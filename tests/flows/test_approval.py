"""Plan approval: the goal pauses after planning and a decision sent through Prefect's
API, as the UI's Resume form sends it, approves, edits or rejects the plan."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterStartTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort
from typer.testing import CliRunner

from goalflow.cli.app import app
from goalflow.core.plan import Plan
from goalflow.core.progress import Observer, observe
from goalflow.core.report import GoalResult
from goalflow.errors import GoalStoppedError
from goalflow.orchestration.goal_flow import achieve_goal
from goalflow.testing import OpenAITestServer
from tests.helpers import DIAMOND, is_plan, task, task_requests

pytestmark = pytest.mark.usefixtures("prefect_server")
GOAL = "Write a short report on green tea"


class _Waits(Observer):
    """Records each wait for approval: the flow run id and why the last decision failed."""

    def __init__(self) -> None:
        self.waits: list[tuple[str, list[str]]] = []

    def awaiting_approval(
        self, plan: Plan, flow_run_id: str, seconds_left: float, problems: Sequence[str]
    ) -> None:
        self.waits.append((flow_run_id, list(problems)))

    async def next_wait(self, count: int) -> tuple[UUID, list[str]]:
        """The ``count``-th wait, once its run is Paused on the server."""
        for _ in range(600):
            if len(self.waits) >= count:
                run_id = UUID(self.waits[count - 1][0])
                await _until_paused(run_id, pause=count)
                return run_id, self.waits[count - 1][1]
            await asyncio.sleep(0.1)
        raise AssertionError(f"the goal never waited for approval {count} time(s)")


async def _until_paused(run_id: UUID, pause: int) -> None:
    async with get_client() as client:
        for _ in range(600):
            state = (await client.read_flow_run(run_id)).state
            if state and state.is_paused() and state.state_details.pause_key == str(pause):
                return
            await asyncio.sleep(0.1)
    raise AssertionError(f"flow run {run_id} never paused")


@asynccontextmanager
async def _goal_with_approval(
    **parameters: Any,
) -> AsyncIterator[tuple[asyncio.Task[GoalResult], _Waits]]:
    """A goal run with approval on, running in the background; cancelled if left over."""
    waits = _Waits()
    with observe(waits):
        run = asyncio.create_task(achieve_goal(approve=True, **parameters))
    try:
        yield run, waits
    finally:
        if not run.done():
            run.cancel()
        await asyncio.gather(run, return_exceptions=True)


async def _form(run_id: UUID) -> tuple[dict[str, Any], str]:
    """The resume form the UI shows for a paused run: its schema and its description."""
    async with get_client() as client:
        run = await client.read_flow_run(run_id)
        assert run.state is not None and run.state.state_details.run_input_keyset
        keyset = run.state.state_details.run_input_keyset
        schema = json.loads(await client.read_flow_run_input(run_id, keyset["schema"]))
        description = json.loads(await client.read_flow_run_input(run_id, keyset["description"]))
    return schema, description


async def _resume_as_the_ui_does(run_id: UUID, **fields: str) -> None:
    """Fill in the resume form (its defaults, then ``fields``) and send it, as the UI does."""
    schema, _ = await _form(run_id)
    run_input = {
        name: prop["default"] for name, prop in schema["properties"].items() if "default" in prop
    }
    run_input.update(fields)
    async with get_client() as client:
        response = await client.request(
            "POST", f"/flow_runs/{run_id}/resume", json={"run_input": run_input}
        )
    assert response.json()["status"] == "ACCEPT", response.json()


async def _latest_artifact(run_id: UUID, key: str) -> str:
    async with get_client() as client:
        response = await client.request(
            "POST",
            "/artifacts/filter",
            json={
                "artifacts": {"flow_run_id": {"any_": [str(run_id)]}, "key": {"any_": [key]}},
                "sort": "CREATED_DESC",
                "limit": 1,
            },
        )
    return str(response.json()[0]["data"])


async def _final_state(run_id: UUID) -> tuple[str, str]:
    async with get_client() as client:
        state = (await client.read_flow_run(run_id)).state
    assert state is not None
    return state.type.value, state.message or ""


async def test_approve_pauses_with_the_plan_and_an_approval_from_the_form_runs_it(
    llm_server: OpenAITestServer,
) -> None:
    llm_server.script(is_plan, json.dumps(DIAMOND))

    async with _goal_with_approval(goal=GOAL) as (run, waits):
        run_id, problems = await waits.next_wait(1)
        await asyncio.sleep(1.5)  # a paused run stays paused: nothing runs meanwhile
        assert not run.done() and not problems
        assert [r.schema_name for r in llm_server.requests] == ["PlanDraft"]
        plan_artifact = await _latest_artifact(run_id, "goal-plan")
        assert "| pros | List pros | llm | facts | pros |" in plan_artifact
        schema, description = await _form(run_id)
        assert schema["properties"]["decision"]["enum"] == ["approve", "edit", "reject"]
        assert json.loads(schema["properties"]["plan"]["default"])["deliverables"] == ["report"]
        assert "waits for your decision" in description and "List pros" in description

        await _resume_as_the_ui_does(run_id, decision="approve")
        result = await asyncio.wait_for(run, 60)

    assert result.status == "completed"
    assert result.deliverables == {"report": "<report from Write report>"}
    assert (await _final_state(run_id))[0] == "COMPLETED"


async def test_a_rejection_ends_the_run_with_the_note(llm_server: OpenAITestServer) -> None:
    llm_server.script(is_plan, json.dumps(DIAMOND))

    async with _goal_with_approval(goal=GOAL) as (run, waits):
        run_id, _ = await waits.next_wait(1)
        await _resume_as_the_ui_does(run_id, decision="reject", note="cite sources first")
        with pytest.raises(GoalStoppedError) as caught:
            await asyncio.wait_for(run, 60)

    message = caught.value.result.message
    assert "the plan was rejected: cite sources first" in message
    assert [r.schema_name for r in llm_server.requests] == ["PlanDraft"]  # no task ran
    state, state_message = await _final_state(run_id)
    assert state == "FAILED" and "the plan was rejected: cite sources first" in state_message
    assert "0 of 4 tasks finished" in await _latest_artifact(run_id, "goal-report")


async def test_an_edited_plan_runs_instead_and_is_published(
    llm_server: OpenAITestServer,
) -> None:
    llm_server.script(is_plan, json.dumps(DIAMOND))
    edited = {
        "goal": GOAL,
        "inputs": {"topic": "green tea"},
        "deliverables": ["report"],
        "tasks": [task("memo", "Write memo", ["topic"], ["report"])],
    }

    async with _goal_with_approval(goal=GOAL) as (run, waits):
        run_id, _ = await waits.next_wait(1)
        await _resume_as_the_ui_does(run_id, decision="edit", plan=json.dumps(edited))
        result = await asyncio.wait_for(run, 60)

    assert result.status == "completed"
    assert result.deliverables == {"report": "<report from Write memo>"}
    assert [t.path for t in result.tasks] == ["memo"]
    assert len(task_requests(llm_server, "Write memo")) == 1
    for title in ("Gather facts", "List pros", "List cons", "Write report"):
        assert not task_requests(llm_server, title)
    plan_artifact = await _latest_artifact(run_id, "goal-plan")
    assert "| memo | Write memo |" in plan_artifact and "List pros" not in plan_artifact


async def test_an_unusable_edit_pauses_again_with_the_errors(
    llm_server: OpenAITestServer,
) -> None:
    llm_server.script(is_plan, json.dumps(DIAMOND))
    cyclic = {
        "goal": GOAL,
        "deliverables": ["b"],
        "tasks": [task("x", "X", ["b"], ["a"]), task("y", "Y", ["a"], ["b"])],
    }

    async with _goal_with_approval(goal=GOAL) as (run, waits):
        run_id, _ = await waits.next_wait(1)
        await _resume_as_the_ui_does(run_id, decision="edit", plan="{not json")
        _, problems = await waits.next_wait(2)
        assert any("the edited plan is not a valid goalflow plan" in p for p in problems)
        await _resume_as_the_ui_does(run_id, decision="edit", plan=json.dumps(cyclic))
        _, problems = await waits.next_wait(3)
        assert any("breaks the plan rules" in p and "cycle" in p for p in problems)
        _, description = await _form(run_id)
        assert "could not be used" in description and "cycle" in description
        assert [r.schema_name for r in llm_server.requests] == ["PlanDraft"]

        await _resume_as_the_ui_does(run_id, decision="approve")
        result = await asyncio.wait_for(run, 60)

    assert result.status == "completed"
    assert result.deliverables == {"report": "<report from Write report>"}


async def test_no_decision_within_the_timeout_rejects(llm_server: OpenAITestServer) -> None:
    llm_server.script(is_plan, json.dumps(DIAMOND))

    async with _goal_with_approval(goal=GOAL, advanced={"approval_timeout": 3}) as (run, waits):
        run_id, _ = await waits.next_wait(1)
        with pytest.raises(GoalStoppedError) as caught:
            await asyncio.wait_for(run, 60)

    assert "nobody approved the plan within 3 s, so it was rejected" in caught.value.result.message
    assert [r.schema_name for r in llm_server.requests] == ["PlanDraft"]
    state, message = await _final_state(run_id)
    assert state == "FAILED" and "nobody approved the plan within 3 s" in message


async def test_the_wait_for_approval_does_not_count_against_the_time_budget(
    llm_server: OpenAITestServer,
) -> None:
    llm_server.script(is_plan, json.dumps(DIAMOND))

    async with _goal_with_approval(goal=GOAL, max_seconds=4) as (run, waits):
        run_id, _ = await waits.next_wait(1)
        await asyncio.sleep(5)  # longer than the whole time budget
        await _resume_as_the_ui_does(run_id, decision="approve")
        result = await asyncio.wait_for(run, 60)

    assert result.status == "completed"
    assert result.deliverables == {"report": "<report from Write report>"}


async def _goalflow(prefect_server: str, *args: str) -> tuple[int, str, str]:
    """The real ``goalflow`` command in its own process, as a person would run it."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "goalflow.cli",
        *args,
        env={**os.environ, "PREFECT_API_URL": prefect_server},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _newest_paused_run(since: datetime) -> UUID:
    paused = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])),
        start_time=FlowRunFilterStartTime(after_=since),
    )
    async with get_client() as client:
        for _ in range(600):
            runs = await client.read_flow_runs(
                flow_run_filter=paused, sort=FlowRunSort.START_TIME_DESC, limit=1
            )
            if runs:
                return runs[0].id
            await asyncio.sleep(0.1)
    raise AssertionError("no flow run paused")


async def test_cli_run_approve_says_how_to_decide_and_goalflow_approve_rejects(
    llm_server: OpenAITestServer, prefect_server: str
) -> None:
    llm_server.script(is_plan, json.dumps(DIAMOND))
    started = datetime.now(UTC)
    running = asyncio.create_task(
        asyncio.to_thread(CliRunner().invoke, app, ["run", GOAL, "--approve", "--json"])
    )

    run_id = await _newest_paused_run(started)
    code, _, err = await _goalflow(
        prefect_server, "approve", str(run_id), "--reject", "--note", "too broad"
    )
    result = await asyncio.wait_for(running, 60)

    assert code == 0, err
    assert "is rejected" in err
    assert result.exit_code == 1
    assert "the plan waits for approval" in result.stderr
    assert f"goalflow approve {run_id}" in result.stderr
    assert f"/runs/flow-run/{run_id}" in result.stderr  # the run's page in the UI
    assert "pros: List pros <- facts -> pros" in result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["status"] == "stopped"
    assert "the plan was rejected: too broad" in outcome["message"]
    assert [r.schema_name for r in llm_server.requests] == ["PlanDraft"]


async def test_goalflow_approve_shows_the_waiting_plan_and_sends_an_edit(
    llm_server: OpenAITestServer, prefect_server: str, tmp_path: Path
) -> None:
    llm_server.script(is_plan, json.dumps(DIAMOND))

    async with _goal_with_approval(goal=GOAL) as (run, waits):
        run_id, _ = await waits.next_wait(1)
        code, shown, err = await _goalflow(prefect_server, "approve", str(run_id), "--show")
        assert code == 0, err
        plan = json.loads(shown)
        plan["tasks"] = [task("memo", "Write memo", ["topic"], ["report"])]
        plan_file = tmp_path / "plan.json"
        plan_file.write_text(json.dumps(plan))
        code, _, err = await _goalflow(
            prefect_server, "approve", str(run_id), "--plan", str(plan_file)
        )
        assert code == 0, err
        result = await asyncio.wait_for(run, 60)

    assert result.deliverables == {"report": "<report from Write memo>"}
    assert not task_requests(llm_server, "Gather facts")


def test_goalflow_approve_refuses_a_run_that_waits_for_nothing() -> None:
    run_id = uuid4()

    result = CliRunner().invoke(app, ["approve", str(run_id)])

    assert result.exit_code == 2
    assert f"has no flow run {run_id}" in result.stderr


def test_goalflow_approve_refuses_an_invalid_plan_before_sending_it(tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps({"goal": "x", "deliverables": ["a"], "tasks": []}))

    result = CliRunner().invoke(app, ["approve", str(uuid4()), "--plan", str(plan_file)])

    assert result.exit_code == 2
    assert "breaks the plan rules" in result.stderr
