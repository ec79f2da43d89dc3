"""A task is held to the form it declares where that form can be checked without doubt:
a count that comes back as a word, a JSON object without the keys asked for, a date in
another notation is a failed attempt with a reason; any other form asks for nothing.
"""

from __future__ import annotations

import pytest

from goalflow.core.forms import declared_form_problem, form_problem
from goalflow.core.task import TaskSpec

HELD = [
    ("14", "number"),
    ("-3.5", "a number"),
    ("1,234", "integer"),
    ("73.44", "number, two decimal places"),
    ("73.4", "to 1 decimal place"),
    ('{"country": "Japan", "capital": "Tokyo"}', 'JSON object with keys "country", "capital"'),
    ("[1, 4, 9]", "a JSON array of numbers"),
    ("2024-02-28", "YYYY-MM-DD"),
    ("2:46:39", "H:MM:SS"),
    ("Ada, Bob", "names, comma-separated"),  # a separator is the cleaning's, not a check's
    ("3\n5\n7", "one number per line"),
    ("Paris", "the city name only"),  # nothing checkable
    ("anything at all", ""),
]


@pytest.mark.parametrize(("value", "form"), HELD)
def test_a_value_of_its_declared_form_or_of_no_checkable_form_passes(value: str, form: str) -> None:
    assert form_problem(value, form) is None


BROKEN = [
    ("tasks,", "number", "is not one number"),
    ("14 words", "the number only", "is not one number"),
    ("68.3", "number, two decimal places", "does not have 2 decimal places"),
    ("68.2999999", "to two decimal places", "does not have 2 decimal places"),
    (
        '{"country": "Japan"}',
        'a JSON object with the keys "country" and "capital"',
        'lacks the key "capital"',
    ),
    ("country: Japan", "JSON object", "is not a JSON object (it does not parse as JSON)"),
    ("[1, 4]", "json object", "is not a JSON object"),
    ("1, 4, 9", "JSON array", "is not a JSON array (it does not parse as JSON)"),
    ("28/02/2024", "YYYY-MM-DD", "is not written as YYYY-MM-DD"),
    ("2 hours 46 minutes", "H:MM:SS", "is not written as H:MM:SS"),
]


@pytest.mark.parametrize(("value", "form", "problem"), BROKEN)
def test_a_value_not_of_its_declared_form_is_told_what_is_wrong(
    value: str, form: str, problem: str
) -> None:
    assert form_problem(value, form) == problem


def _task(outputs: list[str], form: str) -> TaskSpec:
    return TaskSpec(
        id="count", title="Count", kind="code", instructions="Count.", outputs=outputs, format=form
    )


def test_a_tasks_output_is_judged_as_it_will_be_delivered_and_named_in_the_reason() -> None:
    task = _task(["word_count"], "number")

    assert declared_form_problem(task, {"word_count": "The answer is 14."}) is None
    assert declared_form_problem(task, {"word_count": "tasks,"}) == (
        "its output word_count ('tasks,') is not one number, the form the task declares ('number')"
    )


def test_a_task_with_several_outputs_is_not_held_to_one_form() -> None:
    task = _task(["low", "high"], "number")

    assert declared_form_problem(task, {"low": "one", "high": "two"}) is None
