"""The ledger broker: a worker's model calls are reserved, paced and settled in the
flow process's ledger and pacer (here both ends in one process, over real TCP)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
from collections.abc import AsyncIterator, Iterator

import pytest
from pydantic import BaseModel, SecretStr

from goalflow.core.budget import MoneyBudget
from goalflow.core.prices import Price
from goalflow.errors import BudgetExceededError, ConfigError, RunnerUnreachableError, TaskError
from goalflow.llm.broker import BrokerTicket, LedgerBroker, keep_token
from goalflow.llm.brokered import brokered_models
from goalflow.llm.client import LLM
from goalflow.llm.config import LLMConfig
from goalflow.llm.provider import GoalModels
from goalflow.orchestration.task_runners import check_address
from goalflow.testing import OpenAITestServer
from tests.helpers import TEST_KEY

ASK = [{"role": "user", "content": "Name a colour."}]


class Colour(BaseModel):
    colour: str


@pytest.fixture
def server() -> Iterator[OpenAITestServer]:
    with OpenAITestServer(api_key=TEST_KEY, default=json.dumps({"colour": "teal"})) as s:
        yield s


def _flow_llm(server: OpenAITestServer, *, max_usd: float | None = None) -> LLM:
    config = LLMConfig(
        model="test-model",
        base_url=server.base_url,
        api_key=SecretStr(TEST_KEY),
        prices={"test-model": Price(input=1000, output=1000)},  # $0.001 a token
        requests_per_minute=1,
    )
    return LLM(config, budget=MoneyBudget(max_usd) if max_usd else None)


@pytest.fixture
async def flow_llm(server: OpenAITestServer) -> AsyncIterator[LLM]:
    llm = _flow_llm(server)
    yield llm
    await llm.close()


async def test_a_worker_call_is_paced_and_booked_in_the_flow_processs_ledger(
    server: OpenAITestServer, flow_llm: LLM
) -> None:
    async with (
        LedgerBroker(GoalModels(flow_llm, None)) as broker,
        brokered_models(broker.ticket, "draft/outline") as (worker, _),
    ):
        answer = await worker.structured(Colour, ASK, purpose="task outline")
        assert answer.colour == "teal"
        # The flow's pacer admits 1 request a minute: a second call has to wait.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(worker.structured(Colour, ASK, purpose="again"), 1.0)

    usage = flow_llm.ledger.summary()
    assert usage.calls == 1 and server.stats.completed == 1
    assert usage.cost_by_task == {"draft/outline": pytest.approx(usage.cost_usd)}
    assert broker.workers == {f"{os.uname().nodename}:{os.getpid()}"}


async def test_the_limits_a_workers_answer_announces_pace_the_flow() -> None:
    answer = json.dumps({"colour": "teal"})
    with OpenAITestServer(api_key=TEST_KEY, default=answer, rpm=600, limiter="bucket") as s:
        config = LLMConfig(model="test-model", base_url=s.base_url, api_key=SecretStr(TEST_KEY))
        flow_llm = LLM(config)
        try:
            # the worker's messages are queued; a flush delivers them when it closes
            async with (
                LedgerBroker(GoalModels(flow_llm, None)) as broker,
                brokered_models(broker.ticket, "t") as (worker, _),
            ):
                await worker.structured(Colour, ASK, purpose="task t")
        finally:
            await flow_llm.close()

    assert flow_llm.pacer.requests_per_minute == 600


async def test_a_call_over_the_money_budget_is_refused_before_it_is_sent(
    server: OpenAITestServer,
) -> None:
    flow_llm = _flow_llm(server, max_usd=0.5)  # one call's worst case is over $1
    try:
        async with (
            LedgerBroker(GoalModels(flow_llm, None)) as broker,
            brokered_models(broker.ticket, "t") as (worker, _),
        ):
            with pytest.raises(BudgetExceededError, match=re.escape("money budget of $0.5")):
                await worker.structured(Colour, ASK, purpose="task t")
    finally:
        await flow_llm.close()
    assert server.requests == []


async def test_a_worker_asks_the_goals_task_model_at_its_price_and_no_other_model() -> None:
    answer = json.dumps({"colour": "teal"})
    prices = {"big": Price(input=10, output=10), "small": Price(input=1, output=1)}
    with OpenAITestServer(api_key=TEST_KEY, default=answer, models=("big", "small", "x")) as s:
        config = LLMConfig(
            model="big", base_url=s.base_url, api_key=SecretStr(TEST_KEY), prices=prices
        )
        flow_llm = LLM(config)
        models = GoalModels(flow_llm, flow_llm.for_model("small"))
        try:
            async with (
                LedgerBroker(models) as broker,
                brokered_models(broker.ticket, "t") as (worker, task_worker),
            ):
                assert task_worker is not None and task_worker.config.model == "small"
                assert task_worker.pacer is worker.pacer  # one endpoint: one pacer
                await task_worker.structured(Colour, ASK, purpose="task t")
                with pytest.raises(ConfigError, match="model 'x' is not this goal's"):
                    await worker.for_model("x").structured(Colour, ASK, purpose="task t")
        finally:
            await flow_llm.close()

    usage = flow_llm.ledger.summary()
    assert usage.calls_by_model == {"small": 1}
    (call,) = flow_llm.ledger.calls  # booked at the small model's price
    assert call.cost_usd == pytest.approx((call.prompt_tokens + call.completion_tokens) / 1e6)
    assert [r.model for r in s.requests] == ["small"]


async def test_a_task_model_at_another_endpoint_is_paced_there_and_booked_in_one_ledger() -> None:
    answer = json.dumps({"colour": "teal"})
    with (
        OpenAITestServer(api_key=TEST_KEY, default=answer, models=("big",)) as planning,
        OpenAITestServer(api_key="other-key", default=answer, models=("small",)) as tasks,
    ):
        big = LLMConfig(
            model="big", base_url=planning.base_url, api_key=SecretStr(TEST_KEY),
            prices={"big": Price(input=10, output=10)}, requests_per_minute=1,
        )  # fmt: skip
        small = LLMConfig(
            model="small", base_url=tasks.base_url, api_key=SecretStr("other-key"),
            prices={"small": Price(input=1, output=1)}, requests_per_minute=600,
        )  # fmt: skip
        flow_llm = LLM(big, budget=MoneyBudget(1.0))
        task_llm = LLM(small, ledger=flow_llm.ledger)
        try:
            async with (
                LedgerBroker(GoalModels(flow_llm, task_llm)) as broker,
                brokered_models(broker.ticket, "t") as (worker, task_worker),
            ):
                assert task_worker is not None and task_worker.config.endpoint == tasks.base_url
                await worker.structured(Colour, ASK, purpose="task t")
                # The planning endpoint's 1 a minute is spent; the task endpoint's is not.
                for _ in range(3):
                    await asyncio.wait_for(task_worker.structured(Colour, ASK, purpose="task t"), 5)
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(worker.structured(Colour, ASK, purpose="again"), 1)
        finally:
            await flow_llm.close()
            await task_llm.close()

    assert (planning.stats.completed, tasks.stats.completed) == (1, 3)
    usage = flow_llm.ledger.summary()
    assert usage.calls_by_model == {"big": 1, "small": 3}
    big_call, *small_calls = flow_llm.ledger.calls
    assert big_call.cost_usd == pytest.approx(
        (big_call.prompt_tokens + big_call.completion_tokens) * 10 / 1e6
    )
    assert usage.cost_usd == pytest.approx(
        big_call.cost_usd + sum(c.prompt_tokens + c.completion_tokens for c in small_calls) / 1e6
    )


async def test_a_wrong_token_gets_no_model_configuration(flow_llm: LLM) -> None:
    async with LedgerBroker(GoalModels(flow_llm, None)) as broker:
        keep_token("forged", "guessed")
        forged = BrokerTicket(broker.ticket.host, broker.ticket.port, "forged")
        with pytest.raises(ConfigError, match="wrong broker token"):
            async with brokered_models(forged, "t"):
                pass


async def test_a_ticket_carries_no_secret_and_a_worker_without_the_token_is_told(
    flow_llm: LLM,
) -> None:
    async with LedgerBroker(GoalModels(flow_llm, None)) as broker:
        # What travels in task parameters: no token in it.
        assert broker.token not in repr(dataclasses.asdict(broker.ticket))
        elsewhere = BrokerTicket(broker.ticket.host, broker.ticket.port, "another-goal")
        with pytest.raises(TaskError, match="was not given the goal's broker token"):
            async with brokered_models(elsewhere, "t"):
                pass


async def test_a_client_that_says_nothing_is_closed(
    flow_llm: LLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("goalflow.llm.broker.HELLO_SECONDS", 0.5)
    async with LedgerBroker(GoalModels(flow_llm, None)) as broker:
        reader, writer = await asyncio.open_connection(broker.ticket.host, broker.ticket.port)

        # The broker hangs up on a silent client instead of holding it open forever.
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        assert broker.workers == set()


def test_addresses_are_checked_for_form_and_for_an_answer() -> None:
    with pytest.raises(ConfigError, match="not a Dask scheduler address"):
        check_address("dask", "tcp://:8786")
    with pytest.raises(RunnerUnreachableError, match=re.escape("Ray cluster at 127.0.0.1:9 (")):
        check_address("ray", "127.0.0.1:9", timeout=2)
