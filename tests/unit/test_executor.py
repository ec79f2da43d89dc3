"""Doing one leaf task with a scripted model: one value per output, reviews and their
retries, and code tasks handed to the code runner, or refused without one.

The model is a ``ScriptedChat`` answering by response schema; no Prefect, no server.
"""

from __future__ import annotations

import json

import pytest

from goalflow.agent.coder import code_runner
from goalflow.agent.executor import run_leaf
from goalflow.core.program import ProgramLimits, SandboxResult
from goalflow.core.stuck import reporting_attempts
from goalflow.core.task import TaskSpec
from goalflow.errors import SandboxUnavailableError, StructuredOutputError, TaskError
from goalflow.testing import ChatRequest
from tests.helpers import ChatCall, ScriptedChat, spec, task_title

GOAL = "Write a short report on green tea"


def _poem() -> TaskSpec:
    return spec("poem", ["topic"], ["poem"]).model_copy(
        update={"acceptance": "exactly three lines"}
    )


def _verdict(passed: bool, reason: str) -> dict[str, object]:
    return {"passed": passed, "reason": reason}


async def test_an_llm_task_returns_one_text_value_per_declared_output() -> None:
    chat = ScriptedChat({"TaskAnswer": [{"title": "Tea", "body.md": "Green tea is..."}]})

    outputs = await run_leaf(
        chat, GOAL, spec("split", ["text"], ["title", "body.md"]), {"text": "source"}, attempts=3
    )

    assert outputs == {"title": "Tea", "body.md": "Green tea is..."}
    (call,) = chat.calls  # no acceptance check: no review
    assert set(call.schema.model_json_schema()["properties"]) == {"title", "body.md"}
    assert "source" in call.last_user  # the model sees the task's inputs


async def test_the_form_a_task_must_answer_in_reaches_the_model() -> None:
    chat = ScriptedChat({"TaskAnswer": [{"names": "Ada, Bob"}]})
    names = spec("names", ["text"], ["names"]).model_copy(
        update={"format": "first names, comma-separated"}
    )

    await run_leaf(chat, GOAL, names, {"text": "Ada met Bob"}, attempts=1)

    (call,) = chat.calls
    assert "first names, comma-separated" in call.last_user
    field = call.schema.model_json_schema()["properties"]["names"]
    assert "first names, comma-separated" in field["description"]


async def test_an_answer_not_of_the_declared_form_is_asked_again_without_a_review() -> None:
    chat = ScriptedChat({"TaskAnswer": [{"count": "fourteen"}, {"count": "14"}]})
    count = spec("count", ["text"], ["count"]).model_copy(update={"format": "a number"})
    failures: list[str] = []

    with reporting_attempts(failures.append):
        outputs = await run_leaf(chat, GOAL, count, {"text": "..."}, attempts=3)

    assert outputs == {"count": "14"}
    _, retry = chat.calls  # no review: the form decides
    assert "its output count ('fourteen') is not one number" in retry.last_user
    assert failures == [
        "its output count ('fourteen') is not one number, the form the task declares ('a number')"
    ]


async def test_an_answer_that_is_not_text_is_kept_as_json_text() -> None:
    chat = ScriptedChat({"TaskAnswer": [{"kinds": ["sencha", "matcha"]}]})

    outputs = await run_leaf(chat, GOAL, spec("list", outputs=["kinds"]), {}, attempts=1)

    assert outputs == {"kinds": '["sencha", "matcha"]'}


async def test_an_answer_missing_an_output_is_refused_by_its_schema() -> None:
    chat = ScriptedChat({"TaskAnswer": [{"title": "Tea"}]})

    with pytest.raises(StructuredOutputError):
        await run_leaf(chat, GOAL, spec("split", outputs=["title", "body"]), {}, attempts=3)


async def test_an_answer_that_passes_its_review_is_returned() -> None:
    chat = ScriptedChat(
        {
            "TaskAnswer": [{"poem": "steam\nleaf\ncup"}],
            "Verdict": [_verdict(True, "three lines")],
        }
    )

    outputs = await run_leaf(chat, GOAL, _poem(), {"topic": "green tea"}, attempts=3)

    assert outputs == {"poem": "steam\nleaf\ncup"}
    assert [c.schema_name for c in chat.calls] == ["TaskAnswer", "Verdict"]
    review = chat.calls[1]
    assert "steam\nleaf\ncup" in review.last_user and "exactly three lines" in review.last_user


async def test_a_rejected_answer_is_asked_again_with_the_reviewers_reason() -> None:
    chat = ScriptedChat(
        {
            "TaskAnswer": [{"poem": "steam\nleaf"}, {"poem": "steam\nleaf\ncup"}],
            "Verdict": [_verdict(False, "it has two lines, not three"), _verdict(True, "ok")],
        }
    )
    failures: list[str] = []

    with reporting_attempts(failures.append):
        outputs = await run_leaf(chat, GOAL, _poem(), {"topic": "green tea"}, attempts=3)

    assert outputs == {"poem": "steam\nleaf\ncup"}
    assert [c.schema_name for c in chat.calls] == ["TaskAnswer", "Verdict", "TaskAnswer", "Verdict"]
    first, retry = chat.calls_for("TaskAnswer")
    # The same conversation goes on: the rejected answer, then the reviewer's reason.
    assert retry.messages[: len(first.messages)] == first.messages
    assert json.loads(retry.messages[len(first.messages)]["content"]) == {"poem": "steam\nleaf"}
    assert "it has two lines, not three" in retry.last_user
    assert failures == ["it has two lines, not three"]  # stuck detection hears of each one


async def test_answers_rejected_every_time_fail_the_task_after_its_attempts() -> None:
    chat = ScriptedChat(
        {
            "TaskAnswer": [{"poem": "steam\nleaf"}, {"poem": "steam"}],
            "Verdict": [_verdict(False, "two lines"), _verdict(False, "one line now")],
        }
    )

    with pytest.raises(TaskError) as caught:
        await run_leaf(chat, GOAL, _poem(), {"topic": "green tea"}, attempts=2)

    message = str(caught.value)
    assert "'poem'" in message and "exactly three lines" in message
    assert message.endswith("one line now")  # the last review's reason
    assert len(chat.calls_for("TaskAnswer")) == 2


async def test_when_code_can_run_a_task_whose_answers_were_all_rejected_is_tried_as_a_program() -> (
    None
):
    chat = ScriptedChat(
        {
            "TaskAnswer": [{"count": "ten"}, {"count": "10"}],
            "Verdict": [_verdict(False, "not a number"), _verdict(False, "wrong count")],
        }
    )
    given: list[TaskSpec] = []

    async def runner(task: TaskSpec, inputs: dict[str, str]) -> dict[str, str]:
        given.append(task)
        return {"count": "11"}

    vowels = spec("vowels", ["text"], ["count"]).model_copy(update={"acceptance": "a number"})
    outputs = await run_leaf(
        chat, GOAL, vowels, {"text": "the quick fox"}, attempts=2, code_runner=runner
    )

    assert outputs == {"count": "11"}
    assert [(task.id, task.kind) for task in given] == [("vowels", "code")]
    assert len(chat.calls_for("TaskAnswer")) == 2  # its own attempts first


async def test_a_code_task_without_a_code_runner_is_refused_before_any_model_call() -> None:
    chat = ScriptedChat({})
    sums = spec("sum", ["numbers"], ["total"], kind="code")

    with pytest.raises(SandboxUnavailableError) as caught:
        await run_leaf(chat, GOAL, sums, {"numbers": "1 2"}, attempts=3)

    assert "no sandbox is configured" in str(caught.value)
    assert "goalflow sandbox check" in str(caught.value)  # how to fix it
    assert chat.calls == []


async def test_a_code_task_is_done_by_the_code_runner_with_its_inputs() -> None:
    chat = ScriptedChat({})
    given: list[tuple[str, dict[str, str]]] = []

    async def runner(task: TaskSpec, inputs: dict[str, str]) -> dict[str, str]:
        given.append((task.id, inputs))
        return {"total": "3"}

    sums = spec("sum", ["numbers"], ["total"], kind="code")
    outputs = await run_leaf(chat, GOAL, sums, {"numbers": "1 2"}, attempts=3, code_runner=runner)

    assert outputs == {"total": "3"}
    assert given == [("sum", {"numbers": "1 2"})]
    assert chat.calls == []


def _as_request(call: ChatCall) -> ChatRequest:
    """``call`` as the test server would receive it from the real client."""
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": call.schema_name, "schema": call.schema.model_json_schema()},
    }
    body = {"model": "test-model", "messages": call.messages, "response_format": response_format}
    return ChatRequest.from_body(body, received_at=0.0)


async def test_every_call_about_a_task_names_it_where_the_flow_tests_look() -> None:
    """``tests.helpers.task_title`` is the one place tests read a task's title out of
    a prompt: when a prompt moves the title, this fails here, not across the flow tests."""
    success = SandboxResult(
        exit_code=0,
        timed_out=False,
        oom_killed=False,
        stdout="",
        stderr="",
        truncated=False,
        outputs={"total": b"3"},
        missing=[],
        seconds=0.1,
        failure=None,
    )

    async def run(_: object) -> SandboxResult:
        return success

    chat = ScriptedChat(
        {
            "TaskAnswer": [{"poem": "a"}, {"poem": "a\nb\nc"}],
            "Verdict": [_verdict(False, "too short"), _verdict(True, "ok")],
            "Program": [{"code": "print(3)"}],
        }
    )
    await run_leaf(chat, GOAL, _poem(), {"topic": "green tea"}, attempts=2)
    coder = code_runner(chat, GOAL, run=run, attempts=1, limits=ProgramLimits())
    await coder(spec("sum", ["numbers"], ["total"], kind="code"), {"numbers": "1 2"})

    assert [(c.schema_name, task_title(_as_request(c))) for c in chat.calls] == [
        ("TaskAnswer", "do poem"),
        ("Verdict", "do poem"),
        ("TaskAnswer", "do poem"),  # a retry, too
        ("Verdict", "do poem"),
        ("Program", "do sum"),
    ]


# --- Two model tiers: the task model for simple tasks, escalation on rejection --------


def _simple(task: TaskSpec) -> TaskSpec:
    return task.model_copy(update={"difficulty": "simple"})


async def test_a_simple_task_is_answered_by_the_task_model_and_reviewed_by_the_planner() -> None:
    planner = ScriptedChat({"Verdict": [_verdict(True, "three lines")]})
    small = ScriptedChat({"TaskAnswer": [{"poem": "a\nb\nc"}]})

    outputs = await run_leaf(
        planner, GOAL, _simple(_poem()), {"topic": "tea"}, attempts=2, task_llm=small
    )

    assert outputs == {"poem": "a\nb\nc"}
    assert [c.schema_name for c in small.calls] == ["TaskAnswer"]
    assert [c.schema_name for c in planner.calls] == ["Verdict"]


async def test_a_hard_task_never_reaches_the_task_model() -> None:
    planner = ScriptedChat({"TaskAnswer": [{"poem": "a\nb\nc"}], "Verdict": [_verdict(True, "")]})
    small = ScriptedChat({})

    await run_leaf(planner, GOAL, _poem(), {"topic": "tea"}, attempts=2, task_llm=small)

    assert small.calls == [] and _poem().difficulty == "hard"  # the default


async def test_a_rejected_answer_of_the_task_model_escalates_to_the_planning_model() -> None:
    planner = ScriptedChat(
        {
            "TaskAnswer": [{"poem": "x\ny\nz"}],
            "Verdict": [_verdict(False, "four lines, not three"), _verdict(True, "three lines")],
        }
    )
    small = ScriptedChat({"TaskAnswer": [{"poem": "a\nb\nc\nd"}]})
    failures: list[str] = []

    with reporting_attempts(failures.append):
        outputs = await run_leaf(
            planner, GOAL, _simple(_poem()), {"topic": "tea"}, attempts=2, task_llm=small
        )

    assert outputs == {"poem": "x\ny\nz"}
    assert len(small.calls) == 1  # never asked again after its answer was rejected
    retry = planner.calls_for("TaskAnswer")[0]
    assert "four lines, not three" in retry.last_user  # the planner sees why
    assert failures == ["four lines, not three"]


async def test_a_task_model_that_cannot_answer_at_all_escalates_too() -> None:
    broken = StructuredOutputError(
        "no valid TaskAnswer", schema_name="TaskAnswer", n_attempts=3, last_completion="{"
    )
    planner = ScriptedChat({"TaskAnswer": [{"poem": "x\ny\nz"}], "Verdict": [_verdict(True, "")]})
    small = ScriptedChat({"TaskAnswer": [broken]})
    failures: list[str] = []

    with reporting_attempts(failures.append):
        outputs = await run_leaf(
            planner, GOAL, _simple(_poem()), {"topic": "tea"}, attempts=2, task_llm=small
        )

    assert outputs == {"poem": "x\ny\nz"}
    assert failures == ["the task model could not answer: no valid TaskAnswer"]


async def test_with_one_attempt_a_simple_task_stays_on_the_task_model() -> None:
    planner = ScriptedChat({"Verdict": [_verdict(False, "no")]})
    small = ScriptedChat({"TaskAnswer": [{"poem": "a"}]})

    with pytest.raises(TaskError, match="in 1 attempts"):
        await run_leaf(
            planner, GOAL, _simple(_poem()), {"topic": "tea"}, attempts=1, task_llm=small
        )

    assert planner.calls_for("TaskAnswer") == []  # no attempt beyond the one it has


async def test_escalation_spends_no_more_attempts_than_one_model_would() -> None:
    planner = ScriptedChat(
        {"TaskAnswer": [{"poem": "x"}], "Verdict": [_verdict(False, "no"), _verdict(False, "no")]}
    )
    small = ScriptedChat({"TaskAnswer": [{"poem": "a"}]})

    with pytest.raises(TaskError, match="in 2 attempts"):
        await run_leaf(
            planner, GOAL, _simple(_poem()), {"topic": "tea"}, attempts=2, task_llm=small
        )

    assert len(small.calls) + len(planner.calls_for("TaskAnswer")) == 2
