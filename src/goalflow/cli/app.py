"""The ``goalflow`` command: run a goal, plan one for review, approve a waiting plan.

Exit codes: 0 the goal was achieved; 1 it ran and failed, was stopped by a budget, a
cancellation or a rejected plan, or the model failed; 2 the input cannot work as given
(empty goal, invalid plan file, bad settings, a run that waits for no decision); 130 and
143 it was stopped by SIGINT (Ctrl-C) or SIGTERM (the run ends Cancelled).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import sys
from pathlib import Path
from typing import Annotated
from uuid import UUID

import typer

from goalflow.cli.console import err, fail
from goalflow.cli.image import image_app
from goalflow.cli.progress import ProgressView
from goalflow.cli.sandbox import sandbox_app
from goalflow.cli.server import server_app, setup
from goalflow.core.plan import Plan
from goalflow.core.progress import observe
from goalflow.core.task import MAX_DEPTH
from goalflow.errors import ConfigError, GoalflowError

__all__ = ["app", "approve_command", "main", "plan_command", "result_command", "run"]

app = typer.Typer(
    help="goalflow: give it a goal; an LLM plans it, Prefect runs it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _version(shown: bool) -> None:
    if shown:
        print(f"goalflow {importlib.metadata.version('goalflow')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """goalflow: give it a goal; an LLM plans it, Prefect runs it."""


app.add_typer(sandbox_app, name="sandbox")
app.add_typer(image_app, name="image")
app.add_typer(server_app, name="server")
app.command()(setup)

ModelOpt = Annotated[
    str | None, typer.Option("--model", "-m", help="Model name (default: GOALFLOW_MODEL).")
]
TaskModelOpt = Annotated[
    str | None,
    typer.Option(
        "--task-model",
        help="A cheaper model for the tasks the plan marks simple, at --model's endpoint or "
        "GOALFLOW_TASK_LLM_BLOCK's (default: GOALFLOW_TASK_MODEL; unset: --model does "
        "everything).",
    ),
]
DepthOpt = Annotated[
    int | None,
    typer.Option(
        min=0, max=MAX_DEPTH, help="How often composite tasks may be broken down (default 2)."
    ),
]


@app.command()
def run(
    goal: Annotated[
        str | None, typer.Argument(help="What you want done; '-' reads it from stdin.")
    ] = None,
    goal_file: Annotated[
        Path | None, typer.Option("--goal-file", help="Read the goal from this file.")
    ] = None,
    plan: Annotated[
        Path | None, typer.Option("--plan", help="Run this saved plan instead of planning.")
    ] = None,
    model: ModelOpt = None,
    task_model: TaskModelOpt = None,
    concurrency: Annotated[int | None, typer.Option(min=1, help="Tasks running at once.")] = None,
    max_depth: DepthOpt = None,
    max_usd: Annotated[
        float | None,
        typer.Option(help="Money budget in USD (default: GOALFLOW_MAX_USD, the budget block)."),
    ] = None,
    max_seconds: Annotated[
        float | None,
        typer.Option(help="Time budget in seconds (default: GOALFLOW_MAX_SECONDS, the block)."),
    ] = None,
    budget_block: Annotated[
        str | None, typer.Option(help="A saved BudgetPolicy block (GOALFLOW_BUDGET_BLOCK).")
    ] = None,
    approve: Annotated[
        bool | None,
        typer.Option(
            "--approve/--no-approve",
            help="Wait for a person to approve, edit or reject the plan before it runs "
            "(default: GOALFLOW_APPROVE).",
            show_default=False,
        ),
    ] = None,
    approval_timeout: Annotated[
        float | None,
        typer.Option(
            min=1, help="Seconds the plan waits for approval, then it is rejected (default 3600)."
        ),
    ] = None,
    task_runner: Annotated[
        str | None,
        typer.Option(
            help="Where leaf tasks run: threads, dask or ray (default: GOALFLOW_TASK_RUNNER)."
        ),
    ] = None,
    runner_address: Annotated[
        str | None,
        typer.Option(help="A Dask scheduler or Ray cluster to use; unset: a local one."),
    ] = None,
    task_cache: Annotated[
        bool | None,
        typer.Option(
            "--task-cache/--no-task-cache",
            help="Reuse finished tasks' results of an earlier run of the same plan "
            "(default: GOALFLOW_TASK_CACHE, on).",
            show_default=False,
        ),
    ] = None,
    fresh: Annotated[
        bool | None,
        typer.Option(
            "--fresh",
            help="Reuse no cached task result: every task runs again (its result replaces "
            "the cached one).",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result as JSON on stdout.")
    ] = False,
) -> None:
    """Plan GOAL (or take --plan), run its tasks on Prefect, print the deliverables.

    With no PREFECT_API_URL, the local Prefect server is started (or reused) so that
    the run, its tasks and artifacts stay visible in the UI afterwards. With --approve,
    the run pauses after planning and says how to approve it.
    """
    from goalflow.core.report import GoalResult, estimated_part
    from goalflow.deploy.local_server import prefect_api
    from goalflow.errors import GoalFailedError
    from goalflow.orchestration.goal_flow import achieve_goal
    from goalflow.orchestration.guard import RunGuard
    from goalflow.orchestration.inputs import check_goal, load_plan, read_goal
    from goalflow.orchestration.parameters import flow_parameters
    from goalflow.settings import GoalOptions, Settings

    try:
        goal = read_goal(goal, goal_file)
        if plan and goal:
            raise ConfigError(
                "give a goal or --plan, not both: a saved plan runs the goal it was made for"
            )
        options = GoalOptions.given(
            {
                "model": model,
                "task_model": task_model,
                "concurrency": concurrency,
                "max_depth": max_depth,
                "max_usd": max_usd,
                "max_seconds": max_seconds,
                "budget_block": budget_block,
                "approve": approve,
                "approval_timeout": approval_timeout,
                "task_runner": task_runner,
                "runner_address": runner_address,
                "task_cache": task_cache,
                "fresh": fresh,
            }
        )
        settings = Settings.load()  # a variable that cannot work is said before the rest
        saved = load_plan(plan, max_tasks=settings.max_tasks) if plan else None
        goal = saved.goal if saved else check_goal(goal or "")
        with prefect_api(settings.server_port) as local, ProgressView(err) as progress:
            if local:
                progress.step(f"Prefect server: {local} (UI: {local[:-4]})")
            with observe(progress):
                result: GoalResult = asyncio.run(
                    achieve_goal(goal, plan=saved, **flow_parameters(options))
                )
    except GoalFailedError as e:
        result = e.result
    except GoalflowError as e:
        if as_json:  # stdout stays one JSON document, whatever happened
            print(json.dumps({"status": "error", "error": str(e)}, indent=2))
        raise fail(e) from None
    except Exception as e:  # a defect of goalflow's: its traceback follows on stderr
        if as_json:
            error = f"unexpected {type(e).__name__}: {e}"
            print(json.dumps({"status": "error", "error": error}, indent=2))
        raise
    if as_json:
        print(result.model_dump_json(indent=2, exclude={"plan"}))
    else:
        for name, value in result.deliverables.items():
            err.rule(name)
            print(value)
        usage = result.usage
        unpriced = (
            f" (no price known for {', '.join(usage.unpriced_models)}: counted as $0; give "
            "it in GOALFLOW_PRICES)"
            if usage.unpriced_models
            else ""
        )
        err.print(
            f"{result.message}; {usage.calls} model calls, {usage.prompt_tokens}+"
            f"{usage.completion_tokens} tokens, ${usage.cost_usd:.4f}{estimated_part(usage)}"
            f"{unpriced}, "
            f"{result.seconds:.1f} s",
            highlight=False,
            markup=False,
        )
    if RunGuard.signal_received is not None:  # stopped by SIGTERM or SIGINT: 143 or 130
        raise typer.Exit(128 + RunGuard.signal_received)
    if result.status != "completed":
        raise typer.Exit(1)


@app.command("result")
def result_command(
    flow_run_id: Annotated[str, typer.Argument(help="The goal run's flow run id.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the outcome as JSON on stdout.")
    ] = False,
) -> None:
    """Print a finished goal run's deliverables from the Prefect server (e.g. after
    `prefect deployment run ... --watch`). Exit 0 when the run completed, 1 when not."""
    from goalflow.deploy.local_server import prefect_api
    from goalflow.orchestration.results import run_outcome
    from goalflow.settings import Settings

    try:
        with prefect_api(Settings.load().server_port):
            outcome = asyncio.run(run_outcome(flow_run_id))
    except GoalflowError as e:
        if as_json:
            print(json.dumps({"status": "error", "error": str(e)}, indent=2))
        raise fail(e) from None
    if as_json:
        print(outcome.model_dump_json(indent=2))
    else:
        for name, value in outcome.deliverables.items():
            err.rule(name)
            print(value)
        err.print(f"{outcome.name}: {outcome.state}: {outcome.message}", markup=False)
    if not outcome.completed:
        raise typer.Exit(1)


@app.command("plan")
def plan_command(
    goal: Annotated[str, typer.Argument(help="What you want done.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the plan here (default: stdout).")
    ] = None,
    model: ModelOpt = None,
    task_model: TaskModelOpt = None,
    max_depth: DepthOpt = None,
) -> None:
    """Plan GOAL without running it: review or edit the plan, then `run --plan`."""
    from goalflow.agent.planner import make_plan
    from goalflow.llm.provider import open_llm
    from goalflow.orchestration.code_tasks import ready_sandbox
    from goalflow.orchestration.inputs import check_goal, planning_options
    from goalflow.orchestration.options import resolve_options
    from goalflow.settings import GoalOptions

    async def planned() -> Plan:
        resolved = await resolve_options(
            GoalOptions.given({"model": model, "task_model": task_model, "max_depth": max_depth})
        )
        settings = resolved.settings
        config, reason = await ready_sandbox(resolved.sandbox)
        if config is None:
            err.print(f"code tasks are off: {reason}", highlight=False)
        options = planning_options(settings, code_tasks=config is not None, tiers=resolved.tiers)
        async with open_llm(
            resolved.endpoint, local_model=settings.local_model, model=settings.model
        ) as llm:
            return await make_plan(llm, text, options, on_step=err.print)

    try:
        text = check_goal(goal)
        result = asyncio.run(planned())
    except GoalflowError as e:
        raise fail(e) from None
    document = result.model_dump_json(indent=2)
    if output is None:
        print(document)
        return
    partial = output.with_name(output.name + ".partial")
    partial.write_text(document + "\n", encoding="utf-8")
    partial.replace(output)
    err.print(f"plan written to {output}: {result.leaf_count()} tasks", highlight=False)


@app.command("approve")
def approve_command(
    flow_run_id: Annotated[UUID, typer.Argument(help="The id of the run that waits.")],
    plan: Annotated[
        Path | None, typer.Option("--plan", help="Run this plan instead (a plan JSON file).")
    ] = None,
    reject: Annotated[bool, typer.Option("--reject", help="Reject the plan.")] = False,
    note: Annotated[
        str, typer.Option(help="Why; a rejection's note ends up in the run's final state.")
    ] = "",
    show: Annotated[
        bool, typer.Option("--show", help="Print the waiting plan as JSON; decide nothing.")
    ] = False,
) -> None:
    """Approve, edit (--plan FILE) or reject (--reject) the plan a run waits on.

    Sends the same decision as the Resume form of the Prefect UI. Talks to
    PREFECT_API_URL, or the local Prefect server when it is unset.
    """
    from goalflow.deploy.local_server import prefect_api
    from goalflow.orchestration.approval import Decision, send_decision, waiting_plan
    from goalflow.orchestration.inputs import load_plan
    from goalflow.settings import Settings

    try:
        if sum((plan is not None, reject, show)) > 1:
            raise ConfigError("give one of --plan, --reject and --show")
        settings = Settings.load()
        edited = load_plan(plan, max_tasks=settings.max_tasks) if plan else None
        decision: Decision = "reject" if reject else "edit" if edited else "approve"
        with prefect_api(settings.server_port):
            if show:
                print(asyncio.run(waiting_plan(flow_run_id)))
                return
            asyncio.run(send_decision(flow_run_id, decision, plan=edited, note=note))
    except GoalflowError as e:
        raise fail(e) from None
    done = {"approve": "approved", "edit": "replaced by your plan", "reject": "rejected"}
    err.print(f"the plan of run {flow_run_id} is {done[decision]}", highlight=False)


def main() -> None:
    # A fresh ephemeral Prefect server can take longer than Prefect's 20 s default here.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    # The progress view replaces Prefect's console log; the server keeps every log line.
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    try:
        if "--json" in sys.argv[1:]:
            sys.exit(_app_for_json())
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


def _app_for_json() -> int | None:
    """The app for a command line with ``--json``: stdout is one JSON document also when
    the command line itself is wrong (``--max-usd abc``), which Typer says before any
    command runs; stderr says it as usual. Returns the exit code."""
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as e:
        print(json.dumps({"status": "error", "error": e.format_message()}, indent=2))
        show = getattr(e, "show", None)  # the usage line and the error, on stderr
        if show is not None:
            show()
        return e.exit_code
    return code if isinstance(code, int) else None


if __name__ == "__main__":
    main()
