"""The same plan's makespan with leaf tasks on threads, on Dask and on Ray, in one run.

Starts the OpenAI-compatible test server (latency L, optional R requests/min) and a
fresh `prefect server start` on SQLite, then runs one generated plan of N leaf tasks in
D layers through ``achieve_goal`` in a child process per runner (``plan_run
--task-runner``), each with the same concurrency C and its own empty result storage
(so the task cache answers nothing; ``threads-nocache`` runs with it off, to show what
caching costs the default path). Dask and Ray are local clusters started by the
goal (``GOALFLOW_RUNNER_WORKERS`` worker processes / CPUs), and their start is part of
the makespan, as it is for a user. Prints a table (makespan, ratio to threads, tasks
completed, 429s, peak RSS of the flow process) and one JSON line.

    .venv/bin/python benchmarks/runners.py --tasks 200 --depth 5 --latency 0.5 --concurrency 4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Any

from goalflow.testing import OpenAITestServer
from goalflow.testing.plans import answer_any_task
from goalflow.testing.prefect_process import PrefectServerProcess

MODEL = "bench-model"
RUNNERS = ("threads", "threads-nocache", "dask", "ray")


def _run(runner: str, api_url: str, base_url: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"goalflow-results-{runner}-") as results:
        env = {
            **os.environ,
            "PREFECT_API_URL": api_url,
            "PREFECT_RESULTS_LOCAL_STORAGE_PATH": results,
            "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
            "OPENAI_BASE_URL": base_url,
            "OPENAI_API_KEY": "sk-bench",
            "GOALFLOW_MODEL": MODEL,
            "GOALFLOW_PRICES": json.dumps({MODEL: {"input": 0, "output": 0}}),
            "GOALFLOW_MAX_TASKS": "5000",
            "GOALFLOW_RUNNER_WORKERS": str(args.workers),
        }
        if args.rpm:
            env["GOALFLOW_REQUESTS_PER_MINUTE"] = str(args.rpm)
        if runner.endswith("-nocache"):
            env["GOALFLOW_TASK_CACHE"] = "false"
        command = [sys.executable, "-m", "goalflow.testing.plan_run", "--tasks", str(args.tasks)]
        command += ["--depth", str(args.depth), "--concurrency", str(args.concurrency)]
        command += ["--task-runner", runner.removesuffix("-nocache")]
        child = subprocess.run(command, env=env, capture_output=True, text=True)
    reports = [line for line in child.stdout.splitlines() if line.startswith("{")]
    if child.returncode != 0 or not reports:
        return {"error": child.stderr[-2000:]}
    return dict(json.loads(reports[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=200, help="N leaf tasks")
    parser.add_argument("--depth", type=int, default=5, help="D layers (width N/D)")
    parser.add_argument("--latency", type=float, default=0.5, help="L seconds per answer")
    parser.add_argument("--rpm", type=int, default=None, help="R requests per minute")
    parser.add_argument("--concurrency", type=int, default=4, help="C tasks at once")
    parser.add_argument("--workers", type=int, default=2, help="Dask workers / Ray CPUs")
    parser.add_argument("--runners", default=",".join(RUNNERS), help="comma list")
    args = parser.parse_args()
    figures: dict[str, Any] = {"scenario": vars(args)}
    # The floor with perfect parallelism at C: ceil(N / C) rounds of L seconds.
    figures["floor_s"] = round(-(-args.tasks // args.concurrency) * args.latency, 2)
    server = OpenAITestServer(
        latency=args.latency, rpm=args.rpm, models=[MODEL], default=answer_any_task
    )
    runners = [r for r in args.runners.split(",") if r]
    with server, PrefectServerProcess() as prefect:
        for runner in runners:
            server.reset()
            run = _run(runner, prefect.api_url, server.base_url, args)
            stats = server.stats
            run.update(http_429s=stats.rate_limited, model_calls=stats.completed)
            figures[runner] = run
    base = figures.get("threads", {}).get("seconds")
    print(f"{'runner':16}{'makespan s':>12}{'x threads':>11}{'done':>7}{'429s':>6}{'RSS MiB':>9}")
    print(f"{'floor':16}{figures['floor_s']:>12.2f}")
    for runner in runners:
        r = figures[runner]
        if "seconds" not in r:
            print(f"{runner:16} failed: {r['error'][-300:]}")
            continue
        if base:
            r["ratio_to_threads"] = round(r["seconds"] / base, 2)
        print(
            f"{runner:16}{r['seconds']:>12.2f}{r.get('ratio_to_threads', 0):>11.2f}"
            f"{r['completed']:>7}{r['http_429s']:>6}{r['peak_rss_mib']:>9.0f}"
        )
    print(json.dumps(figures, default=str))


if __name__ == "__main__":
    main()
