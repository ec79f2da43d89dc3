"""Goal -> plan with the model, then recursive refinement of composite tasks.

Each answer is first settled where its meaning is unambiguous (a task id written where
its output belongs; a deliverable named loosely, or after nothing a one-task plan makes;
results left unwired before the one task that makes the deliverables; a separator the
goal never asks for in a deliverable's form, and the decimal places it asks for missing
from it; a chain of code tasks, made one program:
:mod:`goalflow.core.repairs`), each settlement logged as ``settled: ...``, then checked
against the plan rules (:func:`goalflow.core.rules.check_tasks`);
the broken rules go back to the model, a bounded number of times, before planning
ends in :class:`PlanningError`. A composite task is planned again as a sub-goal whose
inputs and outputs are its own, so the graph stays connected; at the depth limit the
sub-plan may hold only executable tasks. The subtask that makes a composite task's
output keeps the form (``format``) the parent promised, unless it states its own.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field, create_model

from goalflow.agent.one_answer import ApartCheck
from goalflow.agent.prompts.planning import (
    kind_description,
    plan_feedback,
    plan_request,
    plan_system,
    refine_request,
    refine_system,
)
from goalflow.core.chat import ChatModel, Message
from goalflow.core.plan import Plan, PlanDraft
from goalflow.core.repairs import (
    as_one_step,
    carry_goal_places,
    deliver_final_task,
    deliver_only_task,
    drop_unasked_separator,
    drop_value_deliverables,
    fuse_code_chains,
    match_deliverables,
    quote_goal_data,
    resolve_task_ids,
    wire_dangling_outputs,
)
from goalflow.core.rules import check_tasks, names_listed
from goalflow.core.task import (
    DIFFICULTY_DESCRIPTION,
    MAX_DEPTH,
    Difficulty,
    Task,
    TaskKind,
    TaskSpec,
)
from goalflow.errors import GoalflowError, PlanningError, StructuredOutputError

__all__ = ["MAX_BREAKDOWNS", "PlanningOptions", "SubPlanDraft", "make_plan"]

D = TypeVar("D", bound=BaseModel)

MAX_BREAKDOWNS = 40
"""Composite tasks one goal breaks down at most; the rest run as one step each."""


class PlanningOptions(BaseModel):
    """How far planning may go: depth of breakdowns, tasks per level, asks, task kinds."""

    max_depth: int = Field(default=2, ge=0, le=MAX_DEPTH)
    max_tasks: int = Field(default=25, ge=1)
    max_breakdowns: int = Field(default=MAX_BREAKDOWNS, ge=0)
    attempts: int = Field(default=3, ge=1)
    allowed_kinds: tuple[TaskKind, ...] = ("llm", "code", "composite")
    tiers: bool = False  # the goal has a task model: each task is marked simple or hard


class SubPlanDraft(BaseModel):
    """The breakdown of one composite task, as the model answers it."""

    tasks: list[TaskSpec] = Field(
        description="The steps that together do the parent task.", json_schema_extra={"minItems": 1}
    )


async def make_plan(
    llm: ChatModel,
    goal: str,
    options: PlanningOptions,
    *,
    on_step: Callable[[str], None] = lambda _: None,
) -> Plan:
    """A valid, refined plan for ``goal``."""
    top_kinds = _kinds(options, depth=0)
    on_step(f"planning: {goal}")
    drafts: list[PlanDraft] = []
    apart = ApartCheck(llm, goal)

    async def review(draft: PlanDraft) -> list[str]:
        drafts.append(draft)
        for note in quote_goal_data(goal, draft):
            on_step(f"settled: {note}")
        available = [item.name for item in draft.inputs]
        data = [item.value for item in draft.inputs]
        named, values = drop_value_deliverables(draft.tasks, draft.deliverables, data)
        if values:
            on_step(f"settled: {names_listed(values)} written as deliverables are values: dropped")
        named = resolve_task_ids(draft.tasks, available=available, deliverables=named)
        draft.deliverables = match_deliverables(draft.tasks, named)
        for before, after in zip(named, draft.deliverables, strict=True):
            if before != after:
                on_step(f"settled: deliverable '{before}' is the output '{after}'")
        only = deliver_only_task(draft.tasks, draft.deliverables)
        if only != draft.deliverables:
            made = f"the output '{only[0]}' of the only task '{draft.tasks[0].id}'"
            on_step(
                f"settled: deliverable '{draft.deliverables[0]}' is {made}"
                if draft.deliverables
                else f"settled: {made} is the deliverable"
            )
            draft.deliverables = only
        final = deliver_final_task(draft.tasks, draft.deliverables)
        if final != draft.deliverables:
            on_step(f"settled: {', '.join(final[len(draft.deliverables) :])} delivered too")
            draft.deliverables = final
        for note in wire_dangling_outputs(draft.tasks, draft.deliverables):
            on_step(f"settled: {note}")
        for note in drop_unasked_separator(goal, draft.tasks, draft.deliverables):
            on_step(f"settled: {note}")
        errors = check_tasks(
            draft.tasks,
            available=available,
            deliverables=draft.deliverables,
            max_tasks=options.max_tasks,
            allowed_kinds=top_kinds,
        )
        if errors:
            return errors
        draft.tasks, fused = fuse_code_chains(draft.tasks, draft.deliverables)
        for note in [*fused, *carry_goal_places(goal, draft.tasks, draft.deliverables)]:
            on_step(f"settled: {note}")
        return await apart.problems(draft, on_step)

    try:
        draft = await _ask(
            llm,
            _restricted(PlanDraft, top_kinds, tiers=options.tiers),
            plan_system(top_kinds, max_tasks=options.max_tasks),
            plan_request(goal),
            review,
            options,
            purpose="plan goal",
        )
    except PlanningError as e:
        # Like a composite step that cannot be broken down: the goal is still well
        # defined, so it is done in one step rather than not at all. (A model that never
        # answers the plan's schema at all fails the goal: its tasks would fare no better.)
        draft = as_one_step(goal, drafts[-1] if drafts else None, top_kinds)
        for note in quote_goal_data(goal, draft):
            on_step(f"settled: {note}")
        task = draft.tasks[0]
        reason = e.last_errors[0] if e.last_errors else str(e)
        on_step(f"could not plan the goal ({reason}): it runs as one '{task.kind}' step")
    plan = Plan.from_draft(goal, draft)
    breakdowns = _Breakdowns(options.max_breakdowns)
    await _refine(llm, goal, plan.tasks, depth=1, options=options, on_step=on_step, left=breakdowns)
    return plan


@dataclass
class _Breakdowns:
    """The composite tasks a goal may still break down: a model that decomposes every
    step cannot make planning calls without end, even within the depth limit."""

    left: int

    def take(self) -> bool:
        self.left -= 1
        return self.left >= 0


async def _refine(
    llm: ChatModel,
    goal: str,
    tasks: Sequence[Task],
    *,
    depth: int,
    options: PlanningOptions,
    on_step: Callable[[str], None],
    left: _Breakdowns,
) -> None:
    composites = [task for task in tasks if task.kind == "composite"]
    await asyncio.gather(
        *(_refine_one(llm, goal, task, depth, options, on_step, left) for task in composites)
    )


async def _refine_one(
    llm: ChatModel,
    goal: str,
    task: Task,
    depth: int,
    options: PlanningOptions,
    on_step: Callable[[str], None],
    left: _Breakdowns,
) -> None:
    if not left.take():
        on_step(
            f"not breaking down '{task.id}': the goal has used its {options.max_breakdowns} "
            "breakdowns; it runs as one 'llm' step"
        )
        _as_one_step(task)
        return
    kinds = _kinds(options, depth=depth)
    on_step(f"refining: {task.title}")

    async def review(draft: SubPlanDraft) -> list[str]:
        resolve_task_ids(draft.tasks, available=task.inputs, deliverables=())
        for note in wire_dangling_outputs(draft.tasks, task.outputs):
            on_step(f"settled: {note}")
        return check_tasks(
            draft.tasks,
            available=task.inputs,
            deliverables=task.outputs,
            max_tasks=options.max_tasks,
            allowed_kinds=kinds,
        )

    try:
        sub = await _ask(
            llm,
            _restricted(SubPlanDraft, kinds, tiers=options.tiers),
            refine_system(kinds, task, max_tasks=options.max_tasks),
            refine_request(goal, task),
            review,
            options,
            purpose=f"refine {task.id}",
        )
    except (PlanningError, StructuredOutputError) as e:
        # The step is still well defined (instructions, inputs, outputs): do it in one go
        # rather than fail a goal whose plan is otherwise valid.
        reason = e.last_errors[0] if isinstance(e, PlanningError) and e.last_errors else str(e)
        on_step(f"could not break down '{task.id}' ({reason}): it runs as one 'llm' step")
        _as_one_step(task)
        return
    task.subtasks = [Task(**spec.model_dump()) for spec in sub.tasks]
    for subtask in task.subtasks:
        if task.format and not subtask.format and set(subtask.outputs) & set(task.outputs):
            subtask.format = task.format
    await _refine(
        llm, goal, task.subtasks, depth=depth + 1, options=options, on_step=on_step, left=left
    )


async def _ask(
    llm: ChatModel,
    schema: type[D],
    system: str,
    user: str,
    review: Callable[[D], Awaitable[list[str]]],
    options: PlanningOptions,
    *,
    purpose: str,
) -> D:
    messages: list[Message] = [
        {"role": "system", "content": system},
        {"role": "user", "content": user},
    ]
    errors: list[str] = []
    # What the model wrote, shown back: the difficulty only where it was asked for one.
    unasked: Any = None if options.tiers else {"tasks": {"__all__": {"difficulty"}}}
    for _ in range(options.attempts):
        draft = await llm.structured(schema, messages, purpose=purpose)
        errors = await review(draft)
        if not errors:
            return draft
        messages += [
            {"role": "assistant", "content": json.dumps(draft.model_dump(exclude=unasked))},
            {"role": "user", "content": plan_feedback(errors)},
        ]
    raise PlanningError(
        f"no valid plan for {purpose!r} after {options.attempts} attempts; the last one "
        "broke these rules:\n- " + "\n- ".join(errors) + "\nTry a more capable model "
        "(--model), a more precise goal, or more attempts (GOALFLOW_PLAN_ATTEMPTS)",
        n_attempts=options.attempts,
        last_errors=errors,
    )


@functools.cache
def _restricted(draft: type[D], kinds: tuple[TaskKind, ...], *, tiers: bool) -> type[D]:
    """``draft`` whose tasks may only have ``kinds``, each marked simple or hard when
    the goal has two model ``tiers``: the schema the model sees says so, and servers
    that constrain output to the schema cannot answer anything else."""
    allowed: Any = Literal[kinds]
    fields: dict[str, Any] = {"kind": (allowed, Field(description=kind_description(kinds)))}
    if tiers:
        fields["difficulty"] = (Difficulty, Field(description=DIFFICULTY_DESCRIPTION))
    spec = create_model("TaskSpec", __base__=TaskSpec, **fields)
    tasks_field = draft.model_fields["tasks"]
    return create_model(draft.__name__, __base__=draft, tasks=(list[spec], tasks_field))


def _as_one_step(task: Task) -> None:
    """A composite task that will not be broken down: one ``llm`` step, and a hard one
    (it was too big for one step), whatever its mark."""
    task.kind = "llm"
    task.difficulty = "hard"


def _kinds(options: PlanningOptions, *, depth: int) -> tuple[TaskKind, ...]:
    """At the depth limit a plan may hold only tasks that can run as they are."""
    kinds = options.allowed_kinds
    if depth >= options.max_depth:
        kinds = tuple(k for k in kinds if k != "composite")
    if not kinds:
        raise GoalflowError("no task kind can run: allow 'llm' or 'code' tasks")
    return kinds
