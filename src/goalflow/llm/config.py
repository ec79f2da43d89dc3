"""Where a model is and how to talk to it: one config model, wrapped by the
``LLMProvider`` block (:mod:`goalflow.orchestration.blocks`) and sent whole to workers
by the broker. No ``openai`` import here."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from goalflow.core.prices import Price

__all__ = ["DEFAULT_ENDPOINT_MODEL", "LLMConfig", "StructuredMode"]

DEFAULT_ENDPOINT_MODEL = "gpt-4o-mini"
StructuredMode = Literal["auto", "json_schema", "json_object"]
_OPENAI = "https://api.openai.com/v1"


class LLMConfig(BaseModel):
    """An OpenAI-compatible endpoint, the model to ask there, its prices and limits."""

    model_config = ConfigDict(frozen=True)

    base_url: str | None = Field(
        default=None, description="Base URL of the endpoint; empty means OpenAI's."
    )
    api_key: SecretStr | None = Field(default=None, description="API key of the endpoint.")
    model: str = Field(default=DEFAULT_ENDPOINT_MODEL, description="Model to ask.")
    task_model: str | None = Field(
        default=None,
        description="A second model, for the tasks the plan marks simple; the model still "
        "plans, reviews, reflects and does hard and code tasks. Empty: one model does all.",
    )
    prices: dict[str, Price] = Field(
        default_factory=dict,
        description="USD per million input/output tokens, by model; overrides goalflow's "
        "table and prices models it does not know.",
    )
    structured_mode: StructuredMode = Field(
        default="auto", description="json_schema, json_object with a schema, or auto."
    )
    max_tokens: int = Field(default=1024, ge=1, description="Longest answer, in tokens.")
    temperature: float = Field(default=0.2, ge=0, le=2, description="Sampling temperature.")
    timeout: float = Field(default=120.0, gt=0, description="Seconds to wait for an answer.")
    max_retries: int = Field(default=4, ge=0, description="Retries on server errors and timeouts.")
    backoff: float = Field(
        default=1.0, gt=0, description="Seconds before the first retry; doubles each time."
    )
    rate_limit_patience: float = Field(
        default=600.0,
        gt=0,
        allow_inf_nan=False,
        description="Seconds one call may keep waiting on 429s before its task fails; "
        "waiting for the rate limit uses up no retry.",
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
    burst_seconds: float = Field(
        default=1.0,
        gt=0,
        le=60,
        allow_inf_nan=False,
        description="How many seconds' worth of the per-minute limits may leave at once: 1 "
        "for providers that enforce them per second (most), up to 60 for one that allows "
        "a whole minute at once.",
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

    @property
    def endpoint(self) -> str:
        """The endpoint's URL as messages, logs and reports show it: without a user,
        password, query or fragment, any of which may hold a secret."""
        parts = urlsplit(self.base_url or _OPENAI)
        return urlunsplit(
            parts._replace(netloc=parts.netloc.rpartition("@")[2], query="", fragment="")
        )

    def asking(self, model: str) -> LLMConfig:
        """This endpoint, asked for ``model`` alone (one tier)."""
        return self.model_copy(update={"model": model, "task_model": None})

    def same_endpoint(self, other: LLMConfig) -> bool:
        """Whether ``other`` is this endpoint with this key: one rate limit for both."""
        return (self.base_url or _OPENAI, self.api_key) == (
            other.base_url or _OPENAI,
            other.api_key,
        )
