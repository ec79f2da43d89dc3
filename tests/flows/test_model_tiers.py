"""Two model tiers end to end: a real Prefect server, the test server serving a planning
model and a cheaper task model at two prices, real Docker for the code task.

The plan marks tasks simple or hard; simple ones go to the task model, everything else
(planning, reviews, hard and code tasks) to the planning model, and a simple task whose
answer the review rejects makes its next attempt on the planning model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from goalflow.cli.app import app
from goalflow.core.plan import Plan
from goalflow.core.report import report_markdown
from goalflow.orchestration.goal_flow import achieve_goal
from goalflow.testing import ChatRequest, OpenAITestServer
from tests.helpers import (
    NUMBERS,
    TEST_KEY,
    asked_tasks,
    asks_for,
    echo_answer,
    is_plan,
    task,
)

pytestmark = pytest.mark.usefixtures("prefect_server")

GOAL = "Sum some numbers, write a poem and title it"
PRICES = {"big": {"input": 5.0, "output": 15.0}, "small": {"input": 0.1, "output": 0.4}}
PLAN = {
    "inputs": [],
    "deliverables": ["total", "poem", "title"],
    "tasks": [
        {**task("list", "List numbers", [], ["numbers"]), "difficulty": "simple"},
        {
            **task("sum", "Sum numbers", ["numbers"], ["total"]),
            "kind": "code",
            "difficulty": "simple",  # yet a code task: the planning model writes its program
        },
        {
            **task("poem", "Write poem", [], ["poem"]),
            "difficulty": "simple",
            "acceptance": "exactly three lines",
        },
        {**task("title", "Find title", ["poem"], ["title"]), "difficulty": "hard"},
    ],
}


def _poem_review(request: ChatRequest) -> str:
    """The small model's poem (four lines) fails review; the big model's passes."""
    passed = "four" not in request.last_user
    return json.dumps({"passed": passed, "reason": "three lines" if passed else "four lines"})


def _poem(request: ChatRequest) -> str:
    lines = "one\ntwo\nthree\nfour" if request.model == "small" else "one\ntwo\nthree"
    return json.dumps({"poem": lines})


@pytest.fixture
def tiers(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAITestServer]:
    server = OpenAITestServer(api_key=TEST_KEY, models=("big", "small"), default=echo_answer)
    server.script(is_plan, json.dumps(PLAN))
    server.script(asks_for("TaskAnswer", "List numbers"), json.dumps({"numbers": NUMBERS}))
    server.script(asks_for("TaskAnswer", "Write poem"), _poem)
    server.script(asks_for("Verdict", "Write poem"), _poem_review)
    server.script(
        lambda r: r.schema_name == "Program",
        json.dumps({"code": "print(sum(int(x) for x in numbers.split()))\n"}),
    )
    with server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
        monkeypatch.setenv("GOALFLOW_MODEL", "big")
        monkeypatch.setenv("GOALFLOW_TASK_MODEL", "small")
        monkeypatch.setenv("GOALFLOW_PRICES", json.dumps(PRICES))
        monkeypatch.setenv("GOALFLOW_REFLECTION", "false")
        yield server


def _models(server: OpenAITestServer, schema: str, title: str | None = None) -> list[str]:
    return [r.model for r in server.requests if asks_for(schema, title)(r)]


async def test_simple_tasks_run_on_the_task_model_and_the_rest_on_the_planning_model(
    tiers: OpenAITestServer,
) -> None:
    result = await achieve_goal(GOAL)

    assert result.status == "completed"
    assert result.deliverables["total"] == "108"
    plan_request = next(r for r in tiers.requests if is_plan(r))
    marks = plan_request.schema["$defs"]["TaskSpec"]["properties"]["difficulty"]  # type: ignore[index]
    assert plan_request.model == "big" and marks["enum"] == ["simple", "hard"]  # asked to mark
    assert _models(tiers, "TaskAnswer", "List numbers") == ["small"]
    assert _models(tiers, "TaskAnswer", "Find title") == ["big"]
    assert _models(tiers, "Program") == ["big"]  # a code task: the planning model writes it
    assert set(_models(tiers, "Verdict")) == {"big"}  # every review too
    # The poem's four lines were rejected: its next attempt was the planning model's.
    assert _models(tiers, "TaskAnswer", "Write poem") == ["small", "big"]
    assert result.deliverables["poem"] == "one\ntwo\nthree"
    by_path = {t.path: t.models for t in result.tasks}
    assert by_path == {
        "list": ["small"], "sum": ["big"], "poem": ["small", "big"], "title": ["big"],
    }  # fmt: skip


async def test_the_reports_spend_by_model_is_what_the_endpoint_billed(
    tiers: OpenAITestServer,
) -> None:
    result = await achieve_goal(GOAL)

    usage, billed = result.usage, tiers.stats.tokens_by_model
    assert usage.calls_by_model == {
        model: sum(r.model == model for r in tiers.requests) for model in ("big", "small")
    }
    for model, price in PRICES.items():
        prompt, completion = billed[model]
        assert usage.tokens_by_model[model] == prompt + completion
        cost = (prompt * price["input"] + completion * price["output"]) / 1e6
        assert usage.cost_by_model[model] == pytest.approx(cost, abs=2e-6)  # rounded to 1e-6
    assert usage.cost_usd == pytest.approx(sum(usage.cost_by_model.values()), abs=2e-6)
    assert f"| small | 2 | {usage.tokens_by_model['small']} |" in report_markdown(result)


def test_the_cli_plans_with_a_task_model_given_as_a_flag(
    tiers: OpenAITestServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("GOALFLOW_TASK_MODEL")
    saved = tmp_path / "plan.json"

    done = CliRunner().invoke(app, ["plan", GOAL, "--task-model", "small", "-o", str(saved)])

    assert done.exit_code == 0, done.output
    plan = Plan.model_validate_json(saved.read_text())
    assert [t.difficulty for t in plan.tasks] == ["simple", "simple", "simple", "hard"]
    assert "difficulty" in json.dumps(tiers.requests[0].schema)  # only with a task model


@pytest.mark.parametrize("command", ["run", "plan"])
def test_a_task_model_without_an_endpoint_is_refused_naming_the_fix(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "GOALFLOW_LLM_BLOCK"):
        monkeypatch.delenv(name, raising=False)

    done = CliRunner().invoke(app, [command, GOAL, "--task-model", "small"])

    assert done.exit_code == 2
    assert "task model 'small' needs an endpoint" in done.output
    assert "Traceback" not in done.output


SPREAD_GOAL = "Write eight short notes and a summary"
SPREAD_PLAN = {
    "inputs": [],
    "deliverables": [f"note{i}" for i in range(8)] + ["summary"],
    "tasks": [
        *(
            {**task(f"n{i}", f"Note {i}", [], [f"note{i}"]), "difficulty": "simple"}
            for i in range(8)
        ),
        {**task("sum", "Summarize", [], ["summary"]), "difficulty": "hard"},
    ],
}


async def test_a_task_model_at_its_own_endpoint_is_paced_by_that_endpoints_limits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pydantic import SecretStr

    from goalflow.core.prices import Price
    from goalflow.orchestration.blocks import LLMProvider

    # The planning endpoint takes a request every 2 s, the task endpoint (another
    # server, another key, given as a block) 4 a second, each metered per second.
    planning = OpenAITestServer(
        api_key=TEST_KEY, models=("big",), default=echo_answer, rpm=30, limiter="bucket"
    )
    planning.script(is_plan, json.dumps(SPREAD_PLAN))
    tasks = OpenAITestServer(
        api_key="sk-task-key", models=("small",), default=echo_answer, rpm=240, limiter="bucket"
    )
    with planning, tasks:
        await LLMProvider(
            base_url=tasks.base_url,
            api_key=SecretStr("sk-task-key"),
            model="small",
            prices={"small": Price(input=0.1, output=0.4)},
            requests_per_minute=240,
        ).asave("task-endpoint", overwrite=True)
        monkeypatch.setenv("OPENAI_BASE_URL", planning.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
        monkeypatch.setenv("GOALFLOW_MODEL", "big")
        monkeypatch.setenv("GOALFLOW_REQUESTS_PER_MINUTE", "30")
        monkeypatch.setenv("GOALFLOW_PRICES", json.dumps({"big": PRICES["big"]}))
        monkeypatch.setenv("GOALFLOW_REFLECTION", "false")

        result = await achieve_goal(
            SPREAD_GOAL, max_usd=1.0, advanced={"task_llm_block": "task-endpoint"}
        )

    assert result.status == "completed"
    # Unpaced, the eight simple tasks would earn 429s at the task endpoint; paced at the
    # planning endpoint's limit, they would take 14 s or more.
    assert (planning.stats.rate_limited, tasks.stats.rate_limited) == (0, 0)
    sent = [r.received_at for r in tasks.requests]
    assert max(sent) - min(sent) < 7
    assert sorted(asked_tasks(tasks)) == [f"Note {i}" for i in range(8)]
    assert asked_tasks(planning) == ["Summarize"]
    usage = result.usage
    assert usage.calls_by_model == {"big": len(planning.requests), "small": 8}
    # One ledger, one budget: each endpoint's calls at its own price.
    for server, model, price in (
        (planning, "big", PRICES["big"]),
        (tasks, "small", {"input": 0.1, "output": 0.4}),
    ):
        prompt, completion = server.stats.tokens_by_model[model]
        cost = (prompt * price["input"] + completion * price["output"]) / 1e6
        assert usage.cost_by_model[model] == pytest.approx(cost, abs=2e-6)
    assert "sk-task-key" not in result.model_dump_json()


async def test_a_task_model_block_with_the_planning_models_name_is_refused(
    tiers: OpenAITestServer,
) -> None:
    from goalflow.errors import ConfigError
    from goalflow.orchestration.blocks import LLMProvider

    await LLMProvider(base_url=tiers.base_url, model="big").asave("same-name", overwrite=True)

    with pytest.raises(ConfigError, match="task model and the planning model are both 'big'"):
        await achieve_goal(GOAL, advanced={"task_llm_block": "same-name", "task_model": "big"})
    assert tiers.requests == []


async def test_a_task_model_named_as_the_planning_model_makes_one_model_do_all(
    tiers: OpenAITestServer,
) -> None:
    # GOALFLOW_TASK_MODEL says small; this run says big, as the planning model.
    result = await achieve_goal(GOAL, advanced={"task_model": "big"})

    assert result.status == "completed"
    assert {r.model for r in tiers.requests} == {"big"}
    assert "difficulty" not in json.dumps(tiers.requests[0].schema)  # no tiers: no marks
