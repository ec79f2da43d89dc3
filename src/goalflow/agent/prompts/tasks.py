"""The prompts of an ``llm`` task: its brief, its answer, and the review of the answer."""

from __future__ import annotations

from collections.abc import Mapping

from goalflow.core.task import TaskSpec

__all__ = [
    "REVIEW_SYSTEM",
    "TASK_SYSTEM",
    "answer_feedback",
    "answer_field",
    "preview",
    "review_request",
    "task_brief",
]

# Tasks: an ``llm`` task's answer and the review of it.

_INPUT_PREVIEW = 6000

TASK_SYSTEM = (
    "You carry out one task of a larger plan. Use the inputs you are given, follow the "
    "instructions, and answer with a JSON object holding one text value per named output. "
    "Each value is the output itself, in the form asked for: no introduction, no "
    "explanation, no code fences."
)


def task_brief(goal: str, task: TaskSpec, inputs: Mapping[str, str]) -> str:
    """What the model is told about one task: the goal, the task, its inputs, its outputs."""
    lines = [f"Overall goal: {goal}", f"Your task: {task.title}", task.instructions]
    for name, value in inputs.items():
        lines.append(f"Input {name}:\n{preview(value, _INPUT_PREVIEW)}")
    lines.append(f"Outputs to produce: {', '.join(task.outputs)}")
    if task.format:
        lines.append(f"Their form: {task.format}")
    if task.acceptance:
        lines.append(f"They must satisfy: {task.acceptance}")
    return "\n\n".join(lines)


def preview(value: str, width: int) -> str:
    return value if len(value) <= width else value[:width] + " […]"


def answer_field(name: str, form: str) -> str:
    """The description of one output in an ``llm`` task's answer schema."""
    return f"The value of '{name}' itself" + (f", as {form}." if form else ".")


def answer_feedback(reason: str) -> str:
    """What an ``llm`` task's answer gets back when its form or the reviewer rejected it."""
    return f"This answer was rejected: {reason}\nAnswer again, fixing that."


REVIEW_SYSTEM = (
    "You review one task's outputs against its acceptance check. Be "
    "strict about the check and ignore everything else."
)


def review_request(task: TaskSpec, outputs: Mapping[str, str]) -> str:
    """The user message that shows a task's outputs to the reviewer, with the check."""
    shown = "\n\n".join(f"{name}:\n{value}" for name, value in outputs.items())
    return (
        f"Task: {task.title}\n{task.instructions}\n\nAcceptance check: "
        f"{task.acceptance}\n\nOutputs:\n{shown}"
    )
