"""Reading what an endpoint sends back, and sizing what is sent to it: whether a body
is a chat completion, whether a refusal is about the structured-output format, the
answer without a code fence, and an upper bound of a request's prompt tokens."""

from __future__ import annotations

import json
import re
from typing import Any

import openai
from openai.types.chat import ChatCompletion

from goalflow.core.chat import Message

__all__ = ["is_completion", "refuses_json_schema", "strip_fences", "worst_case_tokens"]


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
    """An upper bound of the prompt's tokens: one per byte of everything sent.

    The schema is counted twice because in json_object mode it is sent both as the
    response format and as a system hint; the constant covers per-message framing.
    """
    sent = json.dumps(messages, ensure_ascii=False) + 2 * json.dumps(json_schema)
    return len(sent.encode()) + 8 * len(messages) + 16


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


def strip_fences(content: str) -> str:
    match = _FENCE.match(content)
    return match.group(1) if match else content
