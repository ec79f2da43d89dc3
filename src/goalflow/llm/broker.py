"""One goal's money ledger and pacer, served to its leaf tasks in other processes.

A leaf task on a Dask or Ray worker cannot share the flow process's memory, so the flow
process keeps the only ledger and the only pacers (one per endpoint: the planning model's,
and the task model's when it is at another endpoint) and serves them on a TCP socket
(newline-delimited JSON, a random token per goal). Each message names the model of its
call, which picks its endpoint's pacer. The worker's :class:`BrokeredLLM`
is the ordinary :class:`~goalflow.llm.client.LLM` with its money hooks and pacer pointing here:

    worker                                   flow process (LedgerBroker)
    reserve worst case of the call     ──►   Ledger.reserve  (refused: BudgetExceededError)
    admit (waits for room)             ──►   Pacer.slot entered, held for the call
    ... the model call itself, from the worker to the endpoint ...
    finish (real tokens)               ──►   Pacer.slot left
    settle (real usage, task path)     ──►   Ledger.settle   (alerts, the goal's budget stop)

So the guarantees are the in-process ones: no call is sent before its worst case is
reserved in the one ledger (spend never exceeds the money budget), and every call passes
the one sliding-window pacer of its endpoint (and that endpoint's shared Prefect global
concurrency limit, when its LLMProvider block names one). A worker that dies mid-call
leaves its reservation held to the end of the goal (counted at its worst case: it may
have been billed) and its pacer slot is freed when its connection drops. Once the goal
stops, reservations are refused.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import os
import secrets
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import httpx

from goalflow.core.budget import Reservation, spending_for
from goalflow.core.pacing import MAX_PENALTY_SECONDS as _MAX_WAIT
from goalflow.core.pacing import Admission, Pacer
from goalflow.core.rates import AnnouncedLimits
from goalflow.errors import BudgetExceededError, ConfigError, GoalflowError, TaskError
from goalflow.llm.client import LLM
from goalflow.llm.config import LLMConfig
from goalflow.llm.provider import GoalModels

__all__ = [
    "HELLO_SECONDS",
    "BrokerTicket",
    "BrokeredLLM",
    "LedgerBroker",
    "brokered_models",
    "keep_token",
    "token_variable",
    "worker_name",
]

_LINE_LIMIT = 1 << 20
HELLO_SECONDS = 5.0
"""A connection that has not said the goal's token by then is closed."""
# Pacing is the broker's: a worker's own client has no limits of its own.
_BROKER_KEEPS = {
    "requests_per_minute",
    "tokens_per_minute",
    "burst_seconds",
    "shared_limit",
    "expected_latency",
}


def worker_name() -> str:
    """This process, as ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class BrokerTicket:
    """Where a worker reaches the goal's broker, and the key its token is kept under.

    A ticket travels as a task run's parameter (stored on the Prefect server, queued on
    the cluster), so it carries no secret: the token reaches the workers apart, by
    :func:`keep_token` in their process (a Dask worker plugin) or in their environment
    (:func:`token_variable`, Ray's runtime environment)."""

    host: str
    port: int
    key: str


_TOKENS: dict[str, str] = {}  # broker key -> token, in this process


def keep_token(key: str, token: str) -> None:
    """Let leaf tasks in this process reach the broker ``key`` with ``token``."""
    _TOKENS[key] = token


def token_variable(key: str) -> str:
    """The environment variable a worker may be given the broker ``key``'s token in."""
    return f"GOALFLOW_BROKER_TOKEN_{key}"


def _token_for(ticket: BrokerTicket) -> str:
    token = _TOKENS.get(ticket.key) or os.environ.get(token_variable(ticket.key))
    if not token:
        raise TaskError(
            f"this worker ({worker_name()}) was not given the goal's broker token: it "
            "joined after the goal started, or is not one of the goal's workers"
        )
    return token


class LedgerBroker:
    """Serves the goal's ledger and its models' pacers (in this process) to leaf tasks
    elsewhere; a worker names the model of each call, which picks its endpoint's pacer."""

    def __init__(self, models: GoalModels, host: str = "127.0.0.1") -> None:
        self._models = models
        self._by_model = {llm.config.model: llm for llm in models if llm is not None}
        self._host = host
        self._token = secrets.token_urlsafe(24)
        self.key = secrets.token_hex(8)
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._stopped = False
        self.workers: set[str] = set()

    @property
    def ticket(self) -> BrokerTicket:
        if self._server is None:
            raise RuntimeError("the broker is not started")
        port = int(self._server.sockets[0].getsockname()[1])
        return BrokerTicket(self._host, port, self.key)

    @property
    def token(self) -> str:
        """The secret a worker says first; hand it to workers apart from the ticket."""
        return self._token

    async def __aenter__(self) -> LedgerBroker:
        try:
            self._server = await asyncio.start_server(self._serve, self._host, 0, limit=_LINE_LIMIT)
        except OSError as e:
            raise ConfigError(
                f"cannot listen on {self._host} for the goal's ledger broker ({e.strerror}): "
                "set GOALFLOW_BROKER_HOST to an address of this machine the workers can reach"
            ) from e
        keep_token(self.key, self._token)  # leaf tasks in this process
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.stop()
        _TOKENS.pop(self.key, None)
        if self._server is not None:
            self._server.close()
            for handler in list(self._handlers):
                handler.cancel()  # one may be waiting for the pacer on a worker's behalf
            await asyncio.gather(*self._handlers, return_exceptions=True)
            await self._server.wait_closed()

    def stop(self) -> None:
        """Refuse every reservation from now on (the goal is ending)."""
        self._stopped = True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        slots: dict[int, tuple[AsyncExitStack, Admission]] = {}
        try:
            try:
                hello = await asyncio.wait_for(_receive(reader), HELLO_SECONDS)
            except TimeoutError:
                return  # a client that does not say the token at once is not a worker
            if hello is None or not secrets.compare_digest(
                str(hello.get("token", "")), self._token
            ):
                await _send(writer, {"error": "config", "message": "wrong broker token"})
                return
            self.workers.add(str(hello.get("worker", "?")))
            configs = [_config_dict(llm) for llm in self._models if llm is not None]
            await _send(writer, {"configs": configs})
            while (message := await _receive(reader)) is not None:
                await _send(writer, await self._handle(message, slots))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the worker went away; its pacer slots are freed below
        finally:
            for stack, _ in slots.values():
                await stack.aclose()
            self._handlers.discard(handler)
            writer.close()

    async def _handle(
        self, message: dict[str, Any], slots: dict[int, tuple[AsyncExitStack, Admission]]
    ) -> dict[str, Any]:
        op = message.get("op")
        # A worker asks the goal's model or its task model, and no other.
        model = str(message.get("model") or self._models.llm.config.model)
        llm = self._by_model.get(model)
        if llm is None:
            return {"error": "config", "message": f"model {model!r} is not this goal's"}
        ledger = llm.ledger
        try:
            if op == "reserve":
                if self._stopped:
                    return {"error": "stopped", "message": "the goal is stopping"}
                reservation = await ledger.reserve(
                    model=model,
                    prompt_tokens=int(message["prompt_tokens"]),
                    max_tokens=int(message["max_tokens"]),
                    min_tokens=int(message["min_tokens"]),
                    final=bool(message.get("final", True)),
                )
                if reservation is None:
                    return {"reserved": None}
                return {"reserved": reservation.usd, "max_tokens": reservation.max_tokens}
            if op == "release":
                ledger.release(float(message["reserved"]))
            elif op == "settle":
                with spending_for(str(message["task"])):
                    ledger.settle(
                        float(message["reserved"]),
                        purpose=str(message["purpose"]),
                        model=model,
                        prompt_tokens=int(message["prompt_tokens"]),
                        completion_tokens=int(message["completion_tokens"]),
                        seconds=float(message["seconds"]),
                    )
            elif op == "admit":
                stack = AsyncExitStack()
                admission = await stack.enter_async_context(llm.pacer.slot(int(message["tokens"])))
                key = id(stack)
                slots[key] = (stack, admission)
                return {"id": key}
            elif op == "finish":
                stack, admission = slots.pop(int(message["id"]))
                admission.settle(int(message["tokens"]))
                await stack.aclose()
            elif op == "flush":
                pass  # the queued messages before it were the point
            elif op == "observe":
                llm.heed(_announced(message.get("limits")))
            elif op == "penalize":
                retry_after = message.get("retry_after")
                pacer = llm.pacer
                wait = None if retry_after is None else float(retry_after)
                pacer.penalize(wait, rate_known=pacer.rate_known)
            else:
                return {"error": "config", "message": f"unknown broker operation {op!r}"}
        except BudgetExceededError as e:
            return {
                "error": "budget",
                "message": str(e),
                "spent_usd": e.spent_usd,
                "limit_usd": e.limit_usd,
            }
        except ConfigError as e:
            return {"error": "config", "message": str(e)}
        return {}


def _config_dict(llm: LLM) -> dict[str, Any]:
    """What a worker needs to call the model itself; limits stay with the broker."""
    config = llm.config.model_copy(update={"structured_mode": llm.structured_mode})
    fields = config.model_dump(mode="json", exclude=_BROKER_KEEPS | {"api_key"})
    key = config.api_key.get_secret_value() if config.api_key else None
    return {**fields, "api_key": key}


async def _send(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    writer.write(json.dumps(message).encode() + b"\n")
    await writer.drain()


async def _receive(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    line = await reader.readline()
    if not line:
        return None
    message = json.loads(line)
    return message if isinstance(message, dict) else None


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
            await _send(self._writer, message)
            reply = await _receive(self._reader)
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


def _announced(limits: object) -> AnnouncedLimits:
    """A worker's announced limits as sent over the broker; what is not a number is unsaid."""
    said = limits if isinstance(limits, dict) else {}
    values: dict[str, Any] = {}
    for field in dataclasses.fields(AnnouncedLimits):
        value = said.get(field.name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            values[field.name] = value if field.name.endswith("_reset") else int(value)
    return AnnouncedLimits(**values)


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
        reader, writer = await asyncio.open_connection(ticket.host, ticket.port, limit=_LINE_LIMIT)
    except OSError as e:
        raise TaskError(
            f"cannot reach the goal's ledger broker at {ticket.host}:{ticket.port} "
            f"({e.strerror}): the goal ended, or GOALFLOW_BROKER_HOST is not an address "
            "this worker can reach"
        ) from e
    connection = _Connection(reader, writer)
    try:
        await _send(writer, {"token": _token_for(ticket), "worker": worker_name()})
        reply = await _receive(reader)
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
