"""Stopping a goal run cleanly: money spent, time up, cancelled on the server, or a
signal to the process.

A goal's work runs as one asyncio task under a :class:`RunGuard`. When a reason to stop
arrives, the guard cancels that task: the scheduler cancels the task runs in flight
(their sandbox containers are removed), pending tasks never start, and what finished
is kept by the caller. The guard also polls the run's own state on the Prefect server,
because a flow that was called directly, not by a worker, is only *marked* Cancelling
by ``prefect flow-run cancel``, the UI or an automation: nothing else stops it. In such
a direct run it also takes SIGTERM (a CI job's timeout) and SIGINT (Ctrl-C) as a
cancellation, where Prefect would otherwise crash the run mid-step. While the work runs,
it sends the server a heartbeat event, so that a run whose process died is marked
Crashed (the ``goalflow-lost-run`` automation) instead of staying Running.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.context import FlowRunContext

from goalflow.orchestration.events import emit_goal_event

__all__ = ["HEARTBEAT_SECONDS", "POLL_SECONDS", "RunGuard", "RunStopped", "unsupervised"]

T = TypeVar("T")
POLL_SECONDS = 1.0
HEARTBEAT_SECONDS = 15.0
"""How often a run tells the server its process is alive (the goalflow-lost-run automation)."""
logger = logging.getLogger("goalflow.guard")
_STOPPING_STATES = (StateType.CANCELLING, StateType.CANCELLED)


def unsupervised() -> bool:
    """Whether the current flow run was called directly, not from a deployment: no
    worker or runner supervises it, and a signal is for goalflow to act on."""
    context = FlowRunContext.get()
    run = context.flow_run if context else None
    return run is None or run.deployment_id is None


class RunStopped(Exception):
    """The guarded work was stopped on purpose; ``reason`` says why, for the final state."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RunGuard:
    """Runs a goal's work and stops it on the first reason to stop."""

    signal_received: signal.Signals | None = None
    """The last signal that stopped a goal in this process (the CLI's exit code)."""

    def __init__(
        self,
        flow_run_id: UUID | None,
        *,
        max_seconds: float | None,
        poll_seconds: float = POLL_SECONDS,
        on_signals: bool = False,
    ) -> None:
        """``on_signals``: stop on SIGTERM and SIGINT (a run no worker supervises)."""
        self.flow_run_id = flow_run_id
        self.max_seconds = max_seconds
        self.poll_seconds = poll_seconds
        self.on_signals = on_signals
        self.reason: str | None = None
        # Stopped as a cancellation (on the server, or by a signal), not by a budget.
        self.cancelled = False
        # What the run is waiting on, said with a stop for time (set once the model is open).
        self.waiting: Callable[[], str] = lambda: ""
        self._work: asyncio.Future[Any] | None = None
        self._held = 0.0
        self._held_since: float | None = None

    def stop(self, reason: str) -> None:
        """Stop the work for ``reason``; later reasons do not replace the first."""
        if self.reason is None:
            self.reason = reason
            logger.warning("stopping the goal: %s", reason)
        if self._work is not None:
            self._work.cancel()

    @contextmanager
    def clock_held(self) -> Iterator[None]:
        """Time spent inside this block (waiting for a person) does not count against the
        time budget; the budget can still run out before or after it."""
        self._held_since = time.monotonic()
        try:
            yield
        finally:
            self._held += time.monotonic() - self._held_since
            self._held_since = None

    def _held_for(self, now: float) -> float:
        return self._held + (now - self._held_since if self._held_since is not None else 0.0)

    async def run(self, work: Coroutine[Any, Any, T]) -> T:
        """The result of ``work``, or :class:`RunStopped` when it was stopped."""
        task: asyncio.Future[T] = asyncio.ensure_future(work)
        self._work = task
        if self.reason is not None:  # stopped before the work began
            task.cancel()
        watchers = [asyncio.create_task(self._watch_state()), asyncio.create_task(self._beat())]
        if self.max_seconds is not None:
            watchers.append(asyncio.create_task(self._deadline(self.max_seconds)))
        try:
            with self._stopping_on_signals():
                result = await task
        except (Exception, asyncio.CancelledError) as e:
            if self.reason is None:
                raise  # a failure of the work, or a cancellation from outside
            # Stopping can race with the error that caused it (a refused model call).
            raise RunStopped(self.reason) from (
                None if isinstance(e, asyncio.CancelledError) else e
            )
        finally:
            self._work = None
            for watcher in watchers:
                watcher.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
        if self.reason is not None:
            raise RunStopped(self.reason)  # the work swallowed the cancellation
        return result

    async def _deadline(self, seconds: float) -> None:
        started = time.monotonic()
        while True:
            now = time.monotonic()
            left = started + seconds + self._held_for(now) - now
            if left <= 0 and self._held_since is None:
                break
            await asyncio.sleep(left if left > 0 else self.poll_seconds)
        waiting = self.waiting()
        self.stop(
            f"the time budget of {seconds:g} s ran out" + (f" ({waiting})" if waiting else "")
        )

    async def _beat(self) -> None:
        while self.flow_run_id is not None:
            emit_goal_event("goalflow.goal.heartbeat", self.flow_run_id, {})
            await asyncio.sleep(HEARTBEAT_SECONDS)

    async def _watch_state(self) -> None:
        if self.flow_run_id is None:
            return
        async with get_client() as client:
            while True:
                await asyncio.sleep(self.poll_seconds)
                try:
                    run = await client.read_flow_run(self.flow_run_id)
                except Exception as e:  # a blip of the API must not end the goal
                    logger.debug("could not read the goal's state: %s", e)
                    continue
                if run.state is not None and run.state.type in _STOPPING_STATES:
                    detail = f" ({run.state.message})" if run.state.message else ""
                    self.cancelled = True
                    self.stop(f"it was cancelled on the Prefect server{detail}")
                    return

    @contextmanager
    def _stopping_on_signals(self) -> Iterator[None]:
        """SIGTERM and SIGINT stop the work as a cancellation while it runs; the handlers
        that were there before (Prefect's) come back after."""
        loop = asyncio.get_running_loop()
        installed: list[tuple[signal.Signals, Any]] = []
        for number in (signal.SIGTERM, signal.SIGINT) if self.on_signals else ():
            previous = signal.getsignal(number)
            try:
                loop.add_signal_handler(number, self._signalled, number)
            except (ValueError, RuntimeError, NotImplementedError):
                continue  # not the main thread's loop: the signals stay Prefect's
            installed.append((number, previous))
        try:
            yield
        finally:
            for number, previous in installed:
                loop.remove_signal_handler(number)
                signal.signal(number, previous)

    def _signalled(self, number: signal.Signals) -> None:
        RunGuard.signal_received = number
        self.cancelled = True
        self.stop(f"the process got {number.name}")
