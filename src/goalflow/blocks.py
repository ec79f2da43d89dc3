"""Prefect Blocks: configuration saved on the Prefect server, editable in the UI."""

from __future__ import annotations

from typing import TypeVar, cast

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from goalflow.budget import DEFAULT_WARN_AT, Price
from goalflow.errors import ConfigError
from goalflow.llm import LLMConfig, StructuredMode
from goalflow.sandbox_run import DEFAULT_IMAGE, SandboxConfig
from goalflow.settings import Settings

__all__ = [
    "BLOCK_TYPES",
    "BudgetPolicy",
    "DockerSandbox",
    "LLMProvider",
    "ReflectionPolicy",
    "load_block",
    "load_budget",
    "load_reflection",
]

B = TypeVar("B", bound=Block)

_SIZE = r"^[1-9][0-9]*[bkmg]?$"


class LLMProvider(Block):
    """An OpenAI-compatible model endpoint: where it is, which model, what it costs."""

    _block_type_name = "goalflow LLM provider"
    _block_type_slug = "goalflow-llm-provider"
    _description = "An OpenAI-compatible endpoint, model and prices for goalflow."

    base_url: str | None = Field(
        default=None, description="Base URL of the endpoint; empty means OpenAI's."
    )
    api_key: SecretStr | None = Field(default=None, description="API key of the endpoint.")
    model: str = Field(default="gpt-4o-mini", description="Model to ask.")
    prices: dict[str, Price] = Field(
        default_factory=dict,
        description="USD per million input/output tokens, by model; overrides goalflow's "
        "table and prices models it does not know.",
    )
    structured_mode: StructuredMode = Field(
        default="auto", description="json_schema, json_object with a schema, or auto."
    )
    timeout: float = Field(default=120.0, gt=0, description="Seconds to wait for an answer.")
    max_retries: int = Field(
        default=4, ge=0, description="Retries on rate limits, server errors and timeouts."
    )
    requests_per_minute: int | None = Field(
        default=None,
        ge=1,
        description="The key's request limit per minute; calls are paced under it. Empty: "
        "no limit.",
    )
    tokens_per_minute: int | None = Field(
        default=None, ge=1, description="The key's token limit per minute; empty: no limit."
    )
    expected_latency: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        allow_inf_nan=False,
        description="Typical seconds one answer takes; with the request limit it sizes how "
        "many tasks run at once.",
    )
    shared_limit: str | None = Field(
        default=None,
        description="Name of a Prefect global concurrency limit shared by every process "
        "using this key; `goalflow setup` creates it from requests_per_minute.",
    )

    def to_config(self, model: str | None = None) -> LLMConfig:
        return LLMConfig(
            model=model or self.model,
            base_url=self.base_url,
            api_key=self.api_key,
            prices=self.prices,
            structured_mode=self.structured_mode,
            timeout=self.timeout,
            max_retries=self.max_retries,
            requests_per_minute=self.requests_per_minute,
            tokens_per_minute=self.tokens_per_minute,
            expected_latency=self.expected_latency,
            shared_limit=self.shared_limit,
        )


class DockerSandbox(Block):
    """Where and within which limits goalflow runs model-written programs (code tasks).

    Closed by default: no network, a read-only root, a non-root user with no
    capabilities, and limits on memory, CPU, processes, time and output.
    """

    _block_type_name = "goalflow Docker sandbox"
    _block_type_slug = "goalflow-docker-sandbox"
    _description = "The Docker engine, image and limits goalflow's code tasks run under."

    docker_host: str | None = Field(
        default=None,
        description="Docker engine URL (unix://, tcp://, ssh://); empty means DOCKER_HOST "
        "or the local socket.",
    )
    image: str = Field(
        default=DEFAULT_IMAGE,
        description="Image with python3 to run programs in; the default is built by "
        "`goalflow sandbox build`, any other (e.g. python:3.12-slim) must be on the engine.",
    )
    memory: str = Field(
        default="256m",
        pattern=_SIZE,
        description="Memory limit, e.g. 256m; swap is limited to the same, so none extra.",
    )
    cpus: float = Field(default=1.0, gt=0, description="CPUs a program may use, e.g. 0.5.")
    pids_limit: int = Field(
        default=64, ge=8, description="Most processes and threads at once (stops fork bombs)."
    )
    timeout: float = Field(
        default=60.0, gt=0, description="Seconds a program may run before it is killed."
    )
    output_cap: int = Field(
        default=64 * 1024,
        ge=1024,
        description="Bytes of stdout and of stderr kept; the rest is counted and dropped.",
    )
    work_size: str = Field(
        default="64m",
        pattern=_SIZE,
        description="Size of the writable working directory and of /tmp (in memory).",
    )
    network: bool = Field(
        default=False, description="Give programs a network; off, they have none at all."
    )
    user: str = Field(
        default="65534:65534",
        description="uid:gid programs run as (65534 is 'nobody'); never root.",
    )

    def to_config(self) -> SandboxConfig:
        return SandboxConfig(
            docker_host=self.docker_host,
            image=self.image,
            memory=self.memory,
            cpus=self.cpus,
            pids_limit=self.pids_limit,
            timeout=self.timeout,
            output_cap=self.output_cap,
            work_size=self.work_size,
            network=self.network,
            user=self.user,
        )


class BudgetPolicy(Block):
    """How much money and time one goal may use; flags and flow parameters override it.

    The run enforces both itself; the automations that `goalflow setup` creates stop a
    run on the server side too (see deployments/README.md).
    """

    _block_type_name = "goalflow budget policy"
    _block_type_slug = "goalflow-budget-policy"
    _description = "Money and time budgets of a goalflow goal, and when to warn."

    max_usd: float | None = Field(
        default=None, gt=0, description="Money budget of one goal in USD; empty: no limit."
    )
    max_seconds: float | None = Field(
        default=None, gt=0, description="Wall-clock budget of one goal in seconds; empty: none."
    )
    warn_at: list[float] = Field(
        default_factory=lambda: list(DEFAULT_WARN_AT),
        description="Fractions of the money budget at which a goalflow.budget.warning event "
        "is emitted; goalflow.budget.exceeded follows when the money runs out.",
    )


class ReflectionPolicy(Block):
    """When a goal run reflects on itself, and how far reflection may change its plan.

    A run reflects every ``every_tasks`` finished tasks, every ``every_seconds``, at
    once on a stuck signal, when it cannot go on (a task failed), and when the server
    asks (the ``goalflow-reflect-on-stall`` automation). Each reflection is one model
    call; with a money budget, one that would not fit is skipped.
    """

    _block_type_name = "goalflow reflection policy"
    _block_type_slug = "goalflow-reflection-policy"
    _description = "When goalflow goal runs reflect, and how often they may re-plan."

    enabled: bool = Field(default=True, description="Reflect at all; off: no reflection calls.")
    every_tasks: int | None = Field(
        default=5, ge=1, description="Reflect after this many finished tasks; empty: never."
    )
    every_seconds: float | None = Field(
        default=300.0, gt=0, description="Reflect after this many seconds; empty: never."
    )
    repeats: int = Field(
        default=3,
        ge=2,
        description="N: the same failure or the same model call N times is a stuck signal.",
    )
    stall_seconds: float | None = Field(
        default=300.0,
        gt=0,
        description="No new output for this long, with calls still paid, is a stuck signal.",
    )
    stall_calls: int | None = Field(
        default=20, ge=1, description="No new output after this many calls is a stuck signal."
    )
    max_revisions: int = Field(
        default=3, ge=0, description="Plan revisions one goal may make; 0: verdicts only."
    )
    max_tokens: int = Field(
        default=800, ge=64, description="Longest answer a reflection may give, in tokens."
    )


BLOCK_TYPES: tuple[type[Block], ...] = (LLMProvider, DockerSandbox, BudgetPolicy, ReflectionPolicy)


async def load_block(block_type: type[B], name: str, setting: str) -> B:
    """A saved block, or a ConfigError naming the setting that asked for it."""
    from prefect.exceptions import ObjectNotFound

    try:
        return cast(B, await block_type.aload(name))
    except (ValueError, ObjectNotFound) as e:
        raise ConfigError(
            f"there is no {block_type.__name__} block named {name!r} on the Prefect server: "
            f"save one (see the README) or unset {setting}"
        ) from e


async def load_budget(settings: Settings) -> BudgetPolicy:
    """The goal's budgets: settings and flow parameters over the named BudgetPolicy."""
    policy = BudgetPolicy()
    if settings.budget_block:
        policy = await load_block(BudgetPolicy, settings.budget_block, "GOALFLOW_BUDGET_BLOCK")
    return BudgetPolicy(
        max_usd=settings.max_usd or policy.max_usd,
        max_seconds=settings.max_seconds or policy.max_seconds,
        warn_at=settings.warn_at or policy.warn_at,
    )


async def load_reflection(settings: Settings) -> ReflectionPolicy:
    """The goal's reflection policy: settings and flow parameters over the named block."""
    policy = ReflectionPolicy()
    if settings.reflection_block:
        policy = await load_block(
            ReflectionPolicy, settings.reflection_block, "GOALFLOW_REFLECTION_BLOCK"
        )
    overrides = {
        "enabled": settings.reflection,
        "every_tasks": settings.reflect_every_tasks,
        "every_seconds": settings.reflect_every_seconds,
        "repeats": settings.stuck_repeats,
        "max_revisions": settings.max_revisions,
    }
    return policy.model_copy(update={k: v for k, v in overrides.items() if v is not None})
