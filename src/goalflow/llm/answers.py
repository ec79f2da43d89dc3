"""Reading what an endpoint sends back, and sizing what is sent to it: whether a body
is a chat completion, whether a refusal is about the structured-output format, the
answer without a code fence, an upper bound of a request's prompt tokens by its bytes
(:mod:`goalflow.llm.prompt_counts` bounds it tighter), and how long the answers of
each purpose have been."""

from __future__ import annotations

import json
import math
import re
import threading
from typing import Any

import openai
from openai.types.chat import ChatCompletion

from goalflow.core.chat import Message

__all__ = [
    "ANSWER_FLOOR",
    "UNCAPPED",
    "AnswerLengths",
    "is_completion",
    "message_bound",
    "refuses_json_schema",
    "strip_fences",
    "worst_case_tokens",
]

ANSWER_FLOOR = 256
"""The fewest answer tokens a call asks for when the money left cannot pay for more,
before any answer of its purpose has been seen."""
UNCAPPED = ("plan", "refine")
"""Purposes whose answer is waste when cut short (a plan, a step's sub-plan): their calls
ask for their whole ``max_tokens`` or wait, and are refused when that cannot fit."""
_ANSWER_MARGIN = 1.5  # how much longer than the longest seen a capped answer may be
_SHORTEST_CAP = 16


def is_completion(response: object) -> bool:
    """Whether the SDK made a chat completion with a choice of the answer's body."""
    return isinstance(response, ChatCompletion) and bool(response.choices)


def refuses_json_schema(error: openai.APIStatusError) -> bool:
    """The server cannot take ``response_format`` json_schema: a 400 or 422 (a 500 from
    llama.cpp's server) whose body names it. Any other error, a transient 500 among
    them, says nothing about the format and is retried in the same mode."""
    if error.status_code not in (400, 422, 500):
        return False
    said = f"{error.message} {error.body}".lower()
    return "response_format" in said or "json_schema" in said


def worst_case_tokens(messages: list[Message], json_schema: dict[str, Any]) -> int:
    """An upper bound of the prompt's tokens: one per byte of every message's text and
    of the schema, plus framing.

    No tokenizer makes a token of less than a byte. A chat template adds a few tokens
    per message, its role and markers (OpenAI's 3, the open models' templates at most
    6; counted as 8), and a few to the prompt (the start of the answer, a default
    system line or date some templates write; counted as 32). A provider that writes
    the answer's schema into the prompt adds about the schema's own bytes, counted
    once (``messages`` are those sent: in json_object mode they carry the schema hint).
    """
    text = sum(message_bound(m) for m in messages)
    return text + len(json.dumps(json_schema).encode()) + 32


def message_bound(message: Message) -> int:
    """A message's tokens at most: a token per byte of its text, and 8 of framing."""
    return len(message["content"].encode()) + 8


class AnswerLengths:
    """The longest answer seen for each purpose ("task", "review", "plan": a purpose
    without its task id), which sizes the shortest answer a call may ask for when the
    money left cannot pay for its whole ``max_tokens``.

    A capped answer is asked for half again the longest of its purpose (at least 16
    tokens), or ``ANSWER_FLOOR`` before one was seen: near the end of the money a
    review that has always needed 40 tokens is still sent, where a fixed floor of 256
    would stop the goal, and a call whose answers have been long is not sent to be cut
    off. An answer cut off at its cap counts as needing all its call wanted. Planning
    calls (``UNCAPPED``) are not capped at all.
    """

    def __init__(self) -> None:
        self._longest: dict[str, int] = {}
        self._lock = threading.Lock()

    def floor(self, purpose: str, wanted: int) -> int:
        """The fewest answer tokens a call of ``purpose`` wanting ``wanted`` asks for."""
        if _kind(purpose) in UNCAPPED:
            return wanted
        with self._lock:
            longest = self._longest.get(_kind(purpose))
        if longest is None:
            return min(wanted, ANSWER_FLOOR)
        return min(wanted, max(_SHORTEST_CAP, math.ceil(longest * _ANSWER_MARGIN)))

    def saw(self, purpose: str, completion_tokens: int, *, cut_at: int | None) -> None:
        """An answer of ``completion_tokens`` came back; ``cut_at``: the tokens the call
        wanted, when the answer stopped at its cap."""
        tokens = completion_tokens if cut_at is None else max(completion_tokens, cut_at)
        with self._lock:
            kind = _kind(purpose)
            self._longest[kind] = max(self._longest.get(kind, 0), tokens)


def _kind(purpose: str) -> str:
    """``review t3`` → ``review``: purposes name the task last, after a space."""
    return purpose.rsplit(" ", 1)[0] if " " in purpose else purpose


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


def strip_fences(content: str) -> str:
    match = _FENCE.match(content)
    return match.group(1) if match else content
