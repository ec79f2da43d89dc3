"""A goal paced to its endpoint's rate limit, on a real Prefect server and test server."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.logging.handlers import APILogHandler

from goalflow.errors import ConfigError, GoalFailedError, GoalStoppedError
from goalflow.orchestration.shared_limit import shared_gate, shared_limit_shape
from goalflow.testing import OpenAITestServer, Reply
from goalflow.testing.plans import layered_plan
from tests.helpers import TEST_KEY, echo_answer, run_plan

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture(autouse=True)
def no_reflection(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests count the calls of the tasks themselves: no reflection calls between."""
    monkeypatch.setenv("GOALFLOW_REFLECTION", "false")


@pytest.fixture
def limited_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAITestServer]:
    """The test server with a tight limit: 60 requests/min, answers in 0.2 s."""
    server = OpenAITestServer(api_key=TEST_KEY, default=echo_answer, latency=0.2, rpm=60)
    with server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
        # The test server meters a sliding minute and allows all of it at once.
        monkeypatch.setenv("GOALFLOW_BURST_SECONDS", "60")
        monkeypatch.setenv("GOALFLOW_MODEL", "test-model")
        monkeypatch.setenv("GOALFLOW_MAX_TASKS", "1000")
        yield server


@pytest.mark.slow  # a minute of pacing: 60 calls go at once, the other 40 a minute later
async def test_a_hundred_tasks_at_60_per_minute_finish_with_no_429(
    limited_server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOALFLOW_REQUESTS_PER_MINUTE", "60")
    started = time.monotonic()

    result = await run_plan(layered_plan(100))

    assert result.status == "completed"
    assert sum(t.status == "completed" for t in result.tasks) == 100
    assert limited_server.stats.rate_limited == 0
    assert limited_server.stats.completed == 100
    assert time.monotonic() - started >= 60  # the limit was met by waiting, not by luck


def _per_second_server(monkeypatch: pytest.MonkeyPatch, latency: float) -> OpenAITestServer:
    """A provider enforcing 600 requests a minute as 10 a second (a token bucket)."""
    server = OpenAITestServer(
        api_key=TEST_KEY, default=echo_answer, latency=latency, rpm=600, limiter="bucket"
    )
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    monkeypatch.setenv("GOALFLOW_MODEL", "test-model")
    monkeypatch.setenv("GOALFLOW_MAX_TASKS", "1000")
    monkeypatch.setenv("GOALFLOW_TASK_CACHE", "false")
    return server


async def test_a_wide_plan_at_a_per_second_limit_it_was_told_loses_no_task(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GOALFLOW_REQUESTS_PER_MINUTE", "600")
    with _per_second_server(monkeypatch, latency=2.0) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        started = time.monotonic()

        result = await run_plan(layered_plan(120))

    assert result.status == "completed"
    assert server.stats.completed == 120
    assert server.stats.rate_limited <= 2  # a request or two the event loop sent late
    assert time.monotonic() - started >= 11  # 10 at once, then 10 a second


async def test_a_limit_announced_only_in_the_answers_is_learned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with _per_second_server(monkeypatch, latency=0.5) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)

        result = await run_plan(layered_plan(120), advanced={"concurrency": 120})

    # All 120 ready at once: a slow start finds the limit by its first 429s (whose
    # headers announce it), not by sending 120 requests into a bucket of 10.
    assert result.status == "completed"
    assert server.stats.completed == 120
    assert server.stats.rate_limited <= 6  # 5 % of the requests: then it kept to the limit


async def test_the_calls_refused_by_one_429_burst_try_again_spread_out(
    llm_server: OpenAITestServer,
) -> None:
    llm_server.script(
        lambda r: True, Reply(status=429, error_message="busy", retry_after=1), times=8
    )

    result = await run_plan(layered_plan(8), advanced={"concurrency": 8})

    assert result.status == "completed"
    retried = sorted(r.received_at for r in llm_server.requests[8:])
    assert len(retried) == 8
    assert min(b - a for a, b in itertools.pairwise(retried)) > 0.005  # not all at once


async def test_a_transient_server_error_on_the_first_call_keeps_json_schema(
    llm_server: OpenAITestServer,
) -> None:
    llm_server.script(lambda r: True, Reply(status=500, error_message="try again"), times=1)

    result = await run_plan(layered_plan(3), advanced={"concurrency": 1})

    assert result.status == "completed"
    formats = [(r.response_format or {}).get("type") for r in llm_server.requests]
    assert formats == ["json_schema"] * 4  # the refused one and the three after it


async def test_an_hour_long_retry_after_ends_at_the_time_budget_naming_the_rate_limit(
    llm_server: OpenAITestServer,
) -> None:
    llm_server.script(lambda r: True, Reply(status=429, error_message="quota", retry_after=3600))
    started = time.monotonic()

    with pytest.raises(GoalStoppedError) as stopped:
        await run_plan(layered_plan(2), max_seconds=8)

    assert time.monotonic() - started < 30  # not an hour, nor the patience
    assert "time budget of 8 s ran out" in str(stopped.value)
    assert "waiting" in str(stopped.value) and "rate limit" in str(stopped.value)
    await APILogHandler.aflush()
    async with get_client() as client:
        run_id = UUID(stopped.value.result.flow_run_id)
        logs = await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])), limit=200
        )
    waits = [log.message for log in logs if "for the rate limit" in log.message]
    assert waits and waits[0].startswith("waiting 60 s for the rate limit")  # shown, once
    assert len(waits) <= 2


async def test_a_server_that_always_answers_429_fails_the_goal_at_the_patience(
    llm_server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOALFLOW_MAX_RETRIES", "0")  # waiting for the limit spends none
    monkeypatch.setenv("GOALFLOW_RATE_LIMIT_PATIENCE", "3")
    llm_server.script(lambda r: True, Reply(status=429, error_message="slow down", retry_after=1))
    started = time.monotonic()

    with pytest.raises(GoalFailedError, match="kept rate-limiting") as failure:
        await run_plan(layered_plan(3))

    assert 2.0 <= time.monotonic() - started < 30  # Retry-After pauses, up to the patience
    # Each task tried again (no retries configured), until the next wait would pass 3 s.
    assert llm_server.stats.rate_limited >= 2 * 3
    assert all(t.status == "failed" for t in failure.value.result.tasks)
    assert "GOALFLOW_RATE_LIMIT_PATIENCE" in (failure.value.result.tasks[0].error or "")


async def test_many_composite_tasks_start_as_subflows_on_sqlite_without_503(
    llm_server: OpenAITestServer,
) -> None:
    result = await run_plan(layered_plan(2, composites=16), advanced={"concurrency": 32})

    assert result.status == "completed"
    assert llm_server.stats.completed == 2 + 16 * 2


async def test_setup_creates_each_endpoints_shared_limit_then_resizes_it() -> None:
    from prefect.settings import PREFECT_API_URL

    from goalflow.deploy.setup import setup_server
    from goalflow.orchestration.blocks import LLMProvider

    async def setup() -> list[str]:
        report = await setup_server(work_pool="goalflow-test", api_url=PREFECT_API_URL.value())
        return report.lines

    hosted = LLMProvider(model="big", requests_per_minute=600, shared_limit="goalflow-hosted")
    await hosted.asave("hosted", overwrite=True)
    await LLMProvider(model="small", requests_per_minute=120, shared_limit="goalflow-local").asave(
        "local", overwrite=True
    )
    await LLMProvider(model="x", shared_limit="goalflow-unsized").asave("unsized", overwrite=True)

    lines = await setup()
    assert "created global concurrency limit 'goalflow-hosted': 600/min (block 'hosted')" in lines
    assert "created global concurrency limit 'goalflow-local': 120/min (block 'local')" in lines
    assert any(
        "'unsized' names shared_limit 'goalflow-unsized' but no requests_per" in line
        for line in lines
    )

    await LLMProvider(model="big", requests_per_minute=1200, shared_limit="goalflow-hosted").asave(
        "hosted", overwrite=True
    )
    assert "sized global concurrency limit 'goalflow-hosted': 1200/min (block 'hosted')" in (
        await setup()
    )
    async with get_client() as client:
        limit = await client.read_global_concurrency_limit_by_name("goalflow-hosted")
    slots, decay = shared_limit_shape(1200)
    assert (limit.limit, limit.slot_decay_per_second) == (slots, decay)
    assert slots + 60 * decay == 1200  # never more than R in any minute

    await shared_gate("goalflow-hosted")()  # a slot is taken
    with pytest.raises(ConfigError, match="goalflow setup"):
        await shared_gate("goalflow-misspelled-key")()


async def test_the_task_endpoints_own_shared_limit_gates_its_calls(
    limited_server: OpenAITestServer,
) -> None:
    from goalflow.orchestration.blocks import LLMProvider

    # The planning endpoint names no shared limit; the task endpoint's block names one
    # that was never set up: its first call is refused, naming the limit.
    await LLMProvider(
        base_url=limited_server.base_url, model="small", shared_limit="goalflow-not-set-up"
    ).asave("tasks-limited", overwrite=True)
    plan = layered_plan(1)
    simple = [t.model_copy(update={"difficulty": "simple"}) for t in plan.tasks]
    plan = plan.model_copy(update={"tasks": simple})

    with pytest.raises(GoalFailedError, match="shared rate limit 'goalflow-not-set-up'"):
        await run_plan(plan, advanced={"task_llm_block": "tasks-limited"})
