"""Runs a task graph: each task starts as soon as its inputs exist and a slot is free.

Pure asyncio, no Prefect: the caller passes the coroutine that runs one task. Nothing
waits for a whole "level" of the graph; among ready tasks the most urgent start first
(see :func:`goalflow.core.plan.priority_order`). A failed task fails its dependants with a
reason, and independent branches go on. A :class:`GraphRun` can be revised while it
runs (reflection): tasks removed, added or re-prioritised, finished results kept.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from goalflow.core.rules import priority_order
from goalflow.core.task import TaskSpec
from goalflow.errors import ConfigError

__all__ = ["GraphRun", "RunTask", "TaskOutcome", "TaskStatus", "run_graph"]

TaskStatus = Literal["pending", "running", "completed", "failed", "skipped", "cancelled"]
RunTask = Callable[[TaskSpec, dict[str, str]], Awaitable[dict[str, str]]]


@dataclass
class TaskOutcome:
    """What happened to one task. Times are ``time.monotonic()`` seconds."""

    task_id: str
    title: str
    status: TaskStatus = "pending"
    outputs: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    started: float | None = None
    finished: float | None = None
    cached: bool = False  # completed with an earlier run's result, no model call
    start_delay: float | None = None  # from started (ready, slot free) to its work begun

    @property
    def duration(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started


async def run_graph(
    tasks: Sequence[TaskSpec],
    available: Mapping[str, str],
    run_task: RunTask,
    *,
    concurrency: int,
    on_change: Callable[[TaskOutcome], None] | None = None,
) -> dict[str, TaskOutcome]:
    """Run every task of a valid graph; return each task's outcome, by id.

    ``available`` holds the values that exist before any task runs. ``run_task`` gets a
    task and the values of its inputs and returns its outputs by name; an exception
    fails the task. ``on_change`` is told each time a task starts or ends.
    """
    graph = GraphRun(tasks, available, run_task, concurrency=concurrency, on_change=on_change)
    return await graph.run()


class GraphRun:
    """One run of a task graph that can be revised while it runs (see :meth:`revise`).

    ``on_stall`` is awaited when nothing runs and nothing can start but the graph is not
    finished (a task failed, or tasks wait for inputs that will never exist); when it
    revised the graph meanwhile, the run goes on, otherwise it ends.
    """

    def __init__(
        self,
        tasks: Sequence[TaskSpec],
        available: Mapping[str, str],
        run_task: RunTask,
        *,
        concurrency: int,
        on_change: Callable[[TaskOutcome], None] | None = None,
        on_stall: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ConfigError(f"concurrency must be at least 1, got {concurrency}")
        self.concurrency = concurrency
        self.version = 0  # counts revisions
        self.values = dict(available)
        self.outcomes = {task.id: TaskOutcome(task.id, task.title) for task in tasks}
        self._run_task = run_task
        self._on_change = on_change
        self._on_stall = on_stall
        self._by_id = {task.id: task for task in tasks}
        self._waiting = set(self._by_id)
        self._running: dict[asyncio.Task[dict[str, str]], str] = {}
        self._removed: dict[str, str] = {}  # task id -> why a revision removed it
        self._changed = asyncio.Event()
        self._held: str | None = None  # why no task starts any more
        self._rank: dict[str, int] = {}
        self._dependants: dict[str, list[str]] = {}
        self._index()

    @property
    def tasks(self) -> list[TaskSpec]:
        """The tasks of the graph as it stands: every task not removed and not failed."""
        return [
            task
            for tid, task in self._by_id.items()
            if tid not in self._removed and self.outcomes[tid].status != "failed"
        ]

    @property
    def every_task(self) -> list[TaskSpec]:
        """Every task the graph has held, removed and failed ones too, in order of joining."""
        return list(self._by_id.values())

    def revise(self, tasks: Sequence[TaskSpec], reason: str) -> None:
        """Make ``tasks`` the graph: tasks missing from it are removed (cancelled when
        running), new ones join and start once their inputs exist, and the others take
        their new value and effort. Finished results are kept.

        The caller has validated ``tasks`` (see :func:`goalflow.core.plan.check_tasks`).
        """
        wanted = {task.id: task for task in tasks}
        for tid in list(self._by_id):
            if tid in wanted or tid in self._removed:
                continue
            outcome = self.outcomes[tid]
            if outcome.status in ("completed", "failed"):
                continue
            self._removed[tid] = reason
            self._waiting.discard(tid)
            running = [future for future, rid in self._running.items() if rid == tid]
            for future in running:
                future.cancel()  # the run loop records it as cancelled
            if not running:
                self._finish(tid, "cancelled", f"removed by a revision: {reason}")
        for tid, task in wanted.items():
            if tid not in self._by_id:
                self.outcomes[tid] = TaskOutcome(tid, task.title)
                self._waiting.add(tid)
            self._by_id[tid] = task
        self._index()
        for tid in self._by_id:
            outcome = self.outcomes[tid]
            if outcome.status == "skipped" and tid not in self._removed and self._can_run(tid):
                outcome.status, outcome.error, outcome.finished = "pending", None, None
                self._waiting.add(tid)
                self._notify(outcome)
        self.version += 1
        self._changed.set()

    def hold(self, reason: str) -> None:
        """Start no more tasks: the run ends once the running ones have, and the tasks
        that had not started are skipped for ``reason``."""
        if self._held is None:
            self._held = reason
            self._changed.set()

    async def run(self) -> dict[str, TaskOutcome]:
        """Run until every task has finished, failed or been removed; the outcomes by id."""
        try:
            while True:
                self._start_ready()
                if not self._running:
                    if self._held or self._on_stall is None or not self._unfinished():
                        break
                    before = self.version
                    await self._on_stall()
                    if self.version == before:
                        break
                    continue
                self._changed.clear()
                changed = asyncio.ensure_future(self._changed.wait())
                try:
                    await asyncio.wait(
                        [*self._running, changed], return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    changed.cancel()
                for future in [f for f in self._running if f.done()]:
                    self._settle(future)
        finally:
            running = dict(self._running)
            for future in running:
                future.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
                for tid in running.values():
                    self._finish(tid, "failed", "cancelled")
            self._running.clear()
        why = self._held or "its inputs were never produced"
        for tid in self._waiting:
            self._finish(tid, "skipped", f"not run: {why}")
        self._waiting.clear()
        return self.outcomes

    def _index(self) -> None:
        active = [t for tid, t in self._by_id.items() if tid not in self._removed]
        runnable = [t for t in active if self.outcomes[t.id].status != "failed"]
        self._rank = {tid: i for i, tid in enumerate(priority_order(runnable))}
        producer = {name: t.id for t in runnable for name in t.outputs}
        self._dependants = {tid: [] for tid in self._by_id}
        for task in active:
            for name in task.inputs:
                if name in producer:
                    self._dependants[producer[name]].append(task.id)

    def _can_run(self, tid: str) -> bool:
        """Whether each input exists or has a producer that may still make it."""
        producers = {name: t.id for t in self.tasks for name in t.outputs}
        return all(n in self.values or n in producers for n in self._by_id[tid].inputs)

    def _unfinished(self) -> bool:
        """Whether a task still waits, or failed without a revision making its outputs."""
        for tid, outcome in self.outcomes.items():
            if tid in self._removed or outcome.status in ("completed", "cancelled"):
                continue
            if outcome.status != "failed":
                return True
            if not all(name in self.values for name in self._by_id[tid].outputs):
                return True
        return False

    def _start_ready(self) -> None:
        if self._held:
            return
        ready = sorted(
            (
                tid
                for tid in self._waiting
                if all(n in self.values for n in self._by_id[tid].inputs)
            ),
            key=lambda tid: self._rank.get(tid, len(self._rank)),
        )
        for tid in ready[: self.concurrency - len(self._running)]:
            self._waiting.discard(tid)
            task = self._by_id[tid]
            outcome = self.outcomes[tid]
            outcome.status, outcome.started = "running", time.monotonic()
            self._notify(outcome)
            inputs = {name: self.values[name] for name in task.inputs}
            self._running[asyncio.ensure_future(self._run_task(task, inputs))] = tid

    def _settle(self, future: asyncio.Task[dict[str, str]]) -> None:
        tid = self._running.pop(future)
        task = self._by_id[tid]
        if tid in self._removed:
            self._finish(tid, "cancelled", f"removed by a revision: {self._removed[tid]}")
            return
        error = _failure(future, task)
        if error is None:
            outputs = future.result()
            self.outcomes[tid].outputs = {n: outputs[n] for n in task.outputs}
            self.values.update(self.outcomes[tid].outputs)
            self._finish(tid, "completed")
        else:
            self._finish(tid, "failed", error)
            self._skip_dependants(tid, tid)

    def _skip_dependants(self, tid: str, failed: str) -> None:
        for dep in self._dependants.get(tid, []):
            if dep in self._waiting:
                self._waiting.discard(dep)
                self._finish(dep, "skipped", f"not run: it depends on '{failed}', which failed")
                self._skip_dependants(dep, failed)

    def _finish(self, tid: str, status: TaskStatus, error: str | None = None) -> None:
        outcome = self.outcomes[tid]
        outcome.status, outcome.error, outcome.finished = status, error, time.monotonic()
        self._notify(outcome)

    def _notify(self, outcome: TaskOutcome) -> None:
        if self._on_change is not None:
            self._on_change(outcome)


def _failure(future: asyncio.Future[dict[str, str]], task: TaskSpec) -> str | None:
    """Why a finished task failed, or None when it produced every declared output."""
    if future.cancelled():
        return "cancelled"
    error = future.exception()
    if error is not None:
        return str(error) or type(error).__name__
    missing = [name for name in task.outputs if name not in future.result()]
    if missing:
        return f"finished without producing {', '.join(missing)}"
    return None
