"""An OpenAI-compatible chat server on loopback, scripted by the test that runs it.

Tests, benchmarks and features talk to it through the real ``openai`` SDK over real
HTTP, so retries, timeouts, rate limits and concurrency behave as against a hosted
endpoint, yet every answer is decided by the test. It serves uvicorn from a daemon
thread so that both sync and async tests can use it::

    server = OpenAITestServer(latency=0.05, rpm=60)
    server.script("plan", '{"tasks": []}', times=1)
    with server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0)

This module serves and checks HTTP (keys, models, the request body); what to answer,
when, and what was counted is the ``ChatScript`` of :mod:`goalflow.testing.script`.
"""

from __future__ import annotations

import asyncio
import hmac
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from types import TracebackType

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from goalflow.errors import ConfigError, GoalflowError
from goalflow.testing.limiters import LimiterKind
from goalflow.testing.protocol import (
    ChatRequest,
    Match,
    ReplySource,
    error_response,
    estimate_tokens,
    scripted_error,
)
from goalflow.testing.script import ChatScript, ServerStats

__all__ = ["OpenAITestServer"]

_START_TIMEOUT_SECONDS = 10.0
_STOP_TIMEOUT_SECONDS = 10.0


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods answer in OpenAI's error shape, like the real API."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    return error_response(status, f"Invalid URL ({request.method} {request.url.path})")


class OpenAITestServer:
    """A scripted OpenAI-compatible server on 127.0.0.1; see the module docstring.

    Rules added with ``script()`` are tried in order; the first that matches answers.
    With no match and no ``default``, the request gets HTTP 400 naming the prompt, so
    a test that forgot a rule fails loudly instead of receiving a plausible answer.
    """

    def __init__(
        self,
        *,
        latency: float = 0.0,
        jitter: float = 0.0,
        seed: int | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        limiter: LimiterKind = "window",
        burst_seconds: float = 1.0,
        api_key: str | None = None,
        models: Sequence[str] = ("test-model",),
        reject_json_schema: bool = False,
        default: ReplySource | None = None,
    ) -> None:
        self._script = ChatScript(
            latency=latency,
            jitter=jitter,
            seed=seed,
            rpm=rpm,
            tpm=tpm,
            limiter_kind=limiter,
            burst_seconds=burst_seconds,
            default=default,
        )
        if isinstance(models, str) or not models:
            raise ConfigError(f"models must be a non-empty sequence of names, got {models!r}.")
        self._api_key = api_key
        self._models = tuple(models)
        self._reject_json_schema = reject_json_schema
        self._app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/models", self._list_models, methods=["GET"]),
            ],
            exception_handlers={HTTPException: _http_error},
        )
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    # -- scripting and inspection (called from the test's thread) ---------------------

    def script(self, match: Match, reply: ReplySource, times: int | None = None) -> None:
        """Answer requests that ``match`` with ``reply``, ``times`` times (None: forever)."""
        self._script.add(match, reply, times)

    def reset(self) -> None:
        """Forget received requests, counters and the rate-limit window; keep the rules."""
        self._script.reset()

    @property
    def requests(self) -> list[ChatRequest]:
        """A copy of the chat requests received so far, rejected ones included, in order."""
        return self._script.requests

    @property
    def stats(self) -> ServerStats:
        """A snapshot of the counters, so that one assertion sees consistent numbers."""
        return self._script.stats

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, the ``base_url`` to give the openai SDK."""
        if self._socket is None:
            raise GoalflowError(
                "The OpenAI test server is not running; use `with server:` before base_url."
            )
        port = self._socket.getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Serve on a free loopback port; return once connections are accepted."""
        if self._thread is not None:
            raise GoalflowError("The OpenAI test server is already running; stop it first.")
        # IPPROTO_TCP, not 0: asyncio only sets TCP_NODELAY on sockets that say TCP, and
        # without it every keep-alive answer waits ~40 ms for a delayed ACK (Nagle).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(
            self._app,
            log_level="warning",
            access_log=False,
            log_config=None,  # leave the test process's logging configuration alone
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        failures: list[BaseException] = []

        def serve() -> None:
            # uvicorn exits with SystemExit on startup errors; keep it for start() to report.
            try:
                server.run(sockets=[sock])
            except BaseException as e:
                failures.append(e)

        thread = threading.Thread(target=serve, name="goalflow-openai-test-server", daemon=True)
        thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                thread.join(_STOP_TIMEOUT_SECONDS)
                sock.close()
                raise GoalflowError(
                    "The OpenAI test server did not start within "
                    f"{_START_TIMEOUT_SECONDS:g} s; see the chained exception, if any."
                ) from (failures[0] if failures else None)
            time.sleep(0.005)
        self._server, self._thread, self._socket = server, thread, sock

    def stop(self) -> None:
        """Stop serving and join the thread; requests still in flight get 2 s to finish."""
        server, thread, sock = self._server, self._thread, self._socket
        if server is None or thread is None or sock is None:
            return
        server.should_exit = True
        thread.join(_STOP_TIMEOUT_SECONDS)
        sock.close()
        self._server = self._thread = self._socket = None
        if thread.is_alive():
            raise GoalflowError(
                f"The OpenAI test server did not stop within {_STOP_TIMEOUT_SECONDS:g} s."
            )

    def __enter__(self) -> OpenAITestServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> OpenAITestServer:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    # -- HTTP handlers (run on the server thread's event loop) -------------------------

    async def _chat(self, request: Request) -> Response:
        received_at = time.monotonic()
        self._script.arrived()
        try:
            response = await self._answer_chat(request, received_at)
        finally:
            self._script.left()
        response.headers.update(self._script.answered(response.status_code))
        return response

    async def _answer_chat(self, request: Request, received_at: float) -> Response:
        try:
            body: object = await request.json()
        except ValueError:
            body = None
        chat: ChatRequest | None = None
        invalid = ""
        try:
            chat = ChatRequest.from_body(body, received_at)
        except ValueError as e:
            invalid = str(e)
        else:
            self._script.record(chat)
        if not self._authorized(request):
            return self._unauthorized(request)
        if chat is None:
            return error_response(400, invalid)
        if chat.body.get("stream"):
            return error_response(
                400, "The goalflow test server does not stream; send stream=false."
            )
        if chat.model not in self._models:
            return error_response(
                404,
                f"The model `{chat.model}` does not exist or you do not have access to it.",
                code="model_not_found",
            )
        if self._reject_json_schema and (chat.response_format or {}).get("type") == "json_schema":
            # llama.cpp's server fails this way; use {"type": "json_object", "schema": ...}.
            return error_response(
                500, "response_format type 'json_schema' is not supported", kind="server_error"
            )
        decision = self._script.decide(chat)
        if isinstance(decision, Response):
            return decision
        reply, delay = decision
        if delay > 0:
            await asyncio.sleep(delay)
        if reply.status != 200:
            return scripted_error(reply)
        if reply.raw_body is not None:
            return Response(reply.raw_body, media_type=reply.raw_type)
        prompt_tokens = estimate_tokens(chat.text)
        completion_tokens = estimate_tokens(reply.content)
        self._script.count_tokens(chat.model, prompt_tokens, completion_tokens)
        return JSONResponse(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": chat.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply.content},
                        "logprobs": None,
                        "finish_reason": reply.finish_reason,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        )

    def _authorized(self, request: Request) -> bool:
        if self._api_key is None:
            return True
        expected = f"Bearer {self._api_key}".encode()
        return hmac.compare_digest(request.headers.get("authorization", "").encode(), expected)

    @staticmethod
    def _unauthorized(request: Request) -> Response:
        # Never echo the key received, not even a prefix: test logs end up in CI output.
        if "authorization" not in request.headers:
            message = (
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
        else:
            message = "Incorrect API key provided."
        return error_response(401, message, code="invalid_api_key")

    async def _list_models(self, request: Request) -> Response:
        if not self._authorized(request):
            response = self._unauthorized(request)
        else:
            response = JSONResponse(
                {
                    "object": "list",
                    "data": [
                        {"id": m, "object": "model", "created": 0, "owned_by": "goalflow-test"}
                        for m in self._models
                    ],
                }
            )
        response.headers.update(self._script.headers())
        return response
