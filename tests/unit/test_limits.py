"""Reading an endpoint's rate limits from its answers, and the pacer learning them."""

from __future__ import annotations

import asyncio

from goalflow.core.pacing import Pacer
from goalflow.core.rates import AnnouncedLimits
from goalflow.llm.limits import announced_limits, parse_duration, retry_after
from goalflow.testing.virtual_time import run_virtual


def test_openai_durations_are_read_as_seconds() -> None:
    cases = {"20ms": 0.02, "1s": 1.0, "1.5s": 1.5, "6m0s": 360.0, "1h2m3.5s": 3723.5, "7": 7.0}
    assert {text: parse_duration(text) for text in cases} == cases
    assert parse_duration("soon") is None and parse_duration("") is None


def test_the_rate_limit_headers_are_read_and_a_missing_one_is_none() -> None:
    headers = {
        "x-ratelimit-limit-requests": "600",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "120ms",
        "x-ratelimit-limit-tokens": "150000",
    }
    assert announced_limits(headers) == AnnouncedLimits(
        requests=600, remaining_requests=0, requests_reset=0.12, tokens=150000
    )
    assert announced_limits({"content-type": "application/json"}) is None
    assert retry_after({"retry-after-ms": "250", "retry-after": "1"}) == 0.25
    assert retry_after({"retry-after": "3"}) == 3.0 and retry_after({}) is None


def test_the_pacer_adopts_an_announced_limit_and_lowers_a_higher_configured_one() -> None:
    async def learn() -> tuple[list[str], list[str], list[str]]:
        unknown, told = Pacer(), Pacer(requests_per_minute=1000, tokens_per_minute=10_000)
        adopted = unknown.observe(AnnouncedLimits(requests=600, tokens=90_000))
        lowered = told.observe(AnnouncedLimits(requests=600, tokens=90_000))
        kept = told.observe(AnnouncedLimits(requests=900))
        assert (unknown.requests_per_minute, unknown.tokens_per_minute) == (600, 90_000)
        assert (told.requests_per_minute, told.tokens_per_minute) == (600, 10_000)
        return adopted, lowered, kept

    adopted, lowered, kept = run_virtual(learn())

    assert adopted == [
        "adopted the endpoint's limit of 600 requests per minute",
        "adopted the endpoint's limit of 90000 tokens per minute",
    ]
    assert lowered == [
        "lowered the limit of 1000 requests per minute to the 600 the endpoint announces"
    ]
    assert kept == []  # a lower configured limit stays: the key may be shared


def test_nothing_is_admitted_while_the_endpoint_says_nothing_remains() -> None:
    pacer = Pacer()

    async def main() -> float:
        loop = asyncio.get_running_loop()
        pacer.observe(AnnouncedLimits(remaining_requests=0, requests_reset=2.5))
        async with pacer.slot(10):
            return loop.time()

    assert run_virtual(main()) == 2.5
