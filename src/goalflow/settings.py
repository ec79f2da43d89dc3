"""goalflow's settings, from the environment (``GOALFLOW_*``, ``OPENAI_*``).

Read when a command or flow starts, never at import time. Command-line options and
flow parameters override them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from goalflow.llm import StructuredMode
from goalflow.plan import DEFAULT_MAX_TASKS

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Defaults for every goal; each has an environment variable."""

    model_config = SettingsConfigDict(env_prefix="GOALFLOW_", extra="ignore")

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
    model: str | None = Field(
        default=None,
        description="Model name; default gpt-4o-mini on an endpoint, the offline model otherwise.",
    )
    llm_block: str | None = Field(
        default=None,
        description="Name of a saved LLMProvider block to use instead of the environment.",
    )
    local_model: Literal["1.5b", "0.5b"] = Field(
        default="1.5b", description="Which offline model to run when no endpoint is set."
    )
    structured_mode: StructuredMode = Field(
        default="auto",
        description="How to ask for JSON: json_schema, json_object with a schema, or auto "
        "(json_schema, falling back when the server rejects it).",
    )
    max_retries: int = Field(
        default=4, ge=0, description="Retries of a model call on rate limits, 5xx and timeouts."
    )
    concurrency: int = Field(default=4, ge=1, description="Tasks running at once.")
    max_depth: int = Field(
        default=2, ge=0, description="How many times a composite task may be broken down."
    )
    max_tasks: int = Field(
        default=DEFAULT_MAX_TASKS, ge=1, description="Most tasks in one level of a plan."
    )
    plan_attempts: int = Field(
        default=3, ge=1, description="Plans asked for before planning gives up."
    )
    task_attempts: int = Field(
        default=2, ge=1, description="Tries a task gets to pass its acceptance check."
    )
    sandbox: Literal["auto", "off"] = Field(
        default="auto",
        description="Code tasks: 'auto' runs them when the Docker sandbox passes its check "
        "(engine reachable, image present), 'off' never plans or runs them.",
    )
    sandbox_block: str | None = Field(
        default=None,
        description="Name of a saved DockerSandbox block; unset: the engine at DOCKER_HOST "
        "(or the local socket) with the default image and limits.",
    )
    code_attempts: int = Field(
        default=3,
        ge=1,
        description="Programs a code task may write; each failure is shown to the model.",
    )
