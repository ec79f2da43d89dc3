"""Which model a goal talks to: a saved block, the environment, or the offline model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from goalflow.budget import MoneyBudget
from goalflow.errors import ConfigError
from goalflow.llm import LLM, LLMConfig
from goalflow.local_model import LOCAL_MODELS, local_model_server
from goalflow.settings import Settings

__all__ = ["DEFAULT_ENDPOINT_MODEL", "open_llm"]

DEFAULT_ENDPOINT_MODEL = "gpt-4o-mini"


@asynccontextmanager
async def open_llm(
    settings: Settings, *, model: str | None = None, budget: MoneyBudget | None = None
) -> AsyncIterator[LLM]:
    """An LLM for one goal, closed (and the offline model stopped) on exit.

    Order: an LLMProvider block named in the settings; else ``OPENAI_API_KEY`` /
    ``OPENAI_BASE_URL``; else the offline model, started here on loopback.
    """
    model = model or settings.model
    if settings.llm_block or settings.openai_api_key or settings.openai_base_url:
        llm = LLM(await _endpoint_config(settings, model), budget=budget)
        try:
            yield llm
        finally:
            await llm.close()
        return
    spec = LOCAL_MODELS[settings.local_model]
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
        llm = LLM(config, budget=budget)
        try:
            yield llm
        finally:
            await llm.close()


async def _endpoint_config(settings: Settings, model: str | None) -> LLMConfig:
    if settings.llm_block:
        from goalflow.blocks import LLMProvider, load_block

        block = await load_block(LLMProvider, settings.llm_block, "GOALFLOW_LLM_BLOCK")
        return block.to_config(model)
    return LLMConfig(
        model=model or DEFAULT_ENDPOINT_MODEL,
        base_url=settings.openai_base_url,
        api_key=settings.openai_api_key,
        prices=settings.prices,
        structured_mode=settings.structured_mode,
        max_retries=settings.max_retries,
        requests_per_minute=settings.requests_per_minute,
        tokens_per_minute=settings.tokens_per_minute,
        expected_latency=settings.expected_latency,
    )
