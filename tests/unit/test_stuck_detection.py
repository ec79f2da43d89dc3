"""Stuck detection: each signal fires on its pattern, once, with evidence a person can read."""

from __future__ import annotations

import pytest

from goalflow.core.stuck import StuckDetector, report_failed_attempt, reporting_attempts
from goalflow.core.task import Task
from goalflow.errors import ConfigError
from tests.helpers import spec


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_same_failure_with_the_same_inputs_n_times_is_a_repeated_failure() -> None:
    detector = StuckDetector(repeats=3)
    task = spec("analysis", ["facts"])

    first = detector.failed_attempt("analysis", task, {"facts": "F"}, "no source is cited")
    other_inputs = detector.failed_attempt("analysis", task, {"facts": "G"}, "no source is cited")
    other_failure = detector.failed_attempt("analysis", task, {"facts": "F"}, "too long")
    second = detector.failed_attempt("analysis", task, {"facts": "F"}, "no source is cited")
    third = detector.failed_attempt("analysis", task, {"facts": "F"}, " no source is cited ")
    fourth = detector.failed_attempt("analysis", task, {"facts": "F"}, "no source is cited")

    assert first == other_inputs == other_failure == second == []
    assert [s.name for s in third] == ["repeated_failure"]
    assert third[0].tasks == ["analysis"]
    assert "'analysis' failed 3 times" in third[0].evidence
    assert "no source is cited" in third[0].evidence
    assert fourth == []  # reported once


def test_the_same_task_under_a_new_id_is_the_same_task() -> None:
    detector = StuckDetector(repeats=2)
    detector.failed_attempt("a", spec("a", ["x"], ["y"]), {"x": "1"}, "boom")

    again = detector.failed_attempt("b", spec("a", ["x"], ["y"]), {"x": "1"}, "boom")

    assert [s.name for s in again] == ["repeated_failure"]


def test_an_identical_model_call_n_times_is_a_repeated_call() -> None:
    detector = StuckDetector(repeats=2)

    assert detector.model_call("review a", "h1", 0.01) == []
    assert detector.model_call("task b", "h2", 0.02) == []
    signals = detector.model_call("review a", "h1", 0.03)

    assert [s.name for s in signals] == ["repeated_call"]
    assert "review a" in signals[0].evidence and "2 times" in signals[0].evidence


def test_an_output_identical_to_another_tasks_output_is_a_duplicate() -> None:
    detector = StuckDetector()
    text = "Green tea contains catechins, which are antioxidants studied for decades."

    assert detector.task_finished("facts", {"facts": text}) == []
    assert detector.task_finished("short", {"ok": "yes"}) == []
    assert detector.task_finished("short2", {"ok": "yes"}) == []  # short values repeat freely
    signals = detector.task_finished("summary", {"summary": text})

    assert [s.name for s in signals] == ["duplicate_output"]
    assert signals[0].tasks == ["facts", "summary"]
    assert "'summary' of task 'summary' is identical to 'facts' of task 'facts'" in (
        signals[0].evidence
    )


def test_a_composite_broken_down_into_itself_is_self_decomposition() -> None:
    inner = Task(**spec("draft_again", ["brief"], ["essay"], kind="composite").model_dump())
    looping = Task(
        **spec("draft", ["brief"], ["essay"], kind="composite").model_dump(), subtasks=[inner]
    )
    fine = Task(
        **spec("other", ["brief"], ["notes"], kind="composite").model_dump(),
        subtasks=[
            Task(**spec("outline", ["brief"], ["outline"]).model_dump()),
            Task(**spec("write", ["outline"], ["notes"]).model_dump()),
        ],
    )

    signals = StuckDetector().plan_ready([looping, fine])

    assert [s.name for s in signals] == ["self_decomposition"]
    assert signals[0].tasks == ["draft", "draft/draft_again"]


def test_no_new_output_while_calls_are_paid_is_no_progress() -> None:
    clock = Clock()
    detector = StuckDetector(stall_seconds=60, stall_calls=5, clock=clock)
    detector.task_finished("a", {"a": "first"})

    clock.now = 100
    assert detector.check_progress() == []  # idle, but nothing was spent: waiting is fine
    detector.model_call("task b", "h1", 0.01)
    signals = detector.check_progress()
    assert [s.name for s in signals] == ["no_progress"]
    assert "no new output for 100 s while 1 model calls" in signals[0].evidence
    assert detector.check_progress() == []  # once per stall

    detector.task_finished("b", {"b": "new"})  # progress re-arms it
    for i in range(4):
        assert detector.model_call("task c", f"c{i}", 0.02) == []
    assert [s.name for s in detector.model_call("task c", "c4", 0.03)] == ["no_progress"]


def test_failed_attempts_reach_the_listener_of_the_block_they_happen_in() -> None:
    heard: list[str] = []

    report_failed_attempt("nobody listens")  # no error
    with reporting_attempts(heard.append):
        report_failed_attempt("review said no")
    report_failed_attempt("after the block")

    assert heard == ["review said no"]


def test_fewer_than_two_repeats_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 2"):
        StuckDetector(repeats=1)
