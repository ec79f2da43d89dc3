"""The OpenAI chat API as the test server speaks it, apart from serving HTTP.

What a test scripts (rules and replies), what the server was asked (``ChatRequest``),
and how OpenAI words its answers: token counts and error bodies (its rate limiters are
:mod:`goalflow.testing.limiters`).
Kept apart from the serving in ``server.py`` and the scripted state in ``script.py`` so
each piece can be reasoned about without a running server.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from starlette.responses import JSONResponse

from goalflow.errors import ConfigError

__all__ = [
    "ChatRequest",
    "Match",
    "Reply",
    "ReplySource",
    "Rule",
    "as_reply",
    "error_response",
    "estimate_tokens",
    "scripted_error",
]


def estimate_tokens(text: str) -> int:
    """Count tokens the way budget code can predict: ceil(chars / 4), at least 1.

    A real tokenizer would make token budgets in tests depend on a vocabulary; four
    characters a token is the usual rule of thumb for English and keeps numbers exact.
    """
    return max(1, math.ceil(len(text) / 4))


@dataclass(frozen=True)
class Reply:
    """One scripted answer: assistant content, or an HTTP error shaped like OpenAI's.

    ``delay`` adds to the server's latency for this answer only; ``retry_after`` (seconds)
    is sent as a ``Retry-After`` header, which the openai SDK honours when it retries.
    ``raw_body`` replaces the whole HTTP 200 body (a proxy's HTML page, a broken JSON),
    sent as ``raw_type``.
    """

    content: str = ""
    status: int = 200
    error_message: str = ""
    retry_after: float | None = None
    finish_reason: str = "stop"
    delay: float = 0.0
    raw_body: str | None = None
    raw_type: str = "text/html"

    def __post_init__(self) -> None:
        if self.status != 200 and not 400 <= self.status <= 599:
            raise ConfigError(f"Reply status must be 200 or an error 400..599, got {self.status}.")
        if self.delay < 0:
            raise ConfigError(f"Reply delay must be >= 0 seconds, got {self.delay}.")
        if self.retry_after is not None and self.retry_after < 0:
            raise ConfigError(f"Reply retry_after must be >= 0 seconds, got {self.retry_after}.")


@dataclass(frozen=True)
class ChatRequest:
    """A ``/chat/completions`` request as the test server received it.

    The derived fields (``text``, ``last_user``, ``schema``...) exist so that rules and
    assertions read as one expression instead of digging through the raw ``body``.
    """

    model: str
    messages: list[dict[str, Any]]
    response_format: dict[str, Any] | None
    max_tokens: int | None
    text: str
    last_user: str
    schema: dict[str, Any] | None
    schema_name: str | None
    received_at: float
    body: dict[str, Any] = field(repr=False)

    @classmethod
    def from_body(cls, body: object, received_at: float) -> ChatRequest:
        """Read a request body, or raise ``ValueError`` saying what OpenAI would refuse.

        The server turns that ``ValueError`` into an HTTP 400; it never escapes.
        """
        if not isinstance(body, dict):
            raise ValueError("The request body must be a JSON object.")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise ValueError("'model' is required and must be a non-empty string.")
        messages = body.get("messages")
        if (
            not isinstance(messages, list)
            or not messages
            or not all(isinstance(m, dict) for m in messages)
        ):
            raise ValueError("'messages' is required and must be a non-empty list of objects.")
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
        if max_tokens is not None and (
            not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1
        ):
            raise ValueError("'max_tokens' must be a positive integer.")
        response_format = body.get("response_format")
        if response_format is not None and not isinstance(response_format, dict):
            raise ValueError("'response_format' must be an object.")
        schema, schema_name = _schema_of(response_format)
        contents = [_content_text(m.get("content")) for m in messages]
        users = [c for m, c in zip(messages, contents, strict=True) if m.get("role") == "user"]
        return cls(
            model=model,
            messages=messages,
            response_format=response_format,
            max_tokens=max_tokens,
            text="\n".join(contents),
            last_user=users[-1] if users else "",
            schema=schema,
            schema_name=schema_name,
            received_at=received_at,
            body=body,
        )


def _content_text(content: object) -> str:
    """Flatten a message content: a string, or a list of parts of which text ones count."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def _schema_of(
    response_format: dict[str, Any] | None,
) -> tuple[dict[str, Any] | None, str | None]:
    """Find the JSON schema wherever OpenAI (json_schema) or llama.cpp (json_object) puts it."""
    if response_format is None:
        return None, None
    name: object = None
    if response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema")
        spec = spec if isinstance(spec, dict) else {}
        schema, name = spec.get("schema"), spec.get("name")
    else:
        schema = response_format.get("schema")
    if not isinstance(schema, dict):
        return None, name if isinstance(name, str) else None
    if not isinstance(name, str):
        name = schema.get("title")
    return schema, name if isinstance(name, str) else None


Match = str | Callable[[ChatRequest], bool]
"""A substring of the request's ``text``, or a predicate on the request."""

ReplySource = str | Reply | Callable[[ChatRequest], str | Reply]
"""Assistant content, a full ``Reply``, or a function computing either from the request."""


class Rule:
    """One scripted ``match -> reply`` pair, usable ``times`` times (forever when None)."""

    def __init__(self, match: Match, reply: ReplySource, times: int | None = None) -> None:
        if times is not None and times < 1:
            raise ConfigError(f"A rule's times must be >= 1 (or None for unlimited), got {times}.")
        self._match = match
        self._reply = reply
        self.remaining = times

    def matches(self, request: ChatRequest) -> bool:
        """Whether this rule still has uses left and applies to ``request``."""
        if self.remaining == 0:
            return False
        if isinstance(self._match, str):
            return self._match in request.text
        return bool(self._match(request))

    def reply_to(self, request: ChatRequest) -> Reply:
        """The reply for ``request``; calling a reply function here, not at script time."""
        return as_reply(self._reply, request)

    def consume(self) -> None:
        """Spend one use; done only once the answer is really sent, not on a 429."""
        if self.remaining is not None:
            self.remaining -= 1


def as_reply(source: ReplySource, request: ChatRequest) -> Reply:
    """Normalise any ``ReplySource`` to a ``Reply`` for ``request``."""
    if callable(source):
        source = source(request)
    return Reply(content=source) if isinstance(source, str) else source


def error_response(
    status: int,
    message: str,
    *,
    kind: str = "invalid_request_error",
    code: str | None = None,
    retry_after: float | None = None,
    retry_after_ms: bool = False,
) -> JSONResponse:
    """An error in OpenAI's body shape, which the SDK turns into its typed exceptions.

    ``retry_after`` (seconds) is sent as ``Retry-After``; with ``retry_after_ms`` it is
    also sent to the millisecond, and ``Retry-After`` is rounded up to whole seconds."""
    headers = {}
    if retry_after is not None and retry_after_ms:
        headers["retry-after"] = str(math.ceil(retry_after))
        headers["retry-after-ms"] = str(math.ceil(retry_after * 1000))
    elif retry_after is not None:
        headers["retry-after"] = f"{retry_after:g}"
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def scripted_error(reply: Reply) -> JSONResponse:
    """A scripted non-200 reply, typed the way OpenAI types that status."""
    kind, code = "invalid_request_error", None
    if reply.status == 429:
        kind, code = "requests", "rate_limit_exceeded"
    elif reply.status >= 500:
        kind = "server_error"
    try:
        phrase = HTTPStatus(reply.status).phrase
    except ValueError:
        phrase = f"HTTP {reply.status}"
    message = reply.error_message or phrase
    return error_response(
        reply.status, message, kind=kind, code=code, retry_after=reply.retry_after
    )
