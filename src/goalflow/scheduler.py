"""Runs a task graph: each task starts as soon as its inputs exist and a slot is free.

Pure asyncio, no Prefect: the caller passes the coroutine that runs one task. Nothing
waits for a whole "level" of the graph; among ready tasks the most urgent start first
(see :func:`goalflow.plan.priority_order`). A failed task fails its dependants with a
reason, and independent branches go on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from goalflow.plan import TaskSpec, priority_order

__all__ = ["RunTask", "TaskOutcome", "TaskStatus", "run_graph"]

TaskStatus = Literal["pending", "running", "completed", "failed", "skipped"]
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
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    by_id = {task.id: task for task in tasks}
    rank = {tid: i for i, tid in enumerate(priority_order(tasks))}
    producer = {name: task.id for task in tasks for name in task.outputs}
    dependants: dict[str, list[str]] = {tid: [] for tid in by_id}
    for task in tasks:
        for name in task.inputs:
            if name in producer:
                dependants[producer[name]].append(task.id)
    outcomes = {task.id: TaskOutcome(task.id, task.title) for task in tasks}
    values = dict(available)
    waiting = set(by_id)
    running: dict[asyncio.Task[dict[str, str]], str] = {}

    def notify(outcome: TaskOutcome) -> None:
        if on_change is not None:
            on_change(outcome)

    def finish(tid: str, status: TaskStatus, error: str | None = None) -> None:
        outcome = outcomes[tid]
        outcome.status, outcome.error, outcome.finished = status, error, time.monotonic()
        notify(outcome)

    def skip_dependants(tid: str, failed: str) -> None:
        for dep in dependants[tid]:
            if dep in waiting:
                waiting.discard(dep)
                finish(dep, "skipped", f"not run: it depends on '{failed}', which failed")
                skip_dependants(dep, failed)

    try:
        while waiting or running:
            ready = sorted(
                (tid for tid in waiting if all(n in values for n in by_id[tid].inputs)),
                key=rank.__getitem__,
            )
            for tid in ready[: concurrency - len(running)]:
                waiting.discard(tid)
                task = by_id[tid]
                outcome = outcomes[tid]
                outcome.status, outcome.started = "running", time.monotonic()
                notify(outcome)
                inputs = {name: values[name] for name in task.inputs}
                running[asyncio.ensure_future(run_task(task, inputs))] = tid
            if not running:
                break  # only tasks whose inputs can never exist remain
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                tid = running.pop(future)
                error = _failure(future, by_id[tid])
                if error is None:
                    outputs = future.result()
                    outcomes[tid].outputs = {n: outputs[n] for n in by_id[tid].outputs}
                    values.update(outcomes[tid].outputs)
                    finish(tid, "completed")
                else:
                    finish(tid, "failed", error)
                    skip_dependants(tid, tid)
    finally:
        for future in running:
            future.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
            for tid in running.values():
                finish(tid, "failed", "cancelled")
    for tid in waiting:
        finish(tid, "skipped", "not run: its inputs were never produced")
    return outcomes


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
