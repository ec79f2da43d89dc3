"""The server-side trigger, for real: a goal run that makes no progress fires the
`goalflow-reflect-on-stall` automation, which runs the `reflect` deployment on the
worker, which asks the running goal to reflect; the goal reflects and acts on it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from goalflow.testing import ChatRequest, OpenAITestServer, Reply
from goalflow.testing.deployment_stack import DeploymentStack, model_env
from tests.helpers import DIAMOND, TEST_KEY, echo_answer

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
REFLECT_AFTER_SECONDS = 10


def _answer(request: ChatRequest) -> str | Reply:
    if request.schema_name == "PlanDraft":
        return json.dumps(DIAMOND)
    if request.schema_name == "Reflection":
        if "asked by the server" in request.last_user:
            verdict = {"verdict": "stuck", "reason": "no task has answered for a long time"}
            return json.dumps(verdict)
        return echo_answer(request)
    return Reply(content=str(echo_answer(request)), delay=120)  # every task hangs


@pytest.fixture(scope="module")
def llm() -> Iterator[OpenAITestServer]:
    with OpenAITestServer(api_key=TEST_KEY, default=_answer) as server:
        yield server


@pytest.fixture(scope="module")
def stack(llm: OpenAITestServer) -> Iterator[DeploymentStack]:
    options = ("--time-backstop", "900", "--reflect-after", str(REFLECT_AFTER_SECONDS))
    with DeploymentStack(ROOT, model_env(llm.base_url, TEST_KEY), setup_options=options) as s:
        yield s


def test_a_goal_without_progress_is_asked_by_the_server_to_reflect_and_does(
    stack: DeploymentStack, llm: OpenAITestServer
) -> None:
    code, flow_run_id = stack.deployment_run(goal="Write a short report on green tea")

    assert code != 0
    state = stack.flow_run(flow_run_id)["state"]
    assert state["type"] == "FAILED"
    assert "reflection found it stuck: no task has answered for a long time" in state["message"]
    reflections = [r for r in llm.requests if r.schema_name == "Reflection"]
    assert len(reflections) == 1
    assert "Why you are asked now: asked by the server: no progress event" in (
        reflections[0].last_user
    )
    # The reflect deployment ran on the worker, for this goal run, and saw it take the ask.
    runs = stack.flow_runs("reflect")
    assert [run["parameters"]["goal_run_id"] for run in runs] == [flow_run_id]
    assert runs[0]["state"]["type"] == "COMPLETED"
    report = stack.report(flow_run_id)
    assert "| stuck | no task has answered for a long time | run stopped |" in report
    events = _reflection_events(stack)
    assert [e["event"] for e in events] == ["goalflow.reflection.stuck"]
    assert events[0]["payload"]["flow_run_id"] == flow_run_id


def _reflection_events(stack: DeploymentStack) -> list[dict[str, Any]]:
    """The reflection events on the server, waiting up to 30 s for the first: the server
    persists events in batches, so they can land after the run has ended."""
    query = {"filter": {"event": {"prefix": ["goalflow.reflection."]}}, "limit": 10}
    for _ in range(60):
        events: list[dict[str, Any]] = stack.post("/events/filter", query)["events"]
        if events:
            return events
        time.sleep(0.5)
    return []
