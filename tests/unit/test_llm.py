"""The LLM layer against a mocked OpenAI HTTP API (respx)."""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import respx
from pydantic import BaseModel, SecretStr

from goalflow.core.budget import MoneyBudget
from goalflow.core.prices import Price
from goalflow.errors import (
    LLMAuthError,
    LLMModelNotFoundError,
    LLMRateLimitError,
    LLMRequestError,
    LLMUnreachableError,
    StructuredOutputError,
)
from goalflow.llm.client import LLM
from goalflow.llm.config import LLMConfig

BASE = "https://llm.example.test/v1"
KEY = "sk-live-abcdefghijklmnopqrstuvwxyz012345"


class Answer(BaseModel):
    city: str
    population: int


def completion(
    content: str, *, finish: str = "stop", usage: tuple[int, int] = (100, 20)
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish,
            }
        ],
        "usage": {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": sum(usage),
        },
    }


def error(status: int, message: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"error": {"message": message, "type": "error", "code": None}}
    return httpx.Response(status, json=body, headers=headers or {})


GOOD = completion(json.dumps({"city": "Oslo", "population": 709000}))
ASK = [{"role": "user", "content": "Largest city of Norway?"}]


@pytest.fixture
async def llm() -> AsyncIterator[LLM]:
    config = LLMConfig(model="gpt-4o-mini", base_url=BASE, api_key=SecretStr(KEY), backoff=0.05)
    client = LLM(config, http_client=httpx.AsyncClient())
    yield client
    await client.close()


def sent(route: respx.Route, index: int = -1) -> dict[str, Any]:
    return json.loads(route.calls[index].request.content)


@respx.mock
async def test_structured_answer_uses_json_schema_and_is_priced(llm: LLM) -> None:
    route = respx.post(f"{BASE}/chat/completions").mock(return_value=httpx.Response(200, json=GOOD))

    answer = await llm.structured(Answer, ASK, purpose="capital")

    assert answer == Answer(city="Oslo", population=709000)
    body = sent(route)
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"]["required"] == ["city", "population"]
    usage = llm.ledger.summary()
    # gpt-4o-mini: $0.15 / M in, $0.60 / M out.
    assert (usage.prompt_tokens, usage.completion_tokens) == (100, 20)
    assert usage.cost_usd == pytest.approx((100 * 0.15 + 20 * 0.60) / 1e6)


@respx.mock
async def test_a_call_may_sample_at_its_own_temperature(llm: LLM) -> None:
    route = respx.post(f"{BASE}/chat/completions").mock(return_value=httpx.Response(200, json=GOOD))

    await llm.structured(Answer, ASK, purpose="capital")
    await llm.structured(Answer, ASK, purpose="capital", temperature=0.9)

    assert sent(route, 0)["temperature"] == llm.config.temperature
    assert sent(route, 1)["temperature"] == 0.9


@respx.mock
async def test_a_limit_announced_in_an_answers_headers_paces_the_calls_after_it(llm: LLM) -> None:
    headers = {"x-ratelimit-limit-requests": "120", "x-ratelimit-remaining-requests": "119"}
    respx.post(f"{BASE}/chat/completions").mock(
        return_value=httpx.Response(200, json=GOOD, headers=headers)
    )
    assert llm.pacer.requests_per_minute is None
    said: list[str] = []
    llm.on_notice = said.append

    await llm.structured(Answer, ASK, purpose="capital")

    assert llm.pacer.requests_per_minute == 120
    assert said == [f"{BASE}: adopted the endpoint's limit of 120 requests per minute"]


@respx.mock
async def test_an_endpoint_that_says_nothing_is_left_holds_the_next_call_and_it_is_said(
    llm: LLM,
) -> None:
    headers = {
        "x-ratelimit-limit-requests": "600",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "2.5s",
    }
    respx.post(f"{BASE}/chat/completions").mock(
        return_value=httpx.Response(200, json=GOOD, headers=headers)
    )
    said: list[str] = []
    llm.on_notice = said.append

    await llm.structured(Answer, ASK, purpose="capital")
    started = time.monotonic()
    await llm.structured(Answer, ASK, purpose="capital")

    assert 2.4 <= time.monotonic() - started < 10  # held until the reset, not longer
    assert any("the endpoint says no requests are left until it resets" in s for s in said)


@respx.mock
async def test_an_answer_the_budget_caps_is_said() -> None:
    route = respx.post(f"{BASE}/chat/completions").mock(return_value=httpx.Response(200, json=GOOD))
    config = LLMConfig(
        model="my-model",
        base_url=BASE,
        api_key=SecretStr(KEY),
        prices={"my-model": Price(input=0, output=1000)},  # $0.001 an answer token
    )
    llm = LLM(config, budget=MoneyBudget(0.5), http_client=httpx.AsyncClient())
    said: list[str] = []
    llm.on_notice = said.append

    await llm.structured(Answer, ASK, purpose="capital")

    assert sent(route, 0)["max_tokens"] == 500
    assert said == [
        f"answer capped at 500 tokens (of {config.max_tokens}): only that fits the money "
        "budget left"
    ]
    await llm.close()


@respx.mock
async def test_price_override_from_the_provider() -> None:
    respx.post(f"{BASE}/chat/completions").mock(return_value=httpx.Response(200, json=GOOD))
    config = LLMConfig(
        model="my-model",
        base_url=BASE,
        api_key=SecretStr(KEY),
        prices={"my-model": Price(input=1000, output=0)},
    )
    llm = LLM(config, http_client=httpx.AsyncClient())

    await llm.structured(Answer, ASK, purpose="capital")

    assert llm.ledger.summary().cost_usd == pytest.approx(0.1)
    await llm.close()


@respx.mock
async def test_server_rejecting_json_schema_is_asked_with_json_object(llm: LLM) -> None:
    route = respx.post(f"{BASE}/chat/completions").mock(
        side_effect=[
            error(500, "response_format json_schema is not supported"),
            httpx.Response(200, json=GOOD),
            httpx.Response(200, json=GOOD),
        ]
    )

    await llm.structured(Answer, ASK, purpose="capital")
    await llm.structured(Answer, ASK, purpose="capital again")

    formats = [sent(route, i)["response_format"] for i in range(3)]
    assert formats[0]["type"] == "json_schema"
    assert formats[1] == {"type": "json_object", "schema": Answer.model_json_schema()}
    assert formats[2]["type"] == "json_object"  # remembered: no second refusal paid for
    assert "JSON schema" in sent(route, 1)["messages"][0]["content"]


@respx.mock
async def test_a_transient_server_error_keeps_json_schema(llm: LLM) -> None:
    route = respx.post(f"{BASE}/chat/completions").mock(
        side_effect=[
            error(500, "the server had an error while processing your request"),
            httpx.Response(200, json=GOOD),
            error(400, "max_tokens is too large"),
            httpx.Response(200, json=GOOD),
        ]
    )

    await llm.structured(Answer, ASK, purpose="capital")
    with pytest.raises(LLMRequestError):
        await llm.structured(Answer, ASK, purpose="too long")
    await llm.structured(Answer, ASK, purpose="capital again")

    # Neither error named the format: it is kept for the rest of the goal.
    assert [sent(route, i)["response_format"]["type"] for i in range(4)] == ["json_schema"] * 4


@respx.mock
async def test_rate_limit_is_retried_after_retry_after(llm: LLM) -> None:
    route = respx.post(f"{BASE}/chat/completions").mock(
        side_effect=[error(429, "slow down", {"retry-after": "1"}), httpx.Response(200, json=GOOD)]
    )
    started = time.monotonic()

    await llm.structured(Answer, ASK, purpose="capital")

    assert time.monotonic() - started >= 1.0
    assert route.call_count == 2
    assert llm.ledger.summary().calls == 1  # only answered calls are billed


@respx.mock
async def test_waiting_for_the_rate_limit_uses_up_no_retry_until_the_patience_ends() -> None:
    limited = error(429, "Rate limit reached for requests", {"retry-after-ms": "300"})
    route = respx.post(f"{BASE}/chat/completions").mock(
        side_effect=[limited, limited, limited, httpx.Response(200, json=GOOD)]
    )
    config = LLMConfig(model="gpt-4o-mini", base_url=BASE, api_key=SecretStr(KEY), max_retries=0)
    patient = LLM(config, http_client=httpx.AsyncClient())

    await patient.structured(Answer, ASK, purpose="capital")  # three 429s, no retry spent

    assert route.call_count == 4 and patient.pacer.penalties == 3
    impatient = LLM(
        config.model_copy(update={"rate_limit_patience": 1.0}), http_client=httpx.AsyncClient()
    )
    route.side_effect = None
    route.return_value = limited
    started = time.monotonic()
    with pytest.raises(LLMRateLimitError) as caught:
        await impatient.structured(Answer, ASK, purpose="capital")
    assert time.monotonic() - started < 5.0  # it gave up at its patience, not the 600 s
    assert "GOALFLOW_RATE_LIMIT_PATIENCE" in str(caught.value) and caught.value.waited < 1.5
    await patient.close()
    await impatient.close()


@respx.mock
async def test_a_request_too_large_for_the_limit_fails_at_once(llm: LLM) -> None:
    respx.post(f"{BASE}/chat/completions").mock(
        return_value=error(429, "Request too large for gpt-4o-mini on tokens per min (TPM)")
    )

    with pytest.raises(LLMRequestError, match="refuses a request this large"):
        await llm.structured(Answer, ASK, purpose="capital")


@respx.mock
async def test_server_errors_are_retried_then_reported(llm: LLM) -> None:
    route = respx.post(f"{BASE}/chat/completions").mock(return_value=error(503, "overloaded"))
    llm_answered = LLM(llm.config, http_client=httpx.AsyncClient())
    llm_answered._mode = "json_schema"  # past the first-call fallback probe

    with pytest.raises(LLMRequestError, match=r"HTTP 503.*overloaded"):
        await llm_answered.structured(Answer, ASK, purpose="capital")

    assert route.call_count == 1 + llm.config.max_retries
    await llm_answered.close()


@respx.mock
async def test_prose_is_re_asked_with_the_errors_then_fails_typed(llm: LLM) -> None:
    prose = completion("The largest city of Norway is Oslo.")
    route = respx.post(f"{BASE}/chat/completions").mock(
        return_value=httpx.Response(200, json=prose)
    )

    with pytest.raises(StructuredOutputError) as caught:
        await llm.structured(Answer, ASK, purpose="capital", max_attempts=2)

    assert route.call_count == 2
    feedback = sent(route, 1)["messages"][-1]["content"]
    assert "the answer is not valid JSON" in feedback
    assert caught.value.n_attempts == 2
    assert caught.value.last_completion == "The largest city of Norway is Oslo."
    assert "Answer" in str(caught.value) and "--model" in str(caught.value)


@respx.mock
async def test_truncated_json_says_it_was_cut_off(llm: LLM) -> None:
    cut = completion('{"city": "Os', finish="length")
    route = respx.post(f"{BASE}/chat/completions").mock(
        side_effect=[httpx.Response(200, json=cut), httpx.Response(200, json=GOOD)]
    )

    answer = await llm.structured(Answer, ASK, purpose="capital")

    assert answer.city == "Oslo"
    assert "cut off at the token limit" in sent(route, 1)["messages"][-1]["content"]


@respx.mock
async def test_raw_newlines_inside_strings_are_accepted(llm: LLM) -> None:
    raw = completion('{"city": "Oslo\nNorway", "population": 1}')
    route = respx.post(f"{BASE}/chat/completions").mock(return_value=httpx.Response(200, json=raw))

    assert (await llm.structured(Answer, ASK, purpose="capital")).city == "Oslo\nNorway"
    assert route.call_count == 1


@respx.mock
async def test_fenced_json_is_accepted(llm: LLM) -> None:
    fenced = completion('```json\n{"city": "Oslo", "population": 1}\n```')
    respx.post(f"{BASE}/chat/completions").mock(return_value=httpx.Response(200, json=fenced))

    assert (await llm.structured(Answer, ASK, purpose="capital")).population == 1


@respx.mock
async def test_wrong_key_is_an_auth_error_that_never_shows_the_key(llm: LLM) -> None:
    respx.post(f"{BASE}/chat/completions").mock(
        return_value=error(401, f"Incorrect API key provided: {KEY[:8]}****{KEY[-4:]}")
    )

    with pytest.raises(LLMAuthError) as caught:
        await llm.structured(Answer, ASK, purpose="capital")

    shown = "".join(traceback.format_exception(caught.value))
    assert "OPENAI_API_KEY" in shown
    assert KEY[:8] not in shown and KEY[-4:] not in shown


async def test_a_password_in_the_endpoints_url_is_never_shown() -> None:
    # Port 9 on loopback: nothing listens, so the call fails at once, naming the endpoint.
    config = LLMConfig(base_url="http://user:hunter2PASS@127.0.0.1:9/v1", max_retries=0)
    llm = LLM(config)
    try:
        with pytest.raises(LLMUnreachableError) as caught:
            await llm.structured(Answer, ASK, purpose="capital")
    finally:
        await llm.close()

    shown = "".join(traceback.format_exception(caught.value))
    assert "http://127.0.0.1:9/v1" in shown and "hunter2PASS" not in shown
    query = LLMConfig(base_url="http://127.0.0.1:1/v1?api-key=sk-QUERYSECRET#x")
    assert query.endpoint == "http://127.0.0.1:1/v1"


@respx.mock
async def test_unknown_model_lists_what_the_endpoint_serves(llm: LLM) -> None:
    respx.post(f"{BASE}/chat/completions").mock(return_value=error(404, "The model does not exist"))
    respx.get(f"{BASE}/models").mock(
        return_value=httpx.Response(
            200,
            json={
                "object": "list",
                "data": [{"id": "gpt-4o", "object": "model", "created": 0, "owned_by": "x"}],
            },
        )
    )

    with pytest.raises(LLMModelNotFoundError, match=r"no model 'gpt-4o-mini'.*serves: gpt-4o"):
        await llm.structured(Answer, ASK, purpose="capital")


@respx.mock
@pytest.mark.parametrize(
    "models",
    [
        httpx.Response(200, text="<html><body>Not here</body></html>"),
        httpx.Response(404, text="<html>404</html>"),
        httpx.Response(200, json={"data": [{"name": "no id"}]}),
    ],
)
async def test_unknown_model_is_reported_whatever_the_models_list_answers(
    llm: LLM, models: httpx.Response
) -> None:
    respx.post(f"{BASE}/chat/completions").mock(return_value=error(404, "no such model"))
    respx.get(f"{BASE}/models").mock(return_value=models)

    with pytest.raises(LLMModelNotFoundError, match=r"no model 'gpt-4o-mini'. Choose another"):
        await llm.structured(Answer, ASK, purpose="capital")


async def test_unreachable_endpoint_says_where_and_what_to_check() -> None:
    config = LLMConfig(
        model="m",
        base_url="http://127.0.0.1:9/v1",
        api_key=SecretStr(KEY),
        max_retries=1,
        backoff=0.01,
    )
    llm = LLM(config)

    with pytest.raises(
        LLMUnreachableError, match=r"cannot reach .*127\.0\.0\.1:9.*OPENAI_BASE_URL"
    ):
        await llm.structured(Answer, ASK, purpose="capital")
    await llm.close()
