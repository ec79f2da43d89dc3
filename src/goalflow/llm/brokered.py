"""A leaf task's side of the goal's ledger broker (:mod:`goalflow.llm.broker`): in a
Dask or Ray worker, an :class:`~goalflow.llm.client.LLM` whose money hooks and pacer
are the goal's, reached over the broker's connection."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import ssl
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from typing import Any

import httpx

from goalflow.core.budget import Reservation
from goalflow.core.pacing import MAX_PENALTY_SECONDS as _MAX_WAIT
from goalflow.core.pacing import Admission, Pacer
from goalflow.core.rates import AnnouncedLimits
from goalflow.errors import BudgetExceededError, ConfigError, GoalflowError, TaskError
from goalflow.llm.broker import (
    LINE_LIMIT,
    BrokerTicket,
    receive_message,
    send_message,
    token_for,
    worker_name,
)
from goalflow.llm.client import LLM
from goalflow.llm.config import LLMConfig
from goalflow.llm.provider import GoalModels

__all__ = ["BrokeredLLM", "brokered_models"]


class _Connection:
    """A worker's connection to the broker: one request and its reply at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self._lock = asyncio.Lock()
        self._queued: list[dict[str, Any]] = []
        self._broken = False

    async def call(self, op: str, **fields: Any) -> dict[str, Any]:
        async with self._lock:
            for message in self._queued:
                await self._exchange(message)
            self._queued.clear()
            return await self._exchange({"op": op, **fields})

    def later(self, op: str, **fields: Any) -> None:
        """Send with the next call (from code that cannot wait): order is kept."""
        self._queued.append({"op": op, **fields})

    async def _exchange(self, message: dict[str, Any]) -> dict[str, Any]:
        if self._broken:
            raise TaskError("the connection to the goal's ledger broker was interrupted")
        try:
            await send_message(self._writer, message)
            reply = await receive_message(self._reader)
        except BaseException:
            self._broken = True  # a reply may still be on its way: the stream is out of step
            raise
        if reply is None:
            raise TaskError("the goal's ledger broker closed the connection: the goal ended")
        return reply

    async def close(self) -> None:
        with suppress(ConnectionError, GoalflowError):
            if self._queued and not self._broken:
                await self.call("flush")  # delivers what is queued
        self._writer.close()
        with suppress(ConnectionError):
            await self._writer.wait_closed()


def _raise_refusal(reply: dict[str, Any]) -> None:
    kind = reply.get("error")
    if kind is None:
        return
    message = str(reply.get("message", "refused"))
    if kind == "budget":
        raise BudgetExceededError(
            message, spent_usd=float(reply["spent_usd"]), limit_usd=float(reply["limit_usd"])
        )
    if kind == "stopped":
        raise TaskError(f"not run: {message}")
    raise ConfigError(message)


class _BrokerPacer(Pacer):
    """The pacer of ``model``'s endpoint in the flow process, reached through the broker."""

    def __init__(self, connection: _Connection, model: str) -> None:
        super().__init__()
        self._connection = connection
        self._model = model

    @asynccontextmanager
    async def slot(self, estimated_tokens: int) -> AsyncIterator[Admission]:
        reply = await self._connection.call("admit", model=self._model, tokens=estimated_tokens)
        _raise_refusal(reply)
        admission = Admission(asyncio.get_running_loop().time(), estimated_tokens)
        try:
            yield admission
        finally:
            await self._connection.call("finish", id=reply["id"], tokens=admission.tokens)

    def observe(self, announced: AnnouncedLimits) -> list[str]:
        """What a worker's answer announced paces the whole goal: the flow's pacer."""
        self._connection.later("observe", model=self._model, limits=dataclasses.asdict(announced))
        return []

    def penalize(self, retry_after: float | None, *, rate_known: bool = True) -> float:
        """The flow's pacer holds every worker's calls (and knows whether it knew the
        rate); this one waits the Retry-After."""
        self._connection.later("penalize", model=self._model, retry_after=retry_after)
        return min(retry_after, _MAX_WAIT) if retry_after is not None else 1.0


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context per worker process: building one (loading the CA bundle) took
    ~15 % of a Dask worker's CPU when each leaf task built its own (py-spy)."""
    return httpx.create_ssl_context()


class BrokeredLLM(LLM):
    """An LLM in a worker process whose money and pacing are the goal's, via the broker."""

    def __init__(self, config: LLMConfig, connection: _Connection, task_path: str) -> None:
        http = httpx.AsyncClient(
            verify=_tls(),
            timeout=config.timeout,
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        )
        super().__init__(config, http_client=http)
        self._connection = connection
        self._task_path = task_path
        self.pacer = _BrokerPacer(connection, config.model)

    async def _reserve(
        self, prompt_tokens: int, max_tokens: int, min_tokens: int, *, final: bool
    ) -> Reservation | None:
        reply = await self._connection.call(
            "reserve",
            model=self.config.model,
            prompt_tokens=prompt_tokens,
            max_tokens=max_tokens,
            min_tokens=min_tokens,
            final=final,
        )
        _raise_refusal(reply)
        if reply["reserved"] is None:
            return None
        return Reservation(float(reply["reserved"]), int(reply["max_tokens"]))

    def _release(self, reserved: float) -> None:
        self._connection.later("release", reserved=reserved)

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
        await super()._record(
            reserved, purpose, prompt_tokens, completion_tokens, seconds, prompt_hash=prompt_hash
        )
        reply = await self._connection.call(
            "settle",
            model=self.config.model,
            reserved=reserved,
            purpose=purpose,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            seconds=seconds,
            task=self._task_path,
        )
        _raise_refusal(reply)


@asynccontextmanager
async def brokered_models(ticket: BrokerTicket, task_path: str) -> AsyncIterator[GoalModels]:
    """The goal's models, for one leaf task in this (worker) process: the task model at
    the planning model's endpoint shares its client, at another it has its own."""
    try:
        reader, writer = await asyncio.open_connection(ticket.host, ticket.port, limit=LINE_LIMIT)
    except OSError as e:
        raise TaskError(
            f"cannot reach the goal's ledger broker at {ticket.host}:{ticket.port} "
            f"({e.strerror}): the goal ended, or GOALFLOW_BROKER_HOST is not an address "
            "this worker can reach"
        ) from e
    connection = _Connection(reader, writer)
    try:
        await send_message(writer, {"token": token_for(ticket), "worker": worker_name()})
        reply = await receive_message(reader)
        if reply is None:
            raise TaskError("the goal's ledger broker closed the connection: the goal ended")
        _raise_refusal(reply)
        planning, *tasks = (LLMConfig.model_validate(fields) for fields in reply["configs"])
        async with AsyncExitStack() as stack:
            llm = BrokeredLLM(planning, connection, task_path)
            stack.push_async_callback(llm.close)
            task_llm: LLM | None = None
            for config in tasks:
                if config.same_endpoint(planning):
                    task_llm = llm.for_model(config.model)
                else:
                    task_llm = BrokeredLLM(config, connection, task_path)
                    stack.push_async_callback(task_llm.close)
            yield GoalModels(llm, task_llm)
    finally:
        await connection.close()
