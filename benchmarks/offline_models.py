"""Which offline model should be the default? Plans four small goals with each.

For each model: start it (goalflow's own launcher), plan each goal with goalflow's
planner (re-asking with the rule errors, up to 3 times), and record whether a valid
plan came back, after how many model calls, how long it took and how many tokens it
cost. Prints a table, then one JSON line. Needs the `local` and `local-small` extras.

    .venv/bin/python benchmarks/offline_models.py [--models 0.5b 1.5b]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

from goalflow.agent.planner import PlanningOptions, make_plan
from goalflow.errors import GoalflowError
from goalflow.llm.client import LLM
from goalflow.llm.config import LLMConfig
from goalflow.llm.local_model import LOCAL_MODELS, local_model_server

GOALS = [
    "Write a haiku about autumn and a haiku about spring, then combine them into one short "
    "poem titled Seasons.",
    "Give three arguments for and three against remote work, then a one-paragraph verdict.",
    "Translate 'good morning, friends' into French and Spanish, then list both translations.",
    "Summarise this text in one sentence and suggest a title: Rivers carry sediment from "
    "mountains to the sea, building deltas where they slow down.",
]


async def bench_model(key: str) -> list[dict[str, object]]:
    spec = LOCAL_MODELS[key]
    rows: list[dict[str, object]] = []
    async with local_model_server(spec) as base_url:
        for goal in GOALS:
            llm = LLM(
                LLMConfig(
                    model=spec.alias,
                    base_url=base_url,
                    structured_mode="json_object",
                    timeout=600.0,
                )
            )
            options = PlanningOptions(max_depth=0, allowed_kinds=("llm",))
            started = time.monotonic()
            try:
                plan = await make_plan(llm, goal, options)
                valid, tasks, error = True, len(plan.tasks), ""
            except GoalflowError as e:
                valid, tasks, error = False, 0, " | ".join(str(e).splitlines())[:500]
            usage = llm.ledger.summary()
            rows.append(
                {
                    "model": key,
                    "goal": goal[:40],
                    "valid": valid,
                    "tasks": tasks,
                    "calls": usage.calls,
                    "seconds": round(time.monotonic() - started, 1),
                    "completion_tokens": usage.completion_tokens,
                    "error": error,
                }
            )
            print(rows[-1], flush=True)
            await llm.close()
    return rows


async def main(models: list[str]) -> None:
    rows = [row for key in models for row in await bench_model(key)]
    print(f"\n{'model':6} {'valid':>5} {'first-try':>9} {'median s':>8} {'calls':>5}")
    summary = {}
    for key in models:
        mine = [r for r in rows if r["model"] == key]
        valid = sum(1 for r in mine if r["valid"])
        first = sum(1 for r in mine if r["valid"] and r["calls"] == 1)
        median = statistics.median(float(str(r["seconds"])) for r in mine)
        calls = sum(int(str(r["calls"])) for r in mine)
        print(f"{key:6} {valid:>3}/{len(mine)} {first:>7}/{len(mine)} {median:>8.1f} {calls:>5}")
        summary[key] = {
            "valid": valid,
            "first_try": first,
            "goals": len(mine),
            "median_seconds": median,
            "calls": calls,
        }
    print(json.dumps({"benchmark": "offline_models", "results": summary, "rows": rows}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["0.5b", "1.5b"], choices=LOCAL_MODELS)
    asyncio.run(main(parser.parse_args().models))
