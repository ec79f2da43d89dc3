"""What the OpenAI test server answers and counts, apart from serving HTTP.

A ``ChatScript`` holds what a test scripted (the rules, the default reply, the latency),
the rate window, the requests received and the counters (``ServerStats``). The server's
HTTP handlers call it from the server's thread while the test reads it from its own, so
every method takes one reentrant lock: reentrant because a reply function runs under it
and may read ``server.requests``.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from dataclasses import dataclass, field

from starlette.responses import Response

from goalflow.errors import ConfigError
from goalflow.testing.limiters import LimiterKind, limiter
from goalflow.testing.protocol import (
    ChatRequest,
    Match,
    Reply,
    ReplySource,
    Rule,
    as_reply,
    error_response,
    estimate_tokens,
)

__all__ = ["ChatScript", "ServerStats"]


@dataclass
class ServerStats:
    """Counters over the chat requests since start or the last ``reset()``.

    ``requests`` also counts bodies too malformed to become a ``ChatRequest`` (answered
    400), which is why it can exceed ``len(server.requests)``.
    """

    requests: int = 0
    completed: int = 0
    rate_limited: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    max_in_flight: int = 0
    # Billed tokens (prompt, completion) by model.
    tokens_by_model: dict[str, tuple[int, int]] = field(default_factory=dict)


class ChatScript:
    """The scripted side of ``OpenAITestServer``; see the module docstring."""

    def __init__(
        self,
        *,
        latency: float,
        jitter: float,
        seed: int | None,
        rpm: int | None,
        tpm: int | None,
        limiter_kind: LimiterKind,
        burst_seconds: float,
        default: ReplySource | None,
    ) -> None:
        """The arguments are ``OpenAITestServer``'s, which holds their defaults."""
        if latency < 0 or jitter < 0:
            raise ConfigError(f"latency and jitter must be >= 0 s, got {latency} and {jitter}.")
        if (rpm is not None and rpm < 1) or (tpm is not None and tpm < 1):
            raise ConfigError(f"rpm and tpm must be >= 1 or None, got {rpm} and {tpm}.")
        self._latency = latency
        self._jitter = jitter
        self._random = random.Random(seed)
        self._default = default
        self._rules: list[Rule] = []
        self._requests: list[ChatRequest] = []
        self._stats = ServerStats()
        self._in_flight = 0
        self._window = limiter(limiter_kind, rpm, tpm, burst_seconds)
        self._lock = threading.RLock()

    # -- what the test does (the test's thread) ---------------------------------------

    def add(self, match: Match, reply: ReplySource, times: int | None = None) -> None:
        """Answer requests that ``match`` with ``reply``, ``times`` times (None: forever)."""
        rule = Rule(match, reply, times)
        with self._lock:
            self._rules.append(rule)

    def reset(self) -> None:
        """Forget received requests, counters and the rate-limit window; keep the rules."""
        with self._lock:
            self._requests.clear()
            self._stats = ServerStats(max_in_flight=self._in_flight)
            self._window.clear()

    @property
    def requests(self) -> list[ChatRequest]:
        """A copy of the chat requests received so far, rejected ones included, in order."""
        with self._lock:
            return list(self._requests)

    @property
    def stats(self) -> ServerStats:
        """A snapshot of the counters, so that one assertion sees consistent numbers."""
        with self._lock:
            stats = self._stats
            return dataclasses.replace(stats, tokens_by_model=dict(stats.tokens_by_model))

    # -- what the HTTP handlers do (the server's thread) -------------------------------

    def arrived(self) -> None:
        """Count a chat request coming in, and how many are in flight with it."""
        with self._lock:
            self._stats.requests += 1
            self._in_flight += 1
            self._stats.max_in_flight = max(self._stats.max_in_flight, self._in_flight)

    def left(self) -> None:
        """A chat request is no longer in flight, however it ended."""
        with self._lock:
            self._in_flight -= 1

    def answered(self, status: int) -> dict[str, str]:
        """Count a chat answer by its HTTP ``status``; the rate-limit headers to send."""
        with self._lock:
            if status == 200:
                self._stats.completed += 1
            elif status == 429:
                self._stats.rate_limited += 1
            else:
                self._stats.errors += 1
            return self._window.headers(time.monotonic())

    def record(self, chat: ChatRequest) -> None:
        """Keep a request for ``requests``, whether or not it is answered."""
        with self._lock:
            self._requests.append(chat)

    def count_tokens(self, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        """Add an answered request's token usage to the counters."""
        with self._lock:
            self._stats.prompt_tokens += prompt_tokens
            self._stats.completion_tokens += completion_tokens
            prompt, completion = self._stats.tokens_by_model.get(model, (0, 0))
            billed = (prompt + prompt_tokens, completion + completion_tokens)
            self._stats.tokens_by_model[model] = billed

    def headers(self) -> dict[str, str]:
        """OpenAI's ``x-ratelimit-*`` headers as the window stands now."""
        with self._lock:
            return self._window.headers(time.monotonic())

    def decide(self, chat: ChatRequest) -> tuple[Reply, float] | Response:
        """Pick the reply and admit it against the limits, or the error that answers instead.

        The reply comes with the seconds to wait before sending it. One critical
        section, so the rule consumed and the window slot taken belong to the same
        request even with hundreds in flight.
        """
        with self._lock:
            try:
                rule = next((r for r in self._rules if r.matches(chat)), None)
                if rule is not None:
                    reply = rule.reply_to(chat)
                elif self._default is not None:
                    reply = as_reply(self._default, chat)
                else:
                    return error_response(
                        400,
                        "goalflow test server: no scripted reply matched this request and no "
                        "default is set; the last user message starts with "
                        f"{chat.last_user[:200]!r}. Add a rule with server.script(...) or "
                        "pass default=... to OpenAITestServer.",
                    )
            except Exception as e:  # a test's match or reply function; report, don't crash
                return error_response(
                    500, f"A scripted match or reply function raised {e!r}.", kind="server_error"
                )
            completion = chat.max_tokens or estimate_tokens(reply.content)
            cost = estimate_tokens(chat.text) + completion
            now = time.monotonic()
            refusal = self._window.refusal(chat.model, cost, now)
            if refusal is not None:
                return error_response(
                    429,
                    refusal.message,
                    kind=refusal.limit,
                    code="rate_limit_exceeded",
                    retry_after=refusal.retry_after,
                    retry_after_ms=True,
                )
            self._window.admit(cost, now)
            if rule is not None:
                rule.consume()
            jitter = self._random.uniform(-self._jitter, self._jitter) if self._jitter else 0.0
            return reply, max(0.0, self._latency + jitter) + reply.delay
