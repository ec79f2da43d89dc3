"""Which leaf-task results may be reused: the cache key of a leaf task run.

A leaf task's answer depends on the model, the goal (its brief quotes it), the task's
title, kind, instructions, acceptance check, declared outputs and their form, and the
values of its inputs; the key is a hash of exactly those. The task's id and path are
left out (the same work under another name is the same work), and so are the endpoint
and the API key. Prefect stores the outputs of a *completed* run under its key, in its
result storage; a later run of a task with the same key is marked ``Cached`` and makes
no model call. Nothing else is cached: a failed or cancelled task has no result, a task
whose inputs changed upstream gets another key, and planning is never cached.

Reusing results across runs is the point (a run that crashed mid-way is re-run with the
same plan), but a goal scheduled to run again with a saved plan wants fresh answers, so
cached results expire (``GOALFLOW_TASK_CACHE_EXPIRY``, 12 hours by default) and
``GOALFLOW_TASK_CACHE=false`` turns caching off. The results live in Prefect's result
storage (``PREFECT_RESULTS_LOCAL_STORAGE_PATH``, ``~/.prefect/storage`` by default; a
cluster of several machines needs storage all of them reach).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, TypeVar

from prefect.cache_policies import CacheKeyFnPolicy
from prefect.context import TaskRunContext
from prefect.tasks import Task
from prefect.transactions import get_transaction

from goalflow.core.task import TaskSpec

__all__ = ["LEAF_CACHE", "cache_scope", "cached", "keep_result", "leaf_cache_key"]

T = TypeVar("T", bound=Task[Any, Any])


def cache_scope(model: str, goal: str) -> str:
    """What every cached leaf task of one goal on one model shares."""
    return json.dumps({"model": model, "goal": goal}, ensure_ascii=False)


def leaf_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
    """The cache key of a leaf task run; None (no caching) when its scope is unset."""
    scope = parameters.get("cache_scope")
    task = parameters.get("task")
    inputs = parameters.get("inputs")
    if not scope or not isinstance(task, TaskSpec) or not isinstance(inputs, dict):
        return None
    material = {
        "scope": scope,
        "title": task.title,
        "kind": task.kind,
        "instructions": task.instructions,
        "acceptance": task.acceptance,
        "outputs": list(task.outputs),
        "inputs": {name: inputs[name] for name in sorted(inputs)},
    }
    if task.format:  # only when set: the keys of tasks without a form stay as they were
        material["format"] = task.format
    if task.difficulty == "simple":  # the same: a task the task model may answer
        material["difficulty"] = task.difficulty
    digest = hashlib.sha256(json.dumps(material, ensure_ascii=False).encode()).hexdigest()
    return f"goalflow-leaf-{digest}"


LEAF_CACHE = CacheKeyFnPolicy(cache_key_fn=leaf_cache_key)


@lru_cache(maxsize=32)
def _cached(task: Task[Any, Any], expiry_seconds: float, fresh: bool) -> Task[Any, Any]:
    return task.with_options(
        cache_policy=LEAF_CACHE,
        persist_result=True,
        cache_expiration=timedelta(seconds=expiry_seconds),
        refresh_cache=fresh,
    )


def cached(task: T, expiry_seconds: float, *, fresh: bool = False) -> T:
    """``task`` with the leaf cache on, its results kept ``expiry_seconds``; made once.
    ``fresh``: reuse nothing, and store the new results in place of the old."""
    variant: T = _cached(task, expiry_seconds, fresh)  # type: ignore[assignment]
    return variant


async def keep_result(outputs: dict[str, str]) -> None:
    """Store a cached leaf task's outputs now, before its run is marked Completed.

    Prefect writes a cached result when the task's transaction commits, which is after it
    has sent the Completed state: a process killed between the two leaves a task the UI
    shows Completed with no stored result, and the rerun pays for it again. Written here
    first, a Completed task's result is always there to reuse; the commit then does not
    write it again, as its rewrite truncates the file first and a kill in that instant
    lost the record (seen once in CI). Does nothing when the task is not cached.
    """
    transaction = get_transaction()
    run = TaskRunContext.get()
    if transaction is None or not transaction.key or transaction.store is None:
        return
    if run is None or run.task.cache_expiration is None:
        return
    store = transaction.store
    expiration = datetime.now(UTC) + run.task.cache_expiration
    # Prefect's engine passes the same aware datetime; its annotation names pendulum's.
    record = store.create_result_record(outputs, key=transaction.key, expiration=expiration)  # type: ignore[arg-type]
    await store.apersist_result_record(record)
    transaction.write_on_commit = False  # written: no second, non-atomic write
