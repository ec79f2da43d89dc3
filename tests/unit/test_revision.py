"""Plan patches: applied to a run in progress, checked with the plan rules."""

from __future__ import annotations

import asyncio
from typing import Any

from goalflow.agent.prompts.reflection import reflection_messages
from goalflow.core.plan import Plan, PlanPatch
from goalflow.core.revision import RunState, check_patch
from goalflow.core.scheduler import GraphRun
from goalflow.core.stuck import StuckSignal
from goalflow.core.task import Task, TaskSpec
from tests.helpers import spec

# facts -> analysis -> report, with facts finished and analysis running.
TASKS = [spec("facts", [], ["facts"]), spec("analysis", ["facts"], ["analysis"])]
TASKS.append(spec("report", ["analysis"], ["report"]))


def _state(**changes: Any) -> RunState:
    state = RunState(
        goal="Report on green tea",
        deliverables=["report"],
        inputs=[],
        tasks=TASKS,
        status={"facts": "completed", "analysis": "running", "report": "pending"},
        produced={"facts": "Green tea has catechins."},
        spent_usd=0.01,
    )
    return state.model_copy(update=changes)


PLAN = Plan(
    goal="Report on green tea",
    deliverables=["report"],
    tasks=[Task(**task.model_dump()) for task in TASKS],
)


def _check(patch: dict[str, Any], **kwargs: Any) -> tuple[Plan | None, list[str]]:
    options: dict[str, Any] = {
        "looping": {},
        "retired": [],
        "max_tasks": 25,
        "allowed_kinds": ("llm", "code"),
    }
    return check_patch(_state(), PLAN, PlanPatch.model_validate(patch), **(options | kwargs))


def _new(task_id: str, inputs: list[str], outputs: list[str], **extra: Any) -> dict[str, Any]:
    return spec(task_id, inputs, outputs).model_dump() | extra


def test_a_valid_patch_replaces_a_task_and_keeps_finished_ones() -> None:
    plan, errors = _check(
        {
            "cancel": ["analysis"],
            "add": [_new("analysis2", ["facts"], ["analysis"])],
            "priorities": [{"id": "report", "value": 9}],
        }
    )

    assert errors == [] and plan is not None
    tasks = plan.tasks
    assert [t.id for t in tasks] == ["facts", "report", "analysis2"]
    assert next(t for t in tasks if t.id == "report").value == 9


def test_removing_the_producer_of_a_deliverable_is_rejected() -> None:
    _, errors = _check({"cancel": ["report"]})

    assert any("deliverable 'report' is not produced by any task" in e for e in errors)


def test_a_cycle_is_rejected() -> None:
    _, errors = _check(
        {
            "cancel": ["analysis"],
            "add": [
                _new("analysis2", ["facts", "check"], ["analysis"]),
                _new("checker", ["analysis"], ["check"]),
            ],
        }
    )

    assert any("tasks form a cycle" in e for e in errors)


def test_an_orphan_task_and_a_missing_input_are_rejected() -> None:
    _, errors = _check({"add": [_new("extra", ["facts"], ["trivia"])]})
    assert any("task 'extra' produces 'trivia', which no task consumes" in e for e in errors)

    _, errors = _check(
        {"cancel": ["analysis"], "add": [_new("analysis2", ["ghost"], ["analysis"])]}
    )
    assert any("consumes 'ghost', which no task produces" in e for e in errors)


def test_re_adding_a_task_stopped_for_looping_is_rejected_under_any_id() -> None:
    looping = {"analysis": TASKS[1]}
    same = TASKS[1].model_dump() | {"id": "analysis_again", "title": "Try again"}

    _, errors = _check({"cancel": ["analysis"], "add": [same]}, looping=looping)

    assert any("repeats 'analysis', which was stopped because it was looping" in e for e in errors)


def test_finished_tasks_taken_ids_composites_and_empty_patches_are_rejected() -> None:
    assert any("already finished" in e for e in _check({"cancel": ["facts"]})[1])
    assert any("taken" in e for e in _check({"add": [_new("old", [], ["x"])]}, retired=["old"])[1])
    composite = _new("big", ["facts"], ["analysis"], kind="composite")
    assert any("kind 'composite'" in e for e in _check({"add": [composite]})[1])
    assert any("changes nothing" in e for e in _check({})[1])
    assert any("no unfinished task" in e for e in _check({"cancel": ["nope"]})[1])


def test_the_prompt_shows_plan_results_spend_and_signals() -> None:
    signal = StuckSignal(name="repeated_failure", evidence="task 'analysis' failed 3 times")
    state = _state(produced={"facts": "x" * 5000}, limit_usd=0.5, revisions_left=2)

    system, user = reflection_messages(state, [signal], "stuck: repeated_failure")

    assert '"verdict"' in system["content"]
    text = user["content"]
    assert "- analysis [running] llm: do analysis; facts -> analysis" in text
    assert "- facts: " + "x" * 100 in text and "x" * 400 not in text  # truncated
    assert "Spent: $0.0100 of $0.5" in text and "revisions left: 2" in text
    assert "- repeated_failure: task 'analysis' failed 3 times" in text
    assert "Why you are asked now: stuck: repeated_failure" in text


async def test_a_revision_mid_run_cancels_removed_work_and_runs_new_tasks() -> None:
    ran: list[str] = []
    cancelled: list[str] = []
    started = {tid: asyncio.Event() for tid in ("slow", "extra")}

    async def run_task(task: TaskSpec, inputs: dict[str, str]) -> dict[str, str]:
        ran.append(task.id)
        if task.id in started:
            started[task.id].set()
        try:
            await asyncio.sleep(30 if task.id == "slow" else 0.01)
        except asyncio.CancelledError:
            cancelled.append(task.id)
            raise
        return {name: f"{name} by {task.id}" for name in task.outputs}

    tasks = [spec("fast", [], ["a"]), spec("slow", [], ["b"]), spec("join", ["a", "b"], ["c"])]
    graph = GraphRun(tasks, {}, run_task, concurrency=4)
    running = asyncio.create_task(graph.run())
    await started["slow"].wait()
    await asyncio.sleep(0.05)  # fast has finished

    graph.revise([tasks[0], spec("quick", [], ["b"]), tasks[2]], "slow loops")
    outcomes = await asyncio.wait_for(running, 5)

    assert cancelled == ["slow"]
    assert outcomes["slow"].status == "cancelled" and "slow loops" in (outcomes["slow"].error or "")
    assert ran.count("fast") == 1  # its result was kept, not run again
    assert outcomes["join"].status == "completed"
    assert graph.values["c"] == "c by join" and graph.values["b"] == "b by quick"


async def test_a_stalled_graph_waits_for_a_revision_and_revives_skipped_tasks() -> None:
    async def run_task(task: TaskSpec, inputs: dict[str, str]) -> dict[str, str]:
        if task.id == "broken":
            raise RuntimeError("HTTP 400")
        return {name: f"{name} by {task.id}" for name in task.outputs}

    tasks = [spec("broken", [], ["a"]), spec("use", ["a"], ["b"])]
    graph: GraphRun

    async def on_stall() -> None:
        graph.revise([spec("fixed", [], ["a"]), tasks[1]], "broken failed")

    graph = GraphRun(tasks, {}, run_task, concurrency=2, on_stall=on_stall)
    outcomes = await graph.run()

    assert outcomes["broken"].status == "failed"
    assert outcomes["use"].status == "completed"
    assert graph.values["b"] == "b by use"


async def test_a_stall_that_is_not_revised_ends_the_run() -> None:
    calls: list[int] = []

    async def run_task(task: TaskSpec, inputs: dict[str, str]) -> dict[str, str]:
        raise RuntimeError("HTTP 400")

    async def on_stall() -> None:
        calls.append(1)

    graph = GraphRun(
        [spec("a"), spec("b", ["a_out"])], {}, run_task, concurrency=1, on_stall=on_stall
    )
    outcomes = await graph.run()

    assert calls == [1]
    assert outcomes["b"].status == "skipped"


def test_cancelling_the_last_unfinished_task_names_the_deliverable_it_made() -> None:
    state = _state(
        status={"facts": "completed", "analysis": "completed", "report": "running"},
        produced={"facts": "F", "analysis": "A"},
    )

    _, errors = check_patch(
        state,
        PLAN,
        PlanPatch(cancel=["report"]),
        looping={},
        retired=[],
        max_tasks=25,
        allowed_kinds=("llm",),
    )

    assert errors == [
        "deliverable 'report' is not produced by any task: keep or add a task that makes it"
    ]
