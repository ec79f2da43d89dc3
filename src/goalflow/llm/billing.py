"""The money side of a model call: what each attempt holds in the goal's ledger, and
what is counted when an attempt went out without a usable answer.

Before each attempt is sent, its worst case is reserved (:meth:`Billing._hold`): the
prompt counted as one token per byte of its text and schema, which no tokenizer
exceeds, plus the answer tokens it may ask for, fewer near the end of the money
(:class:`~goalflow.llm.answers.AnswerLengths`). The answer's usage settles it; an
attempt that went out and got no usable answer (it timed out, was cancelled, or came
back as no chat completion) is counted at its reservation, as the provider may bill it.
The hooks that reach the ledger (reserve, release, record) are this process's ledger;
a leaf task on a Dask or Ray worker overrides them to use the goal's ledger in the flow
process (:mod:`goalflow.llm.broker`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass

from goalflow.core.budget import ESTIMATED, Ledger, Reservation
from goalflow.core.pacing import mark_sent
from goalflow.llm.answers import AnswerLengths
from goalflow.llm.config import LLMConfig

__all__ = ["Bill", "Billing", "mark_sent_call", "sending"]


class Billing:
    """The money hooks of a client (its ``LLM``): which ledger, model and notices."""

    config: LLMConfig
    ledger: Ledger
    answer_lengths: AnswerLengths
    on_notice: Callable[[str], None]

    async def _charge_unanswered(self, bill: Bill, purpose: str, why: str = "no answer") -> None:
        """Count an attempt whose bill is not known at its reservation: it went out and
        got no usable answer (the provider may well have answered it, and billed it),
        or its answer said no usage (``why``)."""
        await self._record(
            bill.reserved,
            f"{purpose} ({why}{ESTIMATED}",
            bill.prompt_tokens,
            bill.max_tokens,
            time.monotonic() - bill.started,
            prompt_hash=bill.prompt_hash,
        )
        bill.reserved = 0.0
        bill.sent = bill.responded = False

    async def _next_attempt(self, bill: Bill, purpose: str) -> None:
        """After an attempt the provider bills without an answer (a timeout, a body that
        is no chat completion): count it, and reserve again for the next one."""
        await self._charge_unanswered(bill, purpose)
        await self._hold(bill, purpose)

    async def _hold(self, bill: Bill, purpose: str) -> None:
        """Reserve the next attempt's worst case; near the end of the money, for a
        shorter answer (as short as its purpose's answers have been) rather than none.
        A call that waited for others is sized again with what their answers taught
        (the structured mode, the length of answers) before it is refused."""
        tried = None
        while True:
            sizing = (bill.measure(), self.answer_lengths.floor(purpose, bill.wanted))
            reservation = await self._reserve(
                sizing[0], bill.wanted, sizing[1], final=sizing == tried
            )
            if reservation is not None:
                break
            tried = sizing
        bill.prompt_tokens = sizing[0]
        bill.reserved, bill.max_tokens = reservation
        if bill.max_tokens < bill.wanted:
            self.on_notice(
                f"answer capped at {bill.max_tokens} tokens (of {bill.wanted}): only that "
                "fits the money budget left"
            )

    async def _reserve(
        self, prompt_tokens: int, max_tokens: int, min_tokens: int, *, final: bool
    ) -> Reservation | None:
        return await self.ledger.reserve(
            model=self.config.model,
            prompt_tokens=prompt_tokens,
            max_tokens=max_tokens,
            min_tokens=min_tokens,
            final=final,
        )

    def _release(self, reserved: float) -> None:
        self.ledger.release(reserved)

    async def _record(
        self,
        reserved: float,
        purpose: str,
        prompt_tokens: int,
        completion_tokens: int,
        seconds: float,
        *,
        prompt_hash: str = "",
    ) -> None:
        self.ledger.settle(
            reserved,
            purpose=purpose,
            model=self.config.model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            seconds=seconds,
            prompt_hash=prompt_hash,
        )


@dataclass
class Bill:
    """The money side of one call: what its current attempt holds in the ledger, and
    whether that attempt's request went out with no answer yet (the provider bills it)."""

    reserved: float
    measure: Callable[[], int]  # the prompt's tokens at most, in the structured mode now
    prompt_tokens: int  # counted at the worst case, for the current attempt
    wanted: int  # the answer tokens the call asks for
    max_tokens: int  # those the current attempt may use (fewer when money is short)
    prompt_hash: str
    started: float = 0.0
    sent: bool = False
    responded: bool = False

    @property
    def unanswered(self) -> bool:
        return self.sent and not self.responded


sending: ContextVar[Bill | None] = ContextVar("goalflow_llm_sending", default=None)
"""The call whose request the HTTP client is writing (set around each attempt)."""


async def mark_sent_call(request: object) -> None:
    """An HTTP request hook: the request of the call being sent is written."""
    await mark_sent()  # may wait for the rate limit: a call stopped here was never sent
    bill = sending.get()
    if bill is not None:
        bill.sent = True
