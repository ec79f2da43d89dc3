"""Reflection's verdict on a running goal, and the plan patch it may carry.

No Prefect and no I/O here. A :class:`Reflection` is the model's structured answer (the
prompt that asks for it is :func:`goalflow.agent.prompts.reflection_messages`); a
``revise`` verdict carries a :class:`PlanPatch` (tasks to cancel, tasks to add in the
plan's own task shape, value/effort changes). :func:`check_patch` applies a patch to
the plan of a run in progress (:meth:`goalflow.core.plan.Plan.apply`, the plan rules):
finished results count as inputs that already exist, so new tasks reuse them by name
and nothing finished runs again.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, Field

from goalflow.core.plan import Plan, PlanPatch
from goalflow.core.stuck import StuckSignal, fingerprint
from goalflow.core.task import TaskKind, TaskSpec
from goalflow.errors import PlanPatchError

__all__ = [
    "Reflection",
    "ReflectionPolicy",
    "ReflectionRecord",
    "RunState",
    "Verdict",
    "check_patch",
]

Verdict = Literal["on_track", "revise", "stuck", "off_topic", "done"]


class ReflectionPolicy(BaseModel):
    """When a goal run reflects on itself, and how far reflection may change its plan.

    A run reflects every ``every_tasks`` finished tasks, every ``every_seconds``, at
    once on a stuck signal, when it cannot go on (a task failed), and when the server
    asks (the ``goalflow-reflect-on-stall`` automation). Each reflection is one model
    call; with a money budget, one that would not fit is skipped.
    """

    enabled: bool = Field(default=True, description="Reflect at all; off: no reflection calls.")
    every_tasks: int | None = Field(
        default=5, ge=1, description="Reflect after this many finished tasks; empty: never."
    )
    every_seconds: float | None = Field(
        default=300.0, gt=0, description="Reflect after this many seconds; empty: never."
    )
    repeats: int = Field(
        default=3,
        ge=2,
        description="N: the same failure or the same model call N times is a stuck signal.",
    )
    stall_seconds: float | None = Field(
        default=300.0,
        gt=0,
        description="No new output for this long, with calls still paid, is a stuck signal.",
    )
    stall_calls: int | None = Field(
        default=20, ge=1, description="No new output after this many calls is a stuck signal."
    )
    max_revisions: int = Field(
        default=3, ge=0, description="Plan revisions one goal may make; 0: verdicts only."
    )
    max_tokens: int = Field(
        default=800, ge=64, description="Longest answer a reflection may give, in tokens."
    )


class Reflection(BaseModel):
    """The model's verdict on a goal run in progress."""

    verdict: Verdict = Field(
        description="on_track: go on; revise: change the plan (give a patch); stuck: it "
        "loops or cannot finish; off_topic: the outputs drift from the goal; done: the "
        "finished outputs already answer the goal."
    )
    reason: str = Field(description="Why, in one or two sentences.")
    patch: PlanPatch | None = Field(
        default=None,
        description="The change, with verdict revise (or with stuck/off_topic when a "
        "change can still fix it).",
    )


class ReflectionRecord(BaseModel):
    """One reflection of a goal run, as the report and its artifact show it."""

    why: str = Field(description="What made the run reflect.")
    verdict: Verdict | Literal["failed", "skipped"] = Field(
        description="The model's verdict; failed/skipped: no verdict, the run went on."
    )
    reason: str = Field(description="The model's reason, or why there was no verdict.")
    signals: list[StuckSignal] = Field(default_factory=list)
    patch: PlanPatch | None = None
    outcome: str = Field(description="What the run did with the verdict.")
    stop: bool = Field(default=False, description="Whether the verdict stopped the run.")

    def markdown(self) -> str:
        lines = [
            f"# Reflection: {self.verdict}\n",
            f"**Why now:** {self.why}\n",
            f"**Reason:** {self.reason}\n",
            f"**Outcome:** {self.outcome}\n",
        ]
        if self.signals:
            lines.append("## Stuck signals\n")
            lines += [f"- `{s.name}`: {s.evidence}" for s in self.signals]
        if self.patch is not None:
            lines += ["\n## Patch\n", "```json", self.patch.model_dump_json(indent=2), "```"]
        return "\n".join(lines)


class RunState(BaseModel):
    """What reflection needs to know about a run in progress."""

    goal: str
    deliverables: list[str]
    inputs: list[str] = Field(description="Names of the goal inputs.")
    tasks: list[TaskSpec] = Field(description="The plan as it stands (failed tasks left out).")
    status: dict[str, str] = Field(description="Task id -> pending, running, completed...")
    errors: dict[str, str] = Field(default_factory=dict, description="Task id -> failure.")
    produced: dict[str, str] = Field(description="Finished results, by name.")
    spent_usd: float
    limit_usd: float | None = None
    calls: int = 0
    elapsed_seconds: float = 0.0
    max_seconds: float | None = None
    revisions_left: int = 0


def check_patch(
    state: RunState,
    plan: Plan,
    patch: PlanPatch,
    *,
    looping: Mapping[str, TaskSpec],
    retired: Collection[str],
    max_tasks: int,
    allowed_kinds: Sequence[TaskKind],
) -> tuple[Plan | None, list[str]]:
    """``plan`` (the tasks still in the run) after ``patch``, or None and every reason
    to reject the patch.

    On top of the plan rules (:meth:`Plan.apply`), a revision of a running goal may not
    cancel finished work, re-prioritise unknown tasks, add composite tasks, reuse an id,
    or add again, under any id, a task of ``looping`` (tasks cancelled or failed for a
    stuck signal). ``retired`` are the ids used earlier in the run (removed or failed).
    """
    errors: list[str] = []
    by_id = {task.id: task for task in state.tasks}
    finished = {tid for tid, status in state.status.items() if status == "completed"}
    if not (patch.cancel or patch.add or patch.priorities):
        errors.append("the patch changes nothing: cancel, add or re-prioritise tasks")
    for tid in patch.cancel:
        if tid in finished:
            errors.append(
                f"task '{tid}' already finished, and its results are kept: do not cancel it"
            )
        elif tid not in by_id and state.status.get(tid) != "failed":  # failed: already out
            errors.append(f"cannot cancel '{tid}': no unfinished task has that id")
    kinds = [k for k in allowed_kinds if k != "composite"]
    taken = set(by_id) | set(retired)
    repeats = {fingerprint(task): tid for tid, task in looping.items()}
    for task in patch.add:
        if task.kind not in kinds:
            errors.append(
                f"task '{task.id}' has kind '{task.kind}': a revision adds tasks that run as "
                f"they are, of kind {' or '.join(repr(k) for k in kinds)}"
            )
        if task.id in taken:
            errors.append(f"the id '{task.id}' is taken by an earlier task: use a new id")
        if fingerprint(task) in repeats:
            errors.append(
                f"task '{task.id}' repeats '{repeats[fingerprint(task)]}', which was stopped "
                "because it was looping: take a different approach"
            )
    for tid in {change.id: change for change in patch.priorities}:
        if tid not in by_id or tid in finished or tid in patch.cancel:
            errors.append(f"cannot re-prioritise '{tid}': no unfinished task has that id")
    try:
        revised = plan.apply(
            patch, finished=finished, produced=list(state.produced), max_tasks=max_tasks
        )
    except PlanPatchError as e:
        errors += e.errors
        revised = None
    return (None if errors else revised), errors
