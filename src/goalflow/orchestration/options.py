"""Where a goal's options meet the environment and the saved blocks, once.

:func:`resolve_options` takes the options a caller set (:class:`~goalflow.settings.GoalOptions`)
and returns everything a run needs to start: the environment's settings with those
options over them, the endpoint (an ``LLMProvider`` block, ``OPENAI_*``, or None for
the offline model), the sandbox configuration, the budget and the reflection policy.
An option set explicitly wins over the environment, which wins over a block.
"""

from __future__ import annotations

from dataclasses import dataclass

from goalflow.core.budget import BudgetPolicy
from goalflow.core.revision import ReflectionPolicy
from goalflow.llm.config import LLMConfig
from goalflow.orchestration import blocks
from goalflow.sandbox.config import SandboxConfig
from goalflow.settings import GoalOptions, Settings

__all__ = ["ResolvedOptions", "resolve_options"]


@dataclass(frozen=True)
class ResolvedOptions:
    """A goal's options with every default filled in and every block loaded."""

    settings: Settings
    endpoint: LLMConfig | None  # None: the offline model (settings.local_model)
    sandbox: SandboxConfig | None  # None: code tasks are off (GOALFLOW_SANDBOX=off)
    budget: BudgetPolicy
    reflection: ReflectionPolicy


async def resolve_options(
    options: GoalOptions | None = None, settings: Settings | None = None
) -> ResolvedOptions:
    """``options`` over ``settings`` (default: the environment), with the blocks they
    name loaded; a ConfigError names a block that does not exist."""
    settings = (settings or Settings.load()).with_options(options or GoalOptions())
    return ResolvedOptions(
        settings=settings,
        endpoint=await _endpoint(settings),
        sandbox=await _sandbox(settings),
        budget=await _budget(settings),
        reflection=await _reflection(settings),
    )


async def _endpoint(settings: Settings) -> LLMConfig | None:
    if settings.llm_block:
        block = await blocks.load_block(
            blocks.LLMProvider, settings.llm_block, "GOALFLOW_LLM_BLOCK"
        )
        return block.config(settings.model, task_model=settings.task_model)
    if not (settings.openai_api_key or settings.openai_base_url):
        return None
    # The settings named as LLMConfig's fields are its defaults for an endpoint.
    values = {
        name: getattr(settings, name)
        for name in LLMConfig.model_fields.keys() & Settings.model_fields.keys()
        if getattr(settings, name) is not None
    }
    values.update(base_url=settings.openai_base_url, api_key=settings.openai_api_key)
    return LLMConfig(**values)


async def _sandbox(settings: Settings) -> SandboxConfig | None:
    if settings.sandbox == "off":
        return None
    if settings.sandbox_block is None:
        return SandboxConfig()
    block = await blocks.load_block(
        blocks.DockerSandbox, settings.sandbox_block, "GOALFLOW_SANDBOX_BLOCK"
    )
    return block.config()


async def _budget(settings: Settings) -> BudgetPolicy:
    policy = BudgetPolicy()
    if settings.budget_block:
        block = await blocks.load_block(
            blocks.BudgetPolicy, settings.budget_block, "GOALFLOW_BUDGET_BLOCK"
        )
        policy = block.config()
    return BudgetPolicy(
        max_usd=settings.max_usd or policy.max_usd,
        max_seconds=settings.max_seconds or policy.max_seconds,
        warn_at=settings.warn_at or policy.warn_at,
    )


async def _reflection(settings: Settings) -> ReflectionPolicy:
    policy = ReflectionPolicy()
    if settings.reflection_block:
        block = await blocks.load_block(
            blocks.ReflectionPolicy, settings.reflection_block, "GOALFLOW_REFLECTION_BLOCK"
        )
        policy = block.config()
    overrides = {
        "enabled": settings.reflection,
        "every_tasks": settings.reflect_every_tasks,
        "every_seconds": settings.reflect_every_seconds,
        "repeats": settings.stuck_repeats,
        "max_revisions": settings.max_revisions,
    }
    return policy.model_copy(update={k: v for k, v in overrides.items() if v is not None})
