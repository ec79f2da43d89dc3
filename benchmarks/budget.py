"""The money budget: overshoot under concurrency, and how much of a goal a budget buys.

    .venv/bin/python benchmarks/budget.py --runs 20 --concurrency 20
    .venv/bin/python benchmarks/budget.py --goal --tasks 30 [--reviewed] [--planned]
        [--answer-words N]

Without ``--goal``: each run gives an LLM a budget that fits only some of its calls and
fires them all at once against the project's test server (real HTTP on loopback, 50 ms
latency). Spend must never exceed the budget: the printed maximum overshoot must be <= 0.

With ``--goal``: a plan of ``--tasks`` tasks in two layers runs through the real
``achieve_goal`` flow on a throwaway Prefect server, first without a budget (its full
cost), then with 0.5x, 1x, 1.5x and 2x that cost, at concurrency 1 and 16, as a first
goal on the endpoint (no prompt counts kept) and as a later one (the counts the
full-cost run kept). Printed per run: tasks finished, the spend goalflow reported, the
spend the test server billed (every answer it produced, also those the client gave up
on), and billed minus budget. With
``--reviewed`` each task has an acceptance check, so each answer is reviewed by a second
call, as in the plans a planner writes. With ``--planned`` the goal is planned first (the
test server answers the planning call with that plan), and the budget pays for planning
too. ``--answer-words N``: each task's answer is about N words (a paragraph, as a real
task's), not a few.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from goalflow.agent.executor import Verdict
from goalflow.core.budget import MoneyBudget
from goalflow.core.plan import Plan
from goalflow.core.prices import Price
from goalflow.core.task import TaskSpec
from goalflow.errors import BudgetExceededError
from goalflow.llm.client import LLM
from goalflow.llm.config import LLMConfig
from goalflow.testing import OpenAITestServer
from goalflow.testing.plans import answer_any_task
from goalflow.testing.protocol import ChatRequest


async def one_run(base_url: str, concurrency: int, budget: float) -> tuple[float, int]:
    config = LLMConfig(
        model="test-model", base_url=base_url, prices={"test-model": Price(input=1, output=1)}
    )
    llm = LLM(config, budget=MoneyBudget(limit_usd=budget))

    async def call(i: int) -> bool:
        try:
            await llm.structured(Verdict, [{"role": "user", "content": f"check {i}"}], purpose="b")
        except BudgetExceededError:
            return False
        return True

    answered = await asyncio.gather(*(call(i) for i in range(concurrency)))
    await llm.close()
    return llm.ledger.summary().cost_usd - budget, sum(answered)


PRICE = {"input": 1.0, "output": 4.0}  # USD per million tokens, for the --goal runs


def _billed(server: OpenAITestServer) -> float:
    stats = server.stats
    return (stats.prompt_tokens * PRICE["input"] + stats.completion_tokens * PRICE["output"]) / 1e6


def _answering(plan: Plan, words: int) -> Callable[[ChatRequest], str]:
    """The test server's answers: ``plan`` to the planning call, a task's outputs (each
    followed by ``words`` words), or a review's verdict: passed."""
    spec = set(TaskSpec.model_fields)
    draft = json.dumps(
        {
            "inputs": [{"name": k, "value": v} for k, v in plan.inputs.items()],
            "deliverables": plan.deliverables,
            "tasks": [t.model_dump(include=spec, exclude_defaults=True) for t in plan.tasks],
        }
    )

    def answer(request: ChatRequest) -> str:
        if request.schema_name == "PlanDraft":
            return draft
        if "passed" in (request.schema or {}).get("properties", {}):
            return json.dumps({"passed": True, "reason": "the outputs meet the check"})
        if not words:
            return answer_any_task(request)
        properties = (request.schema or {}).get("properties", {})
        text = " ".join(["and so on"] * (words // 3))
        return json.dumps({name: f"value of {name}: {text}" for name in properties})

    return answer


async def goal_runs(tasks: int, reviewed: bool, planned: bool, words: int) -> None:
    from goalflow.errors import GoalFailedError
    from goalflow.orchestration.goal_flow import achieve_goal
    from goalflow.testing.plans import layered_plan
    from goalflow.testing.prefect_process import PrefectServerProcess

    plan = layered_plan(tasks, 2)
    if reviewed:
        check = "The output is a short value derived from the inputs."
        plan = plan.model_copy(
            update={"tasks": [t.model_copy(update={"acceptance": check}) for t in plan.tasks]}
        )
    server = OpenAITestServer(latency=0.2, default=_answering(plan, words))
    # What the endpoint counted for goalflow's prompts, kept from the full-cost run: the
    # runs after it are later goals on this endpoint. "none": as a first goal would be.
    kept = str(Path(tempfile.mkdtemp()) / "prompt-counts.json")
    goal = f"{plan.goal}; the seed is: {plan.inputs['seed']}"
    async with server:
        os.environ.update(
            OPENAI_BASE_URL=server.base_url,
            OPENAI_API_KEY="sk-budget-bench",
            GOALFLOW_MODEL="test-model",
            GOALFLOW_PRICES=json.dumps({"test-model": PRICE}),
            GOALFLOW_SANDBOX="off",
            GOALFLOW_TASK_CACHE="false",
            GOALFLOW_REFLECTION="false",
            GOALFLOW_MAX_TASKS=str(max(tasks, 25)),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL="CRITICAL",
        )
        with PrefectServerProcess() as prefect:
            os.environ["PREFECT_API_URL"] = prefect.api_url

            async def run(
                concurrency: int, max_usd: float | None = None, *, counts: str = kept
            ) -> tuple[int, float, float]:
                server.reset()
                os.environ["GOALFLOW_PROMPT_COUNTS"] = counts
                advanced = {"concurrency": concurrency}
                try:
                    result = await (
                        achieve_goal(goal, max_usd=max_usd, advanced=advanced)
                        if planned
                        else achieve_goal(plan.goal, plan=plan, max_usd=max_usd, advanced=advanced)
                    )
                except GoalFailedError as e:
                    result = e.result
                finished = sum(t.status == "completed" for t in result.tasks)
                return finished, result.usage.cost_usd, _billed(server)

            _, full, billed = await run(concurrency=16)
            calls = server.stats.completed
            kind = ", reviewed" if reviewed else ""
            print(
                f"{tasks} tasks in 2 layers{kind}{', planned' if planned else ''}: {calls} calls; "
                f"full cost reported ${full:.6f}, billed ${billed:.6f}"
            )
            print("prompt counts  concurrency  budget       finished  reported    billed      "
                  "billed-budget")  # fmt: skip
            for counts in ("off", kept):
                for concurrency in (1, 16):
                    for factor in (0.5, 1.0, 1.5, 2.0):
                        budget = factor * full
                        finished, reported, billed = await run(
                            concurrency=concurrency, max_usd=budget, counts=counts
                        )
                        print(f"{'none' if counts == 'off' else 'kept':>13}  {concurrency:>11}  "
                              f"{factor:.1f}x ${budget:.6f}  {finished:>3} of {tasks:<3} "
                              f"${reported:.6f}  ${billed:.6f}  {billed - budget:+.6f}",
                              flush=True)  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--budget", type=float, default=0.01)
    parser.add_argument("--goal", action="store_true", help="budgets of a whole goal run")
    parser.add_argument("--tasks", type=int, default=30, help="tasks of the --goal plan")
    parser.add_argument(
        "--reviewed", action="store_true", help="--goal tasks with an acceptance check"
    )
    parser.add_argument(
        "--planned", action="store_true", help="--goal planned first, on the same budget"
    )
    parser.add_argument(
        "--answer-words", type=int, default=0, help="--goal task answers this many words long"
    )
    args = parser.parse_args()
    if args.goal:
        await goal_runs(args.tasks, args.reviewed, args.planned, args.answer_words)
        return
    server = OpenAITestServer(latency=0.05, default=json.dumps({"passed": True, "reason": "ok"}))
    async with server:
        results = [
            await one_run(server.base_url, args.concurrency, args.budget) for _ in range(args.runs)
        ]
    overshoots = [o for o, _ in results]
    print(
        f"{args.runs} runs x {args.concurrency} concurrent calls, budget ${args.budget}: "
        f"max overshoot ${max(overshoots):+.6f} (must be <= 0), calls answered per run "
        f"{min(n for _, n in results)}-{max(n for _, n in results)}"
    )


if __name__ == "__main__":
    asyncio.run(main())
