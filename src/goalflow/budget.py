"""What a goal's model calls cost: a price table and the per-goal ledger.

Pure bookkeeping, no I/O. Prices are US dollars per million tokens; a provider's
block can override or add to the table.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from pydantic import BaseModel, Field

__all__ = ["DEFAULT_PRICES", "LLMCall", "Ledger", "Price", "UsageSummary", "price_for"]


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


@dataclass(frozen=True)
class LLMCall:
    """One answered model call."""

    purpose: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    seconds: float


@dataclass(frozen=True)
class UsageSummary:
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    unpriced_models: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class Ledger:
    """Every model call of one goal, priced. Safe to share between threads."""

    def __init__(self, prices: Mapping[str, Price] | None = None) -> None:
        self._prices = dict(prices or {})
        self._calls: list[LLMCall] = []
        self._unpriced: set[str] = set()
        self._lock = threading.Lock()

    def record(
        self,
        *,
        purpose: str,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        seconds: float,
    ) -> LLMCall:
        price = price_for(model, self._prices)
        if price is None:
            cost = 0.0
        else:
            cost = (prompt_tokens * price.input + completion_tokens * price.output) / 1e6
        call = LLMCall(purpose, model, prompt_tokens, completion_tokens, cost, seconds)
        with self._lock:
            self._calls.append(call)
            if price is None:
                self._unpriced.add(model)
        return call

    @property
    def calls(self) -> list[LLMCall]:
        with self._lock:
            return list(self._calls)

    def summary(self) -> UsageSummary:
        with self._lock:
            return UsageSummary(
                calls=len(self._calls),
                prompt_tokens=sum(c.prompt_tokens for c in self._calls),
                completion_tokens=sum(c.completion_tokens for c in self._calls),
                cost_usd=round(sum(c.cost_usd for c in self._calls), 6),
                unpriced_models=sorted(self._unpriced),
            )
