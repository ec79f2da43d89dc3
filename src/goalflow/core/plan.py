"""Plans: a goal's tasks, its literal inputs and the deliverables that answer it.

No Prefect and no I/O here. A plan is also the saved-plan file format. Its rules are
:func:`goalflow.core.rules.check_tasks`, applied at every level of refinement; a plan
revised while it runs is a new plan (:meth:`Plan.apply`), checked by the same rules.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from pydantic import BaseModel, ConfigDict, Field

from goalflow.core.rules import check_tasks
from goalflow.core.task import AT_LEAST_ONE, DEFAULT_MAX_TASKS, GoalInput, Score, Task, TaskSpec
from goalflow.errors import PlanPatchError

__all__ = ["Plan", "PlanDraft", "PlanPatch", "PriorityChange"]


class PlanDraft(BaseModel):
    """A plan as the model answers it (one level, no sub-plans)."""

    model_config = ConfigDict(extra="ignore")

    inputs: list[GoalInput] = Field(
        default_factory=list, description="Data stated in the goal, each under a name."
    )
    deliverables: list[str] = Field(
        description="The name of the output that is the answer, in the form the goal asks "
        "(several names only when the goal asks for separate results).",
        json_schema_extra=AT_LEAST_ONE,
    )
    tasks: list[TaskSpec] = Field(
        description="The steps, each consuming and producing names.",
        json_schema_extra=AT_LEAST_ONE,
    )


class PriorityChange(BaseModel):
    """New estimates for a task that stays in the plan."""

    id: str = Field(description="Id of an unfinished task.")
    value: Score | None = Field(default=None, description="New value, 1-10.")
    effort: Score | None = Field(default=None, description="New effort, 1-10.")


class PlanPatch(BaseModel):
    """A change to the plan of a running goal."""

    cancel: list[str] = Field(default_factory=list, description="Ids of unfinished tasks to drop.")
    add: list[TaskSpec] = Field(
        default_factory=list,
        description="New tasks (new ids), which may consume finished results by name.",
    )
    priorities: list[PriorityChange] = Field(
        default_factory=list, description="New value/effort of unfinished tasks."
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

    def apply(
        self,
        patch: PlanPatch,
        *,
        finished: Collection[str] = (),
        produced: Collection[str] = (),
        max_tasks: int = DEFAULT_MAX_TASKS,
    ) -> Plan:
        """This plan with ``patch`` applied: cancelled tasks out, added ones in, new
        estimates taken. ``finished`` are the ids of tasks that completed and
        ``produced`` the names of their results, which exist already: the rules judge
        what is left to run. A :class:`~goalflow.errors.PlanPatchError` lists every
        rule the new plan breaks."""
        changes = {change.id: change for change in patch.priorities}
        tasks = [
            task.model_copy(
                update={
                    "value": changes[task.id].value or task.value,
                    "effort": changes[task.id].effort or task.effort,
                }
            )
            if task.id in changes
            else task
            for task in [
                *(t for t in self.tasks if t.id not in patch.cancel),
                *(Task(**spec.model_dump()) for spec in patch.add),
            ]
        ]
        unfinished = [task for task in tasks if task.id not in finished]
        wanted = [name for name in self.deliverables if name not in produced]
        if unfinished:
            exist = [*self.inputs, *produced]
            errors = check_tasks(
                unfinished, available=exist, deliverables=wanted, max_tasks=max_tasks
            )
        else:  # check_tasks would only say "no tasks"
            errors = [
                f"deliverable '{name}' is not produced by any task: keep or add a task that "
                "makes it"
                for name in wanted
            ]
        if errors:
            raise PlanPatchError(errors)
        return self.model_copy(update={"tasks": tasks})

    def only(self, ids: Collection[str]) -> Plan:
        """This plan with its top-level tasks limited to ``ids`` (no rules checked)."""
        return self.model_copy(update={"tasks": [t for t in self.tasks if t.id in ids]})

    def walk(self) -> Iterable[Task]:
        """Every task at every level, parents before their subtasks."""
        return _walk(self.tasks)

    def leaf_count(self) -> int:
        return sum(1 for task in self.walk() if not task.subtasks)


def _walk(tasks: Iterable[Task]) -> Iterable[Task]:
    for task in tasks:
        yield task
        yield from _walk(task.subtasks)
