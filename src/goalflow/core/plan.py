"""Plans: the tasks of a goal, the graph their inputs and outputs form, and its rules.

No Prefect and no I/O here. A plan is valid when its tasks form a connected,
acyclic graph in which every input has exactly one source (a goal input or one
producing task), every task's output is used (by a task or as a deliverable), and every
deliverable is produced. The errors are written for the model that made the plan:
each names the task and says what to change.
"""

from __future__ import annotations

import graphlib
import re
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

__all__ = [
    "DEFAULT_MAX_TASKS",
    "GoalInput",
    "Plan",
    "PlanDraft",
    "Task",
    "TaskKind",
    "TaskSpec",
    "check_tasks",
    "critical_tasks",
    "deliver_final_task",
    "describe_validation_error",
    "match_deliverables",
    "priority_order",
    "resolve_task_ids",
    "wire_dangling_outputs",
]

DEFAULT_MAX_TASKS = 25
TaskKind = Literal["llm", "code", "composite"]
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
# Said in the schema the model sees (grammar-constrained servers enforce it), but not
# validated by pydantic: check_tasks reports an empty list with a clearer message.
_AT_LEAST_ONE: dict[str, Any] = {"minItems": 1}


def _clamp_score(value: Any) -> Any:
    """An estimate outside 1-10 is clamped, not worth a re-ask."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return min(max(float(value), 1.0), 10.0)
    return value


Score = Annotated[float, BeforeValidator(_clamp_score)]


class TaskSpec(BaseModel):
    """One step of a plan, as the model writes it."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(description="Short unique identifier, e.g. 'summarise'.")
    title: str = Field(description="A few words saying what the task does.")
    kind: TaskKind = Field(
        description="'llm': answer in text; 'code': write and run a Python program; "
        "'composite': too big for one step, to be broken down further."
    )
    instructions: str = Field(description="What to do, precisely enough to do it.")
    inputs: list[str] = Field(
        default_factory=list,
        description="Names of the values this task reads (goal inputs or other tasks' outputs).",
    )
    outputs: list[str] = Field(
        description="Names of the values this task produces.", json_schema_extra=_AT_LEAST_ONE
    )
    acceptance: str = Field(
        default="", description="How to tell that the outputs are right (empty: no check)."
    )
    value: Score = Field(default=1.0, description="How much the task matters, 1-10.")
    effort: Score = Field(default=1.0, description="How much work it is, 1-10.")


class Task(TaskSpec):
    """A task of a refined plan: a composite task carries its own sub-plan."""

    subtasks: list[Task] = Field(
        default_factory=list,
        description="The sub-plan a composite task was broken into (empty for leaf tasks).",
    )


class GoalInput(BaseModel):
    """Data the goal states literally, given a name that tasks can consume."""

    name: str = Field(description="Short identifier, e.g. 'sales_csv'.")
    value: str = Field(description="The data itself, copied from the goal.")


class PlanDraft(BaseModel):
    """A plan as the model answers it (one level, no sub-plans)."""

    model_config = ConfigDict(extra="ignore")

    inputs: list[GoalInput] = Field(
        default_factory=list, description="Data stated in the goal, each under a name."
    )
    deliverables: list[str] = Field(
        description="Names of the outputs that answer the goal.", json_schema_extra=_AT_LEAST_ONE
    )
    tasks: list[TaskSpec] = Field(
        description="The steps, each consuming and producing names.",
        json_schema_extra=_AT_LEAST_ONE,
    )


class Plan(BaseModel):
    """A goal's plan: what runs, what it consumes, what it must deliver.

    This is also the saved-plan file format (``goalflow plan -o plan.json``).
    """

    goal: str = Field(description="The goal, as the user gave it.")
    inputs: dict[str, str] = Field(
        default_factory=dict, description="Goal inputs: name -> literal data."
    )
    deliverables: list[str] = Field(description="Names of the outputs that answer the goal.")
    tasks: list[Task] = Field(description="The top-level tasks; composite ones hold sub-plans.")

    @classmethod
    def from_draft(cls, goal: str, draft: PlanDraft) -> Plan:
        return cls(
            goal=goal,
            inputs={item.name: item.value for item in draft.inputs},
            deliverables=draft.deliverables,
            tasks=[Task(**spec.model_dump()) for spec in draft.tasks],
        )

    def errors(self, *, max_tasks: int = DEFAULT_MAX_TASKS) -> list[str]:
        """Every rule this plan breaks, at every level of refinement."""
        errors = check_tasks(
            self.tasks,
            available=self.inputs.keys(),
            deliverables=self.deliverables,
            max_tasks=max_tasks,
        )
        for task in _walk(self.tasks):
            if task.kind == "composite" and not task.subtasks:
                errors.append(
                    f"task '{task.id}' is composite but has no subtasks: break it down, "
                    "or give it kind 'llm' or 'code'"
                )
            elif task.subtasks and task.kind != "composite":
                errors.append(f"task '{task.id}' has subtasks, so its kind must be 'composite'")
            if task.subtasks:
                errors += [
                    f"in the breakdown of task '{task.id}': {error}"
                    for error in check_tasks(
                        task.subtasks,
                        available=task.inputs,
                        deliverables=task.outputs,
                        max_tasks=max_tasks,
                    )
                ]
        return errors

    def walk(self) -> Iterable[Task]:
        """Every task at every level, parents before their subtasks."""
        return _walk(self.tasks)

    def leaf_count(self) -> int:
        return sum(1 for task in self.walk() if not task.subtasks)


def _walk(tasks: Iterable[Task]) -> Iterable[Task]:
    for task in tasks:
        yield task
        yield from _walk(task.subtasks)


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
            f"the plan has {len(tasks)} tasks, more than the limit of {max_tasks}: "
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
            if not _NAME.match(name):
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
                    f"{_names(available | producers.keys())}"
                )
        unused = [name for name in task.outputs if name not in consumed]
        if (
            task.outputs
            and len(unused) == len(task.outputs)
            and not (set(task.outputs) & set(deliverables))
        ):
            errors.append(
                f"task '{task.id}' produces {_names(unused)}, which no task consumes and which "
                "is not a deliverable: every task must be essential, so remove it or add "
                f"{_names(unused)} to the inputs of the task that needs it"
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
    return f" (probably {_names(finals)}, which makes the deliverable)" if finals else ""


def _names(names: Iterable[str]) -> str:
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


def resolve_task_ids(
    tasks: Sequence[TaskSpec], *, available: Iterable[str], deliverables: Sequence[str]
) -> list[str]:
    """Replace task ids used where value names belong; return the deliverables resolved.

    Models often name the task where they mean what it produces. A name that is no
    value's name (no output, no available input) but a task's id stands for that
    task's outputs: in every task's inputs (in place) and in the deliverables.
    """
    values = set(available) | {name for task in tasks for name in task.outputs}
    by_id = {task.id: task for task in tasks}

    def resolve(names: Iterable[str], owner: str | None = None) -> list[str]:
        resolved: list[str] = []
        for name in names:
            meant = by_id.get(name) if name not in values and name != owner else None
            for value in meant.outputs if meant else [name]:
                if value not in resolved:
                    resolved.append(value)
        return resolved

    for task in tasks:
        task.inputs = resolve(task.inputs, owner=task.id)
    return resolve(deliverables)


def match_deliverables(tasks: Sequence[TaskSpec], deliverables: Sequence[str]) -> list[str]:
    """The deliverables, each unproduced one replaced by the one unused output it names.

    Small models name the deliverable 'seasons' and the output 'seasons_poem'. When a
    deliverable is produced by no task and exactly one output nobody consumes shares
    all its words (or all of that output's words are in it), that output is meant.
    """
    produced = {name for task in tasks for name in task.outputs}
    consumed = {name for task in tasks for name in task.inputs}
    unused = [n for n in produced if n not in consumed and n not in deliverables]

    def words(name: str) -> set[str]:
        return {w for w in re.split(r"[^a-z0-9]+", name.lower()) if w}

    matched = []
    for name in deliverables:
        candidates = [n for n in unused if words(name) <= words(n) or words(n) <= words(name)]
        matched.append(candidates[0] if name not in produced and len(candidates) == 1 else name)
    return matched


def deliver_final_task(tasks: Sequence[TaskSpec], deliverables: Sequence[str]) -> list[str]:
    """The deliverables, plus the outputs of the one dead-end task that uses them all.

    Small models list the parts ('autumn_haiku', 'spring_haiku') as deliverables and
    forget the task that combines them into the answer. When exactly one task's outputs
    are used by nobody and delivered by nobody, and that task consumes every
    deliverable, its outputs are what the goal asked for: they are delivered too.
    """
    consumed = {name for task in tasks for name in task.inputs}
    dead_ends = [
        task
        for task in tasks
        if task.outputs and not set(task.outputs) & (consumed | set(deliverables))
    ]
    if len(dead_ends) != 1 or not set(deliverables) <= set(dead_ends[0].inputs):
        return list(deliverables)
    return [*deliverables, *dead_ends[0].outputs]


def wire_dangling_outputs(tasks: Sequence[TaskSpec], deliverables: Sequence[str]) -> list[str]:
    """Feed unused results into the one task that makes the deliverables; say what moved.

    Small models plan "do A, do B, then combine" and forget to list A's and B's outputs
    as the last task's inputs. Where exactly one task produces the deliverables, every
    other task whose outputs nobody consumes is wired into it (unless that would close
    a cycle). With several final tasks the intent is unclear, and the rules report it.
    """
    finals = [task for task in tasks if set(task.outputs) & set(deliverables)]
    if len(finals) != 1:
        return []
    final = finals[0]
    producer = {name: task for task in tasks for name in task.outputs}
    consumed = {name for task in tasks for name in task.inputs}

    def upstream(task: TaskSpec, seen: set[str]) -> set[str]:
        for name in task.inputs:
            source = producer.get(name)
            if source is not None and source.id not in seen:
                seen.add(source.id)
                upstream(source, seen)
        return seen

    notes = []
    for task in tasks:
        dangling = [n for n in task.outputs if n not in consumed and n not in deliverables]
        if (
            task is final
            or len(dangling) != len(task.outputs)
            or not dangling
            or final.id in upstream(task, set())
        ):
            continue
        final.inputs = [*final.inputs, *dangling]
        notes.append(f"fed {_names(dangling)} of '{task.id}' into '{final.id}'")
    return notes


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
