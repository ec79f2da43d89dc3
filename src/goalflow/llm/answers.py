"""Reading what an endpoint sends back, and sizing what is sent to it: whether a body
is a chat completion, whether a refusal is about the structured-output format, the
answer without a code fence, upper bounds of a request's prompt tokens (by its bytes,
and by what the provider counted for earlier prompts it shares messages with), and how
long the answers of each purpose have been."""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections import Counter
from typing import Any

import openai
from openai.types.chat import ChatCompletion

from goalflow.core.chat import Message

__all__ = [
    "ANSWER_FLOOR",
    "UNCAPPED",
    "AnswerLengths",
    "PromptCounts",
    "is_completion",
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
    text = sum(_message_bound(m) for m in messages)
    return text + len(json.dumps(json_schema).encode()) + 32


def _message_bound(message: Message) -> int:
    """A message's tokens at most: a token per byte of its text, and 8 of framing."""
    return len(message["content"].encode()) + 8


class PromptCounts:
    """What the provider counted for the prompts it answered, which bounds a new prompt
    that repeats their messages far more tightly than a token per byte.

    Chat templates set each message apart with special tokens, so a prompt's tokens
    are its messages' tokens plus framing. A prompt that repeats messages of an earlier
    one (same model) has at most the earlier prompt's counted tokens, plus a token per
    byte (and the framing) of each message the earlier one did not have, plus its
    schema's bytes when that differs (a provider may write it into the prompt), plus a
    few tokens for anything else a provider adds that varies: the earlier prompt's own
    other messages only make the bound larger. A goal's calls of one purpose share a
    long system message (every task, every review), and a re-ask repeats its
    conversation.
    """

    _KEEP = 8  # earlier prompts kept per model and first message
    _SLACK = 8  # tokens for what varies between two prompts beyond their messages

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], list[tuple[int, str, Counter[str]]]] = {}
        self._lock = threading.Lock()

    def saw(
        self, model: str, messages: list[Message], json_schema: dict[str, Any], tokens: int
    ) -> None:
        """The provider counted ``tokens`` for this prompt (``messages`` as sent)."""
        if tokens <= 0 or not messages:  # no usage reported: nothing learned
            return
        digests = Counter(_digest(m) for m in messages)
        with self._lock:
            kept = self._seen.setdefault((model, _digest(messages[0])), [])
            kept.append((tokens, _schema_digest(json_schema), digests))
            del kept[: -self._KEEP]

    def bound(self, model: str, messages: list[Message], json_schema: dict[str, Any]) -> int | None:
        """The prompt's tokens at most, by the earlier prompts it shares messages with;
        None when it shares none with a prompt whose count is known."""
        if not messages:
            return None
        with self._lock:
            kept = list(self._seen.get((model, _digest(messages[0])), ()))
        if not kept:
            return None
        sizes = {_digest(m): _message_bound(m) for m in messages}
        digests = Counter(_digest(m) for m in messages)
        schema, schema_bytes = _schema_digest(json_schema), len(json.dumps(json_schema).encode())
        return self._SLACK + min(
            counted
            + sum(sizes[d] * n for d, n in (digests - earlier).items())
            + (0 if earlier_schema == schema else schema_bytes)
            for counted, earlier_schema, earlier in kept
        )


def _schema_digest(json_schema: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(json_schema, sort_keys=True).encode()).hexdigest()


def _digest(message: Message) -> str:
    return hashlib.sha256(f"{message['role']}\0{message['content']}".encode()).hexdigest()


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
