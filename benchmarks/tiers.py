"""Model tiers (issue 17): one model vs a planning model with a cheaper task model.

    .venv/bin/python benchmarks/tiers.py                   # 12 goals, each run both ways
    .venv/bin/python benchmarks/tiers.py --goals 24 --task-accuracy 0.6

A scripted endpoint with two prices: the project's OpenAI-compatible test server serves
``big`` (priced as gpt-4o, $2.50/$10 per million tokens) and ``small`` (as gpt-4o-mini,
$0.15/$0.60). Each goal is four language tasks with an acceptance check: three routine
ones (the planner marks them ``simple`` when asked) and one ``hard``. ``big`` plans,
reviews and answers every task right; ``small`` answers a simple task right with
probability ``--task-accuracy`` (drawn once per goal and task from a fixed seed), else
with a sloppy answer that big's review rejects. Every goal runs twice on one throwaway
Prefect server, through the real ``achieve_goal`` flow: with ``big`` alone, then with
``--task-model small``; the real prompts and answers are metered (tokens as the server
counts them) and priced.

What it measures is goalflow's part: which calls go where, what escalation costs, and the
prompt overhead of each tier. The task model's accuracy is an input, not a finding: with a
real small model, measure it on the goal suite first (``benchmarks/goals.py``).

Prints per mode: goals solved, cost per solved goal, the share of task calls answered by
the task model and escalations per goal; then the cost ratio, and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
from dataclasses import dataclass
from typing import Any

from goalflow.testing import ChatRequest, OpenAITestServer, Reply
from goalflow.testing.prefect_process import PrefectServerProcess

KEY = "sk-tiers-benchmark"
PRICES = {"big": {"input": 2.50, "output": 10.0}, "small": {"input": 0.15, "output": 0.60}}
SLOPPY = "(roughly)"
"""What a wrong answer of the task model carries; the planning model's review sees it."""


@dataclass(frozen=True)
class Chore:
    """One task of a scripted goal and its right answer."""

    id: str
    title: str
    difficulty: str
    inputs: tuple[str, ...]
    output: str
    answer: str


def _goal(n: int) -> tuple[str, list[Chore]]:
    topic = f"product line {n}"
    chores = [
        Chore("notes", f"List the features of {topic}", "simple", (), f"features_{n}",
              f"Feature list of {topic}: light, sturdy, repairable, quiet, cheap to run."),
        Chore("reword", f"Reword the features of {topic} for customers", "simple",
              (f"features_{n}",), f"blurb_{n}",
              f"Meet {topic}: light to carry, built to last, easy to repair and whisper quiet."),
        Chore("compare", f"Weigh {topic} against its rivals", "hard", (f"features_{n}",),
              f"verdict_{n}",
              f"{topic} beats its rivals on repairability and running cost, loses on price."),
        Chore("title", f"Title the launch note of {topic}", "simple", (), f"title_{n}",
              f"Launch note: {topic}"),
    ]  # fmt: skip
    return f"Write the launch material for {topic}", chores


class ScriptedModels:
    """Answers both models' calls for the goal being run (set ``goal`` first)."""

    def __init__(self, accuracy: float, seed: int) -> None:
        self.accuracy = accuracy
        self.seed = seed
        self.goal = 0

    def __call__(self, request: ChatRequest) -> str | Reply:
        _, chores = _goal(self.goal)
        if request.schema_name == "PlanDraft":
            marks = "difficulty" in json.dumps(request.schema)  # asked only with two tiers
            return json.dumps({"inputs": [], "deliverables": [c.output for c in chores[1:]],
                               "tasks": [_spec(c, marks) for c in chores]})  # fmt: skip
        if request.schema_name == "OneAnswer":  # the goal wants its parts, each apart
            return json.dumps({"one_answer": False})
        if request.schema_name == "Verdict":
            passed = SLOPPY not in request.last_user
            return json.dumps({"passed": passed, "reason": "fine" if passed else "sloppy"})
        if request.schema_name == "TaskAnswer":
            outputs = set((request.schema or {}).get("properties", {}))
            chore = next((c for c in chores if {c.output} == outputs), None)
            if chore is None:
                return Reply(status=400, error_message=f"no task has the outputs {outputs}")
            draw = random.Random(f"{self.seed}/{self.goal}/{chore.id}").random()
            sloppy = request.model == "small" and draw >= self.accuracy
            return json.dumps(
                {chore.output: f"{chore.answer} {SLOPPY}" if sloppy else chore.answer}
            )
        return Reply(status=400, error_message=f"not scripted: {request.schema_name}")


def _spec(chore: Chore, marks: bool) -> dict[str, Any]:
    spec = {"id": chore.id, "title": chore.title, "kind": "llm",
            "instructions": f"{chore.title}, in one or two sentences.",
            "inputs": list(chore.inputs), "outputs": [chore.output],
            "acceptance": "accurate, and written for customers"}  # fmt: skip
    return {**spec, "difficulty": chore.difficulty} if marks else spec


async def _run(goals: int, models: ScriptedModels, task_model: str | None) -> dict[str, Any]:
    from goalflow import GoalFailedError, GoalOptions, achieve_goal
    from goalflow.orchestration.parameters import flow_parameters

    options = {"model": "big", "task_model": task_model, "reflection": False, "task_cache": False}
    parameters = flow_parameters(GoalOptions.given(options))
    solved, costs, task_calls, small_calls, escalations = 0, [], 0, 0, 0
    by_model: dict[str, float] = {}
    on_tasks = 0.0  # spent on the tasks (answers and their reviews), planning aside
    for n in range(goals):
        models.goal = n
        text, chores = _goal(n)
        try:
            result = await achieve_goal(text, **parameters)
        except GoalFailedError as e:
            result = e.result
        right = {c.output: c.answer for c in chores[1:]}
        solved += result.status == "completed" and result.deliverables == right
        costs.append(result.usage.cost_usd)
        for model, cost in result.usage.cost_by_model.items():
            by_model[model] = by_model.get(model, 0.0) + cost
        on_tasks += sum(c for path, c in result.usage.cost_by_task.items() if path != "planning")
        for report in result.tasks:
            task_calls += len(report.models)
            small_calls += report.models.count("small")
            escalations += report.models[:2] == ["small", "big"]
    total = sum(costs)
    return {
        "mode": f"big + {task_model}" if task_model else "big alone",
        "solved": solved,
        "goals": goals,
        "cost_usd": round(total, 6),
        "cost_per_solved_usd": round(total / solved, 6) if solved else None,
        "median_goal_cost_usd": round(statistics.median(costs), 6),
        "cost_by_model_usd": {model: round(cost, 6) for model, cost in by_model.items()},
        "tasks_share_of_cost": round(on_tasks / total, 3) if total else 0.0,
        "task_model_share": round(small_calls / task_calls, 3) if task_calls else 0.0,
        "escalations_per_goal": round(escalations / goals, 2),
    }


async def _both(goals: int, models: ScriptedModels) -> list[dict[str, Any]]:
    from prefect.logging.handlers import APILogHandler
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: os.environ["PREFECT_API_URL"]}):
        rows = [await _run(goals, models, task_model) for task_model in (None, "small")]
        await APILogHandler.aflush()  # before the server goes: runs log to it in batches
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--goals", type=int, default=12, help="goals, each run both ways")
    parser.add_argument(
        "--task-accuracy", type=float, default=0.8, help="share of simple tasks small gets right"
    )
    parser.add_argument("--seed", type=int, default=17, help="seed of small's mistakes")
    args = parser.parse_args()
    models = ScriptedModels(args.task_accuracy, args.seed)
    server = OpenAITestServer(api_key=KEY, models=("big", "small"), default=models)
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "ERROR")
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    with server, PrefectServerProcess() as prefect:
        os.environ.update(
            PREFECT_API_URL=prefect.api_url,
            OPENAI_BASE_URL=server.base_url,
            OPENAI_API_KEY=KEY,
            GOALFLOW_PRICES=json.dumps(PRICES),
            GOALFLOW_SANDBOX="off",
        )
        rows = asyncio.run(_both(args.goals, models))
    print(f"{args.goals} goals of 4 tasks (3 simple, 1 hard), small right on "
          f"{args.task_accuracy:.0%} of simple tasks")  # fmt: skip
    print(f"{'mode':<12} {'solved':>9} {'$ per solved goal':>18} {'task calls on small':>20} "
          f"{'escalations/goal':>17}")  # fmt: skip
    for row in rows:
        per_goal = row["cost_per_solved_usd"]
        print(f"{row['mode']:<12} {row['solved']:>4} of {row['goals']:<2} "
              f"{'-' if per_goal is None else f'{per_goal:.5f}':>18} "
              f"{row['task_model_share']:>20.0%} {row['escalations_per_goal']:>17}")  # fmt: skip
    one, two = rows
    if one["cost_per_solved_usd"] and two["cost_per_solved_usd"]:
        ratio = two["cost_per_solved_usd"] / one["cost_per_solved_usd"]
        print(f"two tiers cost {ratio:.2f}x one model per solved goal")
    print(json.dumps({"task_accuracy": args.task_accuracy, "modes": rows}))


if __name__ == "__main__":
    main()
