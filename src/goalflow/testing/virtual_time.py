"""An asyncio event loop on virtual time: sleeps take no wall time, and stay exact.

When nothing is ready to run, the loop jumps its clock to the next timer instead of
waiting for it. Code that times itself with ``loop.time()`` and ``asyncio.sleep``
(the scheduler, :class:`goalflow.core.pacing.Pacer`) then runs a minute of pacing in
milliseconds, with every timestamp exact: the pacer's unit tests, and the benchmark's
lower bound (a discrete-event simulation of a graph with zero overhead), run on it.
Real I/O still works but its waits take real time, so keep it to in-memory work.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["VirtualTimeLoop", "run_virtual"]

T = TypeVar("T")


class _JumpingSelector(selectors.BaseSelector):
    """The default selector, except that a wait for a timer advances the clock instead."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        self._loop = loop
        self._real = selectors.DefaultSelector()

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = self._real.select(0 if timeout is not None else None)
        if not events and timeout is not None and timeout > 0:
            self._loop.advance(timeout)
        return events

    def get_map(self) -> Any:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose ``time()`` starts at 0 and moves only by jumps."""

    def __init__(self) -> None:
        self._virtual_now = 0.0
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        self._virtual_now += seconds


def run_virtual(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a fresh virtual-time loop (like ``asyncio.run``)."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main)
    finally:
        loop.close()
