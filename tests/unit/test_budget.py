"""The money ledger: reservations under concurrency, settlement, alerts, prices."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from goalflow.core.budget import BudgetAlert, Ledger, MoneyBudget, spending_for
from goalflow.core.prices import Price
from goalflow.core.report import estimated_part
from goalflow.errors import BudgetExceededError, ConfigError
from goalflow.llm.client import LLM
from goalflow.llm.config import LLMConfig
from goalflow.testing import OpenAITestServer, Reply
from tests.helpers import wait_for

PRICE = {"m": Price(input=1.0, output=2.0)}  # $ per million tokens


def _priced(server: OpenAITestServer, **options: Any) -> LLMConfig:
    """Model "m" on ``server``, priced, answering in at most 1000 tokens."""
    return LLMConfig(model="m", base_url=server.base_url, prices=PRICE, max_tokens=1000, **options)


def test_concurrent_reservations_never_exceed_the_limit() -> None:
    ledger = Ledger(PRICE, MoneyBudget(limit_usd=0.01))
    granted: list[float] = []
    barrier = threading.Barrier(50)

    def call() -> None:
        barrier.wait()
        try:
            granted.append(
                asyncio.run(ledger.reserve(model="m", prompt_tokens=400, max_tokens=600)).usd
            )
        except BudgetExceededError:
            return
        ledger.settle(
            granted[-1], purpose="t", model="m", prompt_tokens=400, completion_tokens=600, seconds=0
        )

    threads = [threading.Thread(target=call) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # Each call costs at most $0.0016, so exactly six fit in $0.01.
    assert len(granted) == 6
    assert ledger.summary().cost_usd == pytest.approx(0.0096)
    assert ledger.summary().cost_usd <= 0.01


async def test_a_call_that_does_not_fit_beside_calls_in_flight_waits_for_them() -> None:
    ledger = Ledger(PRICE, MoneyBudget(limit_usd=0.003))
    first, _ = await ledger.reserve(model="m", prompt_tokens=500, max_tokens=1000)  # $0.0025
    second = asyncio.create_task(ledger.reserve(model="m", prompt_tokens=500, max_tokens=1000))
    await asyncio.sleep(0.1)
    assert not second.done()  # waiting, not refused: the first may cost far less

    ledger.settle(first, purpose="t", model="m", prompt_tokens=100, completion_tokens=50, seconds=0)

    # Only $0.0002 was spent, so the second worst case of $0.0025 fits now.
    assert (await asyncio.wait_for(second, 1)).usd == pytest.approx(0.0025)


async def test_a_call_is_refused_only_when_nothing_in_flight_can_free_enough() -> None:
    ledger = Ledger(PRICE, MoneyBudget(limit_usd=0.003))
    first, _ = await ledger.reserve(model="m", prompt_tokens=500, max_tokens=1000)
    waiting = asyncio.create_task(ledger.reserve(model="m", prompt_tokens=500, max_tokens=1000))
    await asyncio.sleep(0.1)

    # The first call costs its worst case: what is spent leaves no room for the second.
    ledger.settle(
        first, purpose="t", model="m", prompt_tokens=500, completion_tokens=1000, seconds=0
    )

    with pytest.raises(BudgetExceededError, match=r"\$0.0025 spent, \$0.0000 held"):
        await asyncio.wait_for(waiting, 1)


async def test_near_the_end_of_the_money_a_call_asks_for_a_shorter_answer() -> None:
    ledger = Ledger(PRICE, MoneyBudget(limit_usd=0.003))
    spent, _ = await ledger.reserve(model="m", prompt_tokens=500, max_tokens=500)
    ledger.settle(
        spent, purpose="t", model="m", prompt_tokens=500, completion_tokens=500, seconds=0
    )

    # $0.0015 left: 500 prompt tokens and 1000 answer tokens ($0.0025) can never fit,
    # 500 answer tokens can ($0.0015): the call goes out capped, not refused.
    capped = await ledger.reserve(model="m", prompt_tokens=500, max_tokens=1000, min_tokens=256)
    assert capped.max_tokens == 500 and capped.usd == pytest.approx(0.0015)
    ledger.settle(
        capped.usd, purpose="t", model="m", prompt_tokens=500, completion_tokens=500, seconds=0
    )
    with pytest.raises(BudgetExceededError, match="256 answer tokens"):
        await ledger.reserve(model="m", prompt_tokens=500, max_tokens=1000, min_tokens=256)


async def test_a_released_reservation_frees_its_money() -> None:
    ledger = Ledger(PRICE, MoneyBudget(limit_usd=0.003))
    held, _ = await ledger.reserve(model="m", prompt_tokens=500, max_tokens=1000)

    ledger.release(held)

    await asyncio.wait_for(ledger.reserve(model="m", prompt_tokens=500, max_tokens=1000), 1)
    assert ledger.summary().cost_usd == 0


async def test_each_threshold_is_reported_once_and_the_money_running_out_once() -> None:
    alerts: list[BudgetAlert] = []
    ledger = Ledger(PRICE, MoneyBudget(limit_usd=0.001, on_alert=alerts.append))

    async def spend(completion_tokens: int) -> None:
        held, _ = await ledger.reserve(model="m", prompt_tokens=0, max_tokens=completion_tokens)
        ledger.settle(
            held, purpose="t", model="m", prompt_tokens=0, completion_tokens=completion_tokens,
            seconds=0,
        )  # fmt: skip

    await spend(260)  # 52 %
    await spend(10)  # 54 %: nothing new
    await spend(150)  # 84 %
    # Larger than what is left, but a call like the 10-token one still fits: this call
    # is refused to its caller alone, and the goal goes on.
    with pytest.raises(BudgetExceededError, match=r"money budget of \$0.001 "):
        await ledger.reserve(model="m", prompt_tokens=0, max_tokens=200)
    assert [a.kind for a in alerts] == ["warning", "warning"] and ledger.refused
    await spend(75)  # 99 %: not even the smallest call made so far fits
    for _ in range(2):
        with pytest.raises(BudgetExceededError, match=r"money budget of \$0.001 "):
            await ledger.reserve(model="m", prompt_tokens=0, max_tokens=10)

    assert [(a.kind, a.fraction) for a in alerts] == [
        ("warning", 0.5),
        ("warning", 0.8),
        ("exceeded", 1.0),
    ]
    assert alerts[-1].spent_usd == pytest.approx(0.00099)


def test_spend_is_kept_per_task_and_per_model() -> None:
    from goalflow.core.budget import spending_for

    ledger = Ledger(PRICE)
    ledger.settle(0, purpose="plan", model="m", prompt_tokens=10, completion_tokens=0, seconds=0)
    with spending_for("draft/outline"):
        ledger.settle(0, purpose="x", model="m", prompt_tokens=20, completion_tokens=0, seconds=0)

    summary = ledger.summary()

    assert summary.cost_by_task == {"planning": 0.00001, "draft/outline": 0.00002}
    assert summary.cost_by_model == {"m": 0.00003}


@pytest.mark.parametrize("limit", [0.0, -1.0])
def test_a_budget_must_be_positive(limit: float) -> None:
    with pytest.raises(ConfigError, match="more than \\$0"):
        MoneyBudget(limit_usd=limit)


def test_a_money_budget_needs_the_models_price() -> None:
    config = LLMConfig(model="mystery-model", base_url="http://127.0.0.1:9/v1")

    with pytest.raises(ConfigError, match="no price is known for model 'mystery-model'"):
        LLM(config, budget=MoneyBudget(limit_usd=1.0))

    LLM(config)  # without a money budget the model may stay unpriced


async def test_a_call_that_cannot_fit_is_never_sent() -> None:
    server = OpenAITestServer(models=("m",), default=json.dumps({"passed": True, "reason": "ok"}))
    from goalflow.agent.executor import Verdict

    async with server:
        config = _priced(server)
        # The request is ~900 bytes (one token each at worst) + 1000 answer tokens: ~$0.0029.
        llm = LLM(config, budget=MoneyBudget(limit_usd=0.004), http_client=httpx.AsyncClient())
        await llm.structured(Verdict, [{"role": "user", "content": "Fine?"}], purpose="first")
        # ~$0.0044 of prompt alone: not even the shortest answer fits what is left.
        longer = [{"role": "user", "content": "Fine? " + "x" * 3500}]
        with pytest.raises(BudgetExceededError, match="cannot cover another model call"):
            await llm.structured(Verdict, longer, purpose="second")
        await llm.close()

    assert len(server.requests) == 1
    assert llm.ledger.summary().calls == 1


async def test_a_failed_call_gives_its_reservation_back() -> None:
    server = OpenAITestServer(models=("m",), default=Reply(status=400, error_message="bad request"))
    from goalflow.agent.executor import Verdict
    from goalflow.errors import LLMRequestError

    async with server:
        config = _priced(server, structured_mode="json_schema")
        llm = LLM(config, budget=MoneyBudget(limit_usd=0.004), http_client=httpx.AsyncClient())
        for _ in range(3):  # each holds ~$0.0029; only one fits unless it is released
            with pytest.raises(LLMRequestError):
                await llm.structured(Verdict, [{"role": "user", "content": "x"}], purpose="p")
        await llm.close()

    assert len(server.requests) == 3


async def test_attempts_that_time_out_are_counted_and_the_call_stops_within_the_budget() -> None:
    from goalflow.agent.executor import Verdict

    answer = Reply(content=json.dumps({"passed": True, "reason": "ok"}), delay=2)
    server = OpenAITestServer(models=("m",), default=answer)
    async with server:
        config = _priced(server, timeout=0.3, backoff=0.01, structured_mode="json_schema")
        # Each attempt may cost ~$0.0023 at worst: a few fit in $0.007, not four.
        llm = LLM(config, budget=MoneyBudget(limit_usd=0.007), http_client=httpx.AsyncClient())
        with pytest.raises(BudgetExceededError):
            await llm.structured(Verdict, [{"role": "user", "content": "x"}], purpose="slow")
        await llm.close()

    # The provider answers (and bills) what the client gave up on: each attempt sent is a
    # call in the report, at its worst case, and no attempt went out that did not fit.
    summary = llm.ledger.summary()
    assert len(server.requests) == summary.calls >= 2
    assert 0.005 < summary.cost_usd <= 0.007
    # The report says which part of the cost is that estimate.
    assert summary.estimated_calls == summary.calls
    assert summary.estimated_usd == summary.cost_usd
    assert f"{summary.calls} attempts whose bill is unknown" in estimated_part(summary)


async def test_counts_kept_from_a_model_that_counted_less_are_dropped_when_found_wrong(
    tmp_path: Path,
) -> None:
    from goalflow.agent.executor import Verdict
    from goalflow.llm.prompt_counts import PromptCounts

    store, schema = tmp_path / "prompt-counts.json", Verdict.model_json_schema()
    messages = [
        {"role": "system", "content": "Judge the outputs strictly. " * 100},
        {"role": "user", "content": "check it"},
    ]
    server = OpenAITestServer(models=("m",), default=json.dumps({"passed": True, "reason": "ok"}))
    async with server:
        config = _priced(server, structured_mode="json_schema")
        earlier = PromptCounts(store, config.endpoint)
        earlier.saw("m", messages, schema, 10)  # another model behind the name counted less
        earlier.save()
        llm = LLM(config, prompt_counts=PromptCounts(store, config.endpoint))
        notices: list[str] = []
        llm.on_notice = notices.append
        await llm.structured(Verdict, messages, purpose="review a")
        await llm.structured(Verdict, messages, purpose="review b")
        await llm.close()
        llm.prompt_counts.save()

    said = [n for n in notices if "prompts are counted a token per byte from now on" in n]
    assert len(said) == 1  # said once, not at every call
    assert llm.prompt_counts.bound("m", messages, schema) is None
    assert PromptCounts(store, config.endpoint).bound("m", messages, schema) is None


async def test_an_answer_that_says_no_usage_is_counted_at_its_worst_case() -> None:
    from goalflow.agent.executor import Verdict

    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": '{"passed": true, "reason": "ok"}'},
                "finish_reason": "stop",
            }
        ],
    }  # no "usage": the provider bills it all the same
    server = OpenAITestServer(
        models=("m",), default=Reply(raw_body=json.dumps(body), raw_type="application/json")
    )
    async with server:
        llm = LLM(_priced(server), budget=MoneyBudget(limit_usd=0.01))
        verdict = await llm.structured(Verdict, [{"role": "user", "content": "x"}], purpose="r")
        await llm.close()

    summary = llm.ledger.summary()
    assert verdict.passed and summary.calls == 1
    assert summary.cost_usd > 0.001 and summary.estimated_usd == summary.cost_usd
    assert "1 attempt whose bill is unknown, counted at its worst case" in estimated_part(summary)


async def test_a_call_cancelled_after_it_was_sent_is_counted() -> None:
    from goalflow.agent.executor import Verdict

    answer = Reply(content=json.dumps({"passed": True, "reason": "ok"}), delay=5)
    server = OpenAITestServer(models=("m",), default=answer)
    async with server:
        config = _priced(server)
        llm = LLM(config, budget=MoneyBudget(limit_usd=0.01), http_client=httpx.AsyncClient())
        call = asyncio.create_task(
            llm.structured(Verdict, [{"role": "user", "content": "x"}], purpose="cut")
        )
        await wait_for(lambda: bool(server.requests))
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await llm.close()

    summary = llm.ledger.summary()
    assert summary.calls == 1 and summary.cost_usd > 0.002  # sent: billed, so counted
    assert summary.estimated_calls == 1 and summary.estimated_usd == summary.cost_usd


async def test_a_second_model_on_one_endpoint_shares_the_ledger_and_the_pacer() -> None:
    server = OpenAITestServer(
        models=("m", "small"), default=json.dumps({"passed": True, "reason": "ok"})
    )
    from goalflow.agent.executor import Verdict
    from goalflow.core.budget import spending_for

    prices = {**PRICE, "small": Price(input=0.1, output=0.2)}
    async with server:
        config = _priced(server).model_copy(update={"prices": prices})
        llm = LLM(config, budget=MoneyBudget(limit_usd=1.0), http_client=httpx.AsyncClient())
        small = llm.for_model("small")
        ask = [{"role": "user", "content": "Fine?"}]
        with spending_for("poem"):
            await small.structured(Verdict, ask, purpose="task poem")
            await llm.structured(Verdict, ask, purpose="review poem")
            await llm.structured(Verdict, ask, purpose="task poem")
        await llm.close()

    assert [r.model for r in server.requests] == ["small", "m", "m"]
    assert small.ledger is llm.ledger and small.pacer is llm.pacer
    usage = llm.ledger.summary()
    assert usage.calls_by_model == {"small": 1, "m": 2}
    # Each at its own price (a tenth for the small model), in one total.
    assert 0 < usage.cost_by_model["small"] < usage.cost_by_model["m"] / 10
    assert usage.cost_usd == pytest.approx(sum(usage.cost_by_model.values()))
    # Who answered the task (its answers, not the review): escalated from small to m.
    assert usage.models_by_task == {"poem": ["small", "m"]}


def test_a_second_model_needs_a_price_under_a_money_budget() -> None:
    config = LLMConfig(model="m", base_url="http://127.0.0.1:9/v1", prices=PRICE)

    with pytest.raises(ConfigError, match="no price is known for model 'mystery-small'"):
        LLM(config, budget=MoneyBudget(limit_usd=1.0)).for_model("mystery-small")


async def test_near_the_end_of_the_money_a_call_asks_for_as_long_an_answer_as_it_needed() -> None:
    from goalflow.agent.executor import Verdict

    server = OpenAITestServer(models=("m",), default=json.dumps({"passed": True, "reason": "ok"}))
    messages = [{"role": "user", "content": "check it"}]
    async with server:
        config = _priced(server, structured_mode="json_schema")
        llm = LLM(config, budget=MoneyBudget(limit_usd=0.0008), http_client=httpx.AsyncClient())
        await llm.structured(Verdict, messages, purpose="review a", max_tokens=100)
        # What is left pays for the prompt (another one: counted a token per byte) and
        # ~190 answer tokens: not the 256 a call asks for at least before its purpose
        # was answered, but many times the ~10 of a review's answer. The review is
        # made, with a shorter answer.
        other = [{"role": "user", "content": "check that"}]
        await llm.structured(Verdict, other, purpose="review b")
        fresh = LLM(config, budget=MoneyBudget(limit_usd=0.0008 - llm.ledger.spent_usd))
        with pytest.raises(BudgetExceededError):  # no review answered yet: 256 at least
            await fresh.structured(Verdict, other, purpose="review b")
        await llm.close()
        await fresh.close()

    assert len(server.requests) == 2
    assert 16 <= (server.requests[1].max_tokens or 0) < 256
    assert llm.ledger.summary().cost_usd <= 0.0008


def test_a_capped_answer_is_asked_for_half_again_the_longest_of_its_purpose() -> None:
    from goalflow.llm.answers import ANSWER_FLOOR, AnswerLengths

    lengths = AnswerLengths()
    assert lengths.floor("review t1", 1000) == ANSWER_FLOOR  # none seen yet
    assert lengths.floor("review t1", 100) == 100  # never more than the call wants
    lengths.saw("review t1", 40, cut_at=None)
    lengths.saw("review t2", 30, cut_at=None)
    assert lengths.floor("review t9", 1000) == 60  # the purpose, whatever the task
    assert lengths.floor("task t9", 1000) == ANSWER_FLOOR  # another purpose
    lengths.saw("task t1", 2, cut_at=None)
    assert lengths.floor("task t1", 1000) == 16
    lengths.saw("task t2", 300, cut_at=1000)  # cut off: it needed all it wanted
    assert lengths.floor("task t3", 1000) == 1000


def test_a_plan_is_never_asked_for_a_shorter_answer() -> None:
    from goalflow.llm.answers import AnswerLengths

    lengths = AnswerLengths()
    lengths.saw("plan goal", 20, cut_at=None)
    # A plan cut off is waste: planning calls ask for all they want, or wait, or are refused.
    assert lengths.floor("plan goal", 1024) == 1024
    assert lengths.floor("refine t2", 1024) == 1024


async def test_a_prompt_that_repeats_a_counted_one_is_reserved_at_that_count() -> None:
    from goalflow.agent.executor import Verdict

    server = OpenAITestServer(models=("m",), default=json.dumps({"passed": True, "reason": "ok"}))
    system = {"role": "system", "content": "Judge the outputs strictly. " * 150}  # 4,200 bytes
    first = [system, {"role": "user", "content": "check the first"}]
    second = [system, {"role": "user", "content": "check the second"}]
    budget = 0.0055
    async with server:
        config = _priced(server, structured_mode="json_schema")
        llm = LLM(config, budget=MoneyBudget(limit_usd=budget), http_client=httpx.AsyncClient())
        await llm.structured(Verdict, first, purpose="review a")  # ~1,060 tokens counted
        left = budget - llm.ledger.spent_usd
        # Counted a token per byte, the second prompt alone would be worth more than is
        # left; bounded by what the provider counted for the first, it fits.
        await llm.structured(Verdict, second, purpose="review b")
        fresh = LLM(config, budget=MoneyBudget(limit_usd=left), http_client=httpx.AsyncClient())
        with pytest.raises(BudgetExceededError):  # it never saw the first prompt counted
            await fresh.structured(Verdict, second, purpose="review b")
        changed = [{"role": "system", "content": "Judge the outputs kindly. " * 160}, second[1]]
        with pytest.raises(BudgetExceededError):  # a new system message: a token per byte
            await llm.structured(Verdict, changed, purpose="review c")
        await llm.close()
        await fresh.close()

    assert len(server.requests) == 2
    billed = (server.stats.prompt_tokens * 1 + server.stats.completion_tokens * 2) / 1e6
    assert billed == pytest.approx(llm.ledger.spent_usd) and billed <= budget
    assert estimated_part(llm.ledger.summary()) == ""  # every call answered: all billed


async def test_a_call_that_waited_for_another_is_sized_again_by_what_its_answer_taught() -> None:
    from goalflow.agent.executor import Verdict

    server = OpenAITestServer(
        models=("m",),
        default=Reply(content=json.dumps({"passed": True, "reason": "ok"}), delay=0.3),
    )
    messages = [{"role": "user", "content": "check it"}]
    async with server:
        llm = LLM(_priced(server), budget=MoneyBudget(limit_usd=0.0013))
        # Before any answer, a call counts its prompt as in json_object mode (the schema
        # twice) and 256 answer tokens at least: the second does not fit beside the first,
        # nor after it. Once the first is answered (in json_schema mode, ~10 tokens), it does.
        first = llm.structured(Verdict, messages, purpose="review a", max_tokens=100)
        second = llm.structured(Verdict, messages, purpose="review b")
        await asyncio.gather(first, second)
        await llm.close()

    assert len(server.requests) == 2
    assert llm.ledger.summary().cost_usd <= 0.0013


async def test_reservations_settled_in_any_order_leave_nothing_held() -> None:
    ledger = Ledger(PRICE, MoneyBudget(limit_usd=1.0))
    # $0.000302 and $0.000602 (300 and 600 prompt tokens at $1 a million, one answer
    # token at $2): their float sum minus each is 1e-19, not 0.
    first = await ledger.reserve(model="m", prompt_tokens=300, max_tokens=1)
    second = await ledger.reserve(model="m", prompt_tokens=600, max_tokens=1)
    assert first is not None and second is not None
    ledger.release(first.usd)
    ledger.release(second.usd)
    assert ledger.reserved_usd == 0  # a goal whose money ran out stops when nothing is held


async def test_an_optional_call_that_does_not_fit_is_refused_without_ending_the_money() -> None:
    alerts: list[BudgetAlert] = []
    ledger = Ledger(PRICE, MoneyBudget(limit_usd=0.001, on_alert=alerts.append))
    with spending_for("reflection", optional=True), pytest.raises(BudgetExceededError):
        await ledger.reserve(model="m", prompt_tokens=5_000, max_tokens=100)
    assert alerts == []  # a reflection that does not fit is skipped; the goal goes on
    with pytest.raises(BudgetExceededError):
        await ledger.reserve(model="m", prompt_tokens=5_000, max_tokens=100)
    assert [a.kind for a in alerts] == ["exceeded"]


async def test_a_budget_far_beyond_any_call_reserves_as_no_limit_would() -> None:
    ledger = Ledger(PRICE, MoneyBudget(limit_usd=1e303))  # 1e303 * 1e6 tokens is infinite
    reservation = await ledger.reserve(model="m", prompt_tokens=500, max_tokens=1000)
    assert reservation is not None and reservation.max_tokens == 1000
