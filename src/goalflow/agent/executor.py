"""Doing one leaf task: the model answers with one value per output, then a check.

An ``llm`` task's answer is checked first against the form the task declares, where that
form can be checked (:func:`goalflow.core.forms.declared_form_problem`: one number, a
JSON object, a date), then against the task's acceptance criterion by the model; a
rejected answer is retried with the reviewer's reason, a bounded number of
times (each rejection is reported to stuck detection); when code can run, a task whose
answers were all rejected gets one more attempt as a program, since such tasks are most
often exact work planned as language work. With two model tiers, a task the plan marks
simple is answered by the task model first; once its answer is rejected (or it cannot
answer at all), the planning model makes the attempts left (escalation: no more
attempts in all than with one model). A ``code`` task goes to the code runner
(:mod:`goalflow.agent.coder`), which accepts outputs by deterministic checks and uses
the same ``review`` only as advice; with no sandbox it fails with a message that
says how to fix that, and nothing runs model-written code on the host.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

from goalflow.agent.prompts.tasks import (
    REVIEW_SYSTEM,
    TASK_SYSTEM,
    answer_feedback,
    answer_field,
    review_request,
    task_brief,
)
from goalflow.core.chat import ChatModel, Message
from goalflow.core.forms import declared_form_problem
from goalflow.core.stuck import report_failed_attempt
from goalflow.core.task import TaskSpec
from goalflow.errors import (
    LLMModelNotFoundError,
    LLMRequestError,
    SandboxUnavailableError,
    StructuredOutputError,
    TaskError,
)

__all__ = ["CodeRunner", "Verdict", "review", "run_leaf"]

CodeRunner = Callable[[TaskSpec, dict[str, str]], Awaitable[dict[str, str]]]
logger = logging.getLogger("goalflow.executor")

REVIEW_MAX_TOKENS = 256
"""A verdict is a flag and a sentence: its call reserves this much answer, not a task's."""


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
    task_llm: ChatModel | None = None,
) -> dict[str, str]:
    """The outputs of one executable task, by name. ``llm`` is the planning model; a
    ``task_llm`` answers the tasks the plan marks simple, until its answer is rejected
    or it cannot answer: the attempts left go to ``llm`` (which reviews every answer)."""
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
        {"role": "system", "content": TASK_SYSTEM},
        {"role": "user", "content": task_brief(goal, task, inputs)},
    ]
    reason = ""
    answerer = task_llm if task_llm is not None and task.difficulty == "simple" else llm
    for attempt in range(1, attempts + 1):
        try:
            answer = await answerer.structured(schema, messages, purpose=f"task {task.id}")
        except (StructuredOutputError, LLMRequestError, LLMModelNotFoundError) as e:
            if answerer is llm or attempt == attempts:
                raise
            # The task model could not answer at all (no valid JSON, a model the
            # endpoint does not serve): the planning model makes the next attempt.
            reason = f"the task model could not answer: {e}"
            report_failed_attempt(reason)
            answerer = _escalated(task, reason, llm)
            continue
        outputs: dict[str, str] = answer.model_dump(by_alias=True)
        reason = declared_form_problem(task, outputs) or ""
        if not reason and not task.acceptance:
            return outputs
        if not reason:
            verdict = await review(llm, task, outputs)
            if verdict.passed:
                return outputs
            reason = verdict.reason
        report_failed_attempt(reason)
        if answerer is not llm and attempt < attempts:
            answerer = _escalated(task, f"its answer was rejected: {reason}", llm)
        messages += [
            {"role": "assistant", "content": json.dumps(outputs, ensure_ascii=False)},
            {"role": "user", "content": answer_feedback(reason)},
        ]
    if code_runner is not None:
        return await _as_program(task, inputs, reason, code_runner)
    raise TaskError(
        f"task '{task.id}' did not pass its checks (form {task.format!r}, acceptance "
        f"{task.acceptance!r}) in {attempts} attempts; the last one said: {reason}"
    )


def _escalated(task: TaskSpec, why: str, planning: ChatModel) -> ChatModel:
    """The planning model, for the attempts a simple task has left on the task model."""
    logger.info(
        "task '%s': the task model failed (%s); the planning model takes over", task.id, why
    )
    return planning


async def _as_program(
    task: TaskSpec, inputs: Mapping[str, str], reason: str, code_runner: CodeRunner
) -> dict[str, str]:
    """One more attempt for an ``llm`` task whose answers were all rejected: a program.

    Planners (small ones most) give exact work to the model as language work, and a
    model counts, sums and sorts badly in prose; a program does it exactly. Only a task
    that would otherwise fail gets it; its program is accepted like any code task's.
    """
    logger.info(
        "task '%s': its answers did not pass review (%s); it is tried as a program",
        task.id,
        reason,
    )
    return await code_runner(task.model_copy(update={"kind": "code"}), dict(inputs))


def _answer_schema(task: TaskSpec) -> type[BaseModel]:
    # Output names may hold '.' or '-', so fields are positional with the name as alias.
    fields: dict[str, Any] = {
        f"output_{i}": (OutputText, Field(alias=name, description=answer_field(name, task.format)))
        for i, name in enumerate(task.outputs)
    }
    return create_model(
        "TaskAnswer", __config__=ConfigDict(populate_by_name=True, extra="ignore"), **fields
    )


async def review(llm: ChatModel, task: TaskSpec, outputs: Mapping[str, str]) -> Verdict:
    """The model's verdict on ``outputs`` against the task's acceptance check."""
    messages: list[Message] = [
        {"role": "system", "content": REVIEW_SYSTEM},
        {"role": "user", "content": review_request(task, outputs)},
    ]
    return await llm.structured(
        Verdict, messages, purpose=f"review {task.id}", max_tokens=REVIEW_MAX_TOKENS
    )
