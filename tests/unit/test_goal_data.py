"""The data a goal states: found whole, named after its form (issue 12)."""

from __future__ import annotations

import pytest

from goalflow.core.goal_data import data_form, stated_data


def test_quoted_words_and_texts_are_named_for_what_they_are() -> None:
    goal = "How often does the letter 'r' occur in 'strawberry', and in \"berry picking\"?"

    assert stated_data(goal) == [
        ("letter", "r"),
        ("word", "strawberry"),
        ("text", "berry picking"),
    ]


def test_apostrophes_are_not_quotes_and_a_repeated_text_is_given_once() -> None:
    goal = "Reverse 'prefect' (Anna's word), then 'prefect' again; join with ' - '."

    assert stated_data(goal) == [("word", "prefect"), ("separator", " - ")]


def test_the_names_of_keys_asked_for_are_the_answers_form_not_data() -> None:
    goal = (
        'For the word \'tea\', give a JSON object with the keys "word", "length" and '
        "\"vowels\"; the fields 'a' or 'b' too."
    )

    assert stated_data(goal) == [("word", "tea")]


def test_a_json_literal_is_one_piece_with_its_inner_quotes() -> None:
    goal = 'In {"users": [{"id": 7, "email": "raj@example.org"}]} find user 7\'s "email".'

    assert stated_data(goal) == [
        ("json_text", '{"users": [{"id": 7, "email": "raj@example.org"}]}'),
        ("word", "email"),
    ]


def test_lines_pasted_between_prose_are_one_block() -> None:
    table = "city,sales\nParis,120\nLyon,80"
    log = "10:00 INFO started\n10:01 ERROR refused\n10:02 ERROR timeout"
    goal = f"Here is a CSV:\n{table}\nand a log:\n{log}\nWhich city sold most?"

    assert stated_data(goal) == [("csv_text", table), ("text_lines", log)]


def test_prose_over_several_lines_is_not_data() -> None:
    assert stated_data("Write a haiku.\nMake it about rain.\nNo title.") == []


@pytest.mark.parametrize(
    ("value", "form"),
    [
        (" 42\n", "int"),
        ("3.5", "float"),
        ('[{"a": 1}]', "json"),
        ("[1, 2", "text"),
        ("a,b\n1,2\n3,4", "csv"),
        ("a,b\n1,2,3", "lines"),
        ("one\ntwo", "lines"),
        ("Hello, world", "text"),
    ],
)
def test_the_form_of_a_value_read_as_text(value: str, form: str) -> None:
    assert data_form(value) == form
