"""Overshoot of the money budget: spend minus budget over N runs of C concurrent calls.

    .venv/bin/python benchmarks/budget.py --runs 20 --concurrency 20

Each run gives an LLM a budget that fits only some of its calls and fires them all at
once against the project's test server (real HTTP on loopback, 50 ms latency). Spend
must never exceed the budget: the printed maximum overshoot must be <= 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from goalflow.agent.executor import Verdict
from goalflow.core.budget import MoneyBudget, Price
from goalflow.errors import BudgetExceededError
from goalflow.llm.client import LLM
from goalflow.llm.config import LLMConfig
from goalflow.testing import OpenAITestServer


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


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--budget", type=float, default=0.01)
    args = parser.parse_args()
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
