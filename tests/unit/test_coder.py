"""Code tasks without a sandbox: the model's program once parsed, how an attempt is
shown, and the write-run-feedback loop with a scripted model and scripted runs."""

from __future__ import annotations

from collections import deque

import pytest

from goalflow.agent.coder import CodeAttempt, Program, attempt_markdown, code_runner
from goalflow.agent.executor import CodeRunner
from goalflow.core.program import ProgramLimits, SandboxResult
from goalflow.core.stuck import reporting_attempts
from goalflow.core.task import TaskSpec
from goalflow.errors import TaskError
from tests.helpers import Answer, ScriptedChat, spec


def test_a_fenced_program_is_unwrapped() -> None:
    fenced = '```python\nprint("hi")\n```'

    assert Program(code=fenced).code == 'print("hi")'
    assert Program(code='print("```")').code == 'print("```")'


def test_an_attempt_shows_code_outcome_and_streams_unbroken_by_backticks() -> None:
    attempt = CodeAttempt(spec("count"), 2, 'print("```")', {})
    result = SandboxResult(
        exit_code=1,
        timed_out=False,
        oom_killed=False,
        stdout="```\n",
        stderr="Traceback ...\nValueError: x\n",
        truncated=False,
        outputs={},
        missing=["count_out"],
        seconds=0.25,
        failure="it exited with code 1",
    )

    text = attempt_markdown(attempt, result)

    assert text.startswith("## Code attempt 2 of `count`: it exited with code 1")
    assert '````python\nprint("```")\n````' in text
    assert "Exit code 1 after 0.25 s. Outputs written: none; missing: count_out" in text
    assert "ValueError: x" in text


def _result(
    *, failure: str | None = None, outputs: dict[str, bytes] | None = None, stderr: str = ""
) -> SandboxResult:
    return SandboxResult(
        exit_code=1 if failure else 0,
        timed_out=False,
        oom_killed=False,
        stdout="",
        stderr=stderr,
        truncated=False,
        outputs=outputs or {},
        missing=[],
        seconds=0.1,
        failure=failure,
    )


class _Sandbox:
    """Runs each attempt by handing back the next scripted result; keeps the attempts."""

    def __init__(self, *results: SandboxResult) -> None:
        self._results = deque(results)
        self.attempts: list[CodeAttempt] = []

    async def run(self, attempt: CodeAttempt) -> SandboxResult:
        self.attempts.append(attempt)
        return self._results.popleft()


SUM = spec("sum", ["numbers"], ["total"], kind="code")
NUMBERS = {"numbers": "4 8 15 16 23 42"}


def _runner(chat: ScriptedChat, sandbox: _Sandbox, attempts: int = 3) -> CodeRunner:
    return code_runner(
        chat, "Add up some numbers", run=sandbox.run, attempts=attempts, limits=ProgramLimits()
    )


async def test_a_failed_run_goes_back_to_the_model_and_a_later_program_succeeds() -> None:
    chat = ScriptedChat({"Program": [{"code": "```python\nbroken()\n```"}, {"code": "fixed()"}]})
    sandbox = _Sandbox(
        _result(failure="it exited with code 1", stderr="Traceback ...\nNameError: broken"),
        _result(outputs={"total": b"108"}),
    )
    failures: list[str] = []

    with reporting_attempts(failures.append):
        outputs = await _runner(chat, sandbox)(SUM, NUMBERS)

    assert outputs == {"total": "108"}
    # What runs is the model's program, unfenced, with each input as a file.
    assert [(a.number, a.code) for a in sandbox.attempts] == [(1, "broken()"), (2, "fixed()")]
    assert sandbox.attempts[0].files == {"numbers": b"4 8 15 16 23 42"}
    first, retry = chat.calls
    assert retry.messages[: len(first.messages)] == first.messages
    assert "it exited with code 1" in retry.last_user
    assert "NameError: broken" in retry.last_user  # the end of its stderr
    assert failures == ["it exited with code 1"]


@pytest.mark.parametrize(
    ("task", "first_outputs", "verdicts", "reason"),
    [
        (SUM, {"total": b"\xff\xfe"}, [], "the output file total is not UTF-8 text"),
        (
            SUM.model_copy(update={"acceptance": "the total is one integer"}),
            {"total": b"one hundred and eight"},
            [{"passed": False, "reason": "it is words"}, {"passed": True, "reason": "ok"}],
            "it is words",
        ),
    ],
    ids=["not-text", "rejected-by-review"],
)
async def test_outputs_that_will_not_do_go_back_to_the_model_with_the_reason(
    task: TaskSpec, first_outputs: dict[str, bytes], verdicts: list[Answer], reason: str
) -> None:
    chat = ScriptedChat(
        {"Program": [{"code": "first()"}, {"code": "second()"}], "Verdict": verdicts}
    )
    sandbox = _Sandbox(_result(outputs=first_outputs), _result(outputs={"total": b"108"}))

    outputs = await _runner(chat, sandbox)(task, NUMBERS)

    assert outputs == {"total": "108"}
    assert reason in chat.calls_for("Program")[1].last_user


async def test_a_task_whose_programs_all_fail_ends_in_a_task_error_with_the_last_reason() -> None:
    chat = ScriptedChat({"Program": [{"code": "first()"}, {"code": "second()"}]})
    sandbox = _Sandbox(
        _result(failure="it exited with code 1"), _result(failure="it ran out of memory (256m)")
    )

    with pytest.raises(TaskError) as caught:
        await _runner(chat, sandbox, attempts=2)(SUM, NUMBERS)

    assert "'sum'" in str(caught.value)
    assert str(caught.value).endswith("it ran out of memory (256m)")
    assert len(chat.calls) == len(sandbox.attempts) == 2
