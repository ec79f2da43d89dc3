"""A deliverable is the value itself: the chatter around it is taken off, nothing added.

Models wrap an answer in a lead-in ("Here is the answer: 12"), a code fence, quotes or
a closing remark, and lay out a list as lines when the goal asked for commas. Each rule
here removes or re-joins only what its pattern recognises with no doubt, and says what
it did; a value that is already clean comes back unchanged, with no notes. Which rules
apply is decided by the text and by the form the plan asked for (a task's ``format``),
never by the goal's wording. No Prefect, no I/O.
"""

from __future__ import annotations

import ast
import functools
import json
import re
from collections.abc import Callable, Mapping
from typing import NamedTuple

from goalflow.core.plan import Plan

__all__ = [
    "CleanValue",
    "clean_deliverables",
    "clean_value",
    "quoted",
    "requested_separator",
    "without_phrase",
    "without_separator",
]


class CleanValue(NamedTuple):
    """A value with its chatter removed, and one note per rule that changed it."""

    value: str
    notes: list[str]


_OPENER = r"(?:(?:sure|certainly|of course|okay|ok|great|alright)\b[!,.]*\s*)?"
_HERE = r"(?:here\s+(?:is|are)|here's|below\s+(?:is|are))"
_NOUN = (
    r"(?:answer|result|output|value|list|number|count|total|sum|string|word|name|text"
    r"|json|object|array|data|code|program|solution)s?"
)
# "Answer:", "The final result is:", "Here are the sorted names:" (a generic noun within).
_LABEL = rf"(?:(?:the\s+)?(?:final\s+)?(?:answer|result|output)s?(?:\s+(?:is|are))?|{_HERE})"
# A line of its own that only introduces what follows: "Sure! Here's a haiku about tea:".
_LEAD_LINE = re.compile(rf"{_OPENER}{_LABEL}\b[^\n]{{0,80}}:", re.IGNORECASE)
_OPENER_LINE = re.compile(r"(?:sure|certainly|of course|okay|ok|great|alright)[!.,]*", re.I)
# The value on the lead-in's own line: "Here is the reversed word: tcefrp".
_LEAD_INLINE = re.compile(
    rf"{_OPENER}(?:(?:the\s+)?(?:final\s+)?(?:answer|result|output)s?(?:\s+(?:is|are))?"
    rf"|{_HERE}[^:\n]{{0,40}}?\b{_NOUN}\b[^:\n]{{0,40}}?)\s*:[ \t]*(?P<value>\S[^\n]*)",
    re.IGNORECASE,
)
# "The answer is 12." around one token, a number or a quoted string.
_ANSWER_IS = re.compile(
    rf"{_OPENER}(?:so,?\s+)?the\s+(?:final\s+)?(?:answer|result)\s+is\s+"
    r"(?P<value>\"[^\"\n]*\"\.?|'[^'\n]*'\.?|[^\s\"']+)",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"[-+]?(?:\d[\d,_]*)(?:\.\d+)?(?:[eE][-+]?\d+)?")
_FENCE = re.compile(r"```[\w.+-]*[ \t]*\n(?P<body>.*?)\n?[ \t]*```", re.DOTALL)
_CLOSER = re.compile(
    r"(?:i hope|hope (?:this|that|it)|let me know|feel free|if you (?:have|need|want|would)"
    r"|is there anything|happy to help|good luck)\b",
    re.IGNORECASE,
)
_QUOTES = {'"': '"', "'": "'", "`": "`", "\u201c": "\u201d", "\u2018": "\u2019"}
_BULLET = re.compile(r"(?:[-*\u2022])\s+")
_NUMBERED = re.compile(r"(\d+)[.)]\s+")
_JSON_FORM = re.compile(r"\bjson\b", re.IGNORECASE)
_COMMAS = re.compile(r"comma[- ]?(?:separated|delimited)|separated by commas", re.IGNORECASE)
_LINES = re.compile(
    r"\bone\b(?:\s+\w+)?\s+(?:per|a|on each)\s+line|each on (?:its own|a separate|a new) line"
    r"|newline[- ]separated|separated by newlines",
    re.IGNORECASE,
)


def requested_separator(form: str) -> str | None:
    """The separator a task's ``format`` asks for: ``", "``, ``"\\n"``, or None."""
    if _COMMAS.search(form):
        return ", "
    if _LINES.search(form):
        return "\n"
    return None


def without_separator(form: str) -> str:
    """``form`` without the separator it asks for ("words, comma-separated" -> "words")."""
    return without_phrase(form, _COMMAS, _LINES)


def without_phrase(form: str, *phrases: re.Pattern[str]) -> str:
    """``form`` without what ``phrases`` match, and without the commas that set it off."""
    for phrase in phrases:
        form = phrase.sub("", form)
    return re.sub(r"\s*[,;]\s*(?=[,;]|$)|^\s*[,;]\s*", "", form).strip()


def clean_value(text: str, *, form: str = "") -> CleanValue:
    """``text`` as the bare value, with a note for every change.

    The rules, in order: surrounding whitespace; closing remarks after a blank line
    ("Let me know if ..."); a lead-in ("Here is the answer: X", a line "Here are the
    names:" before them, "The answer is 12."); a value that is one fenced code block;
    surrounding quotes on a one-line value. When ``form`` is given (the goal asked for
    one), an explanation after a blank line that follows a fenced block or a JSON
    document goes too, a Python dict or list becomes JSON when ``form`` asks for JSON,
    and lines become the separator ``form`` asks for. A rule that
    would leave nothing (an empty fence, quotes around nothing) is not applied.
    """
    notes: list[str] = []
    value = text.strip()
    if value != text:
        notes.append("trimmed surrounding whitespace")
    separator = requested_separator(form)
    steps: list[Callable[[str, list[str]], str]] = [_drop_closers, _drop_lead_in]
    if form:
        steps.append(_drop_explanation)
    steps += [_unfence, _unquote]
    if _JSON_FORM.search(form):
        steps.append(_as_json)
    if separator is not None:
        steps.append(functools.partial(_separate, separator=separator))
    for step in steps:
        said: list[str] = []
        changed = step(value, said)
        if changed.strip():
            value = changed
            notes += said
    return CleanValue(value, notes)


def clean_deliverables(
    plan: Plan, values: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """``values`` with every deliverable of ``plan`` cleaned, and what changed, by name
    (only the deliverables that changed). Each is cleaned for the ``format`` of the task
    that makes it."""
    cleaned = dict(values)
    changes: dict[str, list[str]] = {}
    for name in plan.deliverables:
        if name not in values:
            continue
        form = next((t.format for t in plan.walk() if name in t.outputs and t.format), "")
        result = clean_value(values[name], form=form)
        if result.notes:
            cleaned[name] = result.value
            changes[name] = result.notes
    return cleaned, changes


def _paragraphs(value: str) -> list[str]:
    return re.split(r"\n[ \t]*\n", value)


def _drop_closers(value: str, notes: list[str]) -> str:
    parts = _paragraphs(value)
    while len(parts) > 1 and _CLOSER.match(parts[-1].strip()):
        notes.append(f"dropped the closing remark {quoted(parts.pop())}")
    return "\n\n".join(parts).strip()


def _drop_lead_in(value: str, notes: list[str]) -> str:
    first, _, rest = value.partition("\n")
    if rest.strip() and _OPENER_LINE.fullmatch(first.strip()):
        notes.append(f"dropped the lead-in {quoted(first)}")
        value = rest.strip()
        first, _, rest = value.partition("\n")
    if rest.strip() and _LEAD_LINE.fullmatch(first.strip()):
        notes.append(f"dropped the lead-in {quoted(first)}")
        return rest.strip()
    inline = _LEAD_INLINE.fullmatch(first.strip())
    if inline is not None:
        head = first.strip()[: inline.start("value")].strip()
        notes.append(f"dropped the lead-in {quoted(head)}")
        found = inline.group("value").strip()
        return f"{_without_full_stop(found) if not rest else found}\n{rest}".strip()
    sentence = _ANSWER_IS.fullmatch(value)
    if sentence is not None:
        found = _without_full_stop(sentence.group("value"))
        notes.append(f"took {quoted(found)} out of the sentence {quoted(value)}")
        return found
    return value


def _without_full_stop(found: str) -> str:
    """One word or number that ended the lead-in's sentence, without the sentence's
    full stop ("tcefrp." -> "tcefrp", "3.14." -> "3.14"; "U.S." and prose are kept)."""
    bare = found[:-1]
    one_word = bare and not any(c.isspace() for c in bare)
    if found.endswith(".") and one_word and (_NUMBER.fullmatch(bare) or "." not in bare):
        return bare
    return found


def _unfence(value: str, notes: list[str]) -> str:
    fence = _FENCE.fullmatch(value)
    if fence is None or "```" in fence.group("body"):
        return value
    notes.append("took the value out of its code fence")
    return fence.group("body").strip()


def _drop_explanation(value: str, notes: list[str]) -> str:
    """With a form asked for, a fenced block or JSON document ends the value: prose
    after it (past a blank line) explains it and is not part of it."""
    fence = re.match(_FENCE.pattern + r"\n[ \t]*\n", value, re.DOTALL)
    if fence is not None:
        head, tail = value[: fence.end()].strip(), value[fence.end() :].strip()
    else:
        parts = _paragraphs(value)
        head = parts[0].strip()
        tail = "\n\n".join(parts[1:]).strip()
        if not head.startswith(("{", "[")) or not _is_json(head):
            return value
    if not tail or "```" in tail or not tail[0].isalpha():
        return value
    notes.append(f"dropped the explanation after it {quoted(tail)}")
    return head


def _as_json(value: str, notes: list[str]) -> str:
    """A Python dict or list written where JSON was asked for ("{'min': 1}"), as JSON."""
    if not value.startswith(("{", "[")) or _is_json(value):
        return value
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return value
    try:
        written = json.dumps(parsed, ensure_ascii=False)
    except (TypeError, ValueError):  # a set, a tuple key, bytes: not JSON's to say
        return value
    notes.append("wrote the Python literal as JSON, as the format asks")
    return written


def _unquote(value: str, notes: list[str]) -> str:
    close = _QUOTES.get(value[:1])
    if (
        close is None
        or len(value) < 3
        or not value.endswith(close)
        or "\n" in value
        or value[:1] in value[1:-1]
        or close in value[1:-1]
    ):
        return value
    notes.append("dropped the surrounding quotes")
    return value[1:-1].strip()


def _separate(value: str, notes: list[str], *, separator: str) -> str:
    listed = _list_literal(value)
    if listed is not None and (separator == "\n" or not any("," in i for i in listed)):
        notes.append(f"wrote the list of {len(listed)} items with the separator the format asks")
        return separator.join(listed)
    lines = [line.strip() for line in value.splitlines() if line.strip()]
    if len(lines) < 2:
        return value
    items = _unmarked(lines, numbered=separator != "\n")
    if separator == "\n":
        if items == lines:
            return value
        notes.append("dropped the list markers")
        return "\n".join(items)
    if any("," in item for item in items):
        return value  # the items' own commas would make the list ambiguous
    notes.append(f"joined {len(items)} lines with commas, as the format asks")
    return separator.join(items)


def _list_literal(value: str) -> list[str] | None:
    """The items of a JSON array or Python list of plain values ("['a', 'b']", "[1, 2]"),
    as text; None for anything else, or an empty list."""
    if not (value.startswith("[") and value.endswith("]")):
        return None
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        try:
            parsed = json.loads(value)
        except ValueError:
            return None
    plain = (str, int, float)
    if not isinstance(parsed, list | tuple) or not parsed:
        return None
    if not all(isinstance(item, plain) and not isinstance(item, bool) for item in parsed):
        return None
    return [str(item) for item in parsed]


def _unmarked(lines: list[str], *, numbered: bool) -> list[str]:
    """``lines`` without their list markers, when every line has one ("- a", "1. a")."""
    bullets = [_BULLET.match(line) for line in lines]
    if all(bullets):
        return [line[m.end() :] for line, m in zip(lines, bullets, strict=True) if m]
    counted = [_NUMBERED.match(line) for line in lines]
    if numbered and all(
        m is not None and int(m.group(1)) == i for i, m in enumerate(counted, start=1)
    ):
        return [line[m.end() :] for line, m in zip(lines, counted, strict=True) if m]
    return lines


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def quoted(text: str, width: int = 60) -> str:
    """``text`` on one line, cut to ``width`` characters, as a Python literal."""
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= width else flat[: width - 1] + "…")
