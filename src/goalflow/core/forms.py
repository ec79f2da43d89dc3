"""Whether a value has the form its task declared: the deterministic half of acceptance.

A task's ``format`` is free text the planner writes ("number", "a JSON object with the
keys \"min\" and \"max\"", "YYYY-MM-DD", "words, comma-separated"). Where it names a
form a program can be held to without doubt, :func:`form_problem` says what is wrong
with a value that does not have it ("is not one number"), and :func:`declared_form_problem`
says it of a task's output, so that the task is tried again with that reason rather than
hand a word where a count was asked. A form it does not recognise asks for nothing. No
Prefect, no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from goalflow.core.task import TaskSpec
from goalflow.core.values import clean_value, quoted, requested_separator, without_phrase

__all__ = ["declared_form_problem", "form_problem", "requested_places", "without_places"]

_JSON_OBJECT = re.compile(r"\bjson\b.*\b(?:object|dict|keys?)\b|\bobject\b.*\bjson\b", re.I)
_JSON_ARRAY = re.compile(r"\bjson\b.*\b(?:array|list)\b|\b(?:array|list)\b.*\bjson\b", re.I)
_KEY = re.compile(r"\"([^\"\n]+)\"")
_ONE_NUMBER = re.compile(r"\b(?:number|integer|int|float|decimal)\b", re.I)
_SEVERAL = re.compile(r"\b(?:list|each|every|all|numbers|values|items|array)\b", re.I)
_PLACES = re.compile(r"\b(?P<n>\d|one|two|three|four|five|six)\s+decimal(?:\s+places?|s)?\b", re.I)
_PLACES_PHRASE = re.compile(
    r"(?:\b(?:rounded\s+)?(?:to|with)\s+)?" + _PLACES.pattern, re.IGNORECASE
)
_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}
_NUMBER = re.compile(r"[-+]?\d+(?:\.(?P<fraction>\d+))?(?:[eE][-+]?\d+)?")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_PATTERNS = {  # a form's notation -> what a value of that form matches
    "yyyy-mm-dd": re.compile(r"\d{4}-\d{2}-\d{2}"),
    "hh:mm:ss": re.compile(r"\d+:\d{2}:\d{2}"),
    "h:mm:ss": re.compile(r"\d+:\d{2}:\d{2}"),
    "hh:mm": re.compile(r"\d+:\d{2}"),
}


def declared_form_problem(task: TaskSpec, outputs: Mapping[str, str]) -> str | None:
    """Why the output of ``task`` does not have the form the task declares, as a reason
    for its retry; None when it has it. Only a task with one output is held to its form
    (with several, which output a form describes is unclear); the output is judged as
    it will be delivered, without the chatter :func:`clean_value` takes off."""
    if not task.format or len(task.outputs) != 1 or task.outputs[0] not in outputs:
        return None
    name = task.outputs[0]
    value = clean_value(outputs[name], form=task.format).value
    problem = form_problem(value, task.format)
    if problem is None:
        return None
    declared = f"the form the task declares ({task.format!r})"
    return f"its output {name} ({quoted(value, 80)}) {problem}, {declared}"


def form_problem(value: str, form: str) -> str | None:
    """What keeps ``value`` from having the ``form`` a task declared; None when it has
    it, or when ``form`` names nothing checkable. Checked: a JSON object (with the keys
    the form quotes), a JSON array, one number (with the decimal places it asks for),
    and the notations YYYY-MM-DD, H:MM:SS and HH:MM."""
    text = value.strip()
    if _JSON_OBJECT.search(form):
        return _json_problem(text, form, dict, "a JSON object")
    if _JSON_ARRAY.search(form):
        return _json_problem(text, form, list, "a JSON array")
    lowered = form.lower()
    for notation, pattern in _PATTERNS.items():
        if notation in lowered:
            if pattern.fullmatch(text):
                return None
            return f"is not written as {notation.upper()}"
    if requested_separator(form) is not None or _SEVERAL.search(form):
        return None
    places = requested_places(form)
    if places is None and not _ONE_NUMBER.search(form):
        return None
    number = _NUMBER.fullmatch(_THOUSANDS.sub("", text))
    if number is None:
        return "is not one number"
    if places is not None and len(number.group("fraction") or "") != places:
        return f"does not have {places} decimal place{'s' * (places > 1)}"
    return None


def requested_places(text: str) -> int | None:
    """The decimal places ``text`` asks a number to have ("to two decimal places"), if any."""
    places = _PLACES.search(text)
    if places is None:
        return None
    return _WORDS.get(places.group("n").lower()) or int(places.group("n"))


def without_places(form: str) -> str:
    """``form`` without the decimal places it asks for ("number, one decimal place" ->
    "number")."""
    return without_phrase(form, _PLACES_PHRASE)


def _json_problem(text: str, form: str, kind: type, name: str) -> str | None:
    try:
        parsed = json.loads(text)
    except ValueError:
        return f"is not {name} (it does not parse as JSON)"
    if not isinstance(parsed, kind):
        return f"is not {name}"
    if isinstance(parsed, dict):
        missing = [key for key in _KEY.findall(form) if key not in parsed]
        if missing:
            return f"lacks the key{'s' * (len(missing) > 1)} " + ", ".join(
                json.dumps(key) for key in missing
            )
    return None
