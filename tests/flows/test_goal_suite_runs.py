"""Suite goals end to end with their reference solutions: a real Prefect server, the
project's test server answering as the reference model, real Docker for code tasks.

The reference solutions are right (tests/unit/test_goal_suite.py runs them without
goalflow), so a goal that is not solved here is goalflow losing or garbling a value
between the plan, the tasks, the sandbox and the deliverable.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace

import pytest

from benchmarks.goal_suite import CATEGORIES, Goal, select
from benchmarks.goal_suite.run import run_goal, summary
from benchmarks.goal_suite.scripted import REFERENCE_MODEL, ReferenceModel
from goalflow.testing import OpenAITestServer
from tests.helpers import TEST_KEY

pytestmark = pytest.mark.usefixtures("prefect_server")

# One goal per category; all but fmt-json-capital run code tasks, csv-warm-cities a
# composite task that is broken down, multi-capitals llm and code tasks side by side.
GOALS = select(
    [
        "text-caesar-shift",
        "count-whole-word",
        "arith-discount-tax",
        "filter-even",
        "csv-warm-cities",
        "date-days-between",
        "fmt-json-capital",
        "multi-capitals",
        "code-log-errors",
    ]
)


@pytest.fixture(scope="module")
def reference_model() -> Iterator[tuple[ReferenceModel, OpenAITestServer]]:
    model = ReferenceModel()
    with OpenAITestServer(api_key=TEST_KEY, models=(REFERENCE_MODEL,), default=model) as server:
        yield model, server


@pytest.fixture
def answering(
    reference_model: tuple[ReferenceModel, OpenAITestServer], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[ReferenceModel, OpenAITestServer]]:
    model, server = reference_model
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    monkeypatch.setenv("GOALFLOW_MODEL", REFERENCE_MODEL)
    server.reset()
    yield model, server
    model.goal = None


def test_the_chosen_goals_cover_every_category() -> None:
    assert {goal.category for goal in GOALS} == set(CATEGORIES)


@pytest.mark.parametrize("goal", GOALS, ids=[goal.id for goal in GOALS])
async def test_a_suite_goal_is_solved_with_its_reference_solution(
    goal: Goal, answering: tuple[ReferenceModel, OpenAITestServer]
) -> None:
    model, server = answering
    model.goal = goal

    outcome = await run_goal(goal, options={"reflection": False, "task_cache": False})

    assert outcome.solved, outcome.reason
    assert outcome.status == "completed"
    steps = list(goal.reference.walk())
    assert sum(outcome.tasks.values()) == len(steps)
    for kind in ("llm", "code", "composite"):
        assert outcome.tasks.get(kind, 0) == sum(step.kind == kind for step in steps)
    # Every call was answered from the reference: none was refused as unknown.
    assert server.stats.errors == 0
    assert outcome.calls == server.stats.completed
    programs = [r for r in server.requests if r.schema_name == "Program"]
    assert len(programs) == outcome.tasks.get("code", 0)  # each program ran right first time


async def test_a_wrong_answer_is_not_solved_and_the_summary_says_so(
    answering: tuple[ReferenceModel, OpenAITestServer],
) -> None:
    """The runner's verdict comes from the checker, not from goalflow's status."""
    model, _ = answering
    goal = select(["multi-capitals"])[0]
    steps = tuple(
        replace(step, answer={"italy_capital": "Milan"}) if step.id == "italy" else step
        for step in goal.reference.steps
    )
    model.goal = replace(goal, reference=replace(goal.reference, steps=steps))

    outcome = await run_goal(goal, options={"reflection": False, "task_cache": False})

    assert outcome.status == "completed" and not outcome.solved
    assert outcome.deliverables == {"capitals": "Milan and Paris"}
    assert "expected 'Paris and Rome'" in outcome.reason
    report = summary([outcome])
    assert report["rate"] == 0 and report["unsolved"] == ["multi-capitals"]
    assert json.dumps(report)  # the runner prints it as one JSON line
