"""The pacer, on virtual time: exact timestamps, a simulated hour in milliseconds."""

from __future__ import annotations

import asyncio
import itertools
import math
import random

import pytest

from goalflow.core.pacing import ARRIVAL_SLACK_SECONDS, Pacer, mark_sent
from goalflow.core.rates import AnnouncedLimits, estimate_request_tokens, task_concurrency
from goalflow.errors import ConfigError
from goalflow.llm.limits import announced_limits
from goalflow.testing.limiters import RateBucket
from goalflow.testing.protocol import estimate_tokens
from goalflow.testing.virtual_time import run_virtual


def _most_in_any_minute(times: list[float], weights: list[int] | None = None) -> int:
    """The largest count (or weight) of admissions inside any sliding 60 s window."""
    weights = weights or [1] * len(times)
    pairs = sorted(zip(times, weights, strict=True))
    best, start, total = 0, 0, 0
    for at, weight in pairs:
        total += weight
        while pairs[start][0] <= at - 60.0:
            total -= pairs[start][1]
            start += 1
        best = max(best, total)
    return best


async def _calls(
    pacer: Pacer, arrivals: list[float], latencies: list[float], tokens: list[int]
) -> list[float]:
    """Start a call at each arrival time; return when each was admitted."""
    loop = asyncio.get_running_loop()
    admitted: list[float] = [math.nan] * len(arrivals)

    async def call(i: int) -> None:
        await asyncio.sleep(arrivals[i])
        async with pacer.slot(tokens[i]):
            admitted[i] = loop.time()
            await asyncio.sleep(latencies[i])

    await asyncio.gather(*(call(i) for i in range(len(arrivals))))
    return admitted


def _most_beyond_the_bucket(times: list[float], rate: float, burst: float) -> float:
    """How far the admissions go past a token bucket of ``burst`` refilled at ``rate``
    per second (0: never): the most admitted in any interval [a, b] minus burst + rate * (b - a)."""
    ordered = sorted(times)
    return max(
        (j - i + 1) - (burst + rate * (ordered[j] - ordered[i]))
        for i in range(len(ordered))
        for j in range(i, min(len(ordered), i + 400))
    )


@pytest.mark.parametrize(("seed", "burst_seconds"), [(s, b) for s in range(4) for b in (1, 60)])
def test_never_more_than_the_limit_in_any_sliding_minute_including_bursts(
    seed: int, burst_seconds: float
) -> None:
    rng = random.Random(seed)
    # Bursts of up to 150 calls at once, at random moments over ten minutes.
    arrivals = [
        burst_at for _ in range(12) for burst_at in [rng.uniform(0, 600)] * rng.randint(1, 150)
    ]
    latencies = [rng.uniform(0.1, 20) for _ in arrivals]
    tokens = [rng.randint(50, 2000) for _ in arrivals]
    pacer = Pacer(requests_per_minute=100, tokens_per_minute=60_000, burst_seconds=burst_seconds)

    admitted = run_virtual(_calls(pacer, arrivals, latencies, tokens))

    most_requests = _most_in_any_minute(admitted)
    most_tokens = _most_in_any_minute(admitted, tokens)
    assert most_requests <= 100
    assert most_tokens <= 60_000
    # and never faster than R/60 per second beyond a burst of burst_seconds' worth
    assert _most_beyond_the_bucket(admitted, 100 / 60, 100 * burst_seconds / 60) <= 1e-6
    # and one of the limits is actually reached: the pacer does not idle needlessly
    assert most_requests == 100 or most_tokens > 60_000 - 2000
    assert all(a >= arrival for a, arrival in zip(admitted, arrivals, strict=True))


def test_a_whole_minute_burst_goes_at_once_and_the_rest_when_the_window_frees() -> None:
    pacer = Pacer(requests_per_minute=60, burst_seconds=60, arrival_slack=0)

    admitted = run_virtual(_calls(pacer, [0.0] * 100, [0.2] * 100, [10] * 100))

    assert admitted[:60] == [0.0] * 60
    assert admitted[60:] == [pacer.window] * 40  # 60 s plus the margin for the trip


def test_a_call_counts_from_when_its_request_was_sent_not_admitted() -> None:
    # On a busy event loop a request can leave seconds after its admission; the
    # provider counts it from when it arrives, so the window must too.
    pacer = Pacer(requests_per_minute=2, burst_seconds=60)

    async def run() -> list[float]:
        async def sender(admitted_at: float, busy_for: float) -> None:
            await asyncio.sleep(admitted_at)
            async with pacer.slot(10):
                await asyncio.sleep(busy_for)  # the SDK and the loop were busy
                await mark_sent()
                await asyncio.sleep(0.2)

        await asyncio.gather(sender(0.0, 5.0), sender(1.0, 0.0))
        return await _calls(pacer, [0.0], [0.2], [10])

    third = run_virtual(run())

    # Sent at 5 s and at 1 s: the first of them to leave the window is the one sent at
    # 1 s, although the other was admitted earlier.
    assert third == [1.0 + pacer.window]


def test_calls_in_flight_never_exceed_the_cap() -> None:
    pacer = Pacer(max_in_flight=7)
    in_flight, most = 0, 0

    async def call() -> None:
        nonlocal in_flight, most
        async with pacer.slot(1):
            in_flight += 1
            most = max(most, in_flight)
            await asyncio.sleep(1.0)
            in_flight -= 1

    async def main() -> float:
        await asyncio.gather(*(call() for _ in range(50)))
        return asyncio.get_running_loop().time()

    assert run_virtual(main()) == 8.0  # ceil(50 / 7) rounds of one second
    assert most == 7


def test_a_429_pauses_every_call_for_its_retry_after() -> None:
    pacer = Pacer(requests_per_minute=1000)

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(3.0)
        pacer.penalize(retry_after=12.5)
        return await _calls(pacer, [0.0, 1.0, 20.0], [0.1] * 3, [1] * 3) + [loop.time()]

    first, second, late, _ = run_virtual(main())

    assert (first, second) == (15.5, 15.5)  # nobody goes before 3 s + 12.5 s
    assert late == 23.0  # after the pause, no extra delay
    assert pacer.penalties == 1


def test_a_429_without_retry_after_backs_off_doubling_while_they_keep_coming() -> None:
    pacer = Pacer()

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        pauses = []
        for _ in range(4):
            pacer.penalize(retry_after=None)
            async with pacer.slot(1):
                pauses.append(loop.time())
        return pauses

    assert run_virtual(main()) == [1.0, 3.0, 7.0, 15.0]


def test_a_large_call_is_not_starved_by_small_ones() -> None:
    pacer = Pacer(tokens_per_minute=1000)
    arrivals = [0.0, 1.0, *[2.0 + i for i in range(60)]]
    tokens = [600, 900, *[10] * 60]

    admitted = run_virtual(_calls(pacer, arrivals, [0.5] * 62, tokens))

    assert admitted[1] == pacer.window  # waits for the first to leave the window...
    assert min(admitted[2:]) >= admitted[1]  # ...and later small calls wait behind it


def test_settling_counts_real_usage_above_the_estimate_only() -> None:
    pacer = Pacer(tokens_per_minute=1000)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        async with pacer.slot(100) as admission:
            admission.settle(900)  # the estimate was low: 900 are spent
        async with pacer.slot(100) as admission:
            admission.settle(5)  # lower than estimated: still 100 metered
        async with pacer.slot(100):
            return loop.time()

    assert run_virtual(main()) == pacer.window


SAMPLE_PROMPTS = [
    "Write a haiku about autumn.",
    "Summarise the facts below in three bullet points.\n" + "Green tea has catechins. " * 40,
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n" * 10,
    "id,name,score\n" + "".join(f"{i},name{i},{i * 7 % 100}\n" for i in range(50)),
    "Übersetze: «Der schnelle braune Fuchs springt über den faulen Hund.» 🦊" * 5,
]


@pytest.mark.parametrize("prompt", SAMPLE_PROMPTS)
def test_the_token_estimate_is_at_least_what_the_server_meters(prompt: str) -> None:
    messages = [
        {"role": "system", "content": "Answer in JSON."},
        {"role": "user", "content": prompt},
    ]
    metered = estimate_tokens("\n".join(m["content"] for m in messages)) + 256

    estimate = estimate_request_tokens(messages, 256)

    assert estimate >= metered
    # and at least the prompt's characters over 3, which common tokenizers stay under
    assert estimate >= len(prompt) / 3 + 256


@pytest.mark.parametrize("bad", [0, -5])
def test_limits_that_cannot_work_are_refused_with_what_to_change(bad: int) -> None:
    for name in ("requests_per_minute", "tokens_per_minute", "max_in_flight"):
        with pytest.raises(ConfigError, match=f"{name} must be a positive whole number"):
            Pacer(**{name: bad})


@pytest.mark.parametrize("latency", [0.0, -1.0, math.nan, math.inf, 86_400.0])
def test_a_nonsense_latency_estimate_is_refused(latency: float) -> None:
    with pytest.raises(ConfigError, match="expected latency"):
        task_concurrency(None, 600, latency)


def test_a_call_larger_than_the_token_limit_fails_instead_of_waiting_forever() -> None:
    pacer = Pacer(tokens_per_minute=1000)

    async def main() -> None:
        async with pacer.slot(1001):
            pass

    with pytest.raises(ConfigError, match="raise tokens_per_minute"):
        run_virtual(main())


def test_a_429_halves_the_rate_then_it_recovers_and_a_long_retry_after_is_capped() -> None:
    pacer = Pacer(requests_per_minute=600)  # 10 a second

    async def main() -> tuple[float, list[float]]:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(1.0)  # the burst bucket is full again
        wait = pacer.penalize(retry_after=3600)
        times = []
        for _ in range(40):
            async with pacer.slot(1):
                times.append(loop.time())
        late = []
        await asyncio.sleep(60.0)
        for _ in range(20):
            async with pacer.slot(1):
                late.append(loop.time())
        return wait, [*times, *late]

    wait, times = run_virtual(main())

    assert wait == 60.0  # not an hour: held a minute, then tried again
    assert times[0] == 61.0
    gaps = [b - a for a, b in itertools.pairwise(times[10:40])]
    assert 0.1 < gaps[0] <= 0.2 + 1e-9  # half the rate just after the cut...
    assert gaps[-1] < gaps[0]  # ...rising again
    late_gaps = [b - a for a, b in itertools.pairwise(times[50:])]
    assert late_gaps == pytest.approx([0.1] * len(late_gaps))  # back to the full rate


def test_calls_refused_together_try_again_one_after_another() -> None:
    pacer = Pacer()

    async def main() -> list[float]:
        await asyncio.sleep(3.0)
        return [pacer.penalize(retry_after=12.5) for _ in range(3)]

    assert run_virtual(main()) == pytest.approx([12.5, 12.52, 12.54])


def _refusals_of_an_untold_bucket(pacer: Pacer, calls: int) -> tuple[int, float]:
    """``calls`` at once against a provider limiting 600/min as 10/s (a token bucket),
    whose rate the pacer was not told: it learns it from the answers' headers and 429s
    (which come back at once). Returns the 429s and when the last call was answered."""
    provider = RateBucket(rpm=600, tpm=None)
    refused = 0

    async def call() -> None:
        nonlocal refused
        loop = asyncio.get_running_loop()
        while True:
            async with pacer.slot(10) as admission:
                await mark_sent()
                refusal = provider.refusal("m", cost=10, now=loop.time())
                if refusal is None:
                    provider.admit(10, now=loop.time())
                await asyncio.sleep(0.005 if refusal else 1.0)  # the way back, or the answer
                said = announced_limits(provider.headers(loop.time()))
                pacer.observe(said or AnnouncedLimits())
                if refusal is None:
                    return
                refused += 1
                wait = pacer.penalize(refusal.retry_after, rate_known=admission.rate_known)
            await asyncio.sleep(wait)

    async def main() -> float:
        await asyncio.gather(*(call() for _ in range(calls)))
        return asyncio.get_running_loop().time()

    ended = run_virtual(main())
    return refused, ended


def test_a_rate_nobody_told_is_found_by_a_slow_start_not_by_a_storm_of_429s() -> None:
    pacer = Pacer(max_in_flight=200)

    refused, ended = _refusals_of_an_untold_bucket(pacer, 200)

    # Sent all at once, 190 of the 200 would be refused; the slow start learns the rate
    # from the first 429 and paces the rest at the whole of it (the 429 came from the
    # probe, not from pacing at a known rate, so the rate is not cut).
    assert refused <= 2
    assert pacer.requests_per_minute == 600
    assert ended < (200 - 10) / 10 * 1.1 + 1.0


def test_task_concurrency_keeps_the_binding_limit_busy_unless_set() -> None:
    assert task_concurrency(None, None, 10.0) == 4
    assert task_concurrency(9, 3500, 10.0) == 9
    # 10 calls a second out for 2 s each, plus a second's burst: not the minute's 600
    assert task_concurrency(None, 600, 2.0) == 30
    assert task_concurrency(None, 600, 2.0, burst_seconds=60) == 620
    assert task_concurrency(None, 60, 120.0) == 121  # R/60 * L once answers outlast it


def test_calls_leave_at_the_per_second_rate_after_a_burst_of_one_seconds_worth() -> None:
    pacer = Pacer(requests_per_minute=600)  # enforced by providers as 10 a second

    admitted = run_virtual(_calls(pacer, [0.0] * 40, [2.0] * 40, [10] * 40))

    # The burst keeps 0.25 s of the rate (2.5 requests) in reserve for arrivals out of step.
    assert admitted[:7] == [0.0] * 7
    assert admitted[7:] == pytest.approx([0.05 + 0.1 * k for k in range(33)])


@pytest.mark.parametrize("rpm", [600, 3500])
def test_requests_reaching_the_provider_out_of_step_never_find_its_bucket_short(
    rpm: int,
) -> None:
    """The provider's token bucket (the test server's) never refuses a request that
    reaches it up to the arrival slack later than sent, in any order."""
    rng = random.Random(rpm)
    arrivals = [rng.choice([0.0, 0.0, rng.uniform(0, 30)]) for _ in range(rpm // 5)]
    pacer = Pacer(requests_per_minute=rpm)

    sent = run_virtual(_calls(pacer, arrivals, [1.0] * len(arrivals), [10] * len(arrivals)))

    provider = RateBucket(rpm=rpm, tpm=None)
    first, *rest = sorted(sent)
    # the first is the slowest of all (it opens the connection) and sets the bucket's clock
    delays = [ARRIVAL_SLACK_SECONDS] + [rng.uniform(0, ARRIVAL_SLACK_SECONDS) for _ in rest]
    for at in sorted(at + delay for at, delay in zip([first, *rest], delays, strict=True)):
        assert provider.refusal("m", cost=10, now=at) is None
        provider.admit(10, now=at)


def test_the_token_burst_spreads_large_calls_at_the_per_second_token_rate() -> None:
    # 1,000 tokens a second, a burst of 1,000
    pacer = Pacer(tokens_per_minute=60_000, arrival_slack=0)

    admitted = run_virtual(_calls(pacer, [0.0] * 4, [1.0] * 4, [500, 500, 2000, 500]))

    # Two fit the burst and empty it; the large one waits until it is full again (1 s)
    # and leaves it 1,000 tokens in debt, so the last waits for its 500 to refill.
    assert admitted == pytest.approx([0.0, 0.0, 1.0, 2.5])


def test_a_burst_beyond_the_minute_is_refused_with_what_to_change() -> None:
    for bad in (0, -1, 61, math.inf):
        with pytest.raises(ConfigError, match="burst"):
            Pacer(requests_per_minute=60, burst_seconds=bad)
