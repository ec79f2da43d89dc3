"""The reflection prompt: the verdict on a goal run in progress (the models are
:mod:`goalflow.core.revision`'s)."""

from __future__ import annotations

from collections.abc import Sequence

from goalflow.core.chat import Message
from goalflow.core.revision import RunState
from goalflow.core.stuck import StuckSignal

__all__ = ["REFLECTION_SYSTEM", "reflection_messages"]

# Reflection: the verdict on a goal run in progress (goalflow.core.revision's models).

_VALUE_PREVIEW = 300
_PRODUCED_BUDGET = 3000  # characters of finished results shown to the model

REFLECTION_SYSTEM = """You review an autonomous agent's run of a goal while it runs. Judge \
it and answer with a JSON object {"verdict": ..., "reason": ..., "patch": ...}.
Verdicts:
- "on_track": the plan still leads to the goal; no patch.
- "revise": change the plan with a patch {"cancel": [ids of unfinished tasks], "add": \
[new tasks], "priorities": [{"id", "value", "effort"}]}. New tasks have the plan's task \
fields (id, title, kind, instructions, inputs, outputs, acceptance, value, effort), new \
ids, kind 'llm' or 'code', and may consume finished results by name. Finished results \
are kept: never redo them. Every unfinished task must still be needed, and every \
deliverable must still be produced by one task.
- "stuck": the run loops or cannot finish. "off_topic": the outputs drift away from the \
goal. Either stops the run; when a revision could still fix it, include the patch.
- "done": the finished results already answer the goal.
A task that was looping must not be added again unchanged: take a different approach."""


def reflection_messages(state: RunState, signals: Sequence[StuckSignal], why: str) -> list[Message]:
    """The prompt of one reflection: goal, plan, results so far, spend, time, signals."""
    lines = [
        f"Goal: {state.goal}",
        f"Deliverables: {', '.join(state.deliverables)}",
        f"Goal inputs: {', '.join(state.inputs) or 'none'}",
        "Plan (id [status] kind: title; inputs -> outputs):",
    ]
    for task in state.tasks:
        status = state.status.get(task.id, "pending")
        error = f" - failed: {_clip(state.errors[task.id], 200)}" if task.id in state.errors else ""
        lines.append(
            f"- {task.id} [{status}] {task.kind}: {task.title}; "
            f"{', '.join(task.inputs) or '-'} -> {', '.join(task.outputs)}{error}"
        )
    for tid, error in state.errors.items():
        if tid not in {task.id for task in state.tasks}:
            lines.append(f"- {tid} [failed]: {_clip(error, 200)}")
    lines.append("Produced so far:" if state.produced else "Produced so far: nothing")
    left = _PRODUCED_BUDGET
    for name, value in state.produced.items():
        shown = _clip(value, min(_VALUE_PREVIEW, max(left, 40)))
        left -= len(shown)
        lines.append(f"- {name}: {shown}")
    limit = f" of ${state.limit_usd:g}" if state.limit_usd else " (no limit)"
    clock = f" of {state.max_seconds:g} s" if state.max_seconds else " (no limit)"
    lines += [
        f"Spent: ${state.spent_usd:.4f}{limit} in {state.calls} model calls; "
        f"time: {state.elapsed_seconds:.0f} s{clock}; revisions left: {state.revisions_left}",
        "Stuck signals: " + ("none" if not signals else ""),
        *(f"- {s.name}: {s.evidence}" for s in signals),
        f"Why you are asked now: {why}",
    ]
    return [
        {"role": "system", "content": REFLECTION_SYSTEM},
        {"role": "user", "content": "\n".join(lines)},
    ]


def _clip(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
