"""Code tasks: the model writes a Python program, the sandbox runs it, failures go back.

The protocol is :mod:`goalflow.core.protocol`: the program gets each input as a ``str``
variable named as the input (and as a file), and hands back its outputs by printing
them (one output: its value; several: one JSON object keyed by output name) or as files
named as the outputs. The model is told so, with an example and the outline of a
program that uses the task's own names (:func:`goalflow.agent.prompts.program_brief`).

Acceptance is deterministic: the program ran to its end (exit code 0) and handed back
every output, not blank, as UTF-8 text, of the form the task declares where that form
can be checked (:func:`goalflow.core.forms.declared_form_problem`); and when the task's
``acceptance`` is an executable check (a Python ``assert`` or expression about the
outputs, see :func:`goalflow.core.protocol.acceptance_program`) that check, run in the
sandbox on the outputs, passes. Prose acceptance is shown to the model, and once a program
succeeds the model reviews its outputs against it, but only as advice: the verdict is
logged and never rejects outputs (``llm`` tasks keep the review that rejects, see
:mod:`goalflow.agent.executor`).

A program that sets an input's variable to a text literal (the model pasting the value
by hand, often into a broken string) runs without that assignment
(:func:`goalflow.core.protocol.without_pasted_inputs`). A failed attempt goes back to
the model with the reason, the last lines of the traceback and what was expected, a
bounded number of times; then the task fails with the last reason. A retry that sends
a program already tried (the same code, whatever its comments and layout) is not run:
the model is asked again to change it, at most ``_REPEAT_ASKS`` times an attempt, each
time at a higher sampling temperature. No Prefect here: how one run goes (a Prefect task
run with an artifact, see :mod:`goalflow.orchestration.code_tasks`) is passed in, so the
loop runs with any sandbox.
"""

from __future__ import annotations

import ast
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pydantic import BaseModel, Field, field_validator

from goalflow.agent.executor import CodeRunner, review
from goalflow.agent.prompts.programs import (
    failed_check,
    program_brief,
    program_feedback,
    program_repeated,
    program_restart,
    program_system,
)
from goalflow.core.chat import ChatModel, Message
from goalflow.core.forms import declared_form_problem
from goalflow.core.program import ProgramLimits, SandboxResult
from goalflow.core.protocol import acceptance_program, input_variables, without_pasted_inputs
from goalflow.core.stuck import report_failed_attempt
from goalflow.core.task import TaskSpec
from goalflow.errors import StructuredOutputError, TaskError

__all__ = ["CodeAttempt", "Program", "RunAttempt", "attempt_markdown", "code_runner"]

_MAX_TOKENS = 2048
_REPEAT_ASKS = 2
_REPEAT_TEMPERATURES = (0.7, 1.0)  # of the re-asks after a repeated program
_FENCE = re.compile(r"^\s*```[\w+-]*\n(?P<code>.*?)\n?```\s*$", re.S)
logger = logging.getLogger("goalflow.coder")


class Program(BaseModel):
    """A program, as the model answers it."""

    code: str = Field(description="The whole Python 3 program.")

    @field_validator("code")
    @classmethod
    def _unwrapped(cls, code: str) -> str:
        """The program without what the model wrapped around it: a Markdown fence (often
        written even inside JSON), or the closing brace of the JSON answer itself written
        into the program (``x = 1}``) when the program parses only without it."""
        match = _FENCE.match(code)
        code = match.group("code") if match else code
        end = code.rstrip()
        while end.endswith("}") and not _parses(end):
            end = end[:-1].rstrip().removesuffix('"').rstrip()
            if _parses(end):
                return end + "\n"
        return code


@dataclass(frozen=True)
class CodeAttempt:
    """One sandboxed run for one task: program ``number`` the model wrote or, with
    ``check``, the task's acceptance check of what that program handed back.

    ``files`` are put in the working directory, ``variables`` (file -> variable) of
    them are also given as variables, and ``outputs`` are to be handed back.
    """

    task: TaskSpec
    number: int
    code: str
    files: dict[str, bytes]
    variables: dict[str, str]
    outputs: tuple[str, ...]
    check: bool = False

    @property
    def label(self) -> str:
        """``code attempt 2: Sum numbers``, ``acceptance check 2: Sum numbers``."""
        return f"{self._what} {self.number}: {self.task.title}"

    @property
    def description(self) -> str:
        """``Code attempt 2 of sum``, ``Acceptance check 2 of sum``."""
        return f"{self._what.capitalize()} {self.number} of {self.task.id}"

    @property
    def _what(self) -> str:
        return "acceptance check" if self.check else "code attempt"


RunAttempt = Callable[[CodeAttempt], Awaitable[SandboxResult]]


def code_runner(
    llm: ChatModel, goal: str, *, run: RunAttempt, attempts: int, limits: ProgramLimits
) -> CodeRunner:
    """A ``CodeRunner`` for one goal: programs by ``llm``, each attempt run by ``run``."""

    async def run_code_task(task: TaskSpec, inputs: dict[str, str]) -> dict[str, str]:
        variables = input_variables(inputs)
        check = _Check.of(task, inputs)
        files = {name: value.encode() for name, value in inputs.items()}
        messages: list[Message] = [
            {"role": "system", "content": program_system(limits)},
            {
                "role": "user",
                "content": program_brief(goal, task, inputs, variables, check=check is not None),
            },
        ]
        tried: dict[str, int] = {}  # each program's shape -> the attempt that ran it
        reason = ""
        for number in range(1, attempts + 1):
            program = await _new_program(llm, task, messages, tried, reason)
            tried[_shape(program.code)] = number
            code, pasted = without_pasted_inputs(program.code, variables.values())
            if pasted:
                logger.info(
                    "task '%s': program %d set %s by hand; the given values are used",
                    task.id,
                    number,
                    ", ".join(pasted),
                )
            attempt = CodeAttempt(task, number, code, files, variables, (*task.outputs,))
            result = await run(attempt)
            outputs, reason, shown = await _accept(llm, run, attempt, result, check)
            if not reason:
                return outputs
            report_failed_attempt(reason)
            messages += [
                {"role": "assistant", "content": program.model_dump_json()},
                {
                    "role": "user",
                    "content": program_feedback(
                        reason, shown, task.outputs, task.acceptance if check else None
                    ),
                },
            ]
        raise TaskError(
            f"task '{task.id}': none of the {attempts} programs the model wrote produced its "
            f"outputs; the last one failed because {reason}"
        )

    return run_code_task


@dataclass(frozen=True)
class _Check:
    """A task's executable acceptance check, and the variables it runs with."""

    code: str
    variables: dict[str, str]

    @classmethod
    def of(cls, task: TaskSpec, inputs: dict[str, str]) -> _Check | None:
        if not task.acceptance:
            return None
        variables = input_variables([*inputs, *task.outputs])
        code = acceptance_program(task.acceptance, variables, task.outputs)
        return None if code is None else cls(code, variables)


async def _new_program(
    llm: ChatModel, task: TaskSpec, messages: list[Message], tried: dict[str, int], reason: str
) -> Program:
    """A program not tried before; one that was goes back with a request to change it,
    asked for at a higher temperature each time (a model decoding greedily would
    otherwise answer the same conversation the same way), the last time in a fresh
    conversation that only says what failed (the long one keeps pulling the model back
    to the program it wrote)."""
    for repeat in range(_REPEAT_ASKS + 1):
        last = repeat == _REPEAT_ASKS and repeat > 0
        asked = [*messages[:2], {"role": "user", "content": program_restart(reason)}]
        program = await llm.structured(
            Program,
            asked if last else messages,
            purpose=f"program for {task.id}",
            max_tokens=_MAX_TOKENS,
            temperature=_REPEAT_TEMPERATURES[repeat - 1] if repeat else None,
        )
        earlier = tried.get(_shape(program.code))
        if earlier is None:
            return program
        messages += [
            {"role": "assistant", "content": program.model_dump_json()},
            {"role": "user", "content": program_repeated(earlier, reason)},
        ]
    raise TaskError(
        f"task '{task.id}': asked {_REPEAT_ASKS + 1} times for a changed program, the model "
        f"sent one it had already tried; that program failed because {reason}"
    )


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError, RecursionError):
        return False
    return True


def _shape(code: str) -> str:
    """What a program does, apart from its comments and layout."""
    try:
        return ast.dump(ast.parse(code))
    except (SyntaxError, ValueError, RecursionError):
        return "\n".join(line.rstrip() for line in code.strip().splitlines())


async def _accept(
    llm: ChatModel,
    run: RunAttempt,
    attempt: CodeAttempt,
    result: SandboxResult,
    check: _Check | None,
) -> tuple[dict[str, str], str, SandboxResult]:
    """The outputs as text, or why they will not do ('' when they will) with the run
    that shows why: the program's, or the acceptance check's."""
    if result.failure:
        return {}, result.failure, result
    outputs: dict[str, str] = {}
    for name, data in result.outputs.items():
        try:
            outputs[name] = data.decode("utf-8")
        except UnicodeDecodeError:
            return {}, f"the output {name} is not UTF-8 text", result
    task = attempt.task
    problem = declared_form_problem(task, outputs)
    if problem is not None:
        return {}, problem, result
    if check is not None:
        files = {**attempt.files, **result.outputs}
        checked = await run(
            CodeAttempt(task, attempt.number, check.code, files, check.variables, (), check=True)
        )
        if checked.failure:
            return {}, failed_check(task.acceptance, outputs), checked
    elif task.acceptance:
        await _advise(llm, task, outputs)
    return outputs, "", result


async def _advise(llm: ChatModel, task: TaskSpec, outputs: dict[str, str]) -> None:
    """The model's review of a code task's outputs against prose acceptance: logged only.

    A small model talks itself out of right answers as often as into wrong ones; what
    decides is the deterministic checks.
    """
    try:
        verdict = await review(llm, task, outputs)
    except StructuredOutputError as e:
        logger.warning("task '%s': no advisory review of its outputs: %s", task.id, e)
        return
    if verdict.passed:
        logger.info(
            "task '%s': the advisory review passed its outputs: %s", task.id, verdict.reason
        )
    else:
        logger.warning(
            "task '%s': the advisory review doubts its outputs against %r (kept: code tasks "
            "are accepted by deterministic checks): %s",
            task.id,
            task.acceptance,
            verdict.reason,
        )


def attempt_markdown(attempt: CodeAttempt, result: SandboxResult) -> str:
    """The attempt's program (or check), outcome and output, for a Prefect artifact."""
    outcome = result.failure or ("passed" if attempt.check else "succeeded")
    handed = ", ".join(f"{name} ({len(data)} bytes)" for name, data in result.outputs.items())
    exit_code = "none (stopped)" if result.exit_code is None else str(result.exit_code)
    heading = attempt.description.removesuffix(attempt.task.id) + f"`{attempt.task.id}`"
    return "\n\n".join(
        [
            f"## {heading}: {outcome}",
            _fenced(attempt.code, "python"),
            f"Exit code {exit_code} after {result.seconds:g} s. Outputs handed back: "
            f"{handed or 'none'}"
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
