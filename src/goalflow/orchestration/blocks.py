"""Prefect Blocks: configuration saved on the Prefect server, editable in the UI.

Each block is its config model (``LLMConfig``, ``SandboxConfig``, ``BudgetPolicy``,
``ReflectionPolicy``, from the layers below) plus Prefect's storage: the fields are
declared once, on the model, and :meth:`config` hands back the plain model.
"""

from __future__ import annotations

from typing import Any, TypeVar, cast

from prefect.blocks.core import Block
from pydantic import BaseModel

from goalflow.core import budget, revision
from goalflow.errors import ConfigError
from goalflow.llm.config import LLMConfig
from goalflow.sandbox.config import SandboxConfig

__all__ = [
    "BLOCK_TYPES",
    "BudgetPolicy",
    "DockerSandbox",
    "LLMProvider",
    "ReflectionPolicy",
    "load_block",
]

B = TypeVar("B", bound=Block)
C = TypeVar("C", bound=BaseModel)


def _plain(block: Block, model: type[C]) -> C:
    values: dict[str, Any] = {name: getattr(block, name) for name in model.model_fields}
    return model(**values)


class LLMProvider(LLMConfig, Block):
    """An OpenAI-compatible model endpoint: where it is, which model, what it costs."""

    _block_type_name = "goalflow LLM provider"
    _block_type_slug = "goalflow-llm-provider"
    _description = "An OpenAI-compatible endpoint, model and prices for goalflow."

    def config(self, model: str | None = None, *, task_model: str | None = None) -> LLMConfig:
        """The endpoint as a plain config, asking ``model`` (and ``task_model``, for
        simple tasks) instead where given."""
        asked = {"model": model, "task_model": task_model}
        return _plain(self, LLMConfig).model_copy(
            update={name: value for name, value in asked.items() if value}
        )


class DockerSandbox(SandboxConfig, Block):
    """Where and within which limits goalflow runs model-written programs (code tasks).

    Closed by default: no network, a read-only root, a non-root user with no
    capabilities, and limits on memory, CPU, processes, time and output.
    """

    _block_type_name = "goalflow Docker sandbox"
    _block_type_slug = "goalflow-docker-sandbox"
    _description = "The Docker engine, image and limits goalflow's code tasks run under."

    def config(self) -> SandboxConfig:
        return _plain(self, SandboxConfig)


class BudgetPolicy(budget.BudgetPolicy, Block):
    """How much money and time one goal may use; flags and flow parameters override it.

    The run enforces both itself; the automations that `goalflow setup` creates stop a
    run on the server side too (see deployments/README.md).
    """

    _block_type_name = "goalflow budget policy"
    _block_type_slug = "goalflow-budget-policy"
    _description = "Money and time budgets of a goalflow goal, and when to warn."

    def config(self) -> budget.BudgetPolicy:
        return _plain(self, budget.BudgetPolicy)


class ReflectionPolicy(revision.ReflectionPolicy, Block):
    """When a goal run reflects on itself, and how far reflection may change its plan.

    A run reflects every ``every_tasks`` finished tasks, every ``every_seconds``, at
    once on a stuck signal, when it cannot go on (a task failed), and when the server
    asks (the ``goalflow-reflect-on-stall`` automation). Each reflection is one model
    call; with a money budget, one that would not fit is skipped.
    """

    _block_type_name = "goalflow reflection policy"
    _block_type_slug = "goalflow-reflection-policy"
    _description = "When goalflow goal runs reflect, and how often they may re-plan."

    def config(self) -> revision.ReflectionPolicy:
        return _plain(self, revision.ReflectionPolicy)


BLOCK_TYPES: tuple[type[Block], ...] = (LLMProvider, DockerSandbox, BudgetPolicy, ReflectionPolicy)


async def load_block(block_type: type[B], name: str, setting: str) -> B:
    """A saved block, or a ConfigError naming the setting that asked for it."""
    from prefect.exceptions import ObjectNotFound

    try:
        return cast(B, await block_type.aload(name))
    except (ValueError, ObjectNotFound) as e:
        raise ConfigError(
            f"there is no {block_type.__name__} block named {name!r} on the Prefect server: "
            f"save one (see docs/models.md) or unset {setting}"
        ) from e
