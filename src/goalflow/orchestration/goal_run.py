"""One goal's run: the object that owns everything a run of ``achieve_goal`` uses.

A :class:`GoalRun` is built from the goal (or a saved plan) and its resolved options
(:mod:`goalflow.orchestration.options`). :meth:`GoalRun.run` opens the model, checks
the sandbox, starts the task runner, then plans (a ``plan`` task run), waits for
approval when asked, and runs the graph: each composite task that was broken down runs
as a subflow ``composite: <title>`` holding its sub-plan, each leaf task as a task run
``task: <title>`` (:mod:`goalflow.orchestration.leaf`). The plan, its graph, every
task's output (up to ``GOALFLOW_OUTPUT_ARTIFACTS`` leaf tasks) and the final report are
Markdown artifacts.

A run that is stopped (money or time budget spent, cancelled on the server, the plan
rejected, judged stuck or off topic by reflection) keeps what finished and reports it;
the result says why it stopped. Each deliverable is handed back as the value itself: the
chatter a model wraps it in is taken off (:mod:`goalflow.core.values`) and logged. While
the top level runs, a :class:`~goalflow.orchestration.reflector.Reflector` watches it and
may revise it. Each finished task emits a ``goalflow.progress`` event, and the end of the run
``goalflow.goal.finished``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Any, cast
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State

from goalflow.agent.executor import CodeRunner, run_leaf
from goalflow.agent.planner import make_plan
from goalflow.core.budget import BudgetAlert, MoneyBudget, spending_for
from goalflow.core.pacing import Gate
from goalflow.core.plan import Plan
from goalflow.core.progress import Observer
from goalflow.core.rates import task_concurrency
from goalflow.core.report import (
    GoalResult,
    finished_values,
    goal_result,
    graph_markdown,
    plan_markdown,
    report_markdown,
)
from goalflow.core.scheduler import GraphRun, TaskOutcome
from goalflow.core.stuck import reporting_attempts
from goalflow.core.task import Task, TaskSpec
from goalflow.core.values import clean_deliverables
from goalflow.errors import GoalflowError, PlanRejectedError, TaskError
from goalflow.llm.client import LLM
from goalflow.llm.config import LLMConfig
from goalflow.llm.provider import GoalModels, open_models
from goalflow.orchestration.approval import review_plan
from goalflow.orchestration.code_tasks import sandbox_code_runner
from goalflow.orchestration.events import emit_budget_event, emit_goal_event
from goalflow.orchestration.guard import RunGuard, RunStopped, unsupervised
from goalflow.orchestration.inputs import check_goal, planning_options
from goalflow.orchestration.leaf import LeafContext, RunRef, host_of, hosting, run_leaf_task
from goalflow.orchestration.money_stop import MoneyStop
from goalflow.orchestration.options import ResolvedOptions
from goalflow.orchestration.reflector import Reflector
from goalflow.orchestration.shared_limit import shared_gate
from goalflow.orchestration.subflow_gate import SubflowGate, subflow_starts
from goalflow.orchestration.task_cache import cache_scope, cached
from goalflow.orchestration.task_runners import RemoteLeaves, open_remote_leaves

__all__ = ["DELIVERABLES_ARTIFACT", "GoalRun", "plan_goal", "run_composite"]

DELIVERABLES_ARTIFACT = "goal-deliverables"
"""The key of the table artifact of a goal run's deliverables (name, value)."""


class GoalRun:
    """Everything one run of a goal owns: model, ledger, pacer, guard, observer, the
    graph and the reflector. Built by ``achieve_goal``; :meth:`run` does the work."""

    def __init__(
        self,
        goal: str,
        plan: Plan | None,
        options: ResolvedOptions,
        *,
        flow_run_id: UUID | None,
        observer: Observer,
    ) -> None:
        self.plan = plan  # the goal's plan, revisions applied: the one owner
        self.planned: Plan | None = None  # the plan as it started running
        self.artifacts = True
        self.goal = check_goal(plan.goal if plan else goal)
        self.options = options
        self.settings = options.settings
        self.flow_run_id = flow_run_id
        self.observer = observer
        max_seconds = options.budget.max_seconds if self.settings.time_guard else None
        self.guard = RunGuard(flow_run_id, max_seconds=max_seconds, on_signals=unsupervised())
        self.outcomes: dict[str, TaskOutcome] = {}
        self.cached_paths: set[str] = set()  # leaf tasks that reused an earlier result
        self.graph: GraphRun | None = None  # the top level, when reflection watches it
        self.reflector: Reflector | None = None
        self.subflows = SubflowGate(subflow_starts(self.settings.subflow_starts))
        self.started = time.monotonic()
        # Set when run() opens them:
        self.llm: LLM
        self.task_llm: LLM | None = None  # the task model, for the tasks marked simple
        self.money_stop: MoneyStop
        self.concurrency = 1
        self.slots = asyncio.Semaphore(1)
        self.code_runner: CodeRunner | None = None
        self.leaves: RemoteLeaves | None = None
        self.ref = RunRef("")

    async def run(self) -> GoalResult:
        """Plan (or take the saved plan), run, report; the result says how it ended."""
        stopped: str | None = None
        values: dict[str, str] = {}
        async with AsyncExitStack() as stack:
            await self._open(stack)
            try:
                values = await self.guard.run(self._plan_and_run())
                stopped = self.money_stop.reason  # every level ended, held or short
            except RunStopped as stop:
                stopped = stop.reason
            except PlanRejectedError as rejected:
                stopped = str(rejected)
            finally:
                self.money_stop.close()
                exceeded = self.money_stop.alert()
                if exceeded is not None:
                    emit_budget_event(exceeded, self.flow_run_id)
                emit_goal_event("goalflow.goal.finished", self.flow_run_id, {})
            if stopped is not None:
                values = finished_values(self.plan, self.outcomes)
        values = self._clean_deliverables(values)
        result = goal_result(
            self.goal,
            self.planned or self.plan,
            self.plan,
            self.graph,
            self.outcomes,
            values,
            stopped=stopped,
            usage=self.llm.ledger.summary(),
            seconds=time.monotonic() - self.started,
            flow_run_id=str(self.flow_run_id) if self.flow_run_id else None,
            reflections=self.reflector.records if self.reflector else [],
        )
        await acreate_markdown_artifact(
            report_markdown(result), key="goal-report", description="The goal report"
        )
        await acreate_table_artifact(
            [{"deliverable": name, "value": value} for name, value in result.deliverables.items()],
            key=DELIVERABLES_ARTIFACT,
            description="The goal's deliverables (goalflow result RUN_ID prints them)",
        )
        return result

    def _rate_limit_wait(self) -> str:
        """What the model calls are waiting for, when it is the endpoint's rate limit."""
        paused = max(llm.pacer.paused_for for llm in filter(None, (self.llm, self.task_llm)))
        if paused <= 0:
            return ""
        return f"every model call was waiting {paused:.0f} s more for the endpoint's rate limit"

    async def _open(self, stack: AsyncExitStack) -> None:
        """The model, the sandbox, the reflector and the task runner, in that order: an
        unreachable cluster fails before planning spends anything."""
        budget = self.options.budget
        money = (
            MoneyBudget(budget.max_usd, budget.warn_at, self._on_alert) if budget.max_usd else None
        )
        self.llm, self.task_llm = await stack.enter_async_context(
            open_models(
                self.options.endpoint,
                self.options.task_endpoint,
                local_model=self.settings.local_model,
                local_task_model=self.settings.local_task_model,
                model=self.settings.model,
                budget=money,
                gate_for=_shared_gate,
                prompt_counts=self.settings.prompt_counts,
            )
        )
        self.guard.waiting = self._rate_limit_wait
        self.money_stop = MoneyStop(self.guard, self.outcomes, self.llm.ledger)
        self.llm.on_notice = self._step
        configs = [self.llm.config]
        if self.task_llm is not None:
            self.task_llm.on_notice = self._step
            configs.append(self.task_llm.config)
            self._step(
                f"tasks marked simple run on {self.task_llm.config.model}"
                f"{_at(self.task_llm, self.llm)}, the rest on {self.llm.config.model}"
            )
        # Each endpoint's pacer keeps its own calls under its limits; tasks run as many
        # at once as the endpoint that can keep the most busy allows.
        self.concurrency = max(
            task_concurrency(
                self.settings.concurrency,
                config.requests_per_minute,
                config.expected_latency,
                config.burst_seconds,
            )
            for config in configs
        )
        self.slots = asyncio.Semaphore(self.concurrency)
        self.code_runner = await sandbox_code_runner(
            self.options.sandbox, self.llm, self.goal, attempts=self.settings.code_attempts
        )
        if self.options.reflection.enabled:
            self.reflector = Reflector(
                llm=self.llm,
                policy=self.options.reflection,
                guard=self.guard,
                flow_run_id=self.flow_run_id,
                max_tasks=self.settings.max_tasks,
                kinds=("llm", "code") if self.code_runner else ("llm",),
                max_seconds=budget.max_seconds,
                on_revised=self._revised,
            )
        self.observer.attach(self.llm.ledger, budget.max_seconds)
        self.ref = stack.enter_context(hosting(self))
        self.leaves = await stack.enter_async_context(
            open_remote_leaves(self.settings, GoalModels(self.llm, self.task_llm), self.concurrency)
        )

    def _clean_deliverables(self, values: dict[str, str]) -> dict[str, str]:
        """The values with each deliverable as the bare value, every change logged."""
        if self.plan is None:
            return values
        cleaned, changes = clean_deliverables(self.plan, values)
        for name, notes in changes.items():
            self._step(f"settled: deliverable '{name}': {'; '.join(notes)}")
        return cleaned

    def _step(self, message: str) -> None:
        """A step of planning or a settlement: in the run's logs, and to the observer."""
        get_run_logger().info("%s", message)
        self.observer.step(message)

    def _revised(self, plan: Plan) -> None:
        self.plan = plan

    def _on_alert(self, alert: BudgetAlert) -> None:
        if alert.kind == "exceeded":  # its event goes out when the run stops
            self.money_stop.begin(alert.call_usd)
        else:
            emit_budget_event(alert, self.flow_run_id)
            get_run_logger().warning("%.0f %% of the money budget is spent", alert.fraction * 100)

    async def _plan_and_run(self) -> dict[str, str]:
        if self.plan is None:
            self.plan = await plan_goal(self.goal, self.ref)
        plan = self.plan
        await _publish_plan(plan)
        if self.settings.approve:
            with self.guard.clock_held():  # a person's time is not the goal's time budget
                approval = await review_plan(
                    plan,
                    wait_seconds=self.settings.approval_timeout,
                    check=lambda p: p.errors(max_tasks=self.settings.max_tasks),
                    on_wait=self.observer.awaiting_approval,
                )
            if approval.edited:
                plan = self.plan = approval.plan
                await _publish_plan(plan)
        self.planned = plan
        # Each task's output gets an artifact up to a plan size; larger plans log it.
        self.artifacts = plan.leaf_count() <= self.settings.output_artifacts
        self.observer.plan_ready(plan)
        emit_goal_event("goalflow.progress", self.flow_run_id, {"stage": "plan ready"})
        get_run_logger().info(
            "running %d tasks with concurrency %d", plan.leaf_count(), self.concurrency
        )
        if self.reflector is not None:
            self.reflector.plan_ready(plan)
        return await self.run_level(plan.tasks, plan.inputs, prefix="", top=True)

    async def new_plan(self) -> Plan:
        """The goal's plan from the model (the ``plan`` task run's work)."""
        options = planning_options(
            self.settings, code_tasks=self.code_runner is not None, tiers=self.task_llm is not None
        )
        return await make_plan(self.llm, self.goal, options, on_step=self._step)

    async def run_level(
        self, tasks: Sequence[Task], available: dict[str, str], *, prefix: str, top: bool = False
    ) -> dict[str, str]:
        """Run one level of the plan; return every value that exists afterwards. At the
        top level, reflection (if on) watches the level and may revise it."""
        by_id = {t.id: t for t in tasks}
        reflector = self.reflector if top else None

        async def run_one(spec: TaskSpec, inputs: dict[str, str]) -> dict[str, str]:
            full = by_id.get(spec.id)  # tasks a revision added are plain leaf tasks
            path = prefix + spec.id
            if full is not None and full.subtasks:
                async with self.subflows.around_subflow():
                    return await run_composite(full, inputs, path, self.ref)
            return await self._leaf(spec, inputs, path)

        def changed(outcome: TaskOutcome) -> None:
            path = prefix + outcome.task_id
            outcome.cached = outcome.status == "completed" and path in self.cached_paths
            self.outcomes[path] = outcome
            self.observer.task_changed(path, outcome)
            if outcome.status == "completed":
                emit_goal_event("goalflow.progress", self.flow_run_id, {"task": path})
            if self.reflector is not None:
                self.reflector.task_changed(path, outcome)

        graph = GraphRun(
            tasks,
            available,
            run_one,
            concurrency=self.concurrency,
            on_change=changed,
            on_stall=reflector.on_stall if reflector else None,
        )
        with self.money_stop.level(graph):
            if reflector is None:
                outcomes = await graph.run()
            else:
                self.graph = graph
                async with reflector.watching(graph):
                    outcomes = await graph.run()
        values = dict(available)
        for outcome in outcomes.values():
            values.update(outcome.outputs)
        return values

    async def _leaf(self, spec: TaskSpec, inputs: dict[str, str], path: str) -> dict[str, str]:
        models = " ".join(llm.config.model for llm in filter(None, (self.llm, self.task_llm)))
        scope = cache_scope(models, self.goal) if self.settings.task_cache else None
        artifact = self.artifacts
        if self.leaves is not None and spec.kind == "llm":
            async with self.slots:
                outputs, reused = await self.leaves.run(
                    spec, inputs, path, goal=self.goal, cache_scope=scope, artifact=artifact
                )
            if reused:
                self.cached_paths.add(path)
            return outputs
        expiry, fresh = self.settings.task_cache_expiry, self.settings.fresh
        leaf = cached(run_leaf_task, expiry, fresh=fresh) if scope else run_leaf_task
        context = LeafContext(
            goal=self.goal, attempts=self.settings.task_attempts, artifact=artifact, run=self.ref
        )
        call: Any = leaf(spec, inputs, path, scope, context, return_state=True)  # a coroutine
        state: State[dict[str, str]] = await call
        if state.name == "Cached":
            self.cached_paths.add(path)
        return await state.aresult()

    async def run_leaf(self, task: TaskSpec, inputs: dict[str, str], path: str) -> dict[str, str]:
        """One leaf task with the goal's model and sandbox, in a concurrency slot; its
        failed attempts are told to the reflector, which stops a task that loops."""
        self.work_begun(path)
        reflector = self.reflector

        def failed(failure: str) -> None:
            looping = reflector.failed_attempt(path, task, inputs, failure) if reflector else None
            if looping is not None:  # more tries would fail the same way: stop paying for them
                raise TaskError(f"stopped as stuck: {looping.evidence}")

        async with self.slots:
            with spending_for(path), reporting_attempts(failed):
                try:
                    return await run_leaf(
                        self.llm,
                        self.goal,
                        task,
                        inputs,
                        attempts=self.settings.task_attempts,
                        code_runner=self.code_runner,
                        task_llm=self.task_llm,
                    )
                except GoalflowError as e:
                    if reflector is not None:
                        reflector.failed_attempt(path, task, inputs, str(e))
                    raise

    def work_begun(self, path: str) -> None:
        """The task at ``path`` (a leaf's task run, a composite's subflow) is running:
        its delay from ready goes in its outcome."""
        outcome = self.outcomes.get(path)
        if outcome is not None and outcome.started is not None:
            outcome.start_delay = time.monotonic() - outcome.started

    def failures_under(self, path: str) -> list[str]:
        """Why the tasks below ``path`` failed, for a composite's error."""
        return [
            f"'{p}': {o.error}"
            for p, o in self.outcomes.items()
            if p.startswith(path + "/") and o.status == "failed"
        ]


def _live(ref: RunRef) -> GoalRun:
    return cast(GoalRun, host_of(ref))


async def _publish_plan(plan: Plan) -> None:
    await acreate_markdown_artifact(plan_markdown(plan), key="goal-plan", description="The plan")
    await acreate_markdown_artifact(
        graph_markdown(plan), key="goal-graph", description="The task graph"
    )


@task(name="plan", task_run_name="plan goal", cache_policy=NO_CACHE)
async def plan_goal(goal: str, run: RunRef) -> Plan:
    return await _live(run).new_plan()


@flow(name="composite-task", flow_run_name="composite: {task.title}", log_prints=False)
async def run_composite(
    task: Task, inputs: dict[str, str], path: str, run: RunRef
) -> dict[str, str]:
    """One composite task's sub-plan, run as its own graph."""
    goal_run = _live(run)
    SubflowGate.body_started()  # created: let other subflows start while this one runs
    goal_run.work_begun(path)
    values = await goal_run.run_level(task.subtasks, inputs, prefix=path + "/")
    await SubflowGate.body_finishing()
    missing = [name for name in task.outputs if name not in values]
    if missing:
        failed = goal_run.failures_under(path)
        raise TaskError(
            f"composite task '{task.id}' did not produce {', '.join(missing)}"
            + (f" because {'; '.join(failed)}" if failed else "")
        )
    return {name: values[name] for name in task.outputs}


def _at(task_llm: LLM, llm: LLM) -> str:
    """Where the task model is, when another endpoint than the planning model's."""
    if task_llm.config.same_endpoint(llm.config):
        return ""
    return f" at {task_llm.config.endpoint}"


def _shared_gate(config: LLMConfig) -> Gate | None:
    """The endpoint's shared Prefect limit, when its block names one."""
    return shared_gate(config.shared_limit) if config.shared_limit else None
