"""The goal suite (issue 12): checkable goals run through goalflow, and the solved rate.

    .venv/bin/python benchmarks/goals.py                      # the offline model (no OPENAI_*)
    .venv/bin/python benchmarks/goals.py --endpoint scripted  # reference solutions: 100 % expected
    OPENAI_API_KEY=... .venv/bin/python benchmarks/goals.py --model gpt-4o-mini
    .venv/bin/python benchmarks/goals.py --only count-vowels,arith-sum
    .venv/bin/python benchmarks/goals.py --category format,multistep
    .venv/bin/python benchmarks/goals.py --list

Each goal (``benchmarks/goal_suite``) runs through the real ``achieve_goal`` flow, one
after another, on a throwaway ``prefect server start`` (SQLite; ``--api-url`` uses a
running server instead), with reflection off (``--reflection`` turns it on) and the task
cache off, so that every run pays for its own answers. Its deliverables are judged by the
goal's exact check. Endpoints:

  offline    goalflow starts its offline model for each goal (the default when neither
             OPENAI_API_KEY nor OPENAI_BASE_URL is set)
  env        the OpenAI-compatible endpoint of OPENAI_BASE_URL / OPENAI_API_KEY, the model
             of --model (or GOALFLOW_MODEL; default gpt-4o-mini)
  scripted   the project's OpenAI-compatible test server, answering every call from the
             goal's reference solution: this checks goalflow's plumbing apart from any
             model, so anything below 100 % is a bug (the run then exits with status 1)

Prints per goal: solved, status, tasks by kind, model calls, tokens, seconds (and why an
unsolved goal is wrong); then the rate per category, and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from goal_suite import CATEGORIES, Goal, select
from goal_suite.scripted import REFERENCE_MODEL, ReferenceModel

from goalflow.testing import OpenAITestServer
from goalflow.testing.prefect_process import PrefectServerProcess

KEY = "sk-goal-suite"


def _names(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    configured = bool(os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL"))
    parser.add_argument(
        "--endpoint",
        choices=("offline", "env", "scripted"),
        default="env" if configured else "offline",
        help="who answers (default: env when OPENAI_* is set, else offline)",
    )
    parser.add_argument("--model", help="model name on the endpoint")
    parser.add_argument("--only", type=_names, help="comma-separated goal ids, in run order")
    parser.add_argument(
        "--category", type=_names, help=f"comma-separated categories: {', '.join(CATEGORIES)}"
    )
    parser.add_argument("--list", action="store_true", help="list the goals and exit")
    parser.add_argument("--reflection", action="store_true", help="reflect while goals run")
    parser.add_argument("--max-usd", type=float, help="money budget of each goal")
    parser.add_argument("--max-seconds", type=float, help="time budget of each goal")
    parser.add_argument("--api-url", help="a running Prefect server's API URL to use")
    parser.add_argument(
        "--records", type=Path, help="also write one JSON line per goal (with deliverables)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="Prefect's INFO logs too")
    return parser.parse_args()


def _configure(args: argparse.Namespace, server: OpenAITestServer | None) -> None:
    """The environment goalflow reads when each goal starts."""
    if not args.verbose:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    if server is not None:
        os.environ.update(
            OPENAI_BASE_URL=server.base_url,
            OPENAI_API_KEY=KEY,
            GOALFLOW_MODEL=REFERENCE_MODEL,
            GOALFLOW_PRICES=json.dumps({REFERENCE_MODEL: {"input": 0, "output": 0}}),
        )
    elif args.endpoint == "offline":
        for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "GOALFLOW_LLM_BLOCK"):
            os.environ.pop(name, None)
    elif not (os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL")):
        sys.exit("--endpoint env needs OPENAI_BASE_URL and/or OPENAI_API_KEY")


async def _sandbox_line() -> str:
    from goalflow.orchestration.code_tasks import ready_sandbox
    from goalflow.sandbox.config import SandboxConfig

    ready, reason = await ready_sandbox(SandboxConfig())
    return "sandbox ready" if ready else f"CODE TASKS ARE OFF: {reason}"


async def _run(goals: list[Goal], args: argparse.Namespace, model: ReferenceModel | None) -> bool:
    from goal_suite.run import HEADER, run_goal, summary
    from prefect.logging.handlers import APILogHandler
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from goalflow.orchestration.guard import RunGuard

    options: dict[str, Any] = {
        "reflection": args.reflection,
        "task_cache": False,
        "model": args.model,
        "max_usd": args.max_usd,
        "max_seconds": args.max_seconds,
    }
    options = {name: value for name, value in options.items() if value is not None}
    model_name = REFERENCE_MODEL if model else args.model or os.environ.get("GOALFLOW_MODEL")
    shown = model_name or ("the offline default" if args.endpoint == "offline" else "default")
    print(f"{len(goals)} goals, endpoint {args.endpoint}, model {shown}, "
          f"reflection {'on' if args.reflection else 'off'}, {await _sandbox_line()}")  # fmt: skip
    print(HEADER, flush=True)
    outcomes = []
    if args.records:
        args.records.write_text("")
    with temporary_settings(updates={PREFECT_API_URL: os.environ["PREFECT_API_URL"]}):
        for goal in goals:
            if model is not None:
                model.goal = goal
            outcome = await run_goal(goal, options=options)
            outcomes.append(outcome)
            print(outcome.line(), flush=True)
            if args.records:
                with args.records.open("a") as records:
                    records.write(json.dumps(outcome.record()) + "\n")
            if RunGuard.signal_received is not None:  # SIGTERM or Ctrl-C stopped that goal
                print(f"stopped by {RunGuard.signal_received.name}: the suite ends here")
                break
        await APILogHandler.aflush()  # before the server goes: runs log to it in batches
    result = summary(outcomes)
    print()
    for category, rate in result["by_category"].items():
        print(f"{category:<11} {rate['solved']:>3} of {rate['goals']:<3} {CATEGORIES[category]}")
    print(f"{'all':<11} {result['solved']:>3} of {result['goals']:<3} "
          f"median {result['median_seconds']} s, {result['median_calls']} model calls")  # fmt: skip
    print(json.dumps({"endpoint": args.endpoint, "model": model_name, **result}))
    return bool(result["solved"] == result["goals"])


def main() -> None:
    args = _arguments()
    try:
        goals = select(args.only, args.category)
    except ValueError as e:
        sys.exit(str(e))
    if args.list:
        for goal in goals:
            print(f"{goal.id:<26} {goal.category:<11} {' '.join(goal.text.split())}")
        return
    if not goals:
        sys.exit("no goal matches --only and --category")
    model = ReferenceModel() if args.endpoint == "scripted" else None
    server = (
        OpenAITestServer(api_key=KEY, models=(REFERENCE_MODEL,), default=model) if model else None
    )
    if server is not None:
        server.start()
    try:
        _configure(args, server)
        if args.api_url:
            os.environ["PREFECT_API_URL"] = args.api_url
            all_solved = asyncio.run(_run(goals, args, model))
        else:
            with PrefectServerProcess() as prefect:
                os.environ["PREFECT_API_URL"] = prefect.api_url
                all_solved = asyncio.run(_run(goals, args, model))
    finally:
        if server is not None:
            server.stop()
    if model is not None and not all_solved:
        sys.exit(1)  # the reference solutions are right: a miss is goalflow's plumbing


if __name__ == "__main__":
    main()
