"""Doing one leaf task: the model answers with one value per output, then a check.

An ``llm`` task's answer is checked against the task's acceptance criterion by the
model; a rejected answer is retried with the reviewer's reason, a bounded number of
times (each rejection is reported to stuck detection). A ``code`` task goes to the code
runner (:mod:`goalflow.agent.coder`), which applies the same ``review``; with no sandbox it
fails with a message that says how to fix that, and nothing runs model-written code on
the host.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

from goalflow.core.chat import ChatModel, Message
from goalflow.core.stuck import report_failed_attempt
from goalflow.core.task import TaskSpec
from goalflow.errors import SandboxUnavailableError, TaskError

__all__ = ["CodeRunner", "Verdict", "review", "run_leaf", "task_brief"]

CodeRunner = Callable[[TaskSpec, dict[str, str]], Awaitable[dict[str, str]]]
_INPUT_PREVIEW = 6000
_FILE_PREVIEW = 1500  # a program reads the whole file; the model needs only its shape


def _as_text(value: Any) -> Any:
    """Small models often answer a list or object where text was asked: keep it, as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


OutputText = Annotated[str, BeforeValidator(_as_text)]


class Verdict(BaseModel):
    """A reviewer's judgement of a task's outputs against its acceptance check."""

    passed: bool = Field(description="Whether the outputs meet the acceptance check.")
    reason: str = Field(description="Why, in one sentence; what to fix when not passed.")


async def run_leaf(
    llm: ChatModel,
    goal: str,
    task: TaskSpec,
    inputs: Mapping[str, str],
    *,
    attempts: int,
    code_runner: CodeRunner | None = None,
) -> dict[str, str]:
    """The outputs of one executable task, by name."""
    if task.kind == "code":
        if code_runner is None:
            raise SandboxUnavailableError(
                f"task '{task.id}' is a code task, and no sandbox is configured to run "
                "model-written programs: `goalflow sandbox check` says why and how to fix "
                "it (and GOALFLOW_SANDBOX must not be 'off'); or re-plan it as an 'llm' task"
            )
        return await code_runner(task, dict(inputs))
    schema = _answer_schema(task)
    messages: list[Message] = [
        {"role": "system", "content": _SYSTEM},
        {"role": "user", "content": task_brief(goal, task, inputs)},
    ]
    reason = ""
    for _ in range(attempts):
        answer = await llm.structured(schema, messages, purpose=f"task {task.id}")
        outputs: dict[str, str] = answer.model_dump(by_alias=True)
        if not task.acceptance:
            return outputs
        verdict = await review(llm, task, outputs)
        if verdict.passed:
            return outputs
        reason = verdict.reason
        report_failed_attempt(reason)
        messages += [
            {"role": "assistant", "content": json.dumps(outputs, ensure_ascii=False)},
            {
                "role": "user",
                "content": f"A reviewer rejected this answer: {reason}\nAnswer again, fixing that.",
            },
        ]
    raise TaskError(
        f"task '{task.id}' did not pass its acceptance check ({task.acceptance!r}) in "
        f"{attempts} attempts; the last review said: {reason}"
    )


_SYSTEM = (
    "You carry out one task of a larger plan. Use the inputs you are given, follow the "
    "instructions, and answer with a JSON object holding one text value per named output."
)


def task_brief(
    goal: str, task: TaskSpec, inputs: Mapping[str, str], *, as_files: bool = False
) -> str:
    """What the model is told about one task: the goal, the task, its inputs, its outputs.

    ``as_files``: the inputs and outputs are files of a program (a code task), so the
    inputs are previews, with their size.
    """
    preview = _FILE_PREVIEW if as_files else _INPUT_PREVIEW
    lines = [f"Overall goal: {goal}", f"Your task: {task.title}", task.instructions]
    for name, value in inputs.items():
        shown = value if len(value) <= preview else value[:preview] + " […]"
        if as_files:
            lines.append(f"Input file {name} ({len(value.encode())} bytes), begins:\n{shown}")
        else:
            lines.append(f"Input {name}:\n{shown}")
    outputs = ", ".join(task.outputs)
    lines.append(
        f"Output files to write: {outputs}" if as_files else f"Outputs to produce: {outputs}"
    )
    if task.acceptance:
        lines.append(f"They must satisfy: {task.acceptance}")
    return "\n\n".join(lines)


def _answer_schema(task: TaskSpec) -> type[BaseModel]:
    # Output names may hold '.' or '-', so fields are positional with the name as alias.
    fields: dict[str, Any] = {
        f"output_{i}": (OutputText, Field(alias=name, description=f"The value of '{name}'."))
        for i, name in enumerate(task.outputs)
    }
    return create_model(
        "TaskAnswer", __config__=ConfigDict(populate_by_name=True, extra="ignore"), **fields
    )


async def review(llm: ChatModel, task: TaskSpec, outputs: Mapping[str, str]) -> Verdict:
    """The model's verdict on ``outputs`` against the task's acceptance check."""
    shown = "\n\n".join(f"{name}:\n{value}" for name, value in outputs.items())
    messages: list[Message] = [
        {
            "role": "system",
            "content": "You review one task's outputs against its acceptance check. Be "
            "strict about the check and ignore everything else.",
        },
        {
            "role": "user",
            "content": f"Task: {task.title}\n{task.instructions}\n\nAcceptance check: "
            f"{task.acceptance}\n\nOutputs:\n{shown}",
        },
    ]
    return await llm.structured(Verdict, messages, purpose=f"review {task.id}")
