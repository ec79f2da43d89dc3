"""What a goal does when its money runs out: it starts no more tasks, lets the running
ones end, then stops.

The first model call the ledger refuses (nothing in flight can free enough for it) sets
this off. The calls in flight are paid for, so the tasks they serve finish; a running
task's next call still goes out when it fits, and is refused (failing that task) when it
does not. No task starts after, at any level of the plan: each level's graph is held,
and its tasks not yet started are skipped with the reason. Once nothing runs and
nothing is held in the ledger, the goal stops, saying what it spent; its
``goalflow.budget.exceeded`` event carries that spend.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from goalflow.core.budget import BudgetAlert, Ledger
from goalflow.core.scheduler import GraphRun, TaskOutcome
from goalflow.orchestration.guard import RunGuard

__all__ = ["MoneyStop"]

SETTLE_POLL_SECONDS = 0.05  # how often a money stop looks whether the running tasks ended


class MoneyStop:
    """The money stop of one goal run; ``outcomes`` are the run's tasks at every level."""

    def __init__(self, guard: RunGuard, outcomes: Mapping[str, TaskOutcome]) -> None:
        self._guard = guard
        self._outcomes = outcomes
        self._graphs: set[GraphRun] = set()  # every level running now
        self._limit_usd = 0.0
        self._ledger: Ledger | None = None  # set when the money ran out
        self._draining: asyncio.Future[None] | None = None

    @contextmanager
    def level(self, graph: GraphRun) -> Iterator[None]:
        """While ``graph`` runs, a money stop holds it (at once, if one has begun)."""
        if self._ledger is not None:
            graph.hold(self._why)
        self._graphs.add(graph)
        try:
            yield
        finally:
            self._graphs.discard(graph)

    def begin(self, limit_usd: float, ledger: Ledger) -> None:
        """The money of ``ledger`` cannot cover the next call: hold every level, and stop
        the run once the running tasks have ended."""
        if self._ledger is not None:
            return
        self._limit_usd, self._ledger = limit_usd, ledger
        for graph in self._graphs:
            graph.hold(self._why)
        self._draining = asyncio.ensure_future(self._stop_when_ended())

    @property
    def _why(self) -> str:
        return f"the money budget of ${self._limit_usd:g} cannot cover the next model call"

    @property
    def reason(self) -> str | None:
        """Why the goal stopped for money, with what it spent in the end; None before."""
        if self._ledger is None:
            return None
        return f"{self._why} (${self._ledger.spent_usd:.4f} spent)"

    def alert(self) -> BudgetAlert | None:
        """The goal's ``exceeded`` alert, with what it spent in the end; None before."""
        if self._ledger is None:
            return None
        return BudgetAlert("exceeded", 1.0, self._ledger.spent_usd, self._limit_usd)

    def close(self) -> None:
        if self._draining is not None:
            self._draining.cancel()

    async def _stop_when_ended(self) -> None:
        assert self._ledger is not None
        # Polled: the ledger is settled from other threads too (a thread-safe lock, no loop).
        while self._ledger.reserved_usd > 0 or any(  # noqa: ASYNC110
            o.status == "running" for o in self._outcomes.values()
        ):
            await asyncio.sleep(SETTLE_POLL_SECONDS)
        self._guard.stop(self.reason or "")
