"""Reflection inside a goal run, and the ``reflect`` flow the server starts.

A :class:`Reflector` watches one goal run: the stuck detector
(:mod:`goalflow.core.stuck`) hears of every failed attempt, model call and finished
task, and the reflector asks the model for a verdict (:mod:`goalflow.core.revision`; the
prompt is :func:`goalflow.agent.prompts.reflection_messages`) every K finished tasks,
every T seconds, at once on a stuck signal, when the graph cannot go on, and when the
server asks. One reflection runs at a time; requests made meanwhile
are merged into the next. Each is a task run ``reflect: <why>`` with its verdict as a
Markdown artifact and a ``goalflow.reflection.<verdict>`` event. A ``revise`` verdict
revises the running graph; ``stuck`` and ``off_topic`` stop the run through its guard.

The server asks through a Prefect Variable ``goalflow-reflect-<flow run id>``: the
``reflect`` flow (run by the ``goalflow-reflect-on-stall`` automation when a goal emits
no ``goalflow.progress`` event for a while) sets it; the goal run polls for it, deletes
it, and reflects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.variables import Variable

from goalflow.agent.prompts.reflection import reflection_messages
from goalflow.core.budget import LLMCall, spending_for
from goalflow.core.plan import Plan, PlanPatch
from goalflow.core.revision import (
    Reflection,
    ReflectionPolicy,
    ReflectionRecord,
    RunState,
    check_patch,
)
from goalflow.core.scheduler import GraphRun, TaskOutcome
from goalflow.core.stuck import StuckDetector, StuckSignal
from goalflow.core.task import TaskKind, TaskSpec
from goalflow.errors import GoalflowError
from goalflow.llm.client import LLM
from goalflow.orchestration.events import emit_goal_event
from goalflow.orchestration.guard import RunGuard

__all__ = ["REQUEST_POLL_SECONDS", "Reflector", "reflect", "request_name"]

REQUEST_POLL_SECONDS = 2.0
_TICK_SECONDS = 1.0
logger = logging.getLogger("goalflow.reflector")


def request_name(flow_run_id: UUID | str) -> str:
    """The Prefect Variable through which the server asks a goal run to reflect."""
    return f"goalflow-reflect-{flow_run_id}"


@dataclass
class Reflector:
    """Reflection for one goal run; see the module docstring."""

    llm: LLM
    policy: ReflectionPolicy
    guard: RunGuard
    flow_run_id: UUID | None
    max_tasks: int
    kinds: Sequence[TaskKind]
    max_seconds: float | None = None
    on_revised: Callable[[Plan], None] | None = None  # the plan's owner, told of each revision
    started: float = field(default_factory=time.monotonic)
    records: list[ReflectionRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.detector = StuckDetector(
            repeats=self.policy.repeats,
            stall_seconds=self.policy.stall_seconds,
            stall_calls=self.policy.stall_calls,
        )
        self.revisions = 0
        self._plan: Plan | None = None
        self._graph: GraphRun | None = None
        self._finished = 0
        self._why: list[str] = []
        self._signals: list[StuckSignal] = []
        self._looping: set[str] = set()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._closing = False
        self._last = time.monotonic()

    # -- what the goal run reports ------------------------------------------------------

    def plan_ready(self, plan: Plan) -> None:
        """The plan runs now; planning's calls (bounded by its own re-asks) are not watched."""
        self._plan = plan
        self.llm.ledger.subscribe(self._model_call)
        self._stuck(self.detector.plan_ready(plan.tasks))

    def task_changed(self, path: str, outcome: TaskOutcome) -> None:
        if outcome.status != "completed":
            return
        self._stuck(self.detector.task_finished(path, outcome.outputs))
        self._finished += 1
        every = self.policy.every_tasks
        if every and self._finished % every == 0:
            self.request(f"{self._finished} tasks finished")

    def failed_attempt(
        self, path: str, task: TaskSpec, inputs: dict[str, str], failure: str
    ) -> StuckSignal | None:
        """Record a failed attempt; the ``repeated_failure`` signal when it makes one."""
        signals = self.detector.failed_attempt(path, task, inputs, failure)
        self._stuck(signals)
        return next((s for s in signals if s.name == "repeated_failure"), None)

    def _model_call(self, call: LLMCall) -> None:
        self._stuck(self.detector.model_call(call.purpose, call.prompt_hash, call.cost_usd))

    def _stuck(self, signals: list[StuckSignal]) -> None:
        if signals:
            self._signals += signals
            self._looping.update(path.split("/")[0] for s in signals for path in s.tasks)
            self.request("stuck: " + "; ".join(s.name for s in signals))

    def request(self, why: str) -> None:
        """Reflect as soon as the reflection in flight, if any, has finished."""
        if why not in self._why:
            self._why.append(why)
        self._wake.set()

    # -- running -------------------------------------------------------------------------

    @asynccontextmanager
    async def watching(self, graph: GraphRun) -> AsyncIterator[None]:
        """Reflect on ``graph`` while the block runs."""
        self._graph = graph
        loop = asyncio.create_task(self._loop())
        try:
            yield
        except BaseException:
            # Stopped: a reflection in flight is cancelled; a poll of the server ends first
            # (cancelling it mid-request would leave its connection open).
            self._closing = True
            if self._lock.locked():
                loop.cancel()
            self._wake.set()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
            raise
        # The graph has finished: a reflection in flight ends (it is paid for), none starts.
        self._closing = True
        self._wake.set()
        await loop

    async def on_stall(self) -> None:
        """The graph cannot go on: reflect, unless a revision is no longer possible."""
        graph = self._graph
        assert graph is not None
        before = graph.version
        async with self._lock:  # a reflection in flight may fix it already
            pass
        if graph.version != before or self.revisions >= self.policy.max_revisions:
            return
        failed = [o.task_id for o in graph.outcomes.values() if o.status == "failed"]
        self.request("the plan cannot go on" + (f": {', '.join(failed)} failed" if failed else ""))
        await self._reflect_pending()

    async def _loop(self) -> None:
        next_poll = time.monotonic()
        while not self._closing:
            # Not asyncio.wait_for: on 3.11 it can lose a cancellation that races the wake.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_TICK_SECONDS):
                    await self._wake.wait()
            self._wake.clear()
            if self._closing:
                return
            self._stuck(self.detector.check_progress())
            every = self.policy.every_seconds
            if every and time.monotonic() - self._last >= every:
                self.request(f"{every:g} s since the last reflection")
            if self.flow_run_id is not None and time.monotonic() >= next_poll:
                next_poll = time.monotonic() + REQUEST_POLL_SECONDS
                await self._poll_server()
            await self._reflect_pending()

    async def _poll_server(self) -> None:
        name = request_name(self.flow_run_id or "")
        try:
            asked = await Variable.aget(name)
            if asked is None:
                return
            await Variable.aunset(name)
        except Exception as e:  # a blip of the API must not end the goal
            logger.debug("could not read %s: %s", name, e)
            return
        reason = asked.get("reason", "") if isinstance(asked, dict) else str(asked)
        self.request(f"asked by the server: {reason or 'no reason given'}")

    async def _reflect_pending(self) -> None:
        async with self._lock:
            if self._closing or not self._why or self._graph is None or self._plan is None:
                return
            why, self._why = "; ".join(self._why), []
            signals, self._signals = self._signals, []
            self._last = time.monotonic()
            record = await self._reflect(why, signals)
            self.records.append(record)
        if record.stop:  # out of the lock: ``watching`` tells a stop from this by the lock
            self.guard.stop(
                f"reflection found it {record.verdict.replace('_', ' ')}: {record.reason}"
            )

    async def _reflect(self, why: str, signals: list[StuckSignal]) -> ReflectionRecord:
        state = self.state()
        messages = reflection_messages(state, signals, why)
        if not self.llm.affordable(Reflection, messages, max_tokens=self.policy.max_tokens):
            return self._report(
                ReflectionRecord(
                    why=why,
                    verdict="skipped",
                    reason="the reflection call would not fit the money budget left",
                    signals=signals,
                    outcome="went on without reflection",
                )
            )
        try:
            return await reflect_step(self, why, signals, messages)
        except GoalflowError as e:
            return self._report(
                ReflectionRecord(
                    why=why,
                    verdict="failed",
                    reason=str(e),
                    signals=signals,
                    outcome="went on without reflection",
                )
            )

    def _report(self, record: ReflectionRecord) -> ReflectionRecord:
        logger.warning("reflection %s (%s): %s", record.verdict, record.why, record.reason)
        emit_goal_event(
            "goalflow.reflection.failed", self.flow_run_id, record.model_dump(mode="json")
        )
        return record

    def state(self) -> RunState:
        """The run as the model is shown it."""
        graph, plan = self._graph, self._plan
        assert graph is not None and plan is not None
        usage = self.llm.ledger.summary()
        return RunState(
            goal=plan.goal,
            deliverables=plan.deliverables,
            inputs=list(plan.inputs),
            tasks=graph.tasks,
            status={tid: o.status for tid, o in graph.outcomes.items()},
            errors={
                tid: o.error or "" for tid, o in graph.outcomes.items() if o.status == "failed"
            },
            produced={k: v for k, v in graph.values.items() if k not in plan.inputs},
            spent_usd=usage.cost_usd,
            limit_usd=usage.limit_usd,
            calls=usage.calls,
            elapsed_seconds=time.monotonic() - self.started,
            max_seconds=self.max_seconds,
            revisions_left=max(0, self.policy.max_revisions - self.revisions),
        )

    def act(self, verdict: Reflection) -> tuple[str, bool]:
        """Do what ``verdict`` says; say what was done, and whether the run must stop."""
        graph, plan = self._graph, self._plan
        assert graph is not None and plan is not None
        if self._closing:
            return "none: the tasks had all finished meanwhile", False
        if verdict.verdict == "on_track":
            return "went on", False
        if verdict.verdict == "done":
            missing = [name for name in plan.deliverables if name not in graph.values]
            if missing:
                return f"rejected: {', '.join(missing)} not produced yet; went on", False
            finished = [t.id for t in graph.tasks if graph.outcomes[t.id].status == "completed"]
            self._revised(plan.only(finished), "the goal is done")
            return "done: the unfinished tasks were dropped", False
        if verdict.patch is not None:
            applied = self._revise(verdict.patch, verdict.reason)
            if applied.startswith("applied") or verdict.verdict == "revise":
                return applied, False
            return f"{applied}; run stopped", True
        if verdict.verdict == "revise":
            return "rejected: a revise verdict needs a patch; went on", False
        return "run stopped", True

    def _revised(self, plan: Plan, reason: str) -> None:
        """``plan`` is the goal's plan now: the graph runs its tasks, the owner hears of it."""
        assert self._graph is not None
        self._plan = plan
        self._graph.revise(plan.tasks, reason)
        if self.on_revised is not None:
            self.on_revised(plan)

    def _revise(self, patch: PlanPatch, reason: str) -> str:
        graph = self._graph
        assert graph is not None
        if self.revisions >= self.policy.max_revisions:
            return f"rejected: no revisions left (at most {self.policy.max_revisions} per goal)"
        every = {t.id: t for t in graph.every_task}
        active = {t.id for t in graph.tasks}
        assert self._plan is not None
        plan, errors = check_patch(
            self.state(),
            self._plan.only(active),
            patch,
            looping={tid: every[tid] for tid in self._looping if tid in every},
            retired=[tid for tid in every if tid not in active],
            max_tasks=self.max_tasks,
            allowed_kinds=self.kinds,
        )
        if plan is None:
            return "rejected: " + "; ".join(errors)
        self._revised(plan, reason)
        self.revisions += 1
        changes = [f"cancelled {', '.join(patch.cancel)}" if patch.cancel else ""]
        changes.append(f"added {', '.join(t.id for t in patch.add)}" if patch.add else "")
        changes.append(
            f"re-prioritised {', '.join(c.id for c in patch.priorities)}"
            if patch.priorities
            else ""
        )
        return "applied: " + "; ".join(c for c in changes if c)


@task(name="reflect", task_run_name="reflect: {why}", cache_policy=NO_CACHE)
async def reflect_step(
    reflector: Reflector, why: str, signals: list[StuckSignal], messages: list[dict[str, str]]
) -> ReflectionRecord:
    """One reflection: the model's verdict, acted on, as an artifact and an event."""
    with spending_for("reflection", optional=True):
        verdict = await reflector.llm.structured(
            Reflection, messages, purpose="reflect", max_tokens=reflector.policy.max_tokens
        )
    outcome, stop = reflector.act(verdict)
    record = ReflectionRecord(
        why=why,
        verdict=verdict.verdict,
        reason=verdict.reason,
        signals=signals,
        patch=verdict.patch,
        outcome=outcome,
        stop=stop,
    )
    await acreate_markdown_artifact(record.markdown(), description=f"Reflection: {why}")
    emit_goal_event(
        f"goalflow.reflection.{verdict.verdict}",
        reflector.flow_run_id,
        record.model_dump(mode="json"),
    )
    get_run_logger().info("reflection: %s (%s); %s", verdict.verdict, verdict.reason, outcome)
    return record


@flow(name="reflect", log_prints=False)
async def reflect(
    goal_run_id: str = "", reason: str = "no progress", wait_seconds: float = 120.0
) -> str:
    """Ask the running goal ``goal_run_id`` to reflect now; wait until it has taken the
    request (its verdict shows in the goal run: a ``reflect: …`` task run and event)."""
    log = get_run_logger()
    try:
        run_id = UUID(goal_run_id)
    except ValueError:
        raise GoalflowError(
            f"goal_run_id {goal_run_id!r} is not a flow run id: pass the id of a running "
            "achieve-goal flow run"
        ) from None
    async with get_client() as client:
        run = await client.read_flow_run(run_id)
    if run.state is None or not run.state.is_running():
        state = run.state.type.value if run.state else "no state"
        log.info("goal run %s is not running (%s): nothing to reflect on", run_id, state)
        return "not running"
    name = request_name(run_id)
    await Variable.aset(name, {"reason": reason}, overwrite=True)
    log.info("asked goal run %s to reflect (%s)", run_id, reason)
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(REQUEST_POLL_SECONDS / 2)
        if await Variable.aget(name) is None:
            log.info("goal run %s took the request and is reflecting", run_id)
            return "asked"
    await Variable.aunset(name)
    log.warning("goal run %s did not take the request in %g s", run_id, wait_seconds)
    return "not taken"
