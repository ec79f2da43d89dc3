"""A deliverable is the value itself: chatter around it comes off, a clean value is left
as it is, and nothing is ever added.

Each case is what a model answered and what the user gets back; the notes are what the
goal run logs.
"""

from __future__ import annotations

import pytest

from goalflow.core.plan import Plan
from goalflow.core.task import Task
from goalflow.core.values import (
    clean_deliverables,
    clean_value,
    requested_separator,
    without_separator,
)

CLEAN = [
    "12",
    "-3.5",
    "tcefrp",
    "Ada, Bob, Cy",
    "Ada\nBob\nCy",
    '{"name": "France", "capital": "Paris"}',
    "[1, 2, 3]",
    "don't",
    "'a', 'b'",
    "<report from Write report>",
    "The result is that green tea helps.",
    "Here's the thing: tea is best fresh.",
    "The answer is New York City.",
    "Leaves in hot water\nsteam rises, slowly unfolds\nspring in a white cup",
    "Tea is green.\n\nThis is why people drink it.",
    "def f():\n    return 1",
    "12\n\nExplanation: 7 + 5 is 12.",  # an explanation may be asked for: kept
    "```python\nprint(1)\n```\n\nThis program prints 1.",  # idem, with no form asked
    "''",
]


@pytest.mark.parametrize("value", CLEAN)
def test_a_clean_value_is_left_exactly_as_it_is(value: str) -> None:
    assert clean_value(value) == (value, [])


@pytest.mark.parametrize(
    ("answer", "value"),
    [
        ("Here is the answer: 12", "12"),
        ("Here is the answer: 12.", "12"),
        ("Sure! Here is the reversed word: tcefrp.", "tcefrp"),
        ("Answer: 42", "42"),
        ("The final result is: 3.14", "3.14"),
        ("The answer is 12.", "12"),
        ("The answer is 3.14.", "3.14"),
        ('The answer is "olleh".', "olleh"),
        ("Here are the names:\nAda\nBob", "Ada\nBob"),
        ("Sure!\nHere are the names:\nAda\nBob", "Ada\nBob"),
        (
            "Sure! Here's a haiku about tea:\n\nLeaves in hot water\nsteam",
            "Leaves in hot water\nsteam",
        ),
    ],
)
def test_a_lead_in_is_dropped(answer: str, value: str) -> None:
    cleaned = clean_value(answer)

    assert cleaned.value == value
    assert cleaned.notes  # the change is said, to be logged


@pytest.mark.parametrize(
    ("answer", "value"),
    [
        ("```\n12\n```", "12"),
        ('```json\n{"a": 1}\n```', '{"a": 1}'),
        ('Here is the JSON:\n```json\n{"a": 1}\n```', '{"a": 1}'),
        ("```python\nprint(1)\n```", "print(1)"),
    ],
)
def test_a_value_that_is_one_fenced_block_comes_out_of_the_fence(answer: str, value: str) -> None:
    cleaned = clean_value(answer)

    assert cleaned.value == value
    assert any("fence" in note for note in cleaned.notes)


def test_two_fenced_blocks_are_not_one_value() -> None:
    two = "```\na\n```\n\n```\nb\n```"

    assert clean_value(two) == (two, [])


@pytest.mark.parametrize(
    ("answer", "value"),
    [('"olleh"', "olleh"), ("'tcefrp'", "tcefrp"), ("`42`", "42"), ("\u201cParis\u201d", "Paris")],
)
def test_surrounding_quotes_are_dropped(answer: str, value: str) -> None:
    assert clean_value(answer) == (value, ["dropped the surrounding quotes"])


def test_surrounding_whitespace_is_trimmed_and_said() -> None:
    assert clean_value("12\n") == ("12", ["trimmed surrounding whitespace"])


def test_a_closing_remark_after_a_blank_line_is_dropped() -> None:
    answer = "Ada, Bob\n\nLet me know if you need anything else!\n\nHope this helps."

    cleaned = clean_value(answer)

    assert cleaned.value == "Ada, Bob"
    assert len(cleaned.notes) == 2


def test_with_a_form_asked_for_an_explanation_after_a_document_is_dropped() -> None:
    json_then_prose = '{"capital": "Paris"}\n\nThis object names the capital of France.'
    code_then_prose = "```python\nprint(1)\n```\n\nThis program prints 1."

    assert clean_value(json_then_prose, form="a JSON object with key capital").value == (
        '{"capital": "Paris"}'
    )
    assert clean_value(code_then_prose, form="a Python program").value == "print(1)"
    # Prose after prose is not a document's explanation: kept even with a form.
    prose = "Tea is green.\n\nThis is why people drink it."
    assert clean_value(prose, form="two paragraphs") == (prose, [])


@pytest.mark.parametrize(
    ("form", "separator"),
    [
        ("names, comma-separated", ", "),
        ("comma separated list", ", "),
        ("words separated by commas", ", "),
        ("one name per line", "\n"),
        ("each on its own line", "\n"),
        ("one integer", None),
        ("", None),
    ],
)
def test_the_separator_a_form_asks_for(form: str, separator: str | None) -> None:
    assert requested_separator(form) == separator


@pytest.mark.parametrize(
    ("form", "rest"),
    [
        ("words, comma-separated", "words"),
        ("comma-separated names", "names"),
        ("names, one per line, sorted", "names, sorted"),
        ("one per line", ""),
        ("one integer", "one integer"),
    ],
)
def test_a_form_without_its_separator_keeps_the_rest(form: str, rest: str) -> None:
    assert without_separator(form) == rest


@pytest.mark.parametrize(
    ("answer", "form", "value"),
    [
        ("Ada\nBob\nCy", "names, comma-separated", "Ada, Bob, Cy"),
        ("- Ada\n- Bob", "names, comma-separated", "Ada, Bob"),
        ("1. Ada\n2. Bob", "names, comma-separated", "Ada, Bob"),
        ("1. Ada\n3. Bob", "names, comma-separated", "1. Ada, 3. Bob"),  # not a list's numbers
        ("- Ada\n- Bob", "one name per line", "Ada\nBob"),
        ("* Ada\n* Bob", "one name per line", "Ada\nBob"),
    ],
)
def test_lines_take_the_separator_the_form_asks_for(answer: str, form: str, value: str) -> None:
    cleaned = clean_value(answer, form=form)

    assert cleaned.value == value
    assert cleaned.notes


@pytest.mark.parametrize(
    ("answer", "form", "value"),
    [
        (
            "{'min': 1, 'max': 9}",
            'a JSON object with the keys "min" and "max"',
            '{"min": 1, "max": 9}',
        ),
        ("['a', 'b', None]", "JSON array", '["a", "b", null]'),
    ],
)
def test_a_python_literal_is_written_as_json_where_the_form_asks_for_json(
    answer: str, form: str, value: str
) -> None:
    assert clean_value(answer, form=form) == (
        value,
        ["wrote the Python literal as JSON, as the format asks"],
    )


@pytest.mark.parametrize(
    ("answer", "form"),
    [("{'a', 'b'}", "JSON"), ("{'a': 1}", "a dict"), ('{"a": 1}', "JSON object")],
    ids=["a-set", "no-json-asked", "json-already"],
)
def test_a_python_literal_is_left_alone_where_json_is_not_asked_or_cannot_say_it(
    answer: str, form: str
) -> None:
    assert clean_value(answer, form=form) == (answer, [])


@pytest.mark.parametrize(
    ("answer", "form"),
    [
        ("Smith, John\nDoe, Jane", "names, comma-separated"),  # items hold commas
        ("Ada, Bob", "names, comma-separated"),  # already so
        ("Ada\nBob", "one name per line"),  # already so
        ("1. Ada\n2. Bob", "one name per line"),  # numbering may be wanted
        ("Ada\nBob", "one integer"),  # no separator asked for
    ],
)
def test_lines_are_left_alone_where_the_separator_is_unclear(answer: str, form: str) -> None:
    assert clean_value(answer, form=form) == (answer, [])


@pytest.mark.parametrize(
    "answer",
    [
        "Here is the answer: 12",
        "Sure!\nHere are the names:\n- Ada\n- Bob\n\nLet me know if that helps.",
        '```json\n"olleh"\n```',
        "  The answer is 'tcefrp'.  ",
    ],
)
def test_cleaning_twice_changes_nothing_more(answer: str) -> None:
    once = clean_value(answer, form="names, comma-separated").value

    assert clean_value(once, form="names, comma-separated") == (once, [])


def test_nothing_is_invented_every_clean_value_is_part_of_the_answer() -> None:
    answers = ["Here is the answer: 12", '```json\n{"a": 1}\n```', '"olleh"', "Answer: 42."]

    for answer in answers:
        assert clean_value(answer).value in answer


@pytest.mark.parametrize("answer", ["```\n```", '"  "', "``````"])
def test_a_rule_that_would_leave_nothing_is_not_applied(answer: str) -> None:
    assert clean_value(answer) == (answer, [])


def test_deliverables_are_cleaned_with_the_form_of_the_task_that_makes_them() -> None:
    plan = Plan(
        goal="Sort the names and count them.",
        inputs={"names": "Bob Ada"},
        deliverables=["sorted_names", "count"],
        tasks=[
            Task(
                id="sort",
                title="Sort",
                kind="code",
                instructions="Sort the names.",
                inputs=["names"],
                outputs=["sorted_names"],
                format="names, comma-separated",
            ),
            Task(
                id="count",
                title="Count",
                kind="code",
                instructions="Count the names.",
                inputs=["names"],
                outputs=["count"],
            ),
        ],
    )
    values = {"names": "  Bob Ada ", "sorted_names": "Ada\nBob", "count": "2"}

    cleaned, changes = clean_deliverables(plan, values)

    assert cleaned == {"names": "  Bob Ada ", "sorted_names": "Ada, Bob", "count": "2"}
    assert list(changes) == ["sorted_names"]  # only what changed is reported
    assert changes["sorted_names"] == ["joined 2 lines with commas, as the format asks"]


def test_a_list_literal_is_written_with_the_separator_the_format_asks() -> None:
    names = "['Amelia', 'Emily', 'Isla']"

    assert clean_value(names, form="names, comma-separated").value == "Amelia, Emily, Isla"
    assert clean_value("[2, 3, 5]", form="one per line").value == "2\n3\n5"
    assert clean_value('["a", "b"]', form="comma-separated").value == "a, b"


def test_a_list_literal_is_kept_without_a_format_or_when_its_items_hold_commas() -> None:
    assert clean_value("['Amelia', 'Emily']").value == "['Amelia', 'Emily']"
    kept = "['Paris, France', 'Rome, Italy']"
    assert clean_value(kept, form="comma-separated").value == kept
    nested = "[[1, 2], [3]]"
    assert clean_value(nested, form="comma-separated").value == nested
