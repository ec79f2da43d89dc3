"""Prefect Blocks: configuration saved on the Prefect server, editable in the UI."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from goalflow.budget import Price
from goalflow.llm import LLMConfig, StructuredMode

__all__ = ["LLMProvider"]


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

    def to_config(self, model: str | None = None) -> LLMConfig:
        return LLMConfig(
            model=model or self.model,
            base_url=self.base_url,
            api_key=self.api_key,
            prices=self.prices,
            structured_mode=self.structured_mode,
            timeout=self.timeout,
            max_retries=self.max_retries,
        )
