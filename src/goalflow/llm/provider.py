"""Opening the model of one goal: an endpoint's client, or the offline model started
here on loopback. Which endpoint (a block, the environment) is decided above, in
:func:`goalflow.orchestration.options.resolve_options`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from goalflow.core.budget import MoneyBudget
from goalflow.core.pacing import Gate
from goalflow.errors import ConfigError
from goalflow.llm.client import LLM
from goalflow.llm.config import LLMConfig
from goalflow.llm.local_model import LOCAL_MODELS, local_model_server

__all__ = ["open_llm"]


@asynccontextmanager
async def open_llm(
    endpoint: LLMConfig | None,
    *,
    local_model: str = "1.5b",
    model: str | None = None,
    task_model: str | None = None,
    budget: MoneyBudget | None = None,
    gate: Gate | None = None,
) -> AsyncIterator[LLM]:
    """An LLM for one goal, closed (and the offline model stopped) on exit.

    ``endpoint`` None: the offline model ``local_model`` (``model``, if given, must be
    its alias; a ``task_model`` needs an endpoint), started here and stopped on exit.
    """
    if endpoint is not None:
        llm = LLM(endpoint, budget=budget, gate=gate)
        try:
            yield llm
        finally:
            await llm.close()
        return
    spec = LOCAL_MODELS[local_model]
    if task_model not in (None, spec.alias):
        raise ConfigError(
            f"task model {task_model!r} needs an endpoint, and none is configured: set "
            "OPENAI_API_KEY (and OPENAI_BASE_URL), or unset GOALFLOW_TASK_MODEL / drop "
            "--task-model to let the offline model do every task"
        )
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
