"""Run a generated plan through ``achieve_goal`` in this process and print one JSON line.

The scale test and the benchmark start it as a child process (``python -m
goalflow.testing.plan_run``) so that it talks to the Prefect server they name in
``PREFECT_API_URL`` and its memory is measured on its own. The model endpoint comes
from the environment as usual (``OPENAI_BASE_URL`` of the test server).

``--bare`` runs the same plan on goalflow's scheduler, pacer and LLM client with no
Prefect at all: the floor that orchestration overhead is measured against, in a process
of its own like the real run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import time
from collections.abc import Awaitable, Iterable, Sequence
from typing import Any

from goalflow.agent.executor import run_leaf
from goalflow.core.rates import task_concurrency
from goalflow.core.scheduler import run_graph
from goalflow.core.task import TaskSpec
from goalflow.errors import GoalFailedError
from goalflow.llm.provider import open_llm
from goalflow.orchestration.goal_flow import achieve_goal
from goalflow.orchestration.options import resolve_options
from goalflow.orchestration.parameters import flow_parameters
from goalflow.settings import GoalOptions
from goalflow.testing.plans import layered_plan

__all__ = ["main", "run_bare", "run_plan"]


async def run_plan(
    tasks: int,
    depth: int,
    composites: int,
    parts: int,
    concurrency: int | None,
    task_runner: str | None = None,
) -> dict[str, Any]:
    """Run the plan; count what finished, what failed, and the makespan."""
    plan = layered_plan(tasks, depth, composites=composites, parts=parts)
    started, cpu = time.monotonic(), time.process_time()
    try:
        # Reflection off: the scale runs measure scheduling, not reflection calls.
        options = GoalOptions.given(
            {"concurrency": concurrency, "reflection": False, "task_runner": task_runner}
        )
        result = await achieve_goal(plan.goal, plan=plan, **flow_parameters(options))
    except GoalFailedError as e:
        result = e.result
    seconds, cpu = time.monotonic() - started, time.process_time() - cpu
    errors = sorted({t.error or "" for t in result.tasks if t.status == "failed"})
    statuses = [t.status for t in result.tasks]
    durations = [t.seconds for t in result.tasks if t.seconds is not None]
    leaves = [t for t in result.tasks if t.kind != "composite"]
    return {
        "status": result.status,
        **_figures(seconds, statuses, durations, errors, cpu),
        # From ready (inputs there, a slot free) to running in Prefect, at the median.
        "leaf_start_delay_s": _median(t.start_delay for t in leaves),
        "subflow_start_delay_s": _median(
            t.start_delay for t in result.tasks if t.kind == "composite"
        ),
    }


async def run_bare(tasks: int, depth: int, concurrency: int | None) -> dict[str, Any]:
    """The same plan with no Prefect: goalflow's scheduler, pacer and LLM client only."""
    plan = layered_plan(tasks, depth)
    resolved = await resolve_options()  # the environment's endpoint; no block is loaded
    settings = resolved.settings
    async with open_llm(resolved.endpoint, local_model=settings.local_model) as llm:
        config = llm.config
        width = task_concurrency(
            concurrency or settings.concurrency,
            config.requests_per_minute,
            config.expected_latency,
            config.burst_seconds,
        )

        def run(task: TaskSpec, inputs: dict[str, str]) -> Awaitable[dict[str, str]]:
            return run_leaf(llm, plan.goal, task, inputs, attempts=settings.task_attempts)

        started, cpu = time.monotonic(), time.process_time()
        outcomes = await run_graph(plan.tasks, plan.inputs, run, concurrency=width)
        seconds, cpu = time.monotonic() - started, time.process_time() - cpu
    errors = sorted({o.error or "" for o in outcomes.values() if o.status == "failed"})
    durations = [o.duration for o in outcomes.values() if o.duration is not None]
    return _figures(seconds, [o.status for o in outcomes.values()], durations, errors, cpu)


def _median(values: Iterable[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return round(statistics.median(known), 4) if known else None


def _figures(
    seconds: float,
    statuses: Sequence[str],
    durations: list[float],
    errors: list[str],
    cpu: float,
) -> dict[str, Any]:
    """The run's figures; ``task_median_s``: the median task's time from start to end;
    ``cpu_s``: this process's CPU seconds (all its threads) over the run."""
    return {
        "seconds": round(seconds, 3),
        "cpu_s": round(cpu, 2),
        "task_median_s": round(statistics.median(durations), 4) if durations else None,
        "tasks": len(statuses),
        "completed": statuses.count("completed"),
        "failed": len(statuses) - statuses.count("completed"),
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
    parser.add_argument("--bare", action="store_true", help="no Prefect: the floor")
    parser.add_argument(
        "--task-runner", choices=["threads", "dask", "ray"], default=None, help="leaf tasks' runner"
    )
    args = parser.parse_args()
    if args.bare:
        report = asyncio.run(run_bare(args.tasks, args.depth, args.concurrency))
    else:
        report = asyncio.run(
            run_plan(
                args.tasks,
                args.depth,
                args.composites,
                args.parts,
                args.concurrency,
                args.task_runner,
            )
        )
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
