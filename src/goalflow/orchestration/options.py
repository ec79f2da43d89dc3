"""Where a goal's options meet the environment and the saved blocks, once.

:func:`resolve_options` takes the options a caller set (:class:`~goalflow.settings.GoalOptions`)
and returns everything a run needs to start: the environment's settings with those
options over them, the endpoint (an ``LLMProvider`` block, ``OPENAI_*``, or None for
the offline model), the task model's endpoint (the same one, or a second block), the
sandbox configuration, the budget and the reflection policy.
An option set explicitly wins over the environment, which wins over a block.
"""

from __future__ import annotations

from dataclasses import dataclass

from goalflow.core.budget import BudgetPolicy
from goalflow.core.revision import ReflectionPolicy
from goalflow.errors import ConfigError
from goalflow.llm.config import LLMConfig
from goalflow.llm.local_model import LOCAL_MODELS
from goalflow.orchestration import blocks
from goalflow.sandbox.config import SandboxConfig
from goalflow.settings import GoalOptions, Settings

__all__ = ["ResolvedOptions", "resolve_options"]


@dataclass(frozen=True)
class ResolvedOptions:
    """A goal's options with every default filled in and every block loaded."""

    settings: Settings
    endpoint: LLMConfig | None  # None: the offline model (settings.local_model)
    # Where the task model is asked, with two tiers: ``endpoint`` asked for the task
    # model, or the task_llm_block's endpoint. None: the offline task model
    # (settings.local_task_model), else one model does everything.
    task_endpoint: LLMConfig | None

    @property
    def tiers(self) -> bool:
        """Whether a task model does the tasks the plan marks simple."""
        return self.task_endpoint is not None or self.settings.local_task_model is not None

    sandbox: SandboxConfig | None  # None: code tasks are off (GOALFLOW_SANDBOX=off)
    budget: BudgetPolicy
    reflection: ReflectionPolicy


async def resolve_options(
    options: GoalOptions | None = None, settings: Settings | None = None
) -> ResolvedOptions:
    """``options`` over ``settings`` (default: the environment), with the blocks they
    name loaded; a ConfigError names a block that does not exist."""
    settings = (settings or Settings.load()).with_options(options or GoalOptions())
    endpoint = await _endpoint(settings)
    task_endpoint = await _task_endpoint(settings, endpoint)
    return ResolvedOptions(
        settings=settings,
        endpoint=endpoint.asking(endpoint.model) if endpoint else None,
        task_endpoint=task_endpoint,
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


async def _task_endpoint(settings: Settings, endpoint: LLMConfig | None) -> LLMConfig | None:
    planning_model = endpoint.model if endpoint else LOCAL_MODELS[settings.local_model].alias
    if settings.local_task_model is not None:
        _check_local_task_model(settings, planning_model)
        return None
    if settings.task_llm_block is None:
        if endpoint is None:
            if settings.task_model not in (None, LOCAL_MODELS[settings.local_model].alias):
                raise ConfigError(
                    f"task model {settings.task_model!r} needs an endpoint, and none is "
                    "configured: set OPENAI_API_KEY (and OPENAI_BASE_URL), or "
                    "GOALFLOW_TASK_LLM_BLOCK, or unset GOALFLOW_TASK_MODEL / drop "
                    "--task-model to let the offline model do every task"
                )
            return None
        task_model = endpoint.task_model
        return endpoint.asking(task_model) if task_model not in (None, endpoint.model) else None
    block = await blocks.load_block(
        blocks.LLMProvider, settings.task_llm_block, "GOALFLOW_TASK_LLM_BLOCK"
    )
    config = block.config().asking(settings.task_model or block.model)
    if config.model == planning_model:
        raise ConfigError(
            f"the task model and the planning model are both {planning_model!r}: the two "
            "tiers need two model names (name another model in task_model, or drop "
            "task_llm_block to let one model do everything)"
        )
    return config


def _check_local_task_model(settings: Settings, planning_model: str) -> None:
    """An offline task model is the task model: nothing else may name one."""
    alias = LOCAL_MODELS[settings.local_task_model or ""].alias
    if settings.task_llm_block is not None or settings.task_model not in (None, alias):
        raise ConfigError(
            f"GOALFLOW_LOCAL_TASK_MODEL ({settings.local_task_model}) and "
            f"{'task_llm_block' if settings.task_llm_block else 'task_model'} both name the "
            "task model: keep one"
        )
    if alias == planning_model:
        raise ConfigError(
            f"the task model and the planning model are both {alias!r}: set "
            "GOALFLOW_LOCAL_TASK_MODEL to another offline model than GOALFLOW_LOCAL_MODEL, "
            "or unset it to let one model do everything"
        )


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
