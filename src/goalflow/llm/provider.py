"""Opening the models of one goal: an endpoint's client, or the offline model started
here on loopback, and the task model beside it. Which endpoints (blocks, the
environment) is decided above, in :func:`goalflow.orchestration.options.resolve_options`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import NamedTuple

from goalflow.core.budget import Ledger, MoneyBudget
from goalflow.core.pacing import Gate
from goalflow.errors import ConfigError
from goalflow.llm.client import LLM
from goalflow.llm.config import LLMConfig
from goalflow.llm.local_model import LOCAL_MODELS, local_model_server
from goalflow.llm.prompt_counts import PromptCounts

__all__ = ["GoalModels", "open_llm", "open_models"]


class GoalModels(NamedTuple):
    """A goal's planning model and, with two tiers, its task model (one ledger)."""

    llm: LLM
    task_llm: LLM | None


@asynccontextmanager
async def open_models(
    endpoint: LLMConfig | None,
    task_endpoint: LLMConfig | None = None,
    *,
    local_model: str = "1.5b",
    local_task_model: str | None = None,
    model: str | None = None,
    budget: MoneyBudget | None = None,
    gate_for: Callable[[LLMConfig], Gate | None] = lambda config: None,
    prompt_counts: Path | None = None,
) -> AsyncIterator[GoalModels]:
    """The goal's models, closed (and the offline ones stopped) on exit.

    ``task_endpoint`` and ``local_task_model`` None: one model. The task model at the
    planning model's endpoint (same address, same key) shares its pacer, as the
    endpoint's limits are one; at another endpoint it has its own client, pacer and
    ``gate_for`` gate (its shared Prefect limit); ``local_task_model`` is an offline
    model on its own llama.cpp server. Either way its calls go to the planning model's
    ledger: one money budget for the goal. ``prompt_counts``: the file that keeps what
    each endpoint counted for goalflow's prompts, from goal to goal.
    """
    async with AsyncExitStack() as stack:
        gate = gate_for(endpoint) if endpoint else None
        llm = await stack.enter_async_context(
            open_llm(
                endpoint,
                local_model=local_model,
                model=model,
                budget=budget,
                gate=gate,
                prompt_counts=prompt_counts,
            )
        )
        task_llm = None
        if task_endpoint is not None and llm.config.same_endpoint(task_endpoint):
            task_llm = llm.for_model(task_endpoint.model)
        elif task_endpoint is not None:
            task_llm = await stack.enter_async_context(
                open_llm(
                    task_endpoint,
                    ledger=llm.ledger,
                    gate=gate_for(task_endpoint),
                    prompt_counts=prompt_counts,
                )
            )
        elif local_task_model is not None:
            task_llm = await stack.enter_async_context(
                open_llm(None, local_model=local_task_model, ledger=llm.ledger)
            )
        yield GoalModels(llm, task_llm)


@asynccontextmanager
async def open_llm(
    endpoint: LLMConfig | None,
    *,
    local_model: str = "1.5b",
    model: str | None = None,
    budget: MoneyBudget | None = None,
    gate: Gate | None = None,
    ledger: Ledger | None = None,
    prompt_counts: Path | None = None,
) -> AsyncIterator[LLM]:
    """An LLM, closed (and the offline model stopped) on exit.

    ``endpoint`` None: the offline model ``local_model`` (``model``, if given, must be
    its alias), started here and stopped on exit. ``ledger``: book the calls in this
    one (another model's of the same goal) instead of a new one. ``prompt_counts``:
    the file where the endpoint's counts of earlier prompts are kept (read now, written
    on exit); None: this client's own only.
    """
    if endpoint is not None:
        counts = PromptCounts(prompt_counts, endpoint.endpoint)
        llm = LLM(endpoint, budget=budget, gate=gate, ledger=ledger, prompt_counts=counts)
        try:
            yield llm
        finally:
            await llm.close()
            counts.save()
        return
    spec = LOCAL_MODELS[local_model]
    if model not in (None, spec.alias):
        raise ConfigError(
            f"model {model!r} needs an endpoint, and none is configured: set OPENAI_API_KEY "
            "(and OPENAI_BASE_URL for a non-OpenAI server), or drop --model to use the "
            f"offline model {spec.alias!r}"
        )
    async with local_model_server(spec) as base_url:
        # llama.cpp rejects json_schema; json_object with a schema constrains its output.
        # Greedy decoding: the same goal gets the same plan, so a run can be reproduced.
        config = LLMConfig(
            model=spec.alias,
            base_url=base_url,
            structured_mode="json_object",
            timeout=600.0,
            temperature=0.0,
        )
        llm = LLM(config, budget=budget, ledger=ledger)
        try:
            yield llm
        finally:
            await llm.close()
