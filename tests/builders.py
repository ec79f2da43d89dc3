"""Small builders shared by the unit tests."""

from __future__ import annotations

from collections.abc import Sequence

from goalflow.core.task import TaskKind, TaskSpec


def spec(
    task_id: str,
    inputs: Sequence[str] = (),
    outputs: Sequence[str] | None = None,
    *,
    kind: TaskKind = "llm",
    value: float = 1.0,
    effort: float = 1.0,
) -> TaskSpec:
    return TaskSpec(
        id=task_id,
        title=f"do {task_id}",
        kind=kind,
        instructions=f"Do {task_id}.",
        inputs=list(inputs),
        outputs=[f"{task_id}_out"] if outputs is None else list(outputs),
        value=value,
        effort=effort,
    )
