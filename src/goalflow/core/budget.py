"""What a goal's model calls cost: the per-goal ledger, by the prices of
:mod:`goalflow.core.prices`.

Pure bookkeeping, no I/O.

With a money limit, every call first *reserves* its worst case (its prompt, counted
generously, plus ``max_tokens`` of answer) against what is left; the answer's real
usage then *settles* the reservation. A call that does not fit waits while calls in
flight may still free enough, and is refused only when nothing can. Spend is therefore
never above the limit, however many calls are in flight. Crossing a warning fraction,
and the money running out (a call is refused, and what is left cannot cover even the
smallest call made so far), are each reported once to ``on_alert``.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from goalflow.core.prices import Price, price_for
from goalflow.errors import BudgetExceededError, ConfigError

__all__ = [
    "DEFAULT_WARN_AT",
    "ESTIMATED",
    "BudgetAlert",
    "BudgetPolicy",
    "LLMCall",
    "Ledger",
    "MoneyBudget",
    "Reservation",
    "UsageSummary",
    "spending_for",
]

DEFAULT_WARN_AT = (0.5, 0.8)
_RESERVE_POLL_SECONDS = 0.02  # how often a waiting reservation looks again
_CRUMB_USD = 1e-12  # below a millionth of a cent, a holding is float rounding
_ANY_ANSWER = 1 << 30  # answer tokens that stand for "as many as it likes"


class BudgetPolicy(BaseModel):
    """How much money and time one goal may use, and when to warn.

    The run enforces both itself; the automations that `goalflow setup` creates stop a
    run on the server side too (see deployments/README.md).
    """

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


ESTIMATED = "; counted at its worst case)"
"""How the purpose of an attempt ends whose bill is not known: it went out and got no
usable answer ("task t1 (no answer; counted at its worst case)"), or its answer said
no usage. Its cost is its reservation, an estimate."""
TASK_WORK = ("task ", "program for ")
"""How the purposes of a task's own calls begin (its answers, its programs)."""
_SPENDER: ContextVar[str] = ContextVar("goalflow_spender", default="planning")
_OPTIONAL: ContextVar[bool] = ContextVar("goalflow_optional_spending", default=False)


@contextmanager
def spending_for(task_path: str, *, optional: bool = False) -> Iterator[None]:
    """Book the model calls made inside this block to ``task_path`` (default: planning).
    ``optional``: the goal goes on without them (a reflection), so one that does not fit
    is refused to its caller alone, not reported as the goal's money running out."""
    tokens = _SPENDER.set(task_path), _OPTIONAL.set(optional)
    try:
        yield
    finally:
        _SPENDER.reset(tokens[0])
        _OPTIONAL.reset(tokens[1])


@dataclass(frozen=True)
class LLMCall:
    """One answered model call; ``task`` is the task path it was made for."""

    purpose: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    seconds: float
    task: str = "planning"
    prompt_hash: str = ""


class UsageSummary(BaseModel):
    """What a goal's model calls used and cost, in all, by task and by model."""

    model_config = ConfigDict(frozen=True)

    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    limit_usd: float | None = None
    estimated_usd: float = Field(
        default=0.0,
        description="The part of cost_usd counted at its worst case: attempts that went out "
        "and got no usable answer (a timeout, a body that is no chat completion), which the "
        "provider may have billed, and answers that said no usage.",
    )
    estimated_calls: int = Field(default=0, description="Those attempts, among calls.")
    unpriced_models: list[str] = Field(default_factory=list)
    cost_by_task: dict[str, float] = Field(default_factory=dict)
    cost_by_model: dict[str, float] = Field(default_factory=dict)
    calls_by_model: dict[str, int] = Field(default_factory=dict)
    tokens_by_model: dict[str, int] = Field(
        default_factory=dict, description="Prompt and answer tokens, by model."
    )
    models_by_task: dict[str, list[str]] = Field(
        default_factory=dict,
        description="The models that answered each task's own calls (its answers or "
        "programs, not their reviews), in order: two when it was escalated.",
    )


@dataclass(frozen=True)
class BudgetAlert:
    """Spend crossed ``fraction`` of the limit (``warning``), or a call did not fit."""

    kind: Literal["warning", "exceeded"]
    fraction: float
    spent_usd: float
    limit_usd: float
    call_usd: float | None = None  # what the refused call may cost, when one was refused


class Reservation(NamedTuple):
    """What one call holds in the ledger, and the answer tokens it may ask for (fewer
    than it wanted when only that fits the budget)."""

    usd: float
    max_tokens: int


@dataclass(frozen=True)
class MoneyBudget:
    """A goal's money limit in USD, when to warn, and who hears about it."""

    limit_usd: float
    warn_at: Sequence[float] = DEFAULT_WARN_AT
    on_alert: Callable[[BudgetAlert], None] | None = None

    def __post_init__(self) -> None:
        if not self.limit_usd > 0:
            raise ConfigError(
                f"the money budget must be more than $0, got ${self.limit_usd}: give a "
                "positive --max-usd (or BudgetPolicy max_usd), or none for no limit"
            )
        if any(not 0 < f < 1 for f in self.warn_at):
            raise ConfigError(
                f"budget warnings are fractions between 0 and 1, got {list(self.warn_at)}"
            )


class Ledger:
    """Every model call of one goal, priced, with an optional money limit.

    Safe to share between threads and tasks: reserving, settling and releasing are
    atomic, which is what keeps concurrent calls from overspending together.
    """

    def __init__(
        self, prices: Mapping[str, Price] | None = None, budget: MoneyBudget | None = None
    ) -> None:
        self._prices = dict(prices or {})
        self.budget = budget
        self._calls: list[LLMCall] = []
        self._unpriced: set[str] = set()
        self._reserved = 0.0
        self._spent = 0.0
        self._alerted: set[float] = set()
        self._exceeded = False
        self._smallest = math.inf  # the least a call made so far could have reserved
        self.refused = False  # whether a call the goal needed was refused
        self._listeners: list[Callable[[LLMCall], None]] = []
        self._lock = threading.Lock()

    def subscribe(self, listener: Callable[[LLMCall], None]) -> None:
        """Tell ``listener`` about every call settled from now on (stuck detection)."""
        self._listeners.append(listener)

    def fits(self, *, model: str, prompt_tokens: int, max_tokens: int) -> bool:
        """Whether a call's worst case fits what is left, without reserving or alerting."""
        if self.budget is None:
            return True
        worst = self._cost(model, prompt_tokens, max_tokens)
        with self._lock:
            return self._spent + self._reserved + worst <= self.budget.limit_usd

    def take_price(self, model: str, prices: Mapping[str, Price]) -> None:
        """Price ``model`` by ``prices`` (another endpoint's table) from now on; the
        goal's one ledger then holds the money of both endpoints."""
        price = price_for(model, prices)
        if price is not None:
            with self._lock:
                self._prices[model] = price

    def require_price(self, model: str) -> None:
        """Refuse a money limit that cannot be enforced because ``model`` has no price."""
        if self.budget is not None and price_for(model, self._prices) is None:
            example = json.dumps({model: {"input": 0.15, "output": 0.6}})
            raise ConfigError(
                f"no price is known for model {model!r}, so a money budget cannot be "
                f"enforced: give its price in USD per million tokens (GOALFLOW_PRICES='{example}'"
                ", or the LLMProvider block's prices), or run without a money budget"
            )

    async def reserve(
        self,
        *,
        model: str,
        prompt_tokens: int,
        max_tokens: int,
        min_tokens: int | None = None,
        final: bool = True,
    ) -> Reservation | None:
        """Set aside the worst case of one call, waiting while calls in flight hold what
        it needs; raise when it cannot fit even once they have settled. The money runs
        out (the ``exceeded`` alert) only when what is left cannot cover a call like the
        smallest the goal has made: a larger call is refused to its caller alone.

        A call whose worst case does not fit beside the reservations in flight waits
        for them: they settle at their real cost, mostly far below their worst case,
        and free the rest. When what is spent already leaves no room for ``max_tokens``
        of answer, the call may still ask for fewer, down to ``min_tokens``: the
        reservation says how many (most answers are far shorter than their cap). Only
        when not even that fits does the goal run out of money. Returns the amount
        reserved (to hand to :meth:`settle` or :meth:`release`) and the answer tokens.
        ``final=False``: return None rather than refuse, for a caller that may size the
        call smaller with what it learned while it waited (then tries again).
        """
        floor = min(max_tokens, min_tokens or max_tokens)
        if self.budget is None:
            return Reservation(self._cost(model, prompt_tokens, max_tokens), max_tokens)
        limit = self.budget.limit_usd
        with self._lock:
            settled = len(self._calls)
        while True:
            with self._lock:
                now = self._answer_room(model, prompt_tokens, limit - self._spent - self._reserved)
                ever = self._answer_room(model, prompt_tokens, limit - self._spent)
                # All it wants, fits now; or only a smaller answer will ever fit, and does now.
                granted = min(now, max_tokens)
                if granted == max_tokens or (ever < max_tokens and granted >= floor):
                    worst = self._cost(model, prompt_tokens, granted)
                    self._reserved += worst
                    self._smallest = min(self._smallest, self._cost(model, prompt_tokens, floor))
                    return Reservation(worst, granted)
                in_flight = self._reserved > 0
                may_fit = in_flight and ever >= floor
                # Or a call in flight settles, and teaches a caller that sizes again.
                may_learn = not final and in_flight and len(self._calls) == settled
                if not (may_fit or may_learn):
                    if not final:
                        return None
                    spent, reserved = self._spent, self._reserved
                    # Refused to its caller alone while a call like the smallest made so
                    # far still fits, or when the goal goes on without it (optional).
                    self.refused = self.refused or not _OPTIONAL.get()
                    alone = _OPTIONAL.get() or limit - spent >= self._smallest
                    first = not self._exceeded and not alone
                    self._exceeded = self._exceeded or first
                    break
            await asyncio.sleep(_RESERVE_POLL_SECONDS)
        worst = self._cost(model, prompt_tokens, floor)
        if first:
            self._alert(BudgetAlert("exceeded", 1.0, spent, limit, call_usd=worst))
        raise BudgetExceededError(
            f"the money budget of ${limit:g} cannot cover another model call: "
            f"${spent:.4f} spent, ${reserved:.4f} held by calls in flight, and this call "
            f"may cost up to ${worst:.4f} ({prompt_tokens} prompt + {floor} answer "
            f"tokens of {model}). Raise the budget (--max-usd or BudgetPolicy max_usd)",
            spent_usd=spent,
            limit_usd=limit,
        )

    def release(self, reserved: float) -> None:
        """Give back a reservation whose call was never answered."""
        with self._lock:
            self._unhold(reserved)

    def settle(
        self,
        reserved: float,
        *,
        purpose: str,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        seconds: float,
        prompt_hash: str = "",
    ) -> LLMCall:
        """Replace a reservation by the call's real cost and record the call."""
        price = price_for(model, self._prices)
        cost = self._cost(model, prompt_tokens, completion_tokens)
        call = LLMCall(
            purpose,
            model,
            prompt_tokens,
            completion_tokens,
            cost,
            seconds,
            _SPENDER.get(),
            prompt_hash,
        )
        crossed: list[float] = []
        with self._lock:
            self._unhold(reserved)
            self._spent += cost
            self._calls.append(call)
            if price is None:
                self._unpriced.add(model)
            if self.budget is not None:
                fractions = [*self.budget.warn_at, 1.0]
                ratio = self._spent / self.budget.limit_usd
                crossed = [f for f in fractions if ratio >= f and f not in self._alerted]
                self._alerted.update(crossed)
                if 1.0 in crossed:
                    self._exceeded = True
            spent = self._spent
        for fraction in sorted(crossed):
            kind: Literal["warning", "exceeded"] = "exceeded" if fraction >= 1 else "warning"
            assert self.budget is not None
            self._alert(BudgetAlert(kind, fraction, spent, self.budget.limit_usd))
        for listener in self._listeners:
            listener(call)
        return call

    def _unhold(self, reserved: float) -> None:
        """Take a reservation off what calls in flight hold (under the lock). What float
        subtraction leaves over (0.1 + 0.2 - 0.1 - 0.2 is 5.6e-17, not 0) is dropped: a
        ledger holding a crumb with nothing in flight would keep waiting calls waiting."""
        self._reserved -= reserved
        if self._reserved < _CRUMB_USD:
            self._reserved = 0.0

    @property
    def spent_usd(self) -> float:
        with self._lock:
            return self._spent

    @property
    def reserved_usd(self) -> float:
        """What the calls in flight hold."""
        with self._lock:
            return self._reserved

    def _answer_room(self, model: str, prompt_tokens: int, room: float) -> int:
        """The most answer tokens a call with this prompt may ask for within ``room``
        USD (-1: not even the prompt fits; any number for a model priced at $0)."""
        price = price_for(model, self._prices)
        prompt = self._cost(model, prompt_tokens, 0)
        if prompt > room:
            return -1
        fits = (room - prompt) * 1e6 / price.output if price and price.output else math.inf
        if fits >= _ANY_ANSWER:  # free answers, or a budget far beyond any call
            return _ANY_ANSWER
        tokens = int(fits)
        while tokens > 0 and self._cost(model, prompt_tokens, tokens) > room:
            tokens -= 1  # float rounding
        return tokens

    def _cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        price = price_for(model, self._prices)
        if price is None:
            return 0.0
        return (prompt_tokens * price.input + completion_tokens * price.output) / 1e6

    def _alert(self, alert: BudgetAlert) -> None:
        if self.budget is not None and self.budget.on_alert is not None:
            self.budget.on_alert(alert)

    @property
    def calls(self) -> list[LLMCall]:
        with self._lock:
            return list(self._calls)

    def summary(self) -> UsageSummary:
        with self._lock:
            calls = list(self._calls)
            unpriced = sorted(self._unpriced)
        by_task: dict[str, float] = defaultdict(float)
        by_model: dict[str, float] = defaultdict(float)
        calls_by_model: dict[str, int] = defaultdict(int)
        tokens_by_model: dict[str, int] = defaultdict(int)
        models_by_task: dict[str, list[str]] = defaultdict(list)
        for c in calls:
            by_task[c.task] += c.cost_usd
            by_model[c.model] += c.cost_usd
            calls_by_model[c.model] += 1
            tokens_by_model[c.model] += c.prompt_tokens + c.completion_tokens
            if c.purpose.startswith(TASK_WORK) and c.model not in models_by_task[c.task]:
                models_by_task[c.task].append(c.model)
        estimated = [c for c in calls if c.purpose.endswith(ESTIMATED)]
        return UsageSummary(
            calls=len(calls),
            prompt_tokens=sum(c.prompt_tokens for c in calls),
            completion_tokens=sum(c.completion_tokens for c in calls),
            cost_usd=round(sum(c.cost_usd for c in calls), 6),
            limit_usd=self.budget.limit_usd if self.budget else None,
            estimated_usd=round(sum(c.cost_usd for c in estimated), 6),
            estimated_calls=len(estimated),
            unpriced_models=unpriced,
            cost_by_task={k: round(v, 6) for k, v in by_task.items()},
            cost_by_model={k: round(v, 6) for k, v in by_model.items()},
            calls_by_model=dict(calls_by_model),
            tokens_by_model=dict(tokens_by_model),
            models_by_task=dict(models_by_task),
        )
