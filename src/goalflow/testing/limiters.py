"""The test server's rate limiters, as real providers meter: a sliding minute, or a
token bucket that enforces the per-minute limit over a second or so.

Both refuse a request with OpenAI's 429 wording and the exact wait (``Please try again in
20ms``, sent as ``retry-after-ms`` and as whole seconds in ``retry-after``), and describe their
state in OpenAI's ``x-ratelimit-*`` headers (limit, remaining, and the time until the
limit is whole again, as a duration like ``20ms``, ``1s`` or ``6m0s``).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Literal, Protocol

from goalflow.errors import ConfigError

__all__ = [
    "Limiter",
    "LimiterKind",
    "RateBucket",
    "RateWindow",
    "Refusal",
    "limiter",
    "openai_duration",
]

LimiterKind = Literal["window", "bucket"]
_WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class Refusal:
    """Why the limiter turned a request away, and when to come back."""

    message: str
    limit: str  # "requests" or "tokens", OpenAI's error type for a 429
    retry_after: float | None  # seconds; None when no wait can help (the request alone
    # exceeds the limit)


class Limiter(Protocol):
    """What the test server asks of a rate limiter; ``now`` is ``time.monotonic()``."""

    def refusal(self, model: str, cost: int, now: float) -> Refusal | None: ...
    def admit(self, cost: int, now: float) -> None: ...
    def headers(self, now: float) -> dict[str, str]: ...
    def clear(self) -> None: ...


def limiter(
    kind: LimiterKind, rpm: int | None, tpm: int | None, burst_seconds: float = 1.0
) -> Limiter:
    """The limiter of ``kind`` for ``rpm`` requests and ``tpm`` tokens a minute."""
    if kind == "window":
        return RateWindow(rpm, tpm)
    if kind == "bucket":
        return RateBucket(rpm, tpm, burst_seconds)
    raise ConfigError(f"limiter must be 'window' or 'bucket', got {kind!r}.")


def openai_duration(seconds: float) -> str:
    """``seconds`` as OpenAI writes a reset time: ``20ms``, ``1s``, ``1.5s``, ``6m0s``."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    minutes, rest = divmod(seconds, 60)
    rest = round(rest, 3)
    return f"{int(minutes)}m{rest:g}s" if minutes else f"{rest:g}s"


def _too_large(model: str, tpm: int, cost: int) -> Refusal:
    return Refusal(
        f"Request too large for {model} on tokens per min (TPM): Limit {tpm}, "
        f"Requested {cost}. The input or output tokens must be reduced.",
        "tokens",
        None,
    )


def _refuse(
    model: str, limit: str, short: str, cap: int, used: int, requested: int, wait: float
) -> Refusal:
    wait = max(0.001, wait)
    return Refusal(
        f"Rate limit reached for {model} on {limit} per min ({short}): Limit {cap}, "
        f"Used {used}, Requested {requested}. Please try again in {openai_duration(wait)}.",
        limit,
        wait,
    )


class RateWindow:
    """The admitted requests of the last 60 s with their token cost: a whole minute's
    limit may be used at once."""

    def __init__(self, rpm: int | None, tpm: int | None) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self._admitted: deque[tuple[float, int]] = deque()

    def _prune(self, now: float) -> None:
        while self._admitted and self._admitted[0][0] <= now - _WINDOW_SECONDS:
            self._admitted.popleft()

    def refusal(self, model: str, cost: int, now: float) -> Refusal | None:
        """Why a request costing ``cost`` tokens cannot be admitted now, or None if it can."""
        self._prune(now)
        if self.tpm is not None and cost > self.tpm:
            return _too_large(model, self.tpm, cost)
        if self.rpm is not None and len(self._admitted) >= self.rpm:
            freed_at = self._admitted[len(self._admitted) - self.rpm][0] + _WINDOW_SECONDS
            return _refuse(
                model, "requests", "RPM", self.rpm, len(self._admitted), 1, freed_at - now
            )
        used = sum(tokens for _, tokens in self._admitted)
        if self.tpm is None or used + cost <= self.tpm:
            return None
        # Cost fits the limit (checked above), so freeing the whole window always suffices.
        freed_at, still_used = now, used
        for admitted_at, tokens in self._admitted:
            still_used -= tokens
            if still_used + cost <= self.tpm:
                freed_at = admitted_at + _WINDOW_SECONDS
                break
        return _refuse(model, "tokens", "TPM", self.tpm, used, cost, freed_at - now)

    def admit(self, cost: int, now: float) -> None:
        """Take a slot and ``cost`` tokens of the window; they free up 60 s later."""
        self._admitted.append((now, cost))

    def headers(self, now: float) -> dict[str, str]:
        """OpenAI's ``x-ratelimit-*`` headers, for the limits that are set."""
        self._prune(now)
        whole_at = self._admitted[-1][0] + _WINDOW_SECONDS if self._admitted else now
        headers: dict[str, str] = {}
        if self.rpm is not None:
            headers["x-ratelimit-limit-requests"] = str(self.rpm)
            remaining = max(0, self.rpm - len(self._admitted))
            headers["x-ratelimit-remaining-requests"] = str(remaining)
            headers["x-ratelimit-reset-requests"] = openai_duration(whole_at - now)
        if self.tpm is not None:
            used = sum(tokens for _, tokens in self._admitted)
            headers["x-ratelimit-limit-tokens"] = str(self.tpm)
            headers["x-ratelimit-remaining-tokens"] = str(max(0, self.tpm - used))
            headers["x-ratelimit-reset-tokens"] = openai_duration(whole_at - now)
        return headers

    def clear(self) -> None:
        """Free the whole window at once, as if a minute had passed."""
        self._admitted.clear()


class _Bucket:
    """``capacity`` units, refilled at ``rate`` per second; starts full."""

    def __init__(self, capacity: float, rate: float) -> None:
        self.capacity = capacity
        self.rate = rate
        self.level = capacity
        self._at = -math.inf

    def refill(self, now: float) -> None:
        if self._at != -math.inf:
            self.level = min(self.capacity, self.level + (now - self._at) * self.rate)
        self._at = now

    def wait_for(self, units: float) -> float:
        """Seconds until ``units`` fit (a request above the capacity: a full bucket)."""
        return max(0.0, min(units, self.capacity) - self.level) / self.rate

    def until_full(self) -> float:
        return (self.capacity - self.level) / self.rate


class RateBucket:
    """Per-minute limits enforced over ``burst_seconds``: token buckets holding that many
    seconds' worth, refilled at rpm/60 requests and tpm/60 tokens a second.

    A request larger than the token burst (but not than ``tpm``) is admitted when the
    bucket is full, and leaves it in debt.
    """

    def __init__(self, rpm: int | None, tpm: int | None, burst_seconds: float = 1.0) -> None:
        if not (math.isfinite(burst_seconds) and 0 < burst_seconds <= 60):
            raise ConfigError(f"burst_seconds must be in (0, 60], got {burst_seconds!r}.")
        self.rpm = rpm
        self.tpm = tpm
        self.burst_seconds = burst_seconds
        self.clear()

    def _refill(self, now: float) -> None:
        for bucket in (self._requests, self._tokens):
            if bucket is not None:
                bucket.refill(now)

    def refusal(self, model: str, cost: int, now: float) -> Refusal | None:
        """Why a request costing ``cost`` tokens cannot be admitted now, or None if it can."""
        self._refill(now)
        if self.tpm is not None and cost > self.tpm:
            return _too_large(model, self.tpm, cost)
        requests, tokens = self._requests, self._tokens
        if requests is not None and (wait := requests.wait_for(1)) > 0:
            used = math.ceil(requests.capacity - requests.level)
            return _refuse(model, "requests", "RPM", self.rpm or 0, used, 1, wait)
        if tokens is not None and (wait := tokens.wait_for(cost)) > 0:
            used = math.ceil(tokens.capacity - tokens.level)
            return _refuse(model, "tokens", "TPM", self.tpm or 0, used, cost, wait)
        return None

    def admit(self, cost: int, now: float) -> None:
        """Take one request and ``cost`` tokens out of the buckets."""
        self._refill(now)
        if self._requests is not None:
            self._requests.level -= 1
        if self._tokens is not None:
            self._tokens.level -= cost

    def headers(self, now: float) -> dict[str, str]:
        """OpenAI's ``x-ratelimit-*`` headers, for the limits that are set."""
        self._refill(now)
        headers: dict[str, str] = {}
        if self._requests is not None:
            headers["x-ratelimit-limit-requests"] = str(self.rpm)
            headers["x-ratelimit-remaining-requests"] = str(max(0, int(self._requests.level)))
            headers["x-ratelimit-reset-requests"] = openai_duration(self._requests.until_full())
        if self._tokens is not None:
            headers["x-ratelimit-limit-tokens"] = str(self.tpm)
            headers["x-ratelimit-remaining-tokens"] = str(max(0, int(self._tokens.level)))
            headers["x-ratelimit-reset-tokens"] = openai_duration(self._tokens.until_full())
        return headers

    def clear(self) -> None:
        """Fill both buckets, as if the provider had been idle."""
        burst = self.burst_seconds / 60.0
        self._requests = _Bucket(max(1.0, self.rpm * burst), self.rpm / 60.0) if self.rpm else None
        self._tokens = _Bucket(max(1.0, self.tpm * burst), self.tpm / 60.0) if self.tpm else None
