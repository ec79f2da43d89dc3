"""The rules of a plan's graph, written for the model that made it.

A level of a plan is valid when its tasks form a connected, acyclic graph in which
every input has exactly one source (an available input or one producing task), every
task's output is used (by a task or as a deliverable), and every deliverable is
produced. Each error names the task and says what to change. Also here: the graph's
critical path and the order ready tasks start in. No Prefect and no I/O.
"""

from __future__ import annotations

import graphlib
from collections.abc import Iterable, Sequence

from pydantic import ValidationError

from goalflow.core.task import DEFAULT_MAX_TASKS, NAME, TaskKind, TaskSpec

__all__ = [
    "check_tasks",
    "critical_tasks",
    "describe_validation_error",
    "names_listed",
    "priority_order",
]


def check_tasks(
    tasks: Sequence[TaskSpec],
    *,
    available: Iterable[str],
    deliverables: Sequence[str],
    max_tasks: int = DEFAULT_MAX_TASKS,
    allowed_kinds: Iterable[TaskKind] = ("llm", "code", "composite"),
) -> list[str]:
    """The rules one level of a plan breaks; an empty list means it is valid.

    ``available`` are the names that exist before any task runs (the goal's inputs,
    or a composite parent's inputs); ``deliverables`` must all be produced.
    """
    if not tasks:
        return ["the plan has no tasks: give at least one task that produces the deliverables"]
    errors: list[str] = []
    if len(tasks) > max_tasks:
        errors.append(
            f"the plan has {len(tasks)} tasks, more than the limit of {max_tasks} "
            "(GOALFLOW_MAX_TASKS): "
            "merge small steps, or make a large part one 'composite' task"
        )
    available = set(available)
    if not deliverables:
        errors.append("the plan names no deliverables: list the outputs that answer the goal")
    kinds = set(allowed_kinds)
    seen_ids: set[str] = set()
    producers: dict[str, str] = {}
    for task in tasks:
        if task.id in seen_ids:
            errors.append(f"two tasks have the id '{task.id}': give each task its own id")
        seen_ids.add(task.id)
        if task.kind not in kinds:
            errors.append(
                f"task '{task.id}' has kind '{task.kind}', which cannot run here: "
                f"use one of {', '.join(repr(k) for k in sorted(kinds))}"
            )
        if not task.outputs:
            errors.append(f"task '{task.id}' produces nothing: name at least one output")
        for name in [*task.inputs, *task.outputs]:
            if not NAME.match(name):
                errors.append(
                    f"task '{task.id}' uses {name!r} as an input or output name: names are "
                    "short identifiers like 'word_list'; put literal data in the plan's inputs"
                )
        for name in task.outputs:
            if name in available:
                errors.append(
                    f"task '{task.id}' produces '{name}', which is already an input: "
                    "give the output a new name"
                )
            elif name in producers and producers[name] != task.id:
                errors.append(
                    f"output '{name}' is produced by both '{producers[name]}' and '{task.id}': "
                    "each output needs exactly one producing task"
                )
            else:
                producers[name] = task.id
    for name in deliverables:
        if name not in producers:
            errors.append(
                f"deliverable '{name}' is not produced by any task: "
                f"add '{name}' to the outputs of the task that makes it"
            )
    consumed = {name for task in tasks for name in task.inputs}
    for task in tasks:
        for name in task.inputs:
            if name not in producers and name not in available:
                errors.append(
                    f"task '{task.id}' consumes '{name}', which no task produces and which is "
                    f"not an input: add a task with output '{name}', or use one of "
                    f"{names_listed(available | producers.keys())}"
                )
        unused = [name for name in task.outputs if name not in consumed]
        if (
            task.outputs
            and len(unused) == len(task.outputs)
            and not (set(task.outputs) & set(deliverables))
        ):
            errors.append(
                f"task '{task.id}' produces {names_listed(unused)}, which no task consumes and "
                "which is not a deliverable: every task must be essential, so remove it or add "
                f"{names_listed(unused)} to the inputs of the task that needs it"
                + _likely_consumer(tasks, task, deliverables)
            )
    if len(seen_ids) == len(tasks):  # with duplicate ids the graph itself is ambiguous
        errors += _cycle_errors(tasks, producers)
    return errors


def _likely_consumer(
    tasks: Sequence[TaskSpec], dangling: TaskSpec, deliverables: Sequence[str]
) -> str:
    """A concrete hint: small models fix a wiring error when shown where the wire goes."""
    finals = [t.id for t in tasks if t.id != dangling.id and set(t.outputs) & set(deliverables)]
    return f" (probably {names_listed(finals)}, which makes the deliverable)" if finals else ""


def names_listed(names: Iterable[str]) -> str:
    ordered = sorted(names)
    return ", ".join(f"'{n}'" for n in ordered) if ordered else "(none)"


def _dependencies(tasks: Sequence[TaskSpec], producers: dict[str, str]) -> dict[str, set[str]]:
    return {
        task.id: {producers[name] for name in task.inputs if name in producers} for task in tasks
    }


def _cycle_errors(tasks: Sequence[TaskSpec], producers: dict[str, str]) -> list[str]:
    sorter = graphlib.TopologicalSorter(_dependencies(tasks, producers))
    try:
        sorter.prepare()
    except graphlib.CycleError as e:
        cycle: list[str] = list(e.args[1])
        return [
            f"tasks form a cycle: {' -> '.join(cycle)}: each feeds the next, but a task "
            "cannot depend, directly or through others, on its own output; break the cycle"
        ]
    return []


def critical_tasks(tasks: Sequence[TaskSpec]) -> set[str]:
    """Ids of the tasks on the longest (effort-weighted) path through a valid graph."""
    producers = {name: task.id for task in tasks for name in task.outputs}
    deps = _dependencies(tasks, producers)
    effort = {task.id: task.effort for task in tasks}
    order = list(graphlib.TopologicalSorter(deps).static_order())
    longest_to: dict[str, float] = {}
    for tid in order:
        longest_to[tid] = effort[tid] + max((longest_to[d] for d in deps[tid]), default=0.0)
    dependants: dict[str, set[str]] = {tid: set() for tid in deps}
    for tid, ds in deps.items():
        for d in ds:
            dependants[d].add(tid)
    longest_from: dict[str, float] = {}
    for tid in reversed(order):
        longest_from[tid] = effort[tid] + max(
            (longest_from[d] for d in dependants[tid]), default=0.0
        )
    length = max(longest_to.values(), default=0.0)
    return {
        tid
        for tid in deps
        if abs(longest_to[tid] + longest_from[tid] - effort[tid] - length) < 1e-9
    }


def priority_order(tasks: Sequence[TaskSpec]) -> list[str]:
    """Task ids, most urgent first: critical-path tasks, then value per effort."""
    critical = critical_tasks(tasks)
    ranked = sorted(tasks, key=lambda t: (t.id not in critical, -t.value / t.effort, t.id))
    return [task.id for task in ranked]


def describe_validation_error(error: ValidationError) -> list[str]:
    """Pydantic's errors as short lines a model (or person) can act on."""
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "the answer"
        lines.append(f"{where}: {item['msg']}")
    return lines
