"""The Prefect side of a goal: the goal flow, composite subflows and leaf task runs.

``achieve_goal`` plans (a ``plan`` task run), then runs the graph with the scheduler.
A composite task that was broken down runs as a subflow (``composite: <title>``)
holding its sub-plan; each leaf task is a task run (``task: <title>``). The plan,
its graph, every task's output and the final report are Markdown artifacts.

With ``approve``, the run pauses after planning until a person approves, edits or
rejects the plan (``goalflow.approval``); an edited plan runs instead of the first one.

A run that is stopped (money or time budget spent, cancelled on the server, the plan
rejected, judged stuck or off topic by reflection) keeps what finished, reports it, and
raises :class:`GoalStoppedError`, so the flow run's final state says why it stopped.

While the top-level graph runs, a :class:`~goalflow.reflector.Reflector` watches it and
may revise it (see :mod:`goalflow.reflector`). Each finished task emits a
``goalflow.progress`` event, and the end of the run ``goalflow.goal.finished``: the
``goalflow-reflect-on-stall`` automation watches for progress that stops, and the
``goalflow-budget-exceeded`` automation stands down.
"""

from __future__ import annotations

import asyncio
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from pydantic import ValidationError

from goalflow.approval import review_plan
from goalflow.backend import SubflowGate, subflow_starts
from goalflow.blocks import load_budget, load_reflection
from goalflow.budget import BudgetAlert, MoneyBudget, spending_for
from goalflow.code_runs import sandbox_code_runner
from goalflow.context_slot import ContextSlot
from goalflow.errors import (
    ConfigError,
    GoalflowError,
    PlanFileError,
    PlanRejectedError,
    TaskError,
)
from goalflow.executor import CodeRunner, run_leaf
from goalflow.guard import RunGuard, RunStopped, emit_budget_event, emit_goal_event
from goalflow.llm import LLM
from goalflow.pacing import task_concurrency
from goalflow.plan import Plan, Task, TaskSpec, describe_validation_error
from goalflow.planner import PlanningOptions, make_plan
from goalflow.progress import Observer, current_observer
from goalflow.provider import open_llm
from goalflow.reflection import reporting_attempts
from goalflow.reflector import Reflector
from goalflow.report import (
    GoalResult,
    graph_markdown,
    plan_markdown,
    report_markdown,
    task_output_markdown,
    task_reports,
)
from goalflow.runners import RemoteLeaves, open_remote_leaves
from goalflow.scheduler import GraphRun, TaskOutcome
from goalflow.settings import Settings
from goalflow.task_cache import cache_scope, cached

__all__ = ["GoalFailedError", "GoalStoppedError", "achieve_goal", "check_goal", "load_plan"]


class GoalFailedError(GoalflowError):
    """The goal ran but did not produce every deliverable; ``result`` says what did."""

    def __init__(self, message: str, result: GoalResult) -> None:
        super().__init__(message)
        self.result = result


class GoalStoppedError(GoalFailedError):
    """The goal was stopped before it finished (a budget, or a cancellation); the
    message names the reason and ``result`` holds what finished."""


@dataclass
class _Run:
    """What the runs of one goal share; reached through a context variable."""

    llm: LLM
    goal: str
    settings: Settings
    observer: Observer
    slots: asyncio.Semaphore
    concurrency: int
    subflows: SubflowGate
    guard: RunGuard
    code_runner: CodeRunner | None = None
    plan: Plan | None = None
    outcomes: dict[str, TaskOutcome] = field(default_factory=dict)
    reflector: Reflector | None = None
    graph: GraphRun | None = None  # the top level, once it runs
    flow_run_id: UUID | None = None
    leaves: RemoteLeaves | None = None  # Dask or Ray (goalflow.runners); None: in-process

    @property
    def cache_scope(self) -> str | None:
        """The leaf-task cache key's scope (goalflow.task_cache); None: no caching."""
        return cache_scope(self.llm.config.model, self.goal) if self.settings.task_cache else None

    @property
    def output_artifacts(self) -> bool:
        """Whether each task's output gets an artifact (plans up to the setting's size)."""
        return self.plan is None or self.plan.leaf_count() <= self.settings.output_artifacts


_RUN: ContextSlot[_Run] = ContextSlot("goalflow_run")  # picklable: see context_slot


def check_goal(goal: str) -> str:
    """The goal text, stripped; a clear error when there is none."""
    text = goal.strip()
    if not text:
        raise ConfigError('the goal is empty: say what you want done, e.g. "Write a haiku"')
    return text


def load_plan(path: Path) -> Plan:
    """A saved plan file, checked against the plan rules before anything runs."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise PlanFileError(f"cannot read the plan file {path}: {e.strerror}") from e
    try:
        plan = Plan.model_validate_json(text)
    except ValidationError as e:
        raise PlanFileError(
            f"{path} is not a valid goalflow plan:\n- "
            + "\n- ".join(describe_validation_error(e))
            + '\nWrite one with: goalflow plan "GOAL" -o plan.json'
        ) from e
    errors = plan.errors()
    if errors:
        raise PlanFileError(f"the plan in {path} breaks the plan rules:\n- " + "\n- ".join(errors))
    return plan


def _settings(overrides: dict[str, Any]) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as e:
        raise ConfigError(
            "the goal's settings cannot work:\n- " + "\n- ".join(describe_validation_error(e))
        ) from e


def _goal_run_name() -> str:
    parameters: dict[str, Any] = flow_run.get_parameters()
    goal = parameters.get("goal") or ""
    plan = parameters.get("plan")
    if not goal and parameters.get("plan_file"):
        goal = f"plan {parameters['plan_file']}"
    if not goal and plan is not None:
        goal = plan.goal if isinstance(plan, Plan) else dict(plan).get("goal", "")
    return "goal: " + textwrap.shorten(str(goal), width=60, placeholder="…")


@flow(name="achieve-goal", flow_run_name=_goal_run_name, log_prints=False)
async def achieve_goal(
    goal: str = "",
    plan: Plan | None = None,
    plan_file: str | None = None,
    model: str | None = None,
    concurrency: int | None = None,
    max_depth: int | None = None,
    max_usd: float | None = None,
    max_seconds: float | None = None,
    budget_block: str | None = None,
    llm_block: str | None = None,
    sandbox_block: str | None = None,
    approve: bool | None = None,
    approval_timeout: float | None = None,
    reflection: bool | None = None,
    reflection_block: str | None = None,
    reflect_every_tasks: int | None = None,
    reflect_every_seconds: float | None = None,
    stuck_repeats: int | None = None,
    max_revisions: int | None = None,
    task_runner: str | None = None,
    runner_address: str | None = None,
    task_cache: bool | None = None,
) -> GoalResult:
    """Plan ``goal`` (or take a saved ``plan``, or the one in ``plan_file``), run its
    tasks, hand back the deliverables.

    Unset parameters come from the environment (see ``goalflow.settings``), then the
    budgets from the BudgetPolicy block named by ``budget_block`` and the reflection
    settings from the ReflectionPolicy block named by ``reflection_block``. With
    ``approve``, the plan waits up to ``approval_timeout`` seconds for a person's decision.
    ``task_runner`` ("threads", "dask" or "ray", with ``runner_address``) says where leaf
    tasks run (goalflow.runners); ``task_cache`` reuses finished tasks' results
    (goalflow.task_cache).
    """
    started = time.monotonic()
    settings = _settings(
        {
            "concurrency": concurrency,
            "max_depth": max_depth,
            "max_usd": max_usd,
            "max_seconds": max_seconds,
            "budget_block": budget_block,
            "llm_block": llm_block,
            "sandbox_block": sandbox_block,
            "approve": approve,
            "approval_timeout": approval_timeout,
            "reflection": reflection,
            "reflection_block": reflection_block,
            "reflect_every_tasks": reflect_every_tasks,
            "reflect_every_seconds": reflect_every_seconds,
            "stuck_repeats": stuck_repeats,
            "max_revisions": max_revisions,
            "task_runner": task_runner,
            "runner_address": runner_address,
            "task_cache": task_cache,
        }
    )
    if plan is None and plan_file:
        plan = load_plan(Path(plan_file))
    if plan is not None:
        errors = plan.errors(max_tasks=settings.max_tasks)
        if errors:
            raise PlanFileError("the plan is not valid:\n- " + "\n- ".join(errors))
        goal = plan.goal
    goal = check_goal(goal)
    logger = get_run_logger()
    policy = await load_budget(settings)
    reflecting = await load_reflection(settings)
    run_id = UUID(flow_run.get_id()) if flow_run.get_id() else None
    guard = RunGuard(run_id, max_seconds=policy.max_seconds if settings.time_guard else None)

    def on_alert(alert: BudgetAlert) -> None:
        emit_budget_event(alert, run_id)
        if alert.kind == "exceeded":
            guard.stop(
                f"the money budget of ${alert.limit_usd:g} cannot cover the next model call "
                f"(${alert.spent_usd:.4f} spent)"
            )
        else:
            logger.warning("%.0f %% of the money budget is spent", alert.fraction * 100)

    money = MoneyBudget(policy.max_usd, policy.warn_at, on_alert) if policy.max_usd else None
    async with open_llm(settings, model=model, budget=money) as llm:
        rpm, latency = llm.config.requests_per_minute, llm.config.expected_latency
        concurrency = task_concurrency(settings.concurrency, rpm, latency)
        run = _Run(
            llm=llm,
            goal=goal,
            settings=settings,
            observer=current_observer(),
            slots=asyncio.Semaphore(concurrency),
            concurrency=concurrency,
            subflows=SubflowGate(subflow_starts(settings.subflow_starts)),
            guard=guard,
            code_runner=await sandbox_code_runner(settings, llm, goal),
            flow_run_id=run_id,
        )
        if reflecting.enabled:
            run.reflector = Reflector(
                llm=llm,
                policy=reflecting,
                guard=guard,
                flow_run_id=run_id,
                max_tasks=settings.max_tasks,
                kinds=("llm", "code") if run.code_runner else ("llm",),
                max_seconds=policy.max_seconds,
            )
        run.observer.attach(llm.ledger, policy.max_seconds)
        token = _RUN.set(run)
        try:
            plan, values = await guard.run(_on_task_runner(run, plan))
            stopped = None
        except RunStopped as stop:
            plan = run.plan or plan
            values, stopped = _finished_values(plan, run), stop.reason
        except PlanRejectedError as rejected:
            plan = run.plan or plan
            values, stopped = _finished_values(plan, run), str(rejected)
        finally:
            _RUN.reset(token)
            emit_goal_event("goalflow.goal.finished", run_id, {})
    result = _result(goal, plan, run, values, time.monotonic() - started, stopped)
    await acreate_markdown_artifact(
        report_markdown(result), key="goal-report", description="The goal report"
    )
    logger.info(result.message)
    if result.status == "stopped":
        raise GoalStoppedError(result.message, result)
    if result.status == "failed":
        raise GoalFailedError(result.message, result)
    return result


async def _on_task_runner(run: _Run, plan: Plan | None) -> tuple[Plan, dict[str, str]]:
    """Plan and run with the goal's task runner started first: an unreachable cluster
    fails before planning spends anything."""
    async with open_remote_leaves(run.settings, run.llm, run.concurrency) as leaves:
        run.leaves = leaves
        return await _plan_and_run(run, plan)


async def _plan_and_run(run: _Run, plan: Plan | None) -> tuple[Plan, dict[str, str]]:
    if plan is None:
        plan = await plan_goal(run.goal)
    run.plan = plan
    await _publish_plan(plan)
    if run.settings.approve:
        with run.guard.clock_held():  # a person's time is not the goal's time budget
            approval = await review_plan(
                plan,
                wait_seconds=run.settings.approval_timeout,
                check=lambda p: p.errors(max_tasks=run.settings.max_tasks),
                on_wait=run.observer.awaiting_approval,
            )
        if approval.edited:
            plan = run.plan = approval.plan
            await _publish_plan(plan)
    run.observer.plan_ready(plan)
    emit_goal_event("goalflow.progress", run.flow_run_id, {"stage": "plan ready"})
    get_run_logger().info(
        "running %d tasks with concurrency %d", plan.leaf_count(), run.concurrency
    )
    if run.reflector is None:
        return plan, await _run_level(plan.tasks, plan.inputs, prefix="")
    run.reflector.plan_ready(plan)
    return plan, await _run_level(plan.tasks, plan.inputs, prefix="", reflector=run.reflector)


async def _publish_plan(plan: Plan) -> None:
    await acreate_markdown_artifact(plan_markdown(plan), key="goal-plan", description="The plan")
    await acreate_markdown_artifact(
        graph_markdown(plan), key="goal-graph", description="The task graph"
    )


def _finished_values(plan: Plan | None, run: _Run) -> dict[str, str]:
    """The values that exist after a stop: goal inputs and finished top-level outputs."""
    values = dict(plan.inputs) if plan else {}
    for path, outcome in run.outcomes.items():
        if "/" not in path and outcome.status == "completed":
            values.update(outcome.outputs)
    return values


@task(name="plan", task_run_name="plan goal", cache_policy=NO_CACHE)
async def plan_goal(goal: str) -> Plan:
    run = _RUN.get()
    options = PlanningOptions.from_settings(run.settings, code_tasks=run.code_runner is not None)
    return await make_plan(run.llm, goal, options, on_step=run.observer.step)


@task(name="leaf-task", task_run_name="task: {task.title}", cache_policy=NO_CACHE)
async def run_leaf_task(
    task: TaskSpec, inputs: dict[str, str], path: str, cache_scope: str | None = None
) -> dict[str, str]:
    run = _RUN.get()
    reflector = run.reflector

    def failed(failure: str) -> None:
        looping = reflector.failed_attempt(path, task, inputs, failure) if reflector else None
        if looping is not None:  # more tries would fail the same way: stop paying for them
            raise TaskError(f"stopped as stuck: {looping.evidence}")

    async with run.slots:
        with spending_for(path), reporting_attempts(failed):
            try:
                outputs = await run_leaf(
                    run.llm,
                    run.goal,
                    task,
                    inputs,
                    attempts=run.settings.task_attempts,
                    code_runner=run.code_runner,
                )
            except GoalflowError as e:
                if reflector is not None:
                    reflector.failed_attempt(path, task, inputs, str(e))
                raise
    if run.output_artifacts:
        await acreate_markdown_artifact(
            task_output_markdown(path, task.title, outputs), description=f"Output of {path}"
        )
        get_run_logger().info("produced %s", ", ".join(outputs))
    else:
        get_run_logger().info("produced %s", _outputs_line(outputs))
    return outputs


def _outputs_line(outputs: dict[str, str], width: int = 300) -> str:
    """The outputs in one log line, each cut to ``width`` characters."""
    return "; ".join(
        f"{name}: {value if len(value) <= width else value[:width] + '…'}"
        for name, value in outputs.items()
    )


@flow(name="composite-task", flow_run_name="composite: {task.title}", log_prints=False)
async def run_composite(task: Task, inputs: dict[str, str], path: str) -> dict[str, str]:
    """One composite task's sub-plan, run as its own graph."""
    SubflowGate.body_started()  # created: let other subflows start while this one runs
    values = await _run_level(task.subtasks, inputs, prefix=path + "/")
    await SubflowGate.body_finishing()
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
    tasks: Sequence[Task],
    available: dict[str, str],
    *,
    prefix: str,
    reflector: Reflector | None = None,
) -> dict[str, str]:
    """Run one level of the plan; return every value that exists afterwards.

    With a ``reflector`` (the top level), reflection watches and may revise this level.
    """
    run = _RUN.get()
    by_id = {t.id: t for t in tasks}

    async def run_one(spec: TaskSpec, inputs: dict[str, str]) -> dict[str, str]:
        full = by_id.get(spec.id)  # tasks a revision added are plain leaf tasks
        path = prefix + spec.id
        if full is not None and full.subtasks:
            async with run.subflows.around_subflow():
                return await run_composite(full, inputs, path)
        scope = run.cache_scope
        if run.leaves is not None and spec.kind == "llm":
            async with run.slots:
                return await run.leaves.run(
                    spec,
                    inputs,
                    path,
                    goal=run.goal,
                    cache_scope=scope,
                    artifact=run.output_artifacts,
                )
        leaf = cached(run_leaf_task, run.settings.task_cache_expiry) if scope else run_leaf_task
        return await leaf(spec, inputs, path, scope)

    def changed(outcome: TaskOutcome) -> None:
        path = prefix + outcome.task_id
        run.outcomes[path] = outcome
        run.observer.task_changed(path, outcome)
        if outcome.status == "completed":
            emit_goal_event("goalflow.progress", run.flow_run_id, {"task": path})
        if run.reflector is not None:
            run.reflector.task_changed(path, outcome)

    graph = GraphRun(
        tasks,
        available,
        run_one,
        concurrency=run.concurrency,
        on_change=changed,
        on_stall=reflector.on_stall if reflector else None,
    )
    if reflector is None:
        outcomes = await graph.run()
    else:
        run.graph = graph
        async with reflector.watching(graph):
            outcomes = await graph.run()
    values = dict(available)
    for outcome in outcomes.values():
        values.update(outcome.outputs)
    return values


def _result(
    goal: str,
    plan: Plan | None,
    run: _Run,
    values: dict[str, str],
    seconds: float,
    stopped: str | None,
) -> GoalResult:
    planned = plan or run.plan
    plan = _revised(planned, run.graph)
    wanted = plan.deliverables if plan else []
    deliverables = {name: values[name] for name in wanted if name in values}
    missing = [name for name in wanted if name not in values]
    reports = task_reports(_every_task(planned, run.graph), run.outcomes) if planned else []
    failed = [r for r in reports if r.status == "failed"]
    if stopped is not None:
        done = sum(r.status == "completed" for r in reports)
        status = "stopped"
        message = (
            f"goal stopped: {stopped}; {done} of {len(reports)} tasks finished, "
            f"{len(deliverables)} of {len(wanted)} deliverable(s) produced"
        )
    elif missing:
        reasons = "; ".join(f"{r.path}: {r.error}" for r in failed) or "no reason recorded"
        status, message = "failed", f"goal failed: {', '.join(missing)} not produced ({reasons})"
    else:
        status = "completed"
        message = f"goal completed: {len(deliverables)} deliverable(s) from {len(reports)} tasks"
    return GoalResult(
        goal=goal,
        status=status,
        message=message,
        deliverables=deliverables,
        tasks=reports,
        usage=run.llm.ledger.summary().as_dict(),
        seconds=round(seconds, 3),
        flow_run_id=flow_run.get_id(),
        plan=plan,
        reflections=run.reflector.records if run.reflector else [],
    )


def _as_tasks(plan: Plan, specs: Sequence[TaskSpec]) -> list[Task]:
    """Plan tasks for ``specs``: the planned ones (with their sub-plans) where they exist."""
    planned = {task.id: task for task in plan.tasks}
    return [
        planned[s.id].model_copy(update={"value": s.value, "effort": s.effort})
        if s.id in planned
        else Task(**s.model_dump())
        for s in specs
    ]


def _revised(plan: Plan | None, graph: GraphRun | None) -> Plan | None:
    """The plan as reflection left it: removed and failed tasks out, added ones in."""
    if plan is None or graph is None or graph.version == 0:
        return plan
    return plan.model_copy(update={"tasks": _as_tasks(plan, graph.tasks)})


def _every_task(plan: Plan, graph: GraphRun | None) -> list[Task]:
    """For the report: the plan's tasks and every task a revision removed."""
    if graph is None or graph.version == 0:
        return plan.tasks
    return _as_tasks(plan, graph.every_task)
