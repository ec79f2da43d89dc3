"""The OpenAI test server, exercised over real loopback HTTP with the real openai SDK."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import types
from collections.abc import AsyncIterator

import httpx
import openai
import pytest

import goalflow.testing
from goalflow.errors import ConfigError, GoalflowError
from goalflow.testing import ChatRequest, OpenAITestServer, Reply
from goalflow.testing.limiters import RateBucket, RateWindow, openai_duration
from goalflow.testing.prefect_process import process_tree_cpu_seconds


def _client(server: OpenAITestServer, api_key: str = "x", retries: int = 0) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key=api_key, max_retries=retries)


async def _ask(client: openai.AsyncOpenAI, prompt: str, **body: object) -> str | None:
    """One user message; ``body`` adds fields as sent, even ones the SDK does not type."""
    completion = await client.chat.completions.create(
        model="test-model", messages=[{"role": "user", "content": prompt}], extra_body=body
    )
    return completion.choices[0].message.content


@pytest.fixture
async def server() -> AsyncIterator[OpenAITestServer]:
    async with OpenAITestServer() as running:
        yield running


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(goalflow.testing).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert sorted(goalflow.testing.__all__) == sorted(public)


async def test_rules_match_by_substring_then_callable_in_order(
    server: OpenAITestServer,
) -> None:
    server.script("capital", "Paris")
    server.script(lambda r: r.model == "test-model", lambda r: f"echo: {r.last_user}")
    async with _client(server) as client:
        assert await _ask(client, "What is the capital of France?") == "Paris"
        assert await _ask(client, "hello") == "echo: hello"
    assert [r.last_user for r in server.requests] == ["What is the capital of France?", "hello"]


async def test_a_rule_with_times_is_used_that_often_then_skipped(
    server: OpenAITestServer,
) -> None:
    server.script("plan", "first", times=2)
    server.script("plan", Reply(content="later"))
    async with _client(server) as client:
        answers = [await _ask(client, "make a plan") for _ in range(3)]
    assert answers == ["first", "first", "later"]


async def test_unmatched_request_fails_loudly_with_the_prompt(server: OpenAITestServer) -> None:
    server.script("something else", "never")
    async with _client(server) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await _ask(client, "Summarise the quarterly report")
    assert "no scripted reply matched" in caught.value.message
    assert "Summarise the quarterly report" in caught.value.message
    assert server.stats.errors == 1


async def test_default_reply_answers_what_no_rule_matches() -> None:
    async with (
        OpenAITestServer(default=lambda r: Reply(content=r.last_user.upper())) as server,
        _client(server) as client,
    ):
        assert await _ask(client, "shout") == "SHOUT"


async def test_usage_counts_four_characters_a_token(server: OpenAITestServer) -> None:
    server.script("", "x" * 9)
    async with _client(server) as client:
        completion = await client.chat.completions.create(
            model="test-model",
            messages=[
                {"role": "system", "content": "s" * 10},
                {"role": "user", "content": "u" * 5},
            ],
        )
    # Prompt text is both contents joined by "\n": 16 characters.
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (4, 3)
    assert completion.usage.total_tokens == 7
    assert completion.object == "chat.completion"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.role == "assistant"
    stats = server.stats
    assert (stats.prompt_tokens, stats.completion_tokens, stats.completed) == (4, 3, 1)


async def test_latency_delays_every_answer() -> None:
    async with OpenAITestServer(latency=0.3, default="ok") as server, _client(server) as client:
        started = time.monotonic()
        await _ask(client, "hi")
        assert time.monotonic() - started >= 0.3


async def test_a_reply_delay_and_jitter_add_to_the_latency() -> None:
    server = OpenAITestServer(latency=0.2, jitter=0.1, seed=7)
    server.script("slow", Reply(content="late", delay=0.2))
    async with server, _client(server) as client:
        started = time.monotonic()
        assert await _ask(client, "slow please") == "late"
        assert time.monotonic() - started >= 0.3


async def test_requests_are_served_concurrently() -> None:
    async with OpenAITestServer(latency=0.5, default="ok") as server, _client(server) as client:
        started = time.monotonic()
        answers = await asyncio.gather(*(_ask(client, f"q{i}") for i in range(5)))
        elapsed = time.monotonic() - started
    assert answers == ["ok"] * 5
    assert 0.5 <= elapsed < 1.5
    assert server.stats.max_in_flight == 5


async def test_keep_alive_requests_are_answered_without_nagle_delay(
    server: OpenAITestServer,
) -> None:
    server.script("", "ok")
    async with _client(server) as client:
        await _ask(client, "warm up the connection")
        started = time.monotonic()
        for _ in range(25):
            await _ask(client, "again")
        # With Nagle's algorithm on, each answer waits ~40 ms for a delayed ACK: >= 1 s.
        assert time.monotonic() - started < 0.75


async def test_hundreds_of_requests_in_flight_finish_together() -> None:
    async with OpenAITestServer(latency=0.5, default="ok") as server, _client(server) as client:
        started = time.monotonic()
        answers = await asyncio.gather(*(_ask(client, f"q{i}") for i in range(300)))
        elapsed = time.monotonic() - started
    assert answers == ["ok"] * 300
    assert elapsed < 10  # one after another would take 150 s
    assert server.stats.max_in_flight > 100


async def test_rpm_limit_answers_429_with_retry_after() -> None:
    async with OpenAITestServer(rpm=2, default="ok") as server, _client(server) as client:
        first = await client.chat.completions.with_raw_response.create(
            model="test-model", messages=[{"role": "user", "content": "one"}]
        )
        assert first.headers["x-ratelimit-remaining-requests"] == "1"
        await _ask(client, "two")
        with pytest.raises(openai.RateLimitError) as caught:
            await _ask(client, "three")
    headers = caught.value.response.headers
    assert 1 <= int(headers["retry-after"]) <= 60
    assert 1 <= int(headers["retry-after-ms"]) <= 60_000
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert "requests per min" in caught.value.message
    stats = server.stats
    assert (stats.requests, stats.completed, stats.rate_limited) == (3, 2, 1)
    assert len(server.requests) == 3


async def test_tpm_limit_counts_max_tokens_and_refusals_take_no_tokens() -> None:
    async with OpenAITestServer(tpm=30, default="ok") as server, _client(server) as client:
        # 40 characters of prompt are 10 tokens, plus max_tokens=10: each request costs 20.
        await _ask(client, "x" * 40, max_tokens=10)
        for _ in range(2):
            with pytest.raises(openai.RateLimitError) as caught:
                await _ask(client, "x" * 40, max_tokens=10)
            headers = caught.value.response.headers
            assert 1 <= int(headers["retry-after"]) <= 60
            assert headers["x-ratelimit-remaining-tokens"] == "10"
            assert "tokens per min" in caught.value.message
        assert await _ask(client, "x" * 4, max_tokens=5) == "ok"  # 1 + 5 tokens still fit
    assert server.stats.rate_limited == 2


async def test_tpm_limit_charges_completion_tokens_without_max_tokens() -> None:
    async with OpenAITestServer(tpm=10, default="y" * 32) as server, _client(server) as client:
        await _ask(client, "hi")  # 1 prompt token + 8 completion tokens
        with pytest.raises(openai.RateLimitError) as caught:
            await _ask(client, "hi")
    assert "Used 9, Requested 9" in caught.value.message


async def test_a_request_larger_than_tpm_is_refused_without_retry_after() -> None:
    async with OpenAITestServer(tpm=10, default="ok") as server, _client(server) as client:
        with pytest.raises(openai.RateLimitError) as caught:
            await _ask(client, "hi", max_tokens=20)
    assert "Request too large" in caught.value.message
    assert "retry-after" not in caught.value.response.headers


def test_retry_after_is_when_the_window_frees_enough() -> None:
    requests = RateWindow(rpm=2, tpm=None)
    requests.admit(1, now=0.0)
    requests.admit(1, now=30.0)
    refusal = requests.refusal("m", cost=1, now=45.0)
    assert refusal is not None
    assert refusal.retry_after == 15  # the request admitted at 0 s leaves at 60 s
    assert requests.refusal("m", cost=1, now=60.0) is None

    tokens = RateWindow(rpm=None, tpm=30)
    tokens.admit(20, now=0.0)
    tokens.admit(5, now=30.0)
    refusal = tokens.refusal("m", cost=20, now=40.5)
    assert refusal is not None
    assert refusal.retry_after == 19.5  # 20 tokens leave at 60 s, then 25 fit
    assert "Please try again in 19.5s." in refusal.message


def test_a_bucket_allows_a_seconds_burst_then_the_per_second_rate() -> None:
    bucket = RateBucket(rpm=600, tpm=None)  # 10 a second, a burst of 10
    for _ in range(10):
        assert bucket.refusal("m", cost=1, now=0.0) is None
        bucket.admit(1, now=0.0)
    refusal = bucket.refusal("m", cost=1, now=0.0)
    assert refusal is not None and refusal.limit == "requests"
    assert refusal.retry_after == pytest.approx(0.1) and "Limit 600" in refusal.message
    assert "Please try again in 100ms." in refusal.message
    assert bucket.refusal("m", cost=1, now=0.1) is None  # one more has refilled
    bucket.admit(1, now=0.1)
    assert bucket.refusal("m", cost=1, now=0.15) is not None
    headers = bucket.headers(now=0.15)
    assert headers["x-ratelimit-limit-requests"] == "600"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"] == "950ms"  # 9.5 requests to refill

    tokens = RateBucket(rpm=None, tpm=6000, burst_seconds=1)  # 100 a second
    tokens.admit(150, now=0.0)  # more than the burst, less than the limit: in debt
    refusal = tokens.refusal("m", cost=100, now=1.0)  # refilled to 50 of the 100 it needs
    assert refusal is not None and refusal.limit == "tokens"
    assert refusal.retry_after == pytest.approx(0.5)
    assert tokens.refusal("m", cost=100, now=1.5) is None


def test_reset_times_are_written_as_openai_writes_them() -> None:
    assert [openai_duration(s) for s in (0.02, 0.5, 1, 1.5, 59, 360, 90.25)] == [
        "20ms",
        "500ms",
        "1s",
        "1.5s",
        "59s",
        "6m0s",
        "1m30.25s",
    ]
    window = RateWindow(rpm=2, tpm=100)
    window.admit(10, now=0.0)
    window.admit(10, now=30.0)
    headers = window.headers(now=45.0)
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"] == "45s"  # when the last leaves
    assert headers["x-ratelimit-remaining-tokens"] == "80"


async def test_the_server_in_bucket_mode_refuses_a_burst_beyond_a_seconds_worth() -> None:
    server = OpenAITestServer(rpm=6, limiter="bucket", default="ok")  # one each 10 s
    async with server, _client(server) as client:
        answers = await asyncio.gather(
            *(_ask(client, "hi") for _ in range(4)), return_exceptions=True
        )
    assert sum(isinstance(a, openai.RateLimitError) for a in answers) == 3
    assert (server.stats.completed, server.stats.rate_limited) == (1, 3)


async def test_scripted_429_is_retried_after_its_retry_after() -> None:
    server = OpenAITestServer()
    server.script("", Reply(status=429, error_message="slow down", retry_after=0.2), times=1)
    server.script("", "finally")
    async with server, _client(server, retries=1) as client:
        started = time.monotonic()
        assert await _ask(client, "hi") == "finally"
        assert time.monotonic() - started >= 0.2
    assert (server.stats.rate_limited, server.stats.completed) == (1, 1)


async def test_wrong_api_key_gets_401_without_echoing_it() -> None:
    secret = "sk-test-expected-key"
    wrong = "sk-WRONG-abcdef123456"
    async with OpenAITestServer(api_key=secret, default="ok") as server:
        async with _client(server, api_key=wrong) as client:
            with pytest.raises(openai.AuthenticationError) as caught:
                await _ask(client, "hi")
        async with _client(server, api_key=secret) as client:
            assert await _ask(client, "hi") == "ok"
    body = caught.value.response.text
    assert "Incorrect API key provided." in body
    for fragment in (wrong, wrong[:6], wrong[-4:], secret):
        assert fragment not in body


async def test_unknown_model_gets_404_model_not_found(server: OpenAITestServer) -> None:
    server.script("", "ok")
    async with _client(server) as client:
        with pytest.raises(openai.NotFoundError) as caught:
            await client.chat.completions.create(
                model="gpt-nonexistent", messages=[{"role": "user", "content": "hi"}]
            )
    assert caught.value.code == "model_not_found"
    assert server.requests[0].model == "gpt-nonexistent"


async def test_reject_json_schema_fails_like_llama_cpp_but_accepts_json_object() -> None:
    schema = {"title": "Answer", "type": "object", "properties": {"a": {"type": "integer"}}}
    async with (
        OpenAITestServer(reject_json_schema=True, default='{"a": 1}') as server,
        _client(server) as client,
    ):
        with pytest.raises(openai.InternalServerError):
            await _ask(
                client,
                "hi",
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": "answer", "schema": schema},
                },
            )
        content = await _ask(
            client, "hi", response_format={"type": "json_object", "schema": schema}
        )
    assert content == '{"a": 1}'
    rejected, accepted = server.requests
    assert (rejected.schema, rejected.schema_name) == (schema, "answer")
    assert (accepted.schema, accepted.schema_name) == (schema, "Answer")


async def test_models_endpoint_lists_the_served_models() -> None:
    async with OpenAITestServer(models=("small", "large")) as server, _client(server) as client:
        models = await client.models.list()
    assert [m.id for m in models.data] == ["small", "large"]


async def test_reset_clears_requests_and_counters_but_keeps_rules(
    server: OpenAITestServer,
) -> None:
    server.script("", "kept")
    async with _client(server) as client:
        await _ask(client, "before")
        server.reset()
        assert (server.requests, server.stats.requests) == ([], 0)
        assert await _ask(client, "after") == "kept"
    assert [r.last_user for r in server.requests] == ["after"]


async def test_a_failing_reply_function_answers_500_with_its_error(
    server: OpenAITestServer,
) -> None:
    def broken(request: ChatRequest) -> str:
        raise KeyError("missing-fixture")

    server.script("", broken)
    async with _client(server) as client:
        with pytest.raises(openai.InternalServerError) as caught:
            await _ask(client, "hi")
    assert "missing-fixture" in caught.value.message


def test_sync_use_serves_until_the_block_ends() -> None:
    body = {
        "model": "test-model",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "parts"}]}],
        "max_completion_tokens": 7,
    }
    with OpenAITestServer(default="ok") as server:
        base_url = server.base_url
        response = httpx.post(f"{base_url}/chat/completions", json=body)
    assert response.json()["choices"][0]["message"] == {"role": "assistant", "content": "ok"}
    (request,) = server.requests
    assert (request.last_user, request.max_tokens, request.schema) == ("parts", 7, None)
    with pytest.raises(httpx.ConnectError):
        httpx.post(f"{base_url}/chat/completions", json=body)
    with pytest.raises(GoalflowError):
        _ = server.base_url


def test_invalid_settings_are_refused_before_serving() -> None:
    with pytest.raises(ConfigError):
        OpenAITestServer(rpm=0)
    with pytest.raises(ConfigError):
        Reply(status=302)
    with pytest.raises(ConfigError):
        OpenAITestServer().script("x", "y", times=0)


def test_the_cpu_of_a_process_tree_counts_its_live_children() -> None:
    # A child that burns 0.4 s of CPU, then waits (alive) for a line on the shared stdin.
    child = (
        "import sys, time\nend = time.process_time() + 0.4\n"
        "while time.process_time() < end: pass\nsys.stdin.readline()\n"
    )
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}])",
        ],
        stdin=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while process_tree_cpu_seconds(parent.pid) < 0.4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process_tree_cpu_seconds(parent.pid) >= 0.4
    finally:
        parent.communicate(b"\n", timeout=20)
    assert process_tree_cpu_seconds(parent.pid) == 0  # gone
