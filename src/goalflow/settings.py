"""goalflow's options and settings.

:class:`GoalOptions` is the one description of a goal run's options: the CLI builds
it from its flags, ``achieve_goal`` from its parameters (a field is a parameter of the
same name or a field of its ``advanced`` section), and :class:`Settings` (the
environment, ``GOALFLOW_*`` and ``OPENAI_*``) gives each field its default. An option
set explicitly wins over the environment; the environment wins over a saved block
(:func:`goalflow.orchestration.options.resolve_options` is where they meet).

Read when a command or flow starts, never at import time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from goalflow.core.budget import DEFAULT_WARN_AT
from goalflow.core.prices import Price
from goalflow.core.rules import describe_validation_error
from goalflow.core.task import DEFAULT_MAX_TASKS, MAX_DEPTH
from goalflow.errors import ConfigError
from goalflow.llm.config import StructuredMode

__all__ = ["GoalOptions", "Settings", "TaskRunnerKind"]

TaskRunnerKind = Literal["threads", "dask", "ray"]


class GoalOptions(BaseModel):
    """The options of one goal run; ``achieve_goal`` takes each field as a parameter or
    in its ``advanced`` section (:mod:`goalflow.orchestration.parameters`)."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(
        default=None,
        min_length=1,
        description="Model name; unset: the LLMProvider block's, else gpt-4o-mini on an "
        "endpoint, or the offline model when there is none.",
    )
    task_model: str | None = Field(
        default=None,
        min_length=1,
        description="Model for the tasks the plan marks simple; planning, reviews, "
        "reflection, hard and code tasks stay on `model`. Asked at the endpoint of `model`, "
        "or at task_llm_block's. Unset: task_llm_block's model, else one model does everything.",
    )
    llm_block: str | None = Field(
        default=None,
        description="Name of a saved LLMProvider block to use instead of the environment.",
    )
    task_llm_block: str | None = Field(
        default=None,
        description="Name of a saved LLMProvider block for the task model: its own endpoint, "
        "key, rate limits, prices and shared limit (its model, unless task_model names "
        "another). Unset: the task model is asked at the endpoint of `model`.",
    )
    concurrency: int | None = Field(
        default=None,
        ge=1,
        description="Tasks running at once; unset: what requests_per_minute can keep busy, "
        "ceil(R * max(L, 60 s) / 60 s) for R requests/min and expected_latency L (4 with no "
        "limit). See goalflow.core.rates.task_concurrency.",
    )
    max_depth: int = Field(
        default=2,
        ge=0,
        le=MAX_DEPTH,
        description=f"How many times a composite task may be broken down (at most {MAX_DEPTH}).",
    )
    sandbox_block: str | None = Field(
        default=None,
        description="Name of a saved DockerSandbox block; unset: the engine at DOCKER_HOST "
        "(or the local socket) with the default image and limits.",
    )
    budget_block: str | None = Field(
        default=None,
        description="Name of a saved BudgetPolicy block; max_usd/max_seconds override it.",
    )
    max_usd: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="Money budget of one goal in USD; unset: the BudgetPolicy block's, else "
        "no limit.",
    )
    max_seconds: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="Wall-clock budget of one goal in seconds; unset: the BudgetPolicy "
        "block's, else none.",
    )
    approve: bool = Field(
        default=False,
        description="Pause each goal after planning until a person approves, edits or rejects "
        "the plan (in the Prefect UI or with `goalflow approve`); off by default.",
    )
    approval_timeout: float = Field(
        default=3600,
        gt=0,
        allow_inf_nan=False,
        description="Seconds a plan waits for approval; with no decision by then it is rejected.",
    )
    reflection: bool | None = Field(
        default=None,
        description="Reflect on the run (stuck detection, verdicts, plan revisions); unset: "
        "the ReflectionPolicy block's setting (on by default).",
    )
    reflection_block: str | None = Field(
        default=None,
        description="Name of a saved ReflectionPolicy block; the reflect_* settings override it.",
    )
    reflect_every_tasks: int | None = Field(
        default=None, ge=1, description="Reflect after this many finished tasks (default 5)."
    )
    reflect_every_seconds: float | None = Field(
        default=None, gt=0, description="Reflect after this many seconds (default 300)."
    )
    stuck_repeats: int | None = Field(
        default=None,
        ge=2,
        description="The same failure or model call this many times is a stuck signal (default 3).",
    )
    max_revisions: int | None = Field(
        default=None, ge=0, description="Plan revisions one goal may make (default 3)."
    )
    task_runner: TaskRunnerKind = Field(
        default="threads",
        description="Where leaf tasks run: 'threads' in the flow's own process (the default), "
        "'dask' on a Dask cluster or 'ray' on a Ray cluster (pip install 'goalflow[dask]' / "
        "'goalflow[ray]'). See goalflow.orchestration.task_runners.",
    )
    runner_address: str | None = Field(
        default=None,
        description="Address of a running Dask scheduler (tcp://host:8786) or Ray cluster "
        "(ray://host:10001, or host:6379); unset: a local cluster started for the goal.",
    )
    fresh: bool = Field(
        default=False,
        description="Reuse no cached task result in this run: every task runs (and pays) "
        "again, and its result replaces the cached one.",
    )
    task_cache: bool = Field(
        default=True,
        description="Cache each finished leaf task's outputs (keyed on the model, the goal, the "
        "task's instructions and outputs and its inputs' values) in Prefect's result storage, "
        "so that re-running the same plan reuses them instead of paying again.",
    )

    @classmethod
    def given(cls, values: dict[str, Any]) -> GoalOptions:
        """The options set in ``values`` (None: unset), checked; a ConfigError that says
        what to change when one cannot work."""
        try:
            return cls(**{k: v for k, v in values.items() if v is not None})
        except ValidationError as e:
            raise ConfigError(
                "the goal's settings cannot work:\n- " + "\n- ".join(describe_validation_error(e))
            ) from e


class Settings(BaseSettings, GoalOptions):
    """Defaults for every goal, and what lies outside one; each has an environment
    variable (``GOALFLOW_`` + the name in capitals, or ``OPENAI_*``)."""

    # An empty variable is an unset one, as OPENAI_API_KEY= is: its default applies.
    model_config = SettingsConfigDict(env_prefix="GOALFLOW_", extra="ignore", env_ignore_empty=True)

    openai_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("OPENAI_API_KEY"),
        description="API key of the endpoint. With neither a key nor a base URL, goalflow "
        "runs the offline model.",
    )
    openai_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("OPENAI_BASE_URL"),
        description="Base URL of any OpenAI-compatible endpoint (default: OpenAI's).",
    )
    local_model: Literal["1.5b", "0.5b"] = Field(
        default="1.5b", description="Which offline model to run when no endpoint is set."
    )
    local_task_model: Literal["1.5b", "0.5b"] | None = Field(
        default=None,
        description="An offline model for the tasks the plan marks simple (e.g. 0.5b beside "
        "the 1.5b), served by its own llama.cpp server; unset: no offline task model.",
    )
    structured_mode: StructuredMode = Field(
        default="auto",
        description="How to ask for JSON: json_schema, json_object with a schema, or auto "
        "(json_schema, falling back when the server rejects it).",
    )
    max_retries: int = Field(
        default=4, ge=0, description="Retries of a model call on 5xx and timeouts."
    )
    rate_limit_patience: float = Field(
        default=600.0,
        gt=0,
        allow_inf_nan=False,
        description="Seconds one model call may keep waiting on 429s before its task fails "
        "(waiting for the rate limit uses up no retry).",
    )
    requests_per_minute: int | None = Field(
        default=None,
        ge=1,
        description="The endpoint's request limit per minute; calls are paced under it so "
        "that no 429 is earned. Unset: no limit (an LLMProvider block brings its own).",
    )
    tokens_per_minute: int | None = Field(
        default=None,
        ge=1,
        description="The endpoint's token limit per minute (prompt + max_tokens, as metered); "
        "unset: no limit.",
    )
    burst_seconds: float = Field(
        default=1.0,
        gt=0,
        le=60,
        allow_inf_nan=False,
        description="Seconds' worth of the per-minute limits that may leave at once (1: the "
        "limit enforced per second, as most providers do; 60: a whole minute at once).",
    )
    expected_latency: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        allow_inf_nan=False,
        description="Typical seconds one model answer takes; sizes the concurrency.",
    )
    subflow_starts: int | None = Field(
        default=None,
        ge=1,
        description="Subflows (composite tasks) being created at once; unset: 3 on SQLite, "
        "64 on PostgreSQL (read from PREFECT_API_DATABASE_CONNECTION_URL). More than the "
        "database takes fails with HTTP 503 'database is locked'.",
    )
    max_tasks: int = Field(
        default=DEFAULT_MAX_TASKS, ge=1, description="Most tasks in one level of a plan."
    )
    plan_attempts: int = Field(
        default=3, ge=1, description="Plans asked for before planning gives up."
    )
    output_artifacts: int = Field(
        default=100,
        ge=0,
        description="Plans with up to this many leaf tasks give each task's output its own "
        "Markdown artifact; larger plans log each output on its task run instead (one "
        "artifact per task costs the server a write each: see docs/figures.md, Scale).",
    )
    task_attempts: int = Field(
        default=2, ge=1, description="Tries a task gets to pass its acceptance check."
    )
    sandbox: Literal["auto", "off"] = Field(
        default="auto",
        description="Code tasks: 'auto' runs them when the Docker sandbox passes its check "
        "(engine reachable, image present), 'off' never plans or runs them.",
    )
    code_attempts: int = Field(
        default=3,
        ge=1,
        description="Programs a code task may write; each failure is shown to the model.",
    )
    prices: Annotated[dict[str, Price], NoDecode] = Field(
        default_factory=dict,
        description='USD per million tokens by model, as JSON: {"my-model": {"input": 0.15, '
        '"output": 0.6}}, or the path of a JSON or YAML file holding that table; overrides '
        "the built-in table (a block brings its own prices).",
    )
    warn_at: list[float] | None = Field(
        default=None,
        description="Fractions of the money budget at which a goalflow.budget.warning event "
        f"is emitted; default {list(DEFAULT_WARN_AT)} (goalflow.budget.exceeded follows).",
    )
    time_guard: bool = Field(
        default=True,
        description="Stop a goal in its own run when its time budget ends. Off leaves it to "
        "the server's automation (`goalflow setup`), which is how that backstop is tested.",
    )
    runner_workers: int = Field(
        default=2,
        ge=1,
        description="Worker processes of a local Dask cluster, or CPUs of a local Ray "
        "instance, started for one goal when runner_address is unset.",
    )
    broker_host: str = Field(
        default="127.0.0.1",
        description="Interface the goal's ledger broker listens on, for leaf tasks on Dask or "
        "Ray workers: loopback for a local cluster, an address the workers can reach for a "
        "remote one (it hands them the API key: trusted networks only).",
    )
    task_cache_expiry: float = Field(
        default=43200,
        gt=0,
        allow_inf_nan=False,
        description="Seconds a cached leaf-task result stays reusable (12 hours): long enough "
        "to resume a crashed run, short enough that a goal scheduled again gets fresh answers.",
    )
    prompt_counts: Path | None = Field(
        default=Path("~/.cache/goalflow/prompt-counts.json"),
        validate_default=True,
        description="File that keeps what each endpoint counted for goalflow's prompts (digests "
        "and counts, no text), which bounds the cost of a goal's calls, its plan first, tighter "
        "than a token per byte under a money budget; 'off': keep none.",
    )
    server_port: int = Field(
        default=4200,
        ge=1,
        le=65535,
        description="Port of the local Prefect server the CLI starts when PREFECT_API_URL "
        "is unset.",
    )

    @field_validator("prompt_counts", mode="before")
    @classmethod
    def _counts_file(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() == "off":
            return None
        return Path(value).expanduser() if isinstance(value, (str, Path)) else value

    @field_validator("prices", mode="before")
    @classmethod
    def _price_table(cls, value: object) -> object:
        """A price table given as JSON text, or as the path of a JSON or YAML file."""
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("{"):
            try:
                return json.loads(text)
            except json.JSONDecodeError as e:
                raise ValueError(f"not a JSON object of prices: {e}") from None
        try:
            table = yaml.safe_load(Path(text).expanduser().read_text(encoding="utf-8"))
        except OSError as e:
            raise ValueError(
                f"neither a JSON object nor a readable price file: {e.strerror or e}"
            ) from None
        except yaml.YAMLError as e:
            raise ValueError(f"the price file {text} is not JSON or YAML: {e}") from None
        if not isinstance(table, dict):
            raise ValueError(f"the price file {text} holds no table of models")
        return table

    @classmethod
    def load(cls) -> Settings:
        """The settings the environment gives; a ConfigError naming each variable that
        cannot work (its value too, unless it is a secret)."""
        try:
            return cls()
        except ValidationError as e:
            problems = []
            for error in e.errors():
                name = str(error["loc"][0]) if error["loc"] else ""
                variable = _variable(name)
                value = os.environ.get(variable)
                shown = "" if value is None or "key" in name else f"={value!r}"
                inside = ".".join(str(part) for part in error["loc"][1:])
                said = error["msg"].removeprefix("Value error, ")
                problems.append(f"{variable}{shown}: {inside + ': ' if inside else ''}{said}")
            raise ConfigError(
                "the environment's goalflow settings cannot work:\n- "
                + "\n- ".join(problems)
                + "\nFix or unset these variables."
            ) from None

    def with_options(self, options: GoalOptions) -> Settings:
        """These settings with the options that ``options`` sets explicitly."""
        return self.model_copy(update=options.model_dump(exclude_unset=True))


def _variable(field: str) -> str:
    """The environment variable of a ``Settings`` field."""
    alias = (
        Settings.model_fields[field].validation_alias if field in Settings.model_fields else None
    )
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"GOALFLOW_{field.upper()}"
