"""What model calls cost: US dollars per million tokens, a table of known models'
prices, and the lookup of a model's price. A provider's block (or ``GOALFLOW_PRICES``)
can override or add to the table."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, Field

__all__ = ["DEFAULT_PRICES", "Price", "price_for"]


class Price(BaseModel):
    """US dollars per million tokens."""

    input: float = Field(ge=0, description="USD per million prompt tokens.")
    output: float = Field(ge=0, description="USD per million completion tokens.")


DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4o": Price(input=2.50, output=10.00),
    "gpt-4o-mini": Price(input=0.15, output=0.60),
    "gpt-4.1": Price(input=2.00, output=8.00),
    "gpt-4.1-mini": Price(input=0.40, output=1.60),
    "gpt-4.1-nano": Price(input=0.10, output=0.40),
    "o4-mini": Price(input=1.10, output=4.40),
    "o3": Price(input=2.00, output=8.00),
    # The offline models run on this machine: no bill.
    "qwen2.5-coder-1.5b-instruct": Price(input=0.0, output=0.0),
    "qwen2.5-coder-0.5b-instruct": Price(input=0.0, output=0.0),
}


def price_for(model: str, overrides: Mapping[str, Price] | None = None) -> Price | None:
    """The model's price: an override first, then the table (also for dated names
    such as ``gpt-4o-mini-2024-07-18``); None when unknown."""
    table = {**DEFAULT_PRICES, **(overrides or {})}
    if model in table:
        return table[model]
    matches = [name for name in table if model.startswith(name + "-")]
    return table[max(matches, key=len)] if matches else None
