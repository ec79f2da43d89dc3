"""An OpenAI-compatible chat server on loopback, scripted by the test that runs it.

Tests, benchmarks and features talk to it through the real ``openai`` SDK over real
HTTP, so retries, timeouts, rate limits and concurrency behave as against a hosted
endpoint, yet every answer is decided by the test. It serves uvicorn from a daemon
thread so that both sync and async tests can use it::

    server = OpenAITestServer(latency=0.05, rpm=60)
    server.script("plan", '{"tasks": []}', times=1)
    with server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0)
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import random
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from goalflow.errors import ConfigError, GoalflowError
from goalflow.testing.protocol import (
    ChatRequest,
    Match,
    RateWindow,
    Reply,
    ReplySource,
    Rule,
    as_reply,
    error_response,
    estimate_tokens,
    scripted_error,
)

__all__ = ["OpenAITestServer", "ServerStats"]

_START_TIMEOUT_SECONDS = 10.0
_STOP_TIMEOUT_SECONDS = 10.0


@dataclass
class ServerStats:
    """Counters over the chat requests since start or the last ``reset()``.

    ``requests`` also counts bodies too malformed to become a ``ChatRequest`` (answered
    400), which is why it can exceed ``len(server.requests)``.
    """

    requests: int = 0
    completed: int = 0
    rate_limited: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    max_in_flight: int = 0


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
        api_key: str | None = None,
        models: Sequence[str] = ("test-model",),
        reject_json_schema: bool = False,
        default: ReplySource | None = None,
    ) -> None:
        if latency < 0 or jitter < 0:
            raise ConfigError(f"latency and jitter must be >= 0 s, got {latency} and {jitter}.")
        if (rpm is not None and rpm < 1) or (tpm is not None and tpm < 1):
            raise ConfigError(f"rpm and tpm must be >= 1 or None, got {rpm} and {tpm}.")
        if isinstance(models, str) or not models:
            raise ConfigError(f"models must be a non-empty sequence of names, got {models!r}.")
        self._latency = latency
        self._jitter = jitter
        self._random = random.Random(seed)
        self._api_key = api_key
        self._models = tuple(models)
        self._reject_json_schema = reject_json_schema
        self._default = default
        self._rules: list[Rule] = []
        self._requests: list[ChatRequest] = []
        self._stats = ServerStats()
        self._in_flight = 0
        self._window = RateWindow(rpm, tpm)
        # Reentrant: a reply function runs under the lock and may read `server.requests`.
        self._lock = threading.RLock()
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
        rule = Rule(match, reply, times)
        with self._lock:
            self._rules.append(rule)

    def reset(self) -> None:
        """Forget received requests, counters and the rate-limit window; keep the rules."""
        with self._lock:
            self._requests.clear()
            self._stats = ServerStats(max_in_flight=self._in_flight)
            self._window.clear()

    @property
    def requests(self) -> list[ChatRequest]:
        """A copy of the chat requests received so far, rejected ones included, in order."""
        with self._lock:
            return list(self._requests)

    @property
    def stats(self) -> ServerStats:
        """A snapshot of the counters, so that one assertion sees consistent numbers."""
        with self._lock:
            return dataclasses.replace(self._stats)

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
        with self._lock:
            self._stats.requests += 1
            self._in_flight += 1
            self._stats.max_in_flight = max(self._stats.max_in_flight, self._in_flight)
        try:
            response = await self._answer_chat(request, received_at)
        finally:
            with self._lock:
                self._in_flight -= 1
        with self._lock:
            if response.status_code == 200:
                self._stats.completed += 1
            elif response.status_code == 429:
                self._stats.rate_limited += 1
            else:
                self._stats.errors += 1
            response.headers.update(self._window.headers(time.monotonic()))
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
            with self._lock:
                self._requests.append(chat)
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
        decision = self._decide(chat)
        if isinstance(decision, Response):
            return decision
        reply, delay = decision
        if delay > 0:
            await asyncio.sleep(delay)
        if reply.status != 200:
            return scripted_error(reply)
        prompt_tokens = estimate_tokens(chat.text)
        completion_tokens = estimate_tokens(reply.content)
        with self._lock:
            self._stats.prompt_tokens += prompt_tokens
            self._stats.completion_tokens += completion_tokens
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

    def _decide(self, chat: ChatRequest) -> tuple[Reply, float] | Response:
        """Pick the reply and admit it against the limits, or the error that answers instead.

        One critical section, so the rule consumed and the window slot taken belong to
        the same request even with hundreds in flight.
        """
        with self._lock:
            try:
                rule = next((r for r in self._rules if r.matches(chat)), None)
                if rule is not None:
                    reply = rule.reply_to(chat)
                elif self._default is not None:
                    reply = as_reply(self._default, chat)
                else:
                    return error_response(
                        400,
                        "goalflow test server: no scripted reply matched this request and no "
                        "default is set; the last user message starts with "
                        f"{chat.last_user[:200]!r}. Add a rule with server.script(...) or "
                        "pass default=... to OpenAITestServer.",
                    )
            except Exception as e:  # a test's match or reply function; report, don't crash
                return error_response(
                    500, f"A scripted match or reply function raised {e!r}.", kind="server_error"
                )
            completion = chat.max_tokens or estimate_tokens(reply.content)
            cost = estimate_tokens(chat.text) + completion
            now = time.monotonic()
            refusal = self._window.refusal(chat.model, cost, now)
            if refusal is not None:
                return error_response(
                    429,
                    refusal.message,
                    kind=refusal.limit,
                    code="rate_limit_exceeded",
                    retry_after=refusal.retry_after,
                )
            self._window.admit(cost, now)
            if rule is not None:
                rule.consume()
            jitter = self._random.uniform(-self._jitter, self._jitter) if self._jitter else 0.0
            return reply, max(0.0, self._latency + jitter) + reply.delay

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
        with self._lock:
            response.headers.update(self._window.headers(time.monotonic()))
        return response
