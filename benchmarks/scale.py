"""How close goalflow comes to the rate limit's lower bound on a wide or deep plan.

Starts the OpenAI-compatible test server with latency L (+- jitter J) and limits of R
requests/min and T tokens/min, generates a plan of N leaf tasks in D equal layers (no
planning call: the saved ``Plan`` goes straight to ``achieve_goal``), and reports:

  LB            makespan of an exact discrete-event simulation of the same graph, same
                latency, same limiter as the test server's (``--limiter``: a sliding
                minute, or a token bucket of one second's burst), zero overhead (virtual
                time)
  bare          the same graph, real calls to the test server, goalflow's asyncio
                scheduler, pacer and LLM client with no Prefect, in a child process
                like the real run (``plan_run --bare``): the floor
  one-at-a-time the BabyAGI-style loop (simulated, like LB: N * L at these sizes)
  level-by-level each layer waits for the whole previous one (simulated)
  sqlite / postgres  achieve_goal on a fresh `prefect server start` on that database,
                in a child process: makespan, efficiency LB/makespan, achieved RPM,
                429s, retries, lost/failed tasks, overhead per task vs bare, peak RSS of
                the runner and of the server, CPU milliseconds per leaf task of the
                runner and of the server (their CPU times over the run), and the median
                delay from ready (inputs there, a slot free) to running for leaf tasks
                and for composite subflows (``--composites K`` adds K beside the plan)

Scenarios of issue 5 (PostgreSQL needs `make postgres`):

  wide:  .venv/bin/python benchmarks/scale.py --tasks 580 --latency 10 --rpm 3500
  deep:  .venv/bin/python benchmarks/scale.py --tasks 200 --depth 5 --latency 2 --rpm 600

Burst limits of issue 13: add ``--limiter bucket`` (the rate told) and
``--limiter bucket --untold`` (learned from the answers).

``--profile DIR`` samples the runner and the server with py-spy and prints where each
spends its CPU. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from goalflow.core.pacing import Pacer
from goalflow.core.plan import Plan
from goalflow.core.rates import task_concurrency
from goalflow.core.scheduler import run_graph
from goalflow.core.task import TaskSpec
from goalflow.orchestration.subflow_gate import POSTGRES_SUBFLOW_STARTS
from goalflow.testing import OpenAITestServer
from goalflow.testing.plans import answer_any_task, layered_plan
from goalflow.testing.prefect_process import PrefectServerProcess
from goalflow.testing.profiling import profiled
from goalflow.testing.virtual_time import run_virtual

POSTGRES_URL = "postgresql+asyncpg://prefect:prefect@127.0.0.1:5432/prefect"
MODEL = "bench-model"


def _burst_seconds(args: argparse.Namespace) -> float:
    """The burst the test server's limiter allows: the whole minute, or one second."""
    return 60.0 if args.limiter == "window" else 1.0


async def _simulate(plan: Plan, args: argparse.Namespace, mode: str) -> float:
    """Makespan on virtual time: the provider's own limiter, zero overhead."""
    loop = asyncio.get_running_loop()
    pacer = Pacer(
        requests_per_minute=args.rpm,
        tokens_per_minute=args.tpm,
        window=60.0,
        burst_seconds=_burst_seconds(args),
        arrival_slack=0.0,
    )

    async def call(task: TaskSpec, inputs: dict[str, str]) -> dict[str, str]:
        async with pacer.slot(args.tokens_per_call):
            await asyncio.sleep(args.latency)
        return {name: "x" for name in task.outputs}

    width = len(plan.tasks) if mode == "graph" else 1
    if mode == "levels":
        for d in range(args.depth):
            layer = [t for t in plan.tasks if t.id.startswith(f"t{d}_")]
            await asyncio.gather(*(call(t, {}) for t in layer))
    else:
        await run_graph(plan.tasks, plan.inputs, call, concurrency=width)
    return loop.time()


def _child_env(base_url: str, args: argparse.Namespace) -> dict[str, str]:
    """The runner's environment: the test server as its model, the benchmark's limits.

    Prefect's console log is kept to warnings, as ``goalflow run`` keeps it: formatting a
    line per task state for a terminal nobody reads cost the runner ~6 % of its CPU."""
    env = {
        **os.environ,
        "OPENAI_BASE_URL": base_url,
        "OPENAI_API_KEY": "sk-bench",
        "GOALFLOW_MODEL": MODEL,
        "GOALFLOW_PRICES": json.dumps({MODEL: {"input": 0, "output": 0}}),
        "GOALFLOW_MAX_TASKS": "5000",
        "GOALFLOW_EXPECTED_LATENCY": str(args.latency),
        "GOALFLOW_BURST_SECONDS": f"{_burst_seconds(args):g}",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
    }
    if args.untold:  # learned from the answers' headers and 429s, at the same width
        width = task_concurrency(None, args.rpm, args.latency, _burst_seconds(args))
        env["GOALFLOW_CONCURRENCY"] = str(width)
    else:
        env["GOALFLOW_REQUESTS_PER_MINUTE"] = str(args.rpm)
    if args.tpm:
        env["GOALFLOW_TOKENS_PER_MINUTE"] = str(args.tpm)
    return env


def _child(command: list[str], env: dict[str, str]) -> dict[str, Any]:
    child = subprocess.run(command, env=env, capture_output=True, text=True)
    reports = [line for line in child.stdout.splitlines() if line.startswith("{")]
    if child.returncode != 0 or not reports:
        return {"error": child.stderr[-2000:]}
    return dict(json.loads(reports[-1]))


def _plan_command(args: argparse.Namespace, *extra: str) -> list[str]:
    plan = ["--tasks", str(args.tasks), "--depth", str(args.depth), *extra]
    return [sys.executable, "-m", "goalflow.testing.plan_run", *plan]


def _prefect_run(backend: str, base_url: str, args: argparse.Namespace) -> dict[str, Any]:
    database = POSTGRES_URL if backend == "postgres" else None
    # Fresh result storage: the task cache must not answer from an earlier run.
    with (
        PrefectServerProcess(database_url=database) as server,
        tempfile.TemporaryDirectory(prefix="goalflow-results-") as results,
    ):
        env = _child_env(base_url, args) | {
            "PREFECT_API_URL": server.api_url,
            "PREFECT_RESULTS_LOCAL_STORAGE_PATH": results,
        }
        if database:
            env["GOALFLOW_SUBFLOW_STARTS"] = str(POSTGRES_SUBFLOW_STARTS)
        idle = server.cpu_seconds() or 0.0
        with profiled(args.profile, backend, server.pid) as wrap:
            extra = ["--composites", str(args.composites)] if args.composites else []
            report = _child(wrap(_plan_command(args, *extra)), env)
        report["server_cpu_s"] = round((server.cpu_seconds() or 0.0) - idle, 2)
        report["server_peak_rss_mib"] = round(server.peak_rss_mib() or 0.0, 1)
    return report


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=580, help="N leaf tasks")
    parser.add_argument("--depth", type=int, default=1, help="D layers (width N/D)")
    parser.add_argument("--latency", type=float, default=10.0, help="L seconds per answer")
    parser.add_argument("--jitter", type=float, default=0.0, help="+- J seconds, uniform")
    parser.add_argument("--rpm", type=int, default=3500, help="R requests per minute")
    parser.add_argument("--tpm", type=int, default=None, help="T tokens per minute")
    parser.add_argument(
        "--limiter",
        choices=["window", "bucket"],
        default="window",
        help="the test server's limiter: a sliding minute that allows it all at once, or "
        "a token bucket holding one second's worth (as most providers enforce)",
    )
    parser.add_argument(
        "--untold",
        action="store_true",
        help="do not tell goalflow the rate: it learns it from the x-ratelimit headers and "
        "429s (its concurrency is set to what the told rate would give)",
    )
    parser.add_argument(
        "--backends", default="sqlite,postgres", help="comma list of sqlite, postgres"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="sample the runner and the Prefect server with py-spy (pip install py-spy); "
        "writes collapsed stacks to DIR and prints where each spends its CPU",
    )
    parser.add_argument(
        "--composites",
        type=int,
        default=0,
        help="K composite tasks (two leaves each) beside the first layer of the Prefect "
        "runs, for the subflows' start delay (LB and bare are of the plan without them)",
    )
    parser.add_argument("--tokens-per-call", type=int, default=1200, help=argparse.SUPPRESS)
    args = parser.parse_args()
    plan = layered_plan(args.tasks, args.depth)
    figures: dict[str, Any] = {"scenario": vars(args)}
    figures["lb_s"] = run_virtual(_simulate(plan, args, "graph"))
    figures["one_at_a_time_s"] = run_virtual(_simulate(plan, args, "serial"))
    figures["level_by_level_s"] = run_virtual(_simulate(plan, args, "levels"))
    server = OpenAITestServer(
        latency=args.latency,
        jitter=args.jitter,
        seed=1,
        rpm=args.rpm,
        tpm=args.tpm,
        limiter=args.limiter,
        models=[MODEL],
        default=answer_any_task,
    )
    with server:
        bare = _child(_plan_command(args, "--bare"), _child_env(server.base_url, args))
        if "seconds" not in bare:
            raise SystemExit(f"the bare run failed: {bare['error']}")
        figures["bare_s"] = bare["seconds"]
        figures["bare_429s"] = server.stats.rate_limited
        for backend in filter(None, args.backends.split(",")):
            server.reset()
            run = _prefect_run(backend, server.base_url, args)
            stats = server.stats
            if "seconds" in run:
                run["efficiency"] = round(figures["lb_s"] / run["seconds"], 3)
                run["rpm_achieved"] = round(stats.completed / run["seconds"] * 60, 1)
                run["overhead_per_task_ms"] = round(
                    (run["seconds"] - figures["bare_s"]) / args.tasks * 1000, 2
                )
                run["median_task_overhead_ms"] = round(
                    (run["task_median_s"] - bare["task_median_s"]) * 1000, 1
                )
                run["x_faster_than_one_at_a_time"] = round(
                    figures["one_at_a_time_s"] / run["seconds"], 2
                )
                run["runner_cpu_ms_per_task"] = round(run["cpu_s"] * 1000 / args.tasks, 1)
                run["server_cpu_ms_per_task"] = round(run["server_cpu_s"] * 1000 / args.tasks, 1)
            run.update(
                http_429s=stats.rate_limited,
                retries=stats.requests - stats.completed,
                max_in_flight=stats.max_in_flight,
            )
            figures[backend] = run
    print(
        f"{'':16}{'makespan s':>12}{'efficiency':>12}{'429s':>6}{'lost':>6}{'RSS MiB':>10}"
        f"{'task ovh ms':>13}{'CPU ms/task runner':>20}{'server':>8}{'start delay s leaf':>19}"
        f"{'subflow':>9}"
    )
    for name in ("lb_s", "bare_s", "one_at_a_time_s", "level_by_level_s"):
        print(f"{name[:-2]:16}{figures[name]:>12.2f}{figures['lb_s'] / figures[name]:>12.3f}")
    for backend in filter(None, args.backends.split(",")):
        r = figures[backend]
        if "seconds" in r:
            print(
                f"{backend:16}{r['seconds']:>12.2f}{r['efficiency']:>12.3f}"
                f"{r['http_429s']:>6}{r['failed']:>6}{r['peak_rss_mib']:>10.0f}"
                f"{r['median_task_overhead_ms']:>13.1f}{r['runner_cpu_ms_per_task']:>20.1f}"
                f"{r['server_cpu_ms_per_task']:>8.1f}{_seconds(r['leaf_start_delay_s']):>19}"
                f"{_seconds(r['subflow_start_delay_s']):>9}"
            )
        else:
            print(f"{backend:16} failed: {r['error'][-300:]}")
    print(json.dumps(figures, default=str))


if __name__ == "__main__":
    main()
