"""Pacing model calls to a provider's rate limits, in-process, so that no 429 is earned.

A provider meters requests and tokens per minute and answers HTTP 429 once either is
spent. Backing off after the fact wastes the Retry-After wait on every task in flight,
so each call first takes a slot here (``async with pacer.slot(tokens)``). Two limits
hold at once:

- the sliding minute: exact accounting of what was admitted in the last minute, never
  more than R requests (and T tokens);
- the burst limit: most providers enforce a per-minute limit over shorter periods
  (OpenAI: "60,000 requests/minute may be enforced as 1,000 requests/second"; Anthropic
  describes a token bucket), so calls also leave at R/60 per second with a burst of
  ``burst_seconds`` worth (1 s by default), as a token bucket refilled at that rate
  (kept as the theoretical arrival time of the next call, GCRA). ``burst_seconds=60``
  allows a whole minute at once, for providers known to allow it.

The pacer also caps the calls in flight and lets a call go as soon as both limits have
room. Calls are admitted in arrival order, so a large call is not starved by small ones.

A call's place in the window is the moment its request is written to the provider
(:func:`mark_sent`, an HTTP client hook), not the moment it was admitted: on a busy
event loop the two can be seconds apart, and the provider counts from when it receives
the request; for the same reason the burst limit is kept again as requests are
written. The window is ``window`` seconds (60 plus a margin for the trip from here to
the provider). Time is the running event loop's clock, so a virtual-time loop
(:mod:`goalflow.testing.virtual_time`) makes the pacer exact and instant in tests and in
the benchmark's lower-bound simulation.

While no rate is known (none configured, none announced by an answer yet), requests
leave in a slow start: 50 a second, doubling every half second until a 429 comes back.
Its headers usually announce the limit, which is adopted; sent all at once, a wide plan
would instead have found the limit by hundreds of refusals.

A 429 that arrives anyway (another process shares the key, a provider meters
differently) goes to :meth:`Pacer.penalize`: every call waits out its Retry-After
before the next is admitted or written.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from goalflow.core.rates import (
    DEFAULT_BURST_SECONDS,
    AnnouncedLimits,
    SlowStart,
    burst_requests,
    check_burst,
    check_limit,
)
from goalflow.errors import ConfigError

__all__ = [
    "ARRIVAL_SLACK_SECONDS",
    "MAX_PENALTY_SECONDS",
    "WINDOW_SECONDS",
    "Admission",
    "Gate",
    "Pacer",
    "mark_sent",
]

WINDOW_SECONDS = 61.0  # the provider's 60 s plus 1 s for the trip from here to it
_FIRST_PENALTY_SECONDS = 1.0
MAX_PENALTY_SECONDS = 60.0  # the longest a 429's Retry-After holds every call
_LOWEST_RATE = 0.1  # 429s never cut the admitted rate below a tenth of the limit
_RECOVERY_SECONDS = 30.0  # after a cut, the rate comes back to the limit over this
_SPREAD_SECONDS, _SPREAD_CALLS = 0.02, 50  # refused calls try again 20 ms apart, within 1 s
_TOLD_PAUSE_SECONDS = 2.0  # a hold of this much more than the one in force is worth a note
_CLOCK_SLACK = 1e-6  # float sums of sleeps land a hair early; far inside the margin
ARRIVAL_SLACK_SECONDS = 0.25
"""Requests written in order reach the provider up to this far out of step (the first
of a burst opens a connection, a busy loop writes late): the burst limit keeps this much
of its rate in reserve, so the provider's own bucket is never found a request short."""

Gate = Callable[[], Awaitable[None]]
"""A wait for a slot of a limit beyond this process, taken after admission here."""


@dataclass
class Admission:
    """One admitted call's entry in the window; ``settle`` records what it really cost."""

    at: float
    tokens: int
    rate_known: bool = False  # sent while a rate limit was known (told or announced)

    def settle(self, actual_tokens: int) -> None:
        """Count the call's real usage when it exceeds the estimate.

        A lower real count frees nothing: providers keep the ``max_tokens`` they
        metered at admission for the rest of the minute.
        """
        self.tokens = max(self.tokens, actual_tokens)


_SENDING: ContextVar[tuple[Pacer, Admission] | None] = ContextVar(
    "goalflow_pacer_sending", default=None
)


async def mark_sent() -> None:
    """The current call's request is about to be written: it leaves within the burst
    limit as it stands at this moment, and counts in the window from now.

    Awaited by the HTTP client's request hook, in the task that holds the slot. On a
    busy event loop requests admitted a tenth of a second apart can be written in the
    same instant, which a provider's per-second limit refuses; here they are spaced
    again (most wait nothing). Moving an entry later only keeps it in the window
    longer, so admission stays safe."""
    sending = _SENDING.get()
    if sending is not None:
        pacer, admission = sending
        await pacer.space_send()
        admission.at = max(admission.at, asyncio.get_running_loop().time())
        admission.rate_known = pacer.rate_known


class Pacer:
    """Admits calls within requests/min, tokens/min (over the sliding minute and in
    bursts of ``burst_seconds`` worth, ``arrival_slack`` seconds of the rate kept in
    reserve) and a cap on calls in flight.

    ``None`` means no limit. ``gate`` is awaited after a call is admitted here and
    before it is sent: a limit shared with other processes (a Prefect global
    concurrency limit, see :mod:`goalflow.orchestration.shared_limit`).
    """

    def __init__(
        self,
        *,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        max_in_flight: int | None = None,
        window: float = WINDOW_SECONDS,
        burst_seconds: float = DEFAULT_BURST_SECONDS,
        arrival_slack: float = ARRIVAL_SLACK_SECONDS,
        gate: Gate | None = None,
    ) -> None:
        check_burst(burst_seconds)
        if not (math.isfinite(arrival_slack) and 0 <= arrival_slack <= 1):
            raise ConfigError(f"the arrival slack must be 0 to 1 s, got {arrival_slack!r}")
        check_limit("requests_per_minute", requests_per_minute)
        check_limit("tokens_per_minute", tokens_per_minute)
        check_limit("max_in_flight", max_in_flight)
        if not (math.isfinite(window) and window >= 60.0):
            raise ConfigError(f"the pacing window must be at least 60 s, got {window!r}")
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.window = window
        self.burst_seconds = burst_seconds
        self.arrival_slack = arrival_slack
        self.penalties = 0
        # The token buckets of the burst limit, as the time each would be full again.
        self._requests_due = -math.inf
        self._tokens_due = -math.inf
        self._sent_due = -math.inf  # the request bucket again, as requests are written
        self._sends = asyncio.Lock()
        self._in_flight = asyncio.Semaphore(max_in_flight) if max_in_flight else None
        self._gate = gate
        self._admitted: deque[Admission] = deque()
        self._queue = asyncio.Lock()  # FIFO: the head waits for room, the rest queue
        self._paused_until = -math.inf
        self._next_penalty = _FIRST_PENALTY_SECONDS
        self._last_penalty = -math.inf
        self._refused = 0  # calls refused in this episode of 429s
        self._cut_to = 1.0  # the rate fraction the last 429 cut to
        self._last_cut = -math.inf
        self._slow_start = SlowStart()  # how fast requests leave while no rate is known

    @property
    def limited(self) -> bool:
        return bool(self.requests_per_minute or self.tokens_per_minute or self._in_flight)

    @asynccontextmanager
    async def slot(self, estimated_tokens: int) -> AsyncIterator[Admission]:
        """Wait until a call of ``estimated_tokens`` fits, then hold a slot while it runs."""
        if self.tokens_per_minute is not None and estimated_tokens > self.tokens_per_minute:
            raise ConfigError(
                f"one model call may use up to {estimated_tokens} tokens, more than the "
                f"limit of {self.tokens_per_minute} tokens per minute: lower max_tokens, "
                "shorten the inputs, or raise tokens_per_minute"
            )
        if self._in_flight is not None:
            await self._in_flight.acquire()
        try:
            admission = await self._admit(estimated_tokens)
            if self._gate is not None:
                await self._gate()
            sending = _SENDING.set((self, admission))
            try:
                yield admission
            finally:
                _SENDING.reset(sending)
        finally:
            if self._in_flight is not None:
                self._in_flight.release()

    @property
    def rate_known(self) -> bool:
        """Whether a request or token rate is known, told or announced by the endpoint."""
        return self.requests_per_minute is not None or self.tokens_per_minute is not None

    def penalize(self, retry_after: float | None, *, rate_known: bool = True) -> float:
        """A 429 arrived anyway: admit nothing until its Retry-After ends (at most 60 s),
        and slow down; return how long the refused call waits before it tries again.

        Without Retry-After the wait is 1 s, doubling (to 60 s) while 429s keep coming.
        The rate admitted is halved (at most once a second, to a tenth at least: the
        429s of one burst arrive together), then recovers evenly over 30 s. The calls
        refused together try again one after another, 20 ms apart (within a second),
        not all at the moment the pause ends. A call sent while no rate was known
        (``rate_known`` false) halves the slow start's rate instead: the limit its 429
        announces is adopted whole.
        """
        now = asyncio.get_running_loop().time()
        if now - self._last_penalty > 60.0:  # a fresh episode, not a run of 429s
            self._next_penalty = _FIRST_PENALTY_SECONDS
            self._refused = 0
        if retry_after is None or not math.isfinite(retry_after) or retry_after < 0:
            wait = self._next_penalty
            self._next_penalty = min(2 * self._next_penalty, MAX_PENALTY_SECONDS)
        else:
            wait = min(retry_after, MAX_PENALTY_SECONDS)
        self._paused_until = max(self._paused_until, now + wait)
        if rate_known and now - self._last_cut >= 1.0:
            self._cut_to = max(_LOWEST_RATE, self._rate_fraction(now) / 2)
            self._last_cut = now
        if not rate_known:
            self._slow_start.halve(now, self._paused_until)
        self.penalties += 1
        self._last_penalty = now
        spread = (self._refused % _SPREAD_CALLS) * _SPREAD_SECONDS
        self._refused += 1
        return self._paused_until - now + spread

    @property
    def paused_for(self) -> float:
        """Seconds until admissions resume after a 429 or an exhausted limit (0: none)."""
        return max(0.0, self._paused_until - asyncio.get_running_loop().time())

    def _rate_fraction(self, now: float) -> float:
        """The share of the per-minute rates admitted now: cut by 429s, recovering."""
        since = now - max(self._paused_until, self._last_cut)
        if since <= 0:
            return self._cut_to
        return min(1.0, self._cut_to + since / _RECOVERY_SECONDS)

    def observe(self, announced: AnnouncedLimits) -> list[str]:
        """Learn from what the endpoint announces; say what changed.

        With no limit configured, the announced one is adopted; a configured limit above
        the announced one is lowered to it (one below is kept: the key may be shared).
        When the endpoint says nothing remains of a limit, nothing is admitted until
        that limit resets (at most a minute).
        """
        notes = []
        for kind, said in (("requests", announced.requests), ("tokens", announced.tokens)):
            field = f"{kind}_per_minute"
            configured: int | None = getattr(self, field)
            if said is None or said < 1 or (configured is not None and said >= configured):
                continue
            setattr(self, field, said)
            notes.append(
                f"adopted the endpoint's limit of {said} {kind} per minute"
                if configured is None
                else f"lowered the limit of {configured} {kind} per minute to the {said} "
                "the endpoint announces"
            )
        now = asyncio.get_running_loop().time()
        self._sync_buckets(announced, now)
        for kind, remaining, reset in (
            ("requests", announced.remaining_requests, announced.requests_reset),
            ("tokens", announced.remaining_tokens, announced.tokens_reset),
        ):
            if remaining == 0 and reset is not None and reset > 0:
                # the time until the limit is whole; some of it frees sooner
                until = now + min(reset, MAX_PENALTY_SECONDS)
                longer = until - max(now, self._paused_until)
                if until - now >= _TOLD_PAUSE_SECONDS and longer >= _TOLD_PAUSE_SECONDS:
                    notes.append(
                        f"waiting {until - now:.0f} s for the rate limit (the endpoint says "
                        f"no {kind} are left until it resets)"
                    )
                self._paused_until = max(self._paused_until, until)
        return notes

    async def space_send(self) -> None:
        """Wait until one more request may be written now: the request bucket allows it
        or, with no known rate, the slow start does."""
        loop = asyncio.get_running_loop()
        async with self._sends:
            while True:  # a 429 or what an answer said may hold sends while this waits
                rpm = self.requests_per_minute
                ready = self._sent_due if rpm is None else self._room_for_one(self._sent_due, rpm)
                ready = max(ready, self._paused_until)
                if ready <= loop.time() + _CLOCK_SLACK:
                    break
                await asyncio.sleep(ready - loop.time())
            now = loop.time()
            if rpm is not None:
                gap = 60.0 / (rpm * self._rate_fraction(now))
            else:
                gap = self._slow_start.gap(now, quiet_since=self._sent_due)
            self._sent_due = max(self._sent_due, now) + gap

    def _sync_buckets(self, announced: AnnouncedLimits, now: float) -> None:
        """Hold the burst buckets no fuller than the endpoint says its own are (a limit
        learned mid-burst starts from what is left, not from a full bucket)."""
        rpm, tpm = self.requests_per_minute, self.tokens_per_minute
        if rpm is not None and announced.remaining_requests is not None:
            burst = burst_requests(rpm, self.burst_seconds)
            missing = max(0.0, burst - announced.remaining_requests)
            self._requests_due = max(self._requests_due, now + missing * 60.0 / rpm)
            self._sent_due = max(self._sent_due, now + missing * 60.0 / rpm)
        if tpm is not None and announced.remaining_tokens is not None:
            burst = tpm * self.burst_seconds / 60.0
            missing = max(0.0, burst - announced.remaining_tokens)
            self._tokens_due = max(self._tokens_due, now + missing * 60.0 / tpm)

    async def _admit(self, tokens: int) -> Admission:
        loop = asyncio.get_running_loop()
        async with self._queue:
            while True:
                now = loop.time()
                ready_at = self._ready_at(tokens, now)
                if ready_at <= now + _CLOCK_SLACK:
                    admission = Admission(now, tokens)
                    self._admitted.append(admission)
                    self._drain_buckets(tokens, now)
                    return admission
                await asyncio.sleep(ready_at - now)

    def _ready_at(self, tokens: int, now: float) -> float:
        """The earliest time the window has room for one more call of ``tokens``."""
        while self._admitted and self._admitted[0].at <= now - self.window:
            self._admitted.popleft()
        ready = max(self._paused_until, self._bucket_ready_at(tokens))
        rpm, tpm = self.requests_per_minute, self.tokens_per_minute
        # Room for one more once k of the entries have left the window; mark_sent() may
        # have moved entries later than their admission order, so take the k-th earliest.
        if rpm is not None and len(self._admitted) >= rpm:
            k = len(self._admitted) - rpm + 1
            kth = heapq.nsmallest(k, (a.at for a in self._admitted))[-1]
            ready = max(ready, kth + self.window)
        if tpm is not None:
            used = sum(a.tokens for a in self._admitted)
            for admission in self._admitted:
                if used + tokens <= tpm:
                    break
                used -= admission.tokens
                ready = max(ready, admission.at + self.window)
        return ready

    def _bucket_ready_at(self, tokens: int) -> float:
        """When the burst limit's buckets hold one more request and ``tokens`` tokens.

        A bucket refilled at ``rate`` per second holding ``burst`` is full again at its
        due time; it has room for ``n`` once it is due within ``(burst - n) / rate``. A
        call larger than the token burst waits for a full bucket.
        """
        ready = -math.inf
        rpm, tpm = self.requests_per_minute, self.tokens_per_minute
        if rpm is not None:
            ready = self._room_for_one(self._requests_due, rpm)
        if tpm is not None:
            burst = max(float(tokens), tpm * (self.burst_seconds - self.arrival_slack) / 60.0)
            ready = max(ready, self._tokens_due - (burst - tokens) * 60.0 / tpm)
        return ready

    def _room_for_one(self, due: float, rpm: int) -> float:
        """When a request bucket that is full again at ``due`` has room for one more: its
        burst is the requests that may leave at once, less the arrival slack's worth
        (at least one: a burst of one spaces requests a whole gap apart already)."""
        burst = max(1.0, burst_requests(rpm, self.burst_seconds) - rpm * self.arrival_slack / 60.0)
        return due - (burst - 1.0) * 60.0 / rpm

    def _drain_buckets(self, tokens: int, now: float) -> None:
        """Take one request and ``tokens`` tokens out of the burst limit's buckets, at
        the rate 429s have left (each takes longer to refill while the rate is cut)."""
        fraction = self._rate_fraction(now)
        if self.requests_per_minute is not None:
            refill = 60.0 / (self.requests_per_minute * fraction)
            self._requests_due = max(self._requests_due, now) + refill
        if self.tokens_per_minute is not None:
            refill = tokens * 60.0 / (self.tokens_per_minute * fraction)
            self._tokens_due = max(self._tokens_due, now) + refill
