"""The data a goal states, found in its text, and the form of a piece of data.

A goal often carries its own data: a word in quotes, a JSON literal, a CSV or a log
pasted over several lines. A program should read that data exactly rather than have a
small model copy it by hand (``'perfect'[::-1]`` for the word 'prefect', a CSV pasted
into a one-line string). :func:`stated_data` finds it and names each piece after its
form, so that the model sees what it holds (``word``, ``text``, ``csv_text``,
``json_text``); :func:`data_form` tells a program's outline how to read a piece.
No Prefect, no I/O.
"""

from __future__ import annotations

import json
import re
from typing import Literal

__all__ = ["DataForm", "data_form", "stated_data"]

DataForm = Literal["int", "float", "json", "csv", "lines", "text"]

# Text between quotes that are not apostrophes: no letter or digit just outside them.
_QUOTED = re.compile(r"""(?<![\w'"])(['"])(?P<text>[^'"\n]+?)\1(?![\w'"])""")
# Names in quotes after "keys" or "fields" are the form of the answer asked for, not data.
_KEY_NAMES = re.compile(
    r"""\b(?:keys?|fields?)\b(?P<names>(?:\s*(?:,|\band\b|\bor\b)?\s*(['"])[^'"\n]+?\2)+)""",
    re.IGNORECASE,
)
# A line that ends a sentence or introduces what follows is prose, not data.
_PROSE_END = (".", "?", "!", ":")
_NAMES: dict[DataForm, str] = {"json": "json_text", "csv": "csv_text", "lines": "text_lines"}


def data_form(value: str) -> DataForm:
    """What ``value`` holds, read as text: one number, a JSON array or object, a CSV
    (two or more lines with the same number of commas), other lines, or text."""
    text = value.strip()
    for kind, parse in (("int", int), ("float", float)):
        try:
            parse(text)
        except ValueError:
            continue
        return kind  # type: ignore[return-value]
    if text[:1] in "[{":
        try:
            if isinstance(json.loads(text), list | dict):
                return "json"
        except ValueError:
            pass
    lines = text.splitlines()
    if len(lines) > 1:
        commas = {line.count(",") for line in lines}
        return "csv" if len(commas) == 1 and commas != {0} else "lines"
    return "text"


def stated_data(goal: str) -> list[tuple[str, str]]:
    """The pieces of data ``goal`` states, each with a name after its form, in order of
    appearance: JSON literals, blocks of two or more lines that are not prose, and the
    texts in quotes outside those, save names of keys or fields asked for (``letter``
    for one letter, ``word`` for one word, ``separator`` for one with spaces around,
    ``text`` for more; a second piece of a kind is ``word_2``, ...)."""
    found = _json_literals(goal)
    for start, end, block in _line_blocks(goal):
        if not any(s < end and start < e for s, e, _ in found):
            found.append((start, end, block))
    taken = [(start, end) for start, end, _ in found]
    taken += [match.span("names") for match in _KEY_NAMES.finditer(goal)]
    for match in _QUOTED.finditer(goal):
        if not any(start <= match.start() < end for start, end in taken):
            found.append((match.start(), match.end(), match.group("text")))
    counts: dict[str, int] = {}
    named: list[tuple[str, str]] = []
    seen: set[str] = set()
    for _, _, value in sorted(found):
        if value in seen:
            continue
        seen.add(value)
        base = _name_for(value)
        counts[base] = counts.get(base, 0) + 1
        named.append((base if counts[base] == 1 else f"{base}_{counts[base]}", value))
    return named


def _name_for(value: str) -> str:
    form = data_form(value)
    if form in _NAMES:
        return _NAMES[form]
    if len(value) == 1:
        return "letter" if value.isalpha() else "character"
    if value != value.strip():
        return "separator"
    return "word" if len(value.split()) == 1 else "text"


def _json_literals(goal: str) -> list[tuple[int, int, str]]:
    """Each JSON array or object written in ``goal`` (not one inside another)."""
    decoder = json.JSONDecoder()
    found: list[tuple[int, int, str]] = []
    position = 0
    while (start := _next_bracket(goal, position)) >= 0:
        try:
            value, end = decoder.raw_decode(goal, start)
        except ValueError:
            position = start + 1
            continue
        if isinstance(value, list | dict) and value:
            found.append((start, end, goal[start:end]))
        position = end
    return found


def _next_bracket(text: str, position: int) -> int:
    found = [i for i in (text.find("[", position), text.find("{", position)) if i >= 0]
    return min(found, default=-1)


def _line_blocks(goal: str) -> list[tuple[int, int, str]]:
    """Each run of two or more consecutive lines none of which reads as prose."""
    blocks: list[tuple[int, int, str]] = []
    run: list[tuple[int, str]] = []
    offset = 0
    for line in [*goal.splitlines(keepends=True), ""]:
        text = line.strip()
        if text and not text.endswith(_PROSE_END):
            run.append((offset, line.rstrip("\r\n")))
        else:
            if len(run) > 1:
                start = run[0][0]
                end = run[-1][0] + len(run[-1][1])
                blocks.append((start, end, "\n".join(text for _, text in run)))
            run = []
        offset += len(line)
    return blocks
