"""Talking to an OpenAI-compatible endpoint: structured answers, retries, usage.

The only module that imports ``openai``. Every call names a pydantic model for its
answer; an answer that does not validate goes back to the model with the errors
("re-ask"), a bounded number of times, then ends in :class:`StructuredOutputError`.
Structured output uses ``response_format`` ``json_schema``; a server that rejects it
(llama.cpp answers HTTP 500) is asked with ``{"type": "json_object", "schema": ...}``
from then on. Each call first takes a slot of the goal's pacer
(:mod:`goalflow.core.pacing`: requests and tokens per minute), so a rate limit is met
without 429s; a 429 that arrives anyway pauses the pacer for its ``Retry-After`` and
the call is retried. Server errors and timeouts are retried with backoff. Before each
attempt is sent, its worst-case cost is reserved in the goal's ledger, and an attempt
that cannot fit the money budget is not sent
(:class:`~goalflow.errors.BudgetExceededError`; the money side of a call is
:mod:`goalflow.llm.billing`). No message raised or logged here contains the API key.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

import httpx
import openai
from pydantic import BaseModel, ValidationError

from goalflow.core.budget import Ledger, MoneyBudget
from goalflow.core.chat import Message
from goalflow.core.pacing import Gate, Pacer
from goalflow.core.rates import AnnouncedLimits, estimate_request_tokens, task_concurrency
from goalflow.core.rules import describe_validation_error
from goalflow.errors import (
    LLMRateLimitError,
    LLMRequestError,
    StructuredOutputError,
)
from goalflow.llm import prompts
from goalflow.llm.answers import (
    AnswerLengths,
    is_completion,
    refuses_json_schema,
    strip_fences,
    worst_case_tokens,
)
from goalflow.llm.billing import Bill, Billing, mark_sent_call, sending
from goalflow.llm.config import LLMConfig, StructuredMode
from goalflow.llm.failures import redact, translate
from goalflow.llm.limits import announced_limits, too_large
from goalflow.llm.limits import retry_after as retry_after_of
from goalflow.llm.prompt_counts import PromptCounts

__all__ = ["LLM"]

M = TypeVar("M", bound=BaseModel)
logger = logging.getLogger("goalflow.llm")

_RETRYABLE = (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError)


class LLM(Billing):
    """One goal's connection to its model; records every call in ``ledger``."""

    def __init__(
        self,
        config: LLMConfig,
        *,
        budget: MoneyBudget | None = None,
        http_client: httpx.AsyncClient | None = None,
        gate: Gate | None = None,
        ledger: Ledger | None = None,
        prompt_counts: PromptCounts | None = None,
    ) -> None:
        """``gate``: a wait for a slot of a limit shared across processes
        (:func:`goalflow.orchestration.shared_limit.shared_gate`), taken per call.
        ``ledger``: another endpoint's ledger to book this one's calls in too (the goal
        has one money budget across its endpoints); ``budget`` is then that ledger's.
        ``prompt_counts``: what the endpoint counted for earlier prompts (kept from
        earlier goals); by default, only this client's."""
        self.config = config
        if ledger is None:
            ledger = Ledger(config.prices, budget)
        else:
            ledger.take_price(config.model, config.prices)
        self.ledger = ledger
        self.ledger.require_price(config.model)
        self._mode: StructuredMode = config.structured_mode
        self.pacer = _pacer(config, gate)
        self.answer_lengths = AnswerLengths()  # shared with for_model's siblings
        # By model: shared with the siblings too.
        self.prompt_counts = PromptCounts() if prompt_counts is None else prompt_counts
        # What a user should know as it happens (the run's log and live view): waits for
        # the rate limit, limits the endpoint announced, answers the budget capped.
        self.on_notice: Callable[[str], None] = lambda message: logger.warning("%s", message)
        self._told_until = -math.inf
        key = config.api_key.get_secret_value() if config.api_key else "not-needed"
        # The SDK's own HTTP client (httpx2) unless one is given. Its request hook tells
        # the pacer when each request is written (see pacing.mark_sent).
        client: Any = http_client or openai.DefaultAsyncHttpxClient()
        client.event_hooks["request"].append(mark_sent_call)
        client.event_hooks["response"].append(self._observe_limits)
        self._client = openai.AsyncOpenAI(
            api_key=key,
            base_url=config.base_url,
            timeout=config.timeout,
            max_retries=0,  # retried here, so that each 429 and its Retry-After are seen
            http_client=client,
        )

    async def close(self) -> None:
        await self._client.close()

    def for_model(self, model: str) -> LLM:
        """The same endpoint asked for ``model``: one pacer (the endpoint's limits), one
        ledger (the goal's money) and one connection pool with this client, which
        alone closes it. Its structured mode starts from the configured one (on a
        worker: the one the goal has learned) and falls back on its own; its notices go
        where this client's go when it is made."""
        sibling = copy.copy(self)
        sibling.config = self.config.asking(model)
        sibling.ledger.require_price(model)
        sibling._mode = sibling.config.structured_mode
        return sibling

    async def _observe_limits(self, response: httpx.Response) -> None:
        """Every answer's announced rate limits go to the pacer (a response hook)."""
        announced = announced_limits(response.headers)
        if announced is not None:
            self.heed(announced)

    def heed(self, announced: AnnouncedLimits) -> None:
        """Pace by what the endpoint announced (here or in a worker); what changed is
        said where the rate-limit waits are (the run's log and live view)."""
        for note in self.pacer.observe(announced):
            self.on_notice(f"{self.config.endpoint}: {note}")

    @property
    def structured_mode(self) -> StructuredMode:
        """How JSON is asked for now: ``auto`` until the server has shown what it takes."""
        return self._mode

    async def structured(
        self,
        schema: type[M],
        messages: list[Message],
        *,
        purpose: str,
        max_attempts: int = 3,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> M:
        """Ask for an answer that validates as ``schema``; re-ask with the errors.
        ``temperature`` overrides the configured one for this call."""
        conversation = list(messages)
        content = ""
        errors: list[str] = []
        for _ in range(max_attempts):
            content, finish_reason = await self._complete(
                conversation,
                schema,
                purpose=purpose,
                max_tokens=max_tokens,
                temperature=temperature,
            )
            try:
                # strict=False: small models put raw newlines inside strings; the
                # meaning is plain, so it is not worth a re-ask.
                return schema.model_validate(json.loads(strip_fences(content), strict=False))
            except json.JSONDecodeError as e:
                errors = [f"the answer is not valid JSON: {e}"]
            except ValidationError as e:
                errors = describe_validation_error(e)
            if finish_reason == "length":
                errors.append(prompts.CUT_OFF)
            conversation += [
                {"role": "assistant", "content": content},
                {"role": "user", "content": prompts.reask(errors)},
            ]
        shown = content if len(content) <= 400 else content[:400] + "…"
        raise StructuredOutputError(
            f"the model never gave a valid {schema.__name__} for {purpose!r}: after "
            f"{max_attempts} attempts the last answer was {shown!r} ({'; '.join(errors)}). "
            "Try a larger or more capable model (--model).",
            schema_name=schema.__name__,
            n_attempts=max_attempts,
            last_completion=content,
        )

    def affordable(
        self, schema: type[BaseModel], messages: list[Message], *, max_tokens: int | None = None
    ) -> bool:
        """Whether one call of this shape fits the money budget left (no reservation)."""
        return self.ledger.fits(
            model=self.config.model,
            prompt_tokens=self._worst_prompt(messages, schema.model_json_schema()),
            max_tokens=max_tokens or self.config.max_tokens,
        )

    async def _complete(
        self,
        messages: list[Message],
        schema: type[BaseModel],
        *,
        purpose: str,
        max_tokens: int | None,
        temperature: float | None = None,
    ) -> tuple[str, str]:
        json_schema = schema.model_json_schema()
        max_tokens = max_tokens or self.config.max_tokens
        bill = Bill(
            reserved=0.0,
            measure=lambda: self._worst_prompt(messages, json_schema),
            prompt_tokens=0,
            wanted=max_tokens,
            max_tokens=max_tokens,
            prompt_hash=hashlib.sha256(
                json.dumps([schema.__name__, messages], ensure_ascii=False).encode()
            ).hexdigest()[:16],
        )
        await self._hold(bill, purpose)
        try:
            return await self._send(
                messages,
                schema,
                json_schema,
                purpose,
                bill,
                self.config.temperature if temperature is None else temperature,
            )
        except BaseException:
            if bill.unanswered:  # sent, then cancelled or timed out: the provider bills it
                await self._charge_unanswered(bill, purpose)
            else:
                self._release(bill.reserved)
            raise

    async def _send(
        self,
        messages: list[Message],
        schema: type[BaseModel],
        json_schema: dict[str, Any],
        purpose: str,
        bill: Bill,
        temperature: float,
    ) -> tuple[str, str]:
        attempt = 0
        limited_since: float | None = None  # the first 429 of this call
        while True:
            error: openai.APIError
            max_tokens = bill.max_tokens
            sent = self._with_schema_hint(messages, json_schema, self._mode)
            paced = estimate_request_tokens(sent, max_tokens, extra=json_schema)
            try:
                async with self.pacer.slot(paced) as admission:
                    bill.started = time.monotonic()
                    bill.sent = bill.responded = False
                    token = sending.set(bill)
                    try:
                        response = await self._client.chat.completions.create(
                            model=self.config.model,
                            messages=cast(Any, sent),
                            response_format=cast(Any, self._response_format(schema, json_schema)),
                            max_tokens=max_tokens,
                            temperature=temperature,
                        )
                    finally:
                        sending.reset(token)
            except openai.APIStatusError as e:
                bill.responded = True  # refused: not billed
                if self._mode == "auto" and refuses_json_schema(e):
                    logger.info(
                        "%s rejected response_format json_schema (HTTP %s); using json_object",
                        self.config.endpoint,
                        e.status_code,
                    )
                    self._mode = "json_object"
                    continue
                error = e
            except openai.APIConnectionError as e:
                error = e
                if isinstance(e, openai.APITimeoutError) and bill.unanswered:
                    await self._next_attempt(bill, purpose)
            except json.JSONDecodeError:  # an HTTP 200 whose body is not JSON
                await self._next_attempt(bill, purpose)
                attempt = await self._after_malformed(attempt)
                continue
            else:
                if not is_completion(response):  # HTML, or JSON of another shape
                    await self._next_attempt(bill, purpose)
                    attempt = await self._after_malformed(attempt)
                    continue
                if self._mode == "auto":
                    self._mode = "json_schema"
                if response.usage:
                    admission.settle(response.usage.total_tokens)
                self._learn_prompt(sent, json_schema, response, bill)
                return await self._settle(response, purpose, bill)
            if isinstance(error, openai.RateLimitError) and not too_large(error.message):
                limited_since = limited_since or time.monotonic()
                await self._wait_for_rate_limit(
                    error, limited_since, purpose, rate_known=admission.rate_known
                )
                continue
            if not isinstance(error, _RETRYABLE) or attempt >= self.config.max_retries:
                # Not chained: the SDK's exception text can quote part of the API key.
                raise await translate(error, self.config, self._client) from None
            attempt += 1
            await asyncio.sleep(self._retry_delay(error, attempt))

    async def _wait_for_rate_limit(
        self, error: openai.RateLimitError, since: float, purpose: str, *, rate_known: bool
    ) -> None:
        """A 429 is a signal, not a failure: every call waits out its Retry-After in the
        pacer, which also slows down, and this call tries again. It gives up only once
        it has waited ``rate_limit_patience`` seconds (the time and money budgets stop
        the goal sooner when they run out)."""
        patience = self.config.rate_limit_patience
        waited = time.monotonic() - since
        wait = self.pacer.penalize(retry_after_of(error.response.headers), rate_known=rate_known)
        if waited + wait > patience:
            raise LLMRateLimitError(
                f"the model endpoint {self.config.endpoint} kept rate-limiting the requests "
                f"(HTTP 429) for {waited:.0f} s, and asks to wait {wait:.0f} s more, past the "
                f"patience of {patience:.0f} s (GOALFLOW_RATE_LIMIT_PATIENCE): "
                f"{redact(error.message, self.config)}. Lower the concurrency or raise the "
                "provider's limits",
                waited=waited,
            )
        until = time.monotonic() + wait
        if until > self._told_until + 1.0:  # once per pause, not once per refused call
            self._told_until = until
            self.on_notice(f"waiting {wait:.0f} s for the rate limit ({purpose})")
        await asyncio.sleep(wait)  # the pause, and this call's place among the refused

    async def _after_malformed(self, attempt: int) -> int:
        """An answer that is no chat completion is a provider error like a 5xx: retried
        after the backoff (the attempt count is returned), until the retries are spent."""
        if attempt >= self.config.max_retries:
            raise LLMRequestError(
                f"the model endpoint {self.config.endpoint} answered HTTP 200 with a body "
                f"that is not a chat completion ({self.config.max_retries} retries): check "
                "that OPENAI_BASE_URL (or the block's base_url) is an OpenAI-compatible API"
            )
        attempt += 1
        await asyncio.sleep(self._retry_delay(None, attempt))
        return attempt

    def _retry_delay(self, error: openai.APIError | None, attempt: int) -> float:
        if isinstance(error, openai.APIStatusError):
            retry_after = retry_after_of(error.response.headers)
            if retry_after is not None:
                return retry_after
        return float(min(self.config.backoff * 2 ** (attempt - 1), 30.0))

    def _response_format(
        self, schema: type[BaseModel], json_schema: dict[str, Any]
    ) -> dict[str, Any]:
        if self._mode == "json_object":
            return {"type": "json_object", "schema": json_schema}
        return {
            "type": "json_schema",
            "json_schema": {"name": schema.__name__, "schema": json_schema, "strict": False},
        }

    def _with_schema_hint(
        self, messages: list[Message], json_schema: dict[str, Any], mode: StructuredMode
    ) -> list[Message]:
        if mode != "json_object":
            return messages
        return [{"role": "system", "content": prompts.schema_hint(json_schema)}, *messages]

    def _worst_prompt(self, messages: list[Message], json_schema: dict[str, Any]) -> int:
        """The prompt's tokens at most, as sent in json_object mode (with the schema
        hint) while the endpoint may still refuse json_schema: a token per byte, or
        fewer by what the provider counted for earlier prompts with its messages."""
        mode: StructuredMode = "json_object" if self._mode == "auto" else self._mode
        sent = self._with_schema_hint(messages, json_schema, mode)
        known = self.prompt_counts.bound(self.config.model, sent, json_schema)
        bytewise = worst_case_tokens(sent, json_schema)
        return bytewise if known is None else min(known, bytewise)

    def _learn_prompt(
        self, sent: list[Message], json_schema: dict[str, Any], response: Any, bill: Bill
    ) -> None:
        """What the provider counted for the prompt bounds the prompts that repeat it;
        a count above the bound this call reserved means the counts cannot be trusted
        (the model behind the name changed, or it does not count messages apart)."""
        if not response.usage:
            return
        tokens = response.usage.prompt_tokens
        if tokens > bill.prompt_tokens:
            if self.prompt_counts.distrust():  # said once
                self.on_notice(
                    f"{self.config.endpoint} counted {tokens} prompt tokens where at most "
                    f"{bill.prompt_tokens} were reserved: prompts are counted a token per "
                    "byte from now on, and the prompt counts kept for it are dropped"
                )
            return
        self.prompt_counts.saw(self.config.model, sent, json_schema, tokens)

    async def _settle(self, response: Any, purpose: str, bill: Bill) -> tuple[str, str]:
        choice = response.choices[0]
        content: str = choice.message.content or ""
        usage = response.usage
        finish_reason = str(choice.finish_reason or "stop")
        if not usage:  # billed, but for what is not said: counted at the worst case
            await self._charge_unanswered(bill, purpose, "no usage said")
            return content, finish_reason
        reserved, bill.reserved = bill.reserved, 0.0
        bill.responded = True
        cut_at = bill.wanted if finish_reason == "length" else None
        self.answer_lengths.saw(purpose, usage.completion_tokens, cut_at=cut_at)
        await self._record(
            reserved,
            purpose,
            usage.prompt_tokens,
            usage.completion_tokens,
            time.monotonic() - bill.started,
            prompt_hash=bill.prompt_hash,
        )
        return content, finish_reason


def _pacer(config: LLMConfig, gate: Gate | None) -> Pacer:
    """The calls of one goal, paced to the endpoint's limits (and a shared limit)."""
    rpm, burst = config.requests_per_minute, config.burst_seconds
    return Pacer(
        requests_per_minute=rpm,
        tokens_per_minute=config.tokens_per_minute,
        max_in_flight=task_concurrency(None, rpm, config.expected_latency, burst) if rpm else None,
        burst_seconds=burst,
        gate=gate,
    )
