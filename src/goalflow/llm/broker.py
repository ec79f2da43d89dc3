"""One goal's money ledger and pacer, served to its leaf tasks in other processes.

A leaf task on a Dask or Ray worker cannot share the flow process's memory, so the flow
process keeps the only ledger and the only pacers (one per endpoint: the planning model's,
and the task model's when it is at another endpoint) and serves them on a TCP socket
(newline-delimited JSON, a random token per goal). Each message names the model of its
call, which picks its endpoint's pacer. The worker's
:class:`~goalflow.llm.brokered.BrokeredLLM` is the ordinary
:class:`~goalflow.llm.client.LLM` with its money hooks and pacer pointing here:

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
import json
import os
import secrets
import socket
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from goalflow.core.budget import spending_for
from goalflow.core.pacing import Admission
from goalflow.core.rates import AnnouncedLimits
from goalflow.errors import BudgetExceededError, ConfigError, TaskError
from goalflow.llm.client import LLM
from goalflow.llm.provider import GoalModels

__all__ = [
    "HELLO_SECONDS",
    "LINE_LIMIT",
    "BrokerTicket",
    "LedgerBroker",
    "keep_token",
    "receive_message",
    "send_message",
    "token_for",
    "token_variable",
    "worker_name",
]

LINE_LIMIT = 1 << 20
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


def token_for(ticket: BrokerTicket) -> str:
    """The token of the broker ``ticket`` names, as this worker was given it."""
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
            self._server = await asyncio.start_server(self._serve, self._host, 0, limit=LINE_LIMIT)
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
                hello = await asyncio.wait_for(receive_message(reader), HELLO_SECONDS)
            except TimeoutError:
                return  # a client that does not say the token at once is not a worker
            if hello is None or not secrets.compare_digest(
                str(hello.get("token", "")), self._token
            ):
                await send_message(writer, {"error": "config", "message": "wrong broker token"})
                return
            self.workers.add(str(hello.get("worker", "?")))
            configs = [_config_dict(llm) for llm in self._models if llm is not None]
            await send_message(writer, {"configs": configs})
            while (message := await receive_message(reader)) is not None:
                await send_message(writer, await self._handle(message, slots))
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


async def send_message(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    writer.write(json.dumps(message).encode() + b"\n")
    await writer.drain()


async def receive_message(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    line = await reader.readline()
    if not line:
        return None
    message = json.loads(line)
    return message if isinstance(message, dict) else None


def _announced(limits: object) -> AnnouncedLimits:
    """A worker's announced limits as sent over the broker; what is not a number is unsaid."""
    said = limits if isinstance(limits, dict) else {}
    values: dict[str, Any] = {}
    for field in dataclasses.fields(AnnouncedLimits):
        value = said.get(field.name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            values[field.name] = value if field.name.endswith("_reset") else int(value)
    return AnnouncedLimits(**values)
