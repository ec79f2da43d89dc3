"""The Prefect side of a goal: the goal flow, composite subflows and leaf task runs.

``achieve_goal`` plans (a ``plan`` task run), then runs the graph with the scheduler.
A composite task that was broken down runs as a subflow (``composite: <title>``)
holding its sub-plan; each leaf task is a task run (``task: <title>``). The plan,
its graph, every task's output and the final report are Markdown artifacts.
"""

from __future__ import annotations

import asyncio
import textwrap
import time
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from goalflow.code_runs import sandbox_code_runner
from goalflow.errors import ConfigError, GoalflowError, PlanFileError, TaskError
from goalflow.executor import CodeRunner, run_leaf
from goalflow.llm import LLM
from goalflow.plan import Plan, Task, TaskSpec
from goalflow.planner import PlanningOptions, make_plan
from goalflow.progress import Observer, current_observer
from goalflow.provider import open_llm
from goalflow.report import (
    GoalResult,
    graph_markdown,
    plan_markdown,
    report_markdown,
    task_output_markdown,
    task_reports,
)
from goalflow.scheduler import TaskOutcome, run_graph
from goalflow.settings import Settings

__all__ = ["GoalFailedError", "achieve_goal", "check_goal"]


class GoalFailedError(GoalflowError):
    """The goal ran but did not produce every deliverable; ``result`` says what did."""

    def __init__(self, message: str, result: GoalResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class _Run:
    """What the runs of one goal share; reached through a context variable."""

    llm: LLM
    goal: str
    settings: Settings
    observer: Observer
    slots: asyncio.Semaphore
    code_runner: CodeRunner | None = None
    outcomes: dict[str, TaskOutcome] = field(default_factory=dict)


_RUN: ContextVar[_Run] = ContextVar("goalflow_run")


def check_goal(goal: str) -> str:
    """The goal text, stripped; a clear error when there is none."""
    text = goal.strip()
    if not text:
        raise ConfigError('the goal is empty: say what you want done, e.g. "Write a haiku"')
    return text


def _goal_run_name() -> str:
    parameters: dict[str, Any] = flow_run.get_parameters()
    goal = parameters.get("goal") or ""
    plan = parameters.get("plan")
    if not goal and plan is not None:
        goal = plan.goal if isinstance(plan, Plan) else dict(plan).get("goal", "")
    return "goal: " + textwrap.shorten(str(goal), width=60, placeholder="…")


@flow(name="achieve-goal", flow_run_name=_goal_run_name, log_prints=False)
async def achieve_goal(
    goal: str = "",
    plan: Plan | None = None,
    model: str | None = None,
    concurrency: int | None = None,
    max_depth: int | None = None,
    llm_block: str | None = None,
    sandbox_block: str | None = None,
) -> GoalResult:
    """Plan ``goal`` (or take a saved ``plan``), run its tasks, hand back the deliverables.

    Unset parameters come from the environment (see ``goalflow.settings``).
    """
    started = time.monotonic()
    overrides: dict[str, Any] = {
        "concurrency": concurrency,
        "max_depth": max_depth,
        "llm_block": llm_block,
        "sandbox_block": sandbox_block,
    }
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    if plan is not None:
        errors = plan.errors(max_tasks=settings.max_tasks)
        if errors:
            raise PlanFileError("the plan is not valid:\n- " + "\n- ".join(errors))
        goal = plan.goal
    goal = check_goal(goal)
    logger = get_run_logger()
    async with open_llm(settings, model=model) as llm:
        run = _Run(
            llm=llm,
            goal=goal,
            settings=settings,
            observer=current_observer(),
            slots=asyncio.Semaphore(settings.concurrency),
            code_runner=await sandbox_code_runner(settings, llm, goal),
        )
        run.observer.attach(llm.ledger)
        token = _RUN.set(run)
        try:
            if plan is None:
                plan = await plan_goal(goal)
            await acreate_markdown_artifact(
                plan_markdown(plan), key="goal-plan", description="The plan"
            )
            await acreate_markdown_artifact(
                graph_markdown(plan), key="goal-graph", description="The task graph"
            )
            run.observer.plan_ready(plan)
            logger.info(
                "running %d tasks with concurrency %d", plan.leaf_count(), settings.concurrency
            )
            values = await _run_level(plan.tasks, plan.inputs, prefix="")
        finally:
            _RUN.reset(token)
    result = _result(plan, run, values, time.monotonic() - started)
    await acreate_markdown_artifact(
        report_markdown(result), key="goal-report", description="The goal report"
    )
    logger.info(result.message)
    if result.status == "failed":
        raise GoalFailedError(result.message, result)
    return result


@task(name="plan", task_run_name="plan goal", cache_policy=NO_CACHE)
async def plan_goal(goal: str) -> Plan:
    run = _RUN.get()
    options = PlanningOptions.from_settings(run.settings, code_tasks=run.code_runner is not None)
    return await make_plan(run.llm, goal, options, on_step=run.observer.step)


@task(name="leaf-task", task_run_name="task: {task.title}", cache_policy=NO_CACHE)
async def run_leaf_task(task: TaskSpec, inputs: dict[str, str], path: str) -> dict[str, str]:
    run = _RUN.get()
    async with run.slots:
        outputs = await run_leaf(
            run.llm,
            run.goal,
            task,
            inputs,
            attempts=run.settings.task_attempts,
            code_runner=run.code_runner,
        )
    await acreate_markdown_artifact(
        task_output_markdown(path, task.title, outputs), description=f"Output of {path}"
    )
    get_run_logger().info("produced %s", ", ".join(outputs))
    return outputs


@flow(name="composite-task", flow_run_name="composite: {task.title}", log_prints=False)
async def run_composite(task: Task, inputs: dict[str, str], path: str) -> dict[str, str]:
    """One composite task's sub-plan, run as its own graph."""
    values = await _run_level(task.subtasks, inputs, prefix=path + "/")
    missing = [name for name in task.outputs if name not in values]
    if missing:
        run = _RUN.get()
        failed = [
            f"'{p}': {o.error}"
            for p, o in run.outcomes.items()
            if p.startswith(path + "/") and o.status == "failed"
        ]
        raise TaskError(
            f"composite task '{task.id}' did not produce {', '.join(missing)}"
            + (f" because {'; '.join(failed)}" if failed else "")
        )
    return {name: values[name] for name in task.outputs}


async def _run_level(
    tasks: Sequence[Task], available: dict[str, str], *, prefix: str
) -> dict[str, str]:
    """Run one level of the plan; return every value that exists afterwards."""
    run = _RUN.get()
    by_id = {t.id: t for t in tasks}

    async def run_one(spec: TaskSpec, inputs: dict[str, str]) -> dict[str, str]:
        full = by_id[spec.id]
        path = prefix + full.id
        if full.subtasks:
            return await run_composite(full, inputs, path)
        return await run_leaf_task(spec, inputs, path)

    def changed(outcome: TaskOutcome) -> None:
        path = prefix + outcome.task_id
        run.outcomes[path] = outcome
        run.observer.task_changed(path, outcome)

    outcomes = await run_graph(
        tasks, available, run_one, concurrency=run.settings.concurrency, on_change=changed
    )
    values = dict(available)
    for outcome in outcomes.values():
        values.update(outcome.outputs)
    return values


def _result(plan: Plan, run: _Run, values: dict[str, str], seconds: float) -> GoalResult:
    deliverables = {name: values[name] for name in plan.deliverables if name in values}
    missing = [name for name in plan.deliverables if name not in values]
    reports = task_reports(plan.tasks, run.outcomes)
    failed = [r for r in reports if r.status == "failed"]
    if missing:
        reasons = "; ".join(f"{r.path}: {r.error}" for r in failed) or "no reason recorded"
        status, message = "failed", f"goal failed: {', '.join(missing)} not produced ({reasons})"
    else:
        status = "completed"
        message = f"goal completed: {len(deliverables)} deliverable(s) from {len(reports)} tasks"
    return GoalResult(
        goal=plan.goal,
        status=status,
        message=message,
        deliverables=deliverables,
        tasks=reports,
        usage=run.llm.ledger.summary().as_dict(),
        seconds=round(seconds, 3),
        flow_run_id=flow_run.get_id(),
        plan=plan,
    )
