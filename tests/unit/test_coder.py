"""What the model's program looks like once parsed, and how an attempt is shown."""

from __future__ import annotations

from goalflow.agent.coder import CodeAttempt, Program, attempt_markdown
from goalflow.core.program import SandboxResult
from tests.helpers import spec


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
