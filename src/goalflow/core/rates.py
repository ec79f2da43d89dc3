"""The arithmetic of rate limits: which limits can work, how large a burst is, how many
calls a limit keeps busy, what a request costs against it, and what an endpoint
announces. Used by the pacer (:mod:`goalflow.core.pacing`) and by whoever sizes a goal's
concurrency. No I/O.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from goalflow.errors import ConfigError

__all__ = [
    "DEFAULT_BURST_SECONDS",
    "DEFAULT_CONCURRENCY",
    "AnnouncedLimits",
    "SlowStart",
    "burst_requests",
    "check_burst",
    "check_limit",
    "estimate_request_tokens",
    "task_concurrency",
]

DEFAULT_CONCURRENCY = 4  # no rate limit configured: the historical default
DEFAULT_BURST_SECONDS = 1.0  # a provider's per-minute limit, enforced per second
_MAX_LATENCY_SECONDS = 3600.0
_SLOW_START_RATE = 50.0  # requests a second at first, and again after a second of silence,
_DOUBLING_SECONDS = 0.5  # doubling every half second while no 429 comes back
_IDLE_SECONDS = 1.0
_MAX_DOUBLINGS = 16  # ~3 million a second: no spacing at all


@dataclass(frozen=True)
class AnnouncedLimits:
    """What an endpoint says of its limits in one answer (OpenAI's ``x-ratelimit-*``
    headers); None: not said. ``*_reset``: seconds until that limit is whole again."""

    requests: int | None = None
    remaining_requests: int | None = None
    requests_reset: float | None = None
    tokens: int | None = None
    remaining_tokens: int | None = None
    tokens_reset: float | None = None


@dataclass
class SlowStart:
    """How fast requests may leave while no rate limit is known (none told, none
    announced yet): 50 a second, doubling every half second; halved by a 429 (at most
    once a second); from 50 again after a second with nothing sent. A burst a provider
    would refuse is found out by its first 429s (and their headers), not by hundreds; a
    provider without limits is at full speed within seconds."""

    base: float = _SLOW_START_RATE  # the rate at ``since``
    since: float = -math.inf
    last_cut: float = -math.inf

    def rate(self, now: float) -> float:
        doublings = max(0.0, now - self.since) / _DOUBLING_SECONDS
        return self.base * math.pow(2.0, min(doublings, _MAX_DOUBLINGS))

    def gap(self, now: float, quiet_since: float) -> float:
        """Seconds from a request written ``now`` to the next; nothing was sent after
        ``quiet_since``."""
        if now - quiet_since > _IDLE_SECONDS:
            self.base, self.since = _SLOW_START_RATE, now
        return 1.0 / self.rate(now)

    def halve(self, now: float, resume_at: float) -> None:
        """A 429 came back: half the rate, doubling again from ``resume_at``."""
        if now - self.last_cut >= 1.0:
            self.base = max(1.0, self.rate(now) / 2)
            self.since = resume_at
            self.last_cut = now


def check_limit(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or value < 1):
        raise ConfigError(
            f"{name} must be a positive whole number or unset (no limit), got {value!r}: "
            "use the limit your provider shows for this key and model"
        )


def check_burst(burst_seconds: float) -> None:
    if not (math.isfinite(burst_seconds) and 0 < burst_seconds <= 60):
        raise ConfigError(
            f"the burst must be more than 0 and at most 60 seconds' worth of the rate "
            f"limit, got {burst_seconds!r}: 1 for providers that enforce their limit per "
            "second (most), 60 for one that allows a whole minute at once"
        )


def burst_requests(requests_per_minute: int, burst_seconds: float) -> float:
    """How many requests may leave at once: ``burst_seconds`` worth, at least one."""
    return max(1.0, requests_per_minute * burst_seconds / 60.0)


def _check_latency(latency: float) -> None:
    if not (math.isfinite(latency) and 0 < latency <= _MAX_LATENCY_SECONDS):
        raise ConfigError(
            f"the expected latency of a model call must be more than 0 and at most "
            f"{_MAX_LATENCY_SECONDS:.0f} s, got {latency!r}: use the typical seconds one "
            "answer takes (GOALFLOW_EXPECTED_LATENCY or the LLMProvider block)"
        )


def task_concurrency(
    concurrency: int | None,
    requests_per_minute: int | None,
    expected_latency: float,
    burst_seconds: float = DEFAULT_BURST_SECONDS,
) -> int:
    """How many tasks a goal runs at once: ``concurrency`` when set, else what the rate
    limit that binds can keep busy.

    Calls leave at R/60 per second with a burst of ``burst_seconds`` worth, and each is
    out for L seconds: R/60 * L of them are in flight in steady state (Little's law),
    plus the burst when one starts. More would only queue in the pacer (and, with a
    limit of 600 per minute and a cap of 600, send the whole minute's calls into a
    provider's per-second limit at once). No limit and no setting: 4.
    """
    check_limit("concurrency", concurrency)
    check_limit("requests_per_minute", requests_per_minute)
    _check_latency(expected_latency)
    check_burst(burst_seconds)
    if concurrency is not None:
        return concurrency
    if requests_per_minute is None:
        return DEFAULT_CONCURRENCY
    steady = requests_per_minute / 60.0 * expected_latency
    return math.ceil(steady + burst_requests(requests_per_minute, burst_seconds))


def estimate_request_tokens(
    messages: Sequence[dict[str, str]], max_tokens: int, extra: Any = None
) -> int:
    """Tokens a provider will charge a request against its limit, erring high.

    Providers meter a request at admission as its prompt plus ``max_tokens``. English
    runs about 4 characters a token; counting 3 (and the JSON framing, and ``extra``
    such as a response schema) over-counts ordinary text, so the pacer stays under the
    limit. The answer's real usage settles the difference (:meth:`Admission.settle`).
    """
    text = json.dumps(list(messages), ensure_ascii=False)
    if extra is not None:
        text += json.dumps(extra, ensure_ascii=False)
    return math.ceil(len(text) / 3) + 4 * len(messages) + max_tokens
