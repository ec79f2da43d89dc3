"""Exact checkers on a goal's answer: each takes the deliverable's text and returns None
when a user who typed the goal would accept it, else a short reason why not.

They accept what a person would: surrounding whitespace, one Markdown code fence or one
pair of quotes around the whole answer, a closing full stop, ``1,234`` for a number, a
unit (``$``, ``km``) with a number, ``a, b`` or ``a,b`` for a comma-separated list.
They never accept a different value, a different order where the goal asks for one, or
another separator than the one asked for. No checker knows which model answered.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence

__all__ = [
    "Check",
    "any_of",
    "clean",
    "items",
    "json_value",
    "number",
    "parse_number",
    "text",
]

Check = Callable[[str], str | None]
"""A deliverable's text -> None (accepted) or why it is not."""

_FENCE = re.compile(r"^```[\w+-]*\n(?P<body>.*?)\n?```$", re.S)
_QUOTES = ('"', "'", "`")
_MINUS = "\u2212"  # the typeset minus sign, which models and people also write
_NUMBER = rf"[-+{_MINUS}]?(?:\d{{1,3}}(?:,\d{{3}})+|\d+)(?:\.\d+)?|[-+{_MINUS}]?\.\d+"


def clean(value: str) -> str:
    """The answer without surrounding whitespace, one code fence or one pair of quotes,
    and the full stop that ends a sentence."""
    value = value.strip()
    fenced = _FENCE.match(value)
    if fenced:
        value = fenced.group("body").strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in _QUOTES:
        inner = value[1:-1]
        if value[0] not in inner:  # 'a' and 'b' is two quoted items, not one
            value = inner.strip()
    if value.endswith(".") and not value.endswith(".."):
        value = value[:-1].rstrip()
    return value


def _shown(value: str, width: int = 60) -> str:
    flat = " ".join(value.split())
    return repr(flat if len(flat) <= width else flat[: width - 1] + "…")


def text(expected: str, *, ignore_case: bool = False) -> Check:
    """The answer is ``expected`` (inner whitespace runs count as one space)."""

    def normal(value: str) -> str:
        value = " ".join(value.split())
        return value.casefold() if ignore_case else value

    def check(value: str) -> str | None:
        got = clean(value)
        if normal(got) == normal(clean(expected)):
            return None
        return f"expected {expected!r}, got {_shown(got)}"

    return check


def parse_number(value: str, units: Sequence[str] = ()) -> float | None:
    """The one number ``value`` states (a unit from ``units`` may come before or
    after it), else None."""
    value = clean(value)
    for unit in sorted(units, key=len, reverse=True):
        if value.casefold().endswith(unit.casefold()):
            value = value[: -len(unit)].strip()
            break
        if value.casefold().startswith(unit.casefold()):  # $12.50
            value = value[len(unit) :].strip()
            break
    if not re.fullmatch(_NUMBER, value):
        return None
    return float(value.replace(",", "").replace(_MINUS, "-"))


def number(expected: float, *, places: int | None = None, units: Sequence[str] = ()) -> Check:
    """The answer is one number equal to ``expected``; with ``places``, equal once
    rounded to that many decimals (more digits than asked are accepted, fewer are not).
    A unit from ``units`` may come before or after the number."""

    def check(value: str) -> str | None:
        got = parse_number(value, units)
        if got is None:
            return f"expected the number {expected:g}, got {_shown(value)}"
        if places is None:
            ok = math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-9)
        else:
            # Half a unit in the last place, with room for binary rounding of the input.
            ok = abs(got - expected) <= 0.5 * 10**-places + 1e-9
        return None if ok else f"expected {expected:g}, got {got:g}"

    return check


def items(
    expected: Sequence[str],
    *,
    sep: str,
    ordered: bool = True,
    ignore_case: bool = False,
) -> Check:
    """The answer is ``expected``'s items joined by ``sep`` (',' or '\\n' or ' / '...),
    spaces around each item free; blank lines are ignored when ``sep`` is a newline."""
    split_on = sep.strip() or sep

    def normal(item: str) -> str:
        item = " ".join(item.split())
        return item.casefold() if ignore_case else item

    def check(value: str) -> str | None:
        got = [normal(part) for part in clean(value).split(split_on)]
        if split_on == "\n":
            got = [part for part in got if part]
        want = [normal(item) for item in expected]
        if (got if ordered else sorted(got)) == (want if ordered else sorted(want)):
            return None
        joined = (sep if sep != "\n" else " | ").join(expected)
        return f"expected {joined!r}{'' if ordered else ' in any order'}, got {_shown(value)}"

    return check


def _same(got: object, want: object) -> bool:
    """JSON values equal, numbers by value (1 == 1.0), never a bool for a number."""
    if isinstance(want, bool) or isinstance(got, bool):
        return type(got) is type(want) and got == want
    if isinstance(want, int | float) and isinstance(got, int | float):
        return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(want, dict) and isinstance(got, dict):
        return got.keys() == want.keys() and all(_same(got[k], want[k]) for k in want)
    if isinstance(want, list) and isinstance(got, list):
        return len(got) == len(want) and all(_same(g, w) for g, w in zip(got, want, strict=True))
    return got == want


def json_value(expected: object) -> Check:
    """The answer is JSON equal to ``expected``: an object needs exactly its keys."""

    def check(value: str) -> str | None:
        try:
            got = json.loads(clean(value))
        except ValueError:
            return f"expected JSON like {json.dumps(expected)}, got {_shown(value)}"
        if _same(got, expected):
            return None
        return f"expected {json.dumps(expected)}, got {_shown(json.dumps(got))}"

    return check


def any_of(*checks: Check) -> Check:
    """Accepted when one of ``checks`` accepts (forms a user takes as the same answer)."""

    def check(value: str) -> str | None:
        reasons = [c(value) for c in checks]
        if any(reason is None for reason in reasons):
            return None
        return reasons[0]

    return check
