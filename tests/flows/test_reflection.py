"""Reflection inside a goal run, on a real Prefect server, with a scripted model."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client

from goalflow.core.plan import Plan, PlanDraft
from goalflow.errors import GoalStoppedError
from goalflow.orchestration.reflector import reflect
from goalflow.testing import ChatRequest, OpenAITestServer, Reply
from tests.helpers import (
    asks_for,
    children,
    echo_answer,
    run_plan,
    task,
    task_requests,
    wait_for,
    wait_for_run,
)

pytestmark = pytest.mark.usefixtures("prefect_server")

CHAIN = {
    "inputs": [{"name": "topic", "value": "green tea"}],
    "deliverables": ["report"],
    "tasks": [
        task("facts", "Gather facts", ["topic"], ["facts"]),
        task("analysis", "Analyse facts", ["facts"], ["analysis"], acceptance="cites a source"),
        task("report", "Write report", ["analysis"], ["report"]),
    ],
}


def _plan(data: dict[str, Any], goal: str = "Report on green tea") -> Plan:
    return Plan.from_draft(goal, PlanDraft.model_validate(data))


def _is_reflection(request: ChatRequest) -> bool:
    return request.schema_name == "Reflection"


def _verdict(verdict: str, reason: str, patch: dict[str, Any] | None = None) -> str:
    return json.dumps({"verdict": verdict, "reason": reason, "patch": patch})


async def _events(prefix: str, flow_run_id: str, *, at_least: int = 1) -> list[dict[str, Any]]:
    """The goal's events whose name starts with ``prefix``, oldest first; waits (up to
    30 s) for ``at_least`` of them: the server persists events in batches, after the run."""
    resource = f"goalflow.goal.{flow_run_id}"
    async with get_client() as client:
        for _ in range(60):  # events reach the server asynchronously
            response = await client.request(
                "POST",
                "/events/filter",
                json={
                    "filter": {
                        "event": {"prefix": [prefix]},
                        "any_resource": {"id": [resource]},
                        "occurred": {"since": "2000-01-01T00:00:00Z"},
                        "order": "ASC",
                    },
                    "limit": 50,
                },
            )
            events = [
                e
                for e in response.json()["events"]
                if e["resource"]["prefect.resource.id"] == resource
            ]
            if len(events) >= at_least:
                return events
            await asyncio.sleep(0.5)
    return events


async def test_a_task_failing_identically_is_caught_and_revised_and_finished_work_is_reused(
    llm_server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOALFLOW_TASK_ATTEMPTS", "6")  # it would try 6 times on its own
    llm_server.script(
        asks_for("Verdict", "Analyse facts"),
        json.dumps({"passed": False, "reason": "no source is cited"}),
    )
    different_approach = {
        "cancel": ["analysis"],
        "add": [
            task(
                "analysis_sourced",
                "Analyse facts with sources",
                ["facts"],
                ["analysis"],
                instructions="Quote the facts you use, each with its source.",
            )
        ],
    }
    llm_server.script(
        _is_reflection,
        _verdict("revise", "the analysis loops on the same review", different_approach),
        times=1,
    )

    result = await run_plan(_plan(CHAIN), advanced={"stuck_repeats": 3, "reflect_every_tasks": 10})

    assert result.status == "completed"
    assert result.deliverables == {"report": "<report from Write report>"}
    by_path = {t.path: t.status for t in result.tasks}
    assert by_path == {
        "facts": "completed",
        "analysis": "failed",
        "report": "completed",
        "analysis_sourced": "completed",
    }
    # The finished result of the first plan was reused: asked once, never again.
    assert len(task_requests(llm_server, "Gather facts")) == 1
    assert (
        "<facts from Gather facts>"
        in task_requests(llm_server, "Analyse facts with sources")[0].last_user
    )
    assert (
        "<analysis from Analyse facts with sources>"
        in task_requests(llm_server, "Write report")[0].last_user
    )
    # Caught after N=3 identical failures: the looping task stopped there, not after the
    # 6 tries it had, and the reflection was asked after its third review.
    tries = task_requests(llm_server, "Analyse facts")
    assert len([r for r in tries if r.schema_name == "TaskAnswer"]) == 3
    analysis = next(t for t in result.tasks if t.path == "analysis")
    assert "stopped as stuck: task 'analysis' failed 3 times" in (analysis.error or "")
    reflection = next(r for r in llm_server.requests if _is_reflection(r))
    reviews = [r for r in task_requests(llm_server, "Analyse facts") if r.schema_name == "Verdict"]
    assert len(reviews) == 3 and reviews[-1].received_at < reflection.received_at
    assert "repeated_failure: task 'analysis' failed 3 times" in reflection.last_user
    assert "no source is cited" in reflection.last_user
    assert [r.verdict for r in result.reflections] == ["revise"]
    assert result.reflections[0].outcome == "applied: cancelled analysis; added analysis_sourced"
    assert result.usage.cost_by_task.keys() >= {"facts", "analysis", "reflection"}
    assert result.plan is not None
    assert [t.id for t in result.plan.tasks] == ["facts", "report", "analysis_sourced"]

    assert result.flow_run_id is not None
    seen = await children(UUID(result.flow_run_id))
    reflect_runs = [name for name in seen["task_runs"] if name.startswith("reflect: stuck: ")]
    assert reflect_runs and "repeated_failure" in reflect_runs[0]
    artifact = next(v for k, v in seen["artifacts"].items() if k.startswith("Reflection: "))
    assert "# Reflection: revise" in artifact and "analysis_sourced" in artifact
    assert "| revise |" in seen["artifacts"]["goal-report"]
    events = await _events("goalflow.reflection.", result.flow_run_id)
    assert [e["event"] for e in events] == ["goalflow.reflection.revise"]
    assert events[0]["payload"]["signals"][0]["name"] == "repeated_failure"
    # plan ready, then facts, analysis_sourced and report finished
    progress = await _events("goalflow.progress", result.flow_run_id, at_least=4)
    assert {e["payload"].get("task") for e in progress} >= {"facts", "analysis_sourced", "report"}


async def test_outputs_drifting_off_the_goal_stop_the_run_as_off_topic(
    llm_server: OpenAITestServer,
) -> None:
    llm_server.script(
        asks_for("TaskAnswer", "Write report"),
        lambda r: Reply(content=str(echo_answer(r)), delay=30),
    )
    llm_server.script(
        _is_reflection,
        _verdict("off_topic", "the facts are about coffee, not green tea"),
    )

    with pytest.raises(GoalStoppedError) as caught:
        await run_plan(_plan(CHAIN), advanced={"reflect_every_tasks": 2})

    result = caught.value.result
    assert result.status == "stopped"
    assert "reflection found it off topic: the facts are about coffee, not green tea" in (
        result.message
    )
    assert [r.verdict for r in result.reflections] == ["off_topic"]
    assert result.reflections[0].outcome == "run stopped"
    by_path = {t.path: t.status for t in result.tasks}
    assert by_path["facts"] == "completed" and by_path["analysis"] == "completed"
    assert by_path["report"] == "failed"  # cancelled while running
    assert "report" not in result.deliverables
    assert result.flow_run_id is not None
    async with get_client() as client:
        run = await client.read_flow_run(UUID(result.flow_run_id))
    assert run.state is not None and run.state.is_failed()
    assert "off topic: the facts are about coffee" in (run.state.message or "")
    events = await _events("goalflow.reflection.", result.flow_run_id)
    assert [e["event"] for e in events] == ["goalflow.reflection.off_topic"]


async def test_answers_that_are_not_json_are_retried_on_tasks_and_reflections_alike(
    llm_server: OpenAITestServer,
) -> None:
    proxy_page = Reply(raw_body="<html><body>502 Bad Gateway</body></html>")
    llm_server.script(asks_for("TaskAnswer", "Gather facts"), proxy_page, times=1)
    llm_server.script(
        _is_reflection, Reply(raw_body='{"choices": [', raw_type="application/json"), times=1
    )

    result = await run_plan(_plan(CHAIN), advanced={"reflect_every_tasks": 1})

    assert result.status == "completed"  # neither took the goal down
    assert len(task_requests(llm_server, "Gather facts")) == 2
    assert len([r for r in llm_server.requests if _is_reflection(r)]) >= 2
    assert result.reflections and result.reflections[0].verdict == "on_track"  # answered


async def test_an_invalid_patch_is_rejected_with_the_reason_and_the_run_goes_on(
    llm_server: OpenAITestServer,
) -> None:
    llm_server.script(  # time for the reflections to be answered while the run goes on
        asks_for("TaskAnswer", "Write report"),
        lambda r: Reply(content=str(echo_answer(r)), delay=2),
    )
    llm_server.script(_is_reflection, "{this is not json", times=1)
    drop_the_deliverable = {"cancel": ["report"]}
    llm_server.script(
        _is_reflection, _verdict("revise", "the report is not needed", drop_the_deliverable)
    )

    result = await run_plan(_plan(CHAIN), advanced={"reflect_every_tasks": 1, "max_revisions": 2})

    assert result.status == "completed"
    assert result.deliverables == {"report": "<report from Write report>"}
    reflections = [r for r in llm_server.requests if _is_reflection(r)]
    assert "the answer is not valid JSON" in reflections[1].last_user  # re-asked
    first = result.reflections[0]
    assert first.verdict == "revise"
    assert first.outcome.startswith("rejected: ")
    assert "deliverable 'report' is not produced by any task" in first.outcome
    assert all(t.status == "completed" for t in result.tasks)
    assert result.flow_run_id is not None
    events = await _events("goalflow.reflection.revise", result.flow_run_id)
    assert "rejected" in events[0]["payload"]["outcome"]


async def test_reflection_that_does_not_fit_the_money_budget_is_skipped_and_reported(
    llm_server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOALFLOW_PRICES", json.dumps({"test-model": {"input": 1, "output": 1}}))

    # A task call holds ~$0.0015 at worst, a reflection (schema and plan) far more.
    result = await run_plan(_plan(CHAIN), max_usd=0.005, advanced={"reflect_every_tasks": 1})

    assert result.status == "completed"
    assert not [r for r in llm_server.requests if _is_reflection(r)]
    assert {r.verdict for r in result.reflections} == {"skipped"}
    assert "would not fit the money budget" in result.reflections[0].reason
    assert result.flow_run_id is not None
    events = await _events("goalflow.reflection.failed", result.flow_run_id)
    assert events and events[0]["payload"]["verdict"] == "skipped"


async def test_the_reflect_flow_asks_a_running_goal_which_reflects_at_once(
    llm_server: OpenAITestServer,
) -> None:
    llm_server.script(
        asks_for("TaskAnswer"),
        lambda r: Reply(content=str(echo_answer(r)), delay=30),
    )
    llm_server.script(
        lambda r: _is_reflection(r) and "nothing moves" in r.last_user,
        _verdict("stuck", "every task has hung for minutes"),
    )
    goal = f"Hang {time.time()}"
    running = asyncio.create_task(run_plan(_plan(CHAIN, goal)))
    flow_run_id = await wait_for_run(f"goal: {goal}")
    await wait_for(lambda: any(r.schema_name == "TaskAnswer" for r in llm_server.requests))

    answer = await reflect(goal_run_id=str(flow_run_id), reason="nothing moves")
    with pytest.raises(GoalStoppedError) as caught:
        await running

    assert answer == "asked"  # the reflect flow saw the goal take its request
    assert (
        "reflection found it stuck: every task has hung for minutes" in caught.value.result.message
    )
    assert await reflect(goal_run_id=str(flow_run_id)) == "not running"
