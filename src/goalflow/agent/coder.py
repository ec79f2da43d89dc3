"""Code tasks: the model writes a Python program, the sandbox runs it, failures go back.

The model sees the task's instructions, its inputs' names, sizes and previews, and the
contract: each input is a file named after it in the working directory, and each output
must be written to a file named after it. A program that fails (exit code, timeout,
out-of-memory kill, a missing output, an output that is not UTF-8 text, or outputs the
reviewer rejects against the task's acceptance check) goes back to the model with the
reason and its stderr, a bounded number of times; then the task fails with the last
reason. No Prefect here: how one attempt runs (a Prefect task run with an artifact, see
:mod:`goalflow.orchestration.code_tasks`) is passed in, so the loop runs with any sandbox.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pydantic import BaseModel, Field, field_validator

from goalflow.agent.executor import CodeRunner, review
from goalflow.agent.prompts import program_feedback, program_system, task_brief
from goalflow.core.chat import ChatModel, Message
from goalflow.core.program import ProgramLimits, SandboxResult
from goalflow.core.stuck import report_failed_attempt
from goalflow.core.task import TaskSpec
from goalflow.errors import TaskError

__all__ = ["CodeAttempt", "Program", "RunAttempt", "attempt_markdown", "code_runner"]

_MAX_TOKENS = 2048
_FENCE = re.compile(r"^\s*```[\w+-]*\n(?P<code>.*?)\n?```\s*$", re.S)


class Program(BaseModel):
    """A program, as the model answers it."""

    code: str = Field(description="The whole Python 3 program.")

    @field_validator("code")
    @classmethod
    def _unfenced(cls, code: str) -> str:
        """Models often wrap the program in a Markdown fence even inside JSON."""
        match = _FENCE.match(code)
        return match.group("code") if match else code


@dataclass(frozen=True)
class CodeAttempt:
    """One program written for one task, and the files it runs with."""

    task: TaskSpec
    number: int
    code: str
    files: dict[str, bytes]


RunAttempt = Callable[[CodeAttempt], Awaitable[SandboxResult]]


def code_runner(
    llm: ChatModel, goal: str, *, run: RunAttempt, attempts: int, limits: ProgramLimits
) -> CodeRunner:
    """A ``CodeRunner`` for one goal: programs by ``llm``, each attempt run by ``run``."""

    async def run_code_task(task: TaskSpec, inputs: dict[str, str]) -> dict[str, str]:
        files = {name: value.encode() for name, value in inputs.items()}
        messages: list[Message] = [
            {"role": "system", "content": program_system(limits)},
            {"role": "user", "content": task_brief(goal, task, inputs, as_files=True)},
        ]
        reason = ""
        for number in range(1, attempts + 1):
            program = await llm.structured(
                Program, messages, purpose=f"program for {task.id}", max_tokens=_MAX_TOKENS
            )
            result = await run(CodeAttempt(task, number, program.code, files))
            outputs, reason = await _judge(llm, task, result)
            if not reason:
                return outputs
            report_failed_attempt(reason)
            messages += [
                {"role": "assistant", "content": program.model_dump_json()},
                {"role": "user", "content": program_feedback(reason, result)},
            ]
        raise TaskError(
            f"task '{task.id}': none of the {attempts} programs the model wrote produced its "
            f"outputs; the last one failed because {reason}"
        )

    return run_code_task


async def _judge(
    llm: ChatModel, task: TaskSpec, result: SandboxResult
) -> tuple[dict[str, str], str]:
    """The outputs as text, or why they will not do ('' when they will)."""
    if result.failure:
        return {}, result.failure
    outputs: dict[str, str] = {}
    for name, data in result.outputs.items():
        try:
            outputs[name] = data.decode("utf-8")
        except UnicodeDecodeError:
            return {}, f"the output file {name} is not UTF-8 text"
    if task.acceptance:
        verdict = await review(llm, task, outputs)
        if not verdict.passed:
            return {}, (
                f"its outputs did not pass the acceptance check ({task.acceptance!r}): "
                f"{verdict.reason}"
            )
    return outputs, ""


def attempt_markdown(attempt: CodeAttempt, result: SandboxResult) -> str:
    """The attempt's program, outcome and output, for a Prefect artifact."""
    outcome = result.failure or "succeeded"
    written = ", ".join(f"{name} ({len(data)} bytes)" for name, data in result.outputs.items())
    exit_code = "none (stopped)" if result.exit_code is None else str(result.exit_code)
    return "\n\n".join(
        [
            f"## Code attempt {attempt.number} of `{attempt.task.id}`: {outcome}",
            _fenced(attempt.code, "python"),
            f"Exit code {exit_code} after {result.seconds:g} s. Outputs written: "
            f"{written or 'none'}"
            + (f"; missing: {', '.join(result.missing)}" if result.missing else ""),
            "### stdout",
            _fenced(result.stdout, "text"),
            "### stderr",
            _fenced(result.stderr, "text"),
        ]
    )


def _fenced(text: str, language: str) -> str:
    """A fenced block that the text's own backticks cannot close early."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text}\n{fence}"
