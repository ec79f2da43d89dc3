"""Code tasks without a sandbox: the model's program once parsed, how an attempt is
shown, and the write-run-feedback loop with a scripted model and scripted runs: what the
program is told, outputs handed back on stdout, deterministic acceptance (an executable
check runs, a review of prose acceptance is advice only) and retries that must change
the program."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping, Sequence

import pytest

from goalflow.agent.coder import CodeAttempt, Program, attempt_markdown, code_runner
from goalflow.agent.executor import CodeRunner
from goalflow.core.program import OutputCapture, ProgramLimits, SandboxResult, describe_failure
from goalflow.core.protocol import hand_back
from goalflow.core.stuck import reporting_attempts
from goalflow.core.task import TaskSpec
from goalflow.errors import TaskError
from tests.helpers import ScriptedChat, spec


def test_a_fenced_program_is_unwrapped() -> None:
    fenced = '```python\nprint("hi")\n```'

    assert Program(code=fenced).code == 'print("hi")'
    assert Program(code='print("```")').code == 'print("```")'


def test_the_json_answers_closing_brace_written_into_the_program_is_dropped() -> None:
    assert Program(code="price = 80 * (1 - 0.15)}").code == "price = 80 * (1 - 0.15)\n"
    assert Program(code='print(total)\n"}').code == "print(total)\n"
    # A program that ends in a brace of its own, or is broken anyway, is left as it is.
    assert Program(code="counts = {'a': 1}").code == "counts = {'a': 1}"
    assert Program(code="print((1 + 2}").code == "print((1 + 2}"


def test_an_attempt_shows_code_outcome_and_streams_unbroken_by_backticks() -> None:
    attempt = CodeAttempt(spec("count"), 2, 'print("```")', {}, {}, ("count_out",))
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
    assert "Exit code 1 after 0.25 s. Outputs handed back: none; missing: count_out" in text
    assert "ValueError: x" in text


def _result(*, failure: str, stderr: str = "") -> SandboxResult:
    """A run that failed, as the sandbox reports it."""
    return SandboxResult(
        exit_code=1,
        timed_out=False,
        oom_killed=False,
        stdout="",
        stderr=stderr,
        truncated=False,
        outputs={},
        missing=[],
        seconds=0.1,
        failure=failure,
    )


def _ran(
    outputs: Sequence[str] = ("total",),
    *,
    stdout: str | bytes = "",
    files: Mapping[str, bytes] | None = None,
    exit_code: int = 0,
    stderr: str = "",
    cap: int = 64 * 1024,
) -> SandboxResult:
    """What the sandbox reports of a program that printed ``stdout``, wrote ``files`` and
    exited with ``exit_code``: the outputs read by the protocol, as the engine reads them."""
    printed = OutputCapture(cap)
    printed.add(stdout.encode() if isinstance(stdout, str) else stdout)
    handed: dict[str, bytes] = dict(files or {})
    failure = describe_failure(timeout=None, oom_memory=None, exit_code=exit_code)
    if failure is None:
        handed, failure = hand_back(outputs, handed, printed)
    return SandboxResult(
        exit_code=exit_code,
        timed_out=False,
        oom_killed=False,
        stdout=printed.text(),
        stderr=stderr,
        truncated=printed.truncated,
        outputs=handed,
        missing=[name for name in outputs if name not in handed],
        seconds=0.1,
        failure=failure,
    )


class _Sandbox:
    """Runs each attempt by handing back the next scripted result; keeps the attempts.

    Acceptance checks are answered by ``checks`` (the check passed when True), programs
    by ``results``.
    """

    def __init__(self, *results: SandboxResult, checks: Sequence[bool] = ()) -> None:
        self._results = deque(results)
        self._checks = deque(checks)
        self.attempts: list[CodeAttempt] = []

    async def run(self, attempt: CodeAttempt) -> SandboxResult:
        self.attempts.append(attempt)
        if not attempt.check:
            return self._results.popleft()
        if self._checks.popleft():
            return _ran(())
        return _ran(
            (), exit_code=1, stderr="Traceback ...\n    int(total) == 108\nAssertionError\n"
        )

    @property
    def programs(self) -> list[tuple[int, str]]:
        return [(a.number, a.code) for a in self.attempts if not a.check]


SUM = spec("sum", ["numbers"], ["total"], kind="code")
NUMBERS = {"numbers": "4 8 15 16 23 42"}


def _runner(chat: ScriptedChat, sandbox: _Sandbox, attempts: int = 3) -> CodeRunner:
    return code_runner(
        chat, "Add up some numbers", run=sandbox.run, attempts=attempts, limits=ProgramLimits()
    )


def _accepting(acceptance: str) -> TaskSpec:
    return SUM.model_copy(update={"acceptance": acceptance})


async def test_inputs_are_variables_and_the_model_sees_the_outline_of_a_program() -> None:
    inputs = {"numbers": "4 8 15 16 23 42", "prices.csv": "item,price\ntea,3\n"}
    task = spec("sum", list(inputs), ["total"], kind="code")
    chat = ScriptedChat({"Program": [{"code": "print(sum(map(int, numbers.split())))"}]})
    sandbox = _Sandbox(_ran(stdout="108\n"))

    outputs = await _runner(chat, sandbox)(task, inputs)

    assert outputs == {"total": "108"}
    # Every input is a file, and a variable of its name, or of a name made from it.
    (attempt,) = sandbox.attempts
    assert attempt.files == {name: value.encode() for name, value in inputs.items()}
    assert attempt.variables == {"numbers": "numbers", "prices.csv": "prices_csv"}
    assert attempt.outputs == ("total",)
    brief = chat.calls[0].last_user
    assert "the str variable numbers" in brief and "the str variable prices_csv" in brief
    assert "print(total)" in brief  # the outline ends the way the protocol reads


async def test_an_input_holding_a_number_is_turned_into_one_in_the_outline() -> None:
    inputs = {"price": " 68.00\n", "count": "3", "label": "3 items"}
    task = spec("tax", list(inputs), ["total"], kind="code")
    chat = ScriptedChat({"Program": [{"code": "print(price * 1.08)"}]})

    await _runner(chat, _Sandbox(_ran(stdout="73.44\n")))(task, inputs)

    brief = chat.calls[0].last_user
    assert "price = float(price)  # given as text" in brief
    assert "count = int(count)  # given as text" in brief
    assert "label = " not in brief  # text stays text


async def test_a_json_csv_or_lines_input_is_read_into_what_it_holds_in_the_outline() -> None:
    inputs = {
        "json_text": '[{"name": "lamp", "price": 25}]',
        "csv_text": "name,age\nAlice,34\nBob,27",
        "text_lines": "4 9 2\n3 5 7",
        "orders": "id,total\n1,3.50",
    }
    task = spec("pick", list(inputs), ["answer"], kind="code")
    chat = ScriptedChat({"Program": [{"code": "print(1)"}]})

    await _runner(chat, _Sandbox(_ran(stdout="1\n")))(task, inputs)

    # A small model parses a pasted table the way the outline starts it, not by hand.
    brief = chat.calls[0].last_user
    assert "import csv\nimport json" in brief
    assert "data = json.loads(json_text)  # given as JSON text" in brief
    assert "rows = list(csv.DictReader(csv_text.splitlines()))" in brief
    assert "orders_rows = list(csv.DictReader(orders.splitlines()))" in brief
    # A CSV's columns of numbers are numbers in the outline: text does not divide.
    assert (
        "for row in rows:  # the columns of numbers as numbers\n    row['age'] = int(row['age'])\n"
        in brief
    )
    assert "row['name']" not in brief
    assert "    row['id'] = int(row['id'])\n    row['total'] = float(row['total'])" in brief
    assert "lines = text_lines.splitlines()" in brief


async def test_several_outputs_come_back_as_a_json_object_and_are_outlined_so() -> None:
    task = spec("stats", ["numbers"], ["low", "high"], kind="code")
    chat = ScriptedChat({"Program": [{"code": "print(...)"}]})
    printed = 'checking...\n{"low": 4, "high": "42"}\n'  # a debug line, then the object
    sandbox = _Sandbox(_ran(["low", "high"], stdout=printed))

    outputs = await _runner(chat, sandbox)(task, NUMBERS)

    assert outputs == {"low": "4", "high": "42"}
    assert 'print(json.dumps({"low": low, "high": high}))' in chat.calls[0].last_user


async def test_a_failed_run_goes_back_to_the_model_and_a_later_program_succeeds() -> None:
    chat = ScriptedChat({"Program": [{"code": "```python\nbroken()\n```"}, {"code": "fixed()"}]})
    traceback = "Traceback (most recent call last):\n" + "  ...\n" * 30 + "NameError: broken\n"
    sandbox = _Sandbox(
        _result(failure="it exited with code 1", stderr=traceback),
        _ran(files={"total": b"108"}),  # an output file still counts
    )
    failures: list[str] = []

    with reporting_attempts(failures.append):
        outputs = await _runner(chat, sandbox)(SUM, NUMBERS)

    assert outputs == {"total": "108"}
    # What runs is the model's program, unfenced, with each input as a file.
    assert sandbox.programs == [(1, "broken()"), (2, "fixed()")]
    assert sandbox.attempts[0].files == {"numbers": b"4 8 15 16 23 42"}
    first, retry = chat.calls
    assert retry.messages[: len(first.messages)] == first.messages
    assert "it exited with code 1" in retry.last_user
    # The last lines of the traceback, not all of it, and what was expected.
    assert "NameError: broken" in retry.last_user and "Traceback" not in retry.last_user
    assert "prints the value of total" in retry.last_user
    assert failures == ["it exited with code 1"]


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        (_ran(files={"total": b"\xff\xfe"}), "the output total is not UTF-8 text"),
        (_ran(stdout="\n"), "it printed nothing: print the value of total"),
        (_ran(files={"total": b" \n"}), "total came back empty"),
        (
            _ran(stdout="7\n" * 5_000_000),  # 10 MB
            "it printed 10000000 bytes, more than the 65536 the sandbox keeps, so total "
            "would arrive cut short",
        ),
    ],
    ids=["not-text", "printed-nothing", "blank-file", "printed-10-MB"],
)
async def test_outputs_that_will_not_do_go_back_to_the_model_with_the_reason(
    first: SandboxResult, reason: str
) -> None:
    chat = ScriptedChat({"Program": [{"code": "first()"}, {"code": "second()"}]})
    sandbox = _Sandbox(first, _ran(stdout="108\n"))

    outputs = await _runner(chat, sandbox)(SUM, NUMBERS)

    assert outputs == {"total": "108"}
    assert reason in chat.calls_for("Program")[1].last_user


async def test_an_output_not_of_the_declared_form_goes_back_to_the_model() -> None:
    chat = ScriptedChat({"Program": [{"code": "print(words[3])"}, {"code": "print(len(w))"}]})
    sandbox = _Sandbox(_ran(stdout="tasks,\n"), _ran(stdout="14\n"))
    counted = SUM.model_copy(update={"format": "number"})

    outputs = await _runner(chat, sandbox)(counted, NUMBERS)

    assert outputs == {"total": "14"}
    retry = chat.calls_for("Program")[1].last_user
    assert "its output total ('tasks,') is not one number" in retry
    assert "tasks," in retry  # what it printed is shown too


async def test_a_review_of_prose_acceptance_is_advice_and_never_rejects_outputs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    chat = ScriptedChat(
        {
            "Program": [{"code": "print('one hundred and eight')"}],
            "Verdict": [{"passed": False, "reason": "it is words"}],
        }
    )
    sandbox = _Sandbox(_ran(stdout="one hundred and eight\n"))

    with caplog.at_level(logging.INFO, logger="goalflow.coder"):
        outputs = await _runner(chat, sandbox)(_accepting("the total is one integer"), NUMBERS)

    assert outputs == {"total": "one hundred and eight"}
    assert len(chat.calls_for("Program")) == 1
    assert "the total is one integer" in chat.calls_for("Verdict")[0].last_user
    assert "it is words" in caplog.text  # recorded, as advice


async def test_an_executable_acceptance_check_runs_on_the_outputs_and_decides() -> None:
    chat = ScriptedChat({"Program": [{"code": "print('one hundred')"}, {"code": "print(108)"}]})
    sandbox = _Sandbox(_ran(stdout="one hundred\n"), _ran(stdout="108\n"), checks=[False, True])
    failures: list[str] = []

    with reporting_attempts(failures.append):
        outputs = await _runner(chat, sandbox)(_accepting("int(total) == 108"), NUMBERS)

    assert outputs == {"total": "108"}
    assert not chat.calls_for("Verdict")  # no model review: the check decides
    checks = [a for a in sandbox.attempts if a.check]
    assert [c.number for c in checks] == [1, 2]
    # The check gets the task's inputs and outputs, as files and variables.
    assert checks[0].files == {"numbers": b"4 8 15 16 23 42", "total": b"one hundred"}
    assert checks[0].variables == {"numbers": "numbers", "total": "total"}
    assert checks[0].outputs == ()
    assert "int(total) == 108" in checks[0].code
    retry = chat.calls_for("Program")[1].last_user
    assert "did not pass the acceptance check int(total) == 108" in retry
    assert "total = 'one hundred'" in retry and "AssertionError" in retry
    assert "int(total) == 108" in chat.calls[0].last_user  # told before, too
    assert len(failures) == 1


async def test_a_program_sent_again_is_not_a_retry_and_the_model_is_asked_to_change_it() -> None:
    again = {"code": "# same thing\nprint( total_of(numbers) )"}  # same code, other layout
    chat = ScriptedChat(
        {"Program": [{"code": "print(total_of(numbers))"}, again, {"code": "print(108)"}]}
    )
    sandbox = _Sandbox(
        _result(failure="it exited with code 1", stderr="NameError: total_of"),
        _ran(stdout="108\n"),
    )
    failures: list[str] = []

    with reporting_attempts(failures.append):
        outputs = await _runner(chat, sandbox, attempts=2)(SUM, NUMBERS)

    assert outputs == {"total": "108"}
    # The resent program was not run and did not use up the second attempt.
    assert sandbox.programs == [(1, "print(total_of(numbers))"), (2, "print(108)")]
    assert failures == ["it exited with code 1"]
    asks = chat.calls_for("Program")
    assert "same program as attempt 1" in asks[2].last_user and "must change" in asks[2].last_user
    # A model decoding greedily would resend it again: the re-ask samples more widely.
    assert [call.temperature for call in asks] == [None, None, 0.7]


async def test_a_model_that_keeps_sending_the_same_program_is_asked_a_bounded_number_of_times() -> (
    None
):
    chat = ScriptedChat({"Program": [{"code": "print(total_of(numbers))"}] * 10})
    sandbox = _Sandbox(_result(failure="it exited with code 1"))

    with pytest.raises(TaskError) as caught:
        await _runner(chat, sandbox)(SUM, NUMBERS)

    assert "sent one it had already tried" in str(caught.value)
    assert str(caught.value).endswith("it exited with code 1")
    assert len(sandbox.attempts) == 1
    assert len(chat.calls) == 4  # the program, then three answers that repeat it
    # The last ask starts afresh: the brief and what failed, sampled widely.
    last = chat.calls[-1]
    assert [m["role"] for m in last.messages] == ["system", "user", "user"]
    assert "failed" in last.last_user and last.temperature == 1.0


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
