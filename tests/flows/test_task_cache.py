"""Leaf-task caching: a re-run of the same plan pays only for what did not finish."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterName,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort, TaskRunSort
from prefect.transactions import AsyncTransaction

from goalflow.errors import GoalFailedError
from goalflow.orchestration.goal_flow import achieve_goal
from goalflow.testing import OpenAITestServer, Reply
from goalflow.testing.plans import layered_plan
from tests.helpers import asked_tasks, asks_for, echo_answer, run_plan

pytestmark = pytest.mark.usefixtures("prefect_server")


async def _task_run_states(flow_run_id: UUID, *, settled: bool = True) -> dict[str, str]:
    """The leaf task runs' state names; ``settled``: once none is Pending or Running
    (task states reach the server as events, a moment after the run ends)."""
    deadline = time.monotonic() + 15
    while True:
        async with get_client() as client:
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                limit=100,
                sort=TaskRunSort.EXPECTED_START_TIME_ASC,
            )
        states = {r.name: r.state.name for r in runs if r.state and r.name.startswith("task: ")}
        busy = {"Pending", "Running"} & set(states.values())
        if not settled or not busy or time.monotonic() > deadline:
            return states
        await asyncio.sleep(0.5)


async def test_the_same_plan_again_reuses_every_result_and_changed_inputs_do_not(
    llm_server: OpenAITestServer,
) -> None:
    plan = layered_plan(6, 2)
    first = await achieve_goal(plan.goal, plan=plan)
    assert len(asked_tasks(llm_server)) == 6

    llm_server.reset()
    again = await achieve_goal(plan.goal, plan=plan)

    assert asked_tasks(llm_server) == []  # nothing paid twice
    assert again.deliverables == first.deliverables
    assert set((await _task_run_states(UUID(again.flow_run_id))).values()) == {"Cached"}
    # The reuse is said: every task is reported cached, and the summary counts them.
    assert all(t.cached for t in again.tasks) and not any(t.cached for t in first.tasks)
    assert again.message.endswith("(6 from the task cache of an earlier run)")

    llm_server.reset()
    fresh = await achieve_goal(plan.goal, plan=plan, advanced={"fresh": True})
    assert len(asked_tasks(llm_server)) == 6  # --fresh: every task is asked again
    assert not any(t.cached for t in fresh.tasks)

    llm_server.reset()
    reseeded = plan.model_copy(update={"inputs": {"seed": "another seed"}})
    await achieve_goal(reseeded.goal, plan=reseeded)
    # The first layer reads the seed and runs again; it answers as before (the test
    # server echoes names, not values), so the second layer's inputs are unchanged.
    assert sorted(asked_tasks(llm_server)) == ["step t0_0", "step t0_1", "step t0_2"]

    llm_server.reset()
    await achieve_goal(plan.goal, plan=plan, advanced={"task_cache": False})
    assert len(asked_tasks(llm_server)) == 6


async def test_a_failed_task_is_not_cached_and_runs_again_with_its_dependants(
    llm_server: OpenAITestServer,
) -> None:
    llm_server.script(
        asks_for("TaskAnswer", "step t0_1"),
        Reply(status=400, error_message="refused once"),
        times=1,
    )
    plan = layered_plan(6, 2)  # t1_0 and t1_1 read t0_1's output; t1_2 does not
    with pytest.raises(GoalFailedError):
        await achieve_goal(plan.goal, plan=plan)

    llm_server.reset()
    result = await achieve_goal(plan.goal, plan=plan)

    assert result.status == "completed"
    assert sorted(asked_tasks(llm_server)) == ["step t0_1", "step t1_0", "step t1_1"]


async def test_a_task_marked_completed_keeps_its_result_even_if_the_commit_never_comes(
    llm_server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prefect commits a cached result after it has sent the Completed state; a process
    # killed in between must not leave Completed tasks whose answers are lost.
    commit = AsyncTransaction.commit

    async def killed_before_writing(self: AsyncTransaction) -> bool:
        if self.key and self.key.startswith("goalflow-leaf-"):
            self.write_on_commit = False
        return await commit(self)

    plan = layered_plan(4, 2)
    with monkeypatch.context() as patched:
        patched.setattr(AsyncTransaction, "commit", killed_before_writing)
        await achieve_goal(plan.goal, plan=plan)

    llm_server.reset()
    again = await achieve_goal(plan.goal, plan=plan)

    assert asked_tasks(llm_server) == []
    assert set((await _task_run_states(UUID(again.flow_run_id))).values()) == {"Cached"}


async def test_a_run_killed_mid_way_is_resumed_without_paying_for_finished_tasks(
    llm_server: OpenAITestServer, prefect_server: str
) -> None:
    llm_server.script(lambda r: True, lambda r: Reply(content=str(echo_answer(r)), delay=0.4))
    command = [sys.executable, "-m", "goalflow.testing.plan_run", "--tasks", "12"]
    command += ["--depth", "3", "--concurrency", "2"]
    child = await asyncio.create_subprocess_exec(
        *command,
        env={**os.environ, "PREFECT_API_URL": prefect_server},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while llm_server.stats.completed < 5:  # the first layer and a bit of the second
            assert child.returncode is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the run never got going"
            await asyncio.sleep(0.05)
        child.send_signal(signal.SIGKILL)
    finally:
        if child.returncode is None:
            child.kill()
        await child.wait()
    killed = await _latest_running("goal: benchmark: 12 tasks in 3 layers, 0 composites")
    finished = {
        name.removeprefix("task: ")
        for name, state in (await _task_run_states(killed, settled=False)).items()
        if state == "Completed"
    }
    assert 4 <= len(finished) < 12

    llm_server.reset()
    result = await run_plan(layered_plan(12, 3), advanced={"concurrency": 2})

    assert result.status == "completed"
    asked = set(asked_tasks(llm_server))
    assert not asked & finished  # no model call for a task that had finished
    assert len(asked) <= 12 - len(finished)
    states = await _task_run_states(UUID(result.flow_run_id))
    assert {f"task: {title}" for title in finished} <= {
        name for name, state in states.items() if state == "Cached"
    }


async def _latest_running(name: str) -> UUID:
    """The killed run: nothing told the server it ended, so it is still Running."""
    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                name=FlowRunFilterName(any_=[name]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING])),
            ),
            limit=10,
            sort=FlowRunSort.START_TIME_DESC,
        )
    assert len(runs) == 1
    return runs[0].id
