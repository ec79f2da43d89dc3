"""Run a generated plan through ``achieve_goal`` in this process and print one JSON line.

The scale test and the benchmark start it as a child process (``python -m
goalflow.testing.plan_run``) so that it talks to the Prefect server they name in
``PREFECT_API_URL`` and its memory is measured on its own. The model endpoint comes
from the environment as usual (``OPENAI_BASE_URL`` of the test server).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from typing import Any

from goalflow.flows import GoalFailedError, achieve_goal
from goalflow.testing.plans import layered_plan

__all__ = ["main", "run_plan"]


async def run_plan(
    tasks: int, depth: int, composites: int, parts: int, concurrency: int | None
) -> dict[str, Any]:
    """Run the plan; count what finished, what failed, and the makespan."""
    plan = layered_plan(tasks, depth, composites=composites, parts=parts)
    started = time.monotonic()
    try:
        # Reflection off: the scale runs measure scheduling, not reflection calls.
        result = await achieve_goal(plan=plan, concurrency=concurrency, reflection=False)
    except GoalFailedError as e:
        result = e.result
    seconds = time.monotonic() - started
    errors = sorted({t.error or "" for t in result.tasks if t.status == "failed"})
    return {
        "status": result.status,
        "seconds": round(seconds, 3),
        "tasks": len(result.tasks),
        "completed": sum(t.status == "completed" for t in result.tasks),
        "failed": sum(t.status != "completed" for t in result.tasks),
        "errors": errors[:5],
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, required=True)
    parser.add_argument("--depth", type=int, default=1)
    parser.add_argument("--composites", type=int, default=0)
    parser.add_argument("--parts", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=None)
    args = parser.parse_args()
    report = asyncio.run(
        run_plan(args.tasks, args.depth, args.composites, args.parts, args.concurrency)
    )
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
