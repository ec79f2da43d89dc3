"""What a goal does when its money runs out: it starts no more tasks, lets the running
ones end, then stops.

The ledger says when the money has run out: a model call is refused (nothing in flight
can free enough for it) and what is left cannot cover even a call like the smallest the
goal has made. A larger call refused before that fails only its own task, and the goal
goes on with the calls that still fit; it ends stopped for money all the same.
Once the money has run out, the calls in flight are paid for, so the tasks they serve
finish; a running task's next call still goes out when it fits, and is refused
(failing that task) when it does not. No task starts after, at any level of the plan:
each level's graph is held, and its tasks not yet started are skipped with the reason.
Once nothing runs and nothing is held in the ledger, the goal stops, saying what it
spent; its ``goalflow.budget.exceeded`` event carries that spend.
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
    """The money stop of one goal run; ``outcomes`` are the run's tasks at every level,
    ``ledger`` their calls' money."""

    def __init__(
        self, guard: RunGuard, outcomes: Mapping[str, TaskOutcome], ledger: Ledger
    ) -> None:
        self._guard = guard
        self._outcomes = outcomes
        self._ledger = ledger
        self._graphs: set[GraphRun] = set()  # every level running now
        self._begun = False
        self._call_usd: float | None = None  # what the call that was refused may cost
        self._draining: asyncio.Future[None] | None = None

    @contextmanager
    def level(self, graph: GraphRun) -> Iterator[None]:
        """While ``graph`` runs, a money stop holds it (at once, if one has begun)."""
        if self._begun:
            graph.hold(self._why)
        self._graphs.add(graph)
        try:
            yield
        finally:
            self._graphs.discard(graph)

    def begin(self, call_usd: float | None = None) -> None:
        """The money cannot cover the next call (which may cost ``call_usd``): hold every
        level, and stop the run once the running tasks have ended."""
        if self._begun:
            return
        self._begun, self._call_usd = True, call_usd
        for graph in self._graphs:
            graph.hold(self._why)
        self._draining = asyncio.ensure_future(self._stop_when_ended())

    @property
    def _limit_usd(self) -> float:
        return self._ledger.budget.limit_usd if self._ledger.budget else 0.0

    @property
    def _why(self) -> str:
        budget = f"the money budget of ${self._limit_usd:g}"
        if not self._begun:
            return f"{budget} cannot cover every call the tasks needed"
        if self._call_usd is None:
            return f"{budget} cannot cover the next model call"
        return f"{budget} cannot cover the next model call (up to ${self._call_usd:.4f})"

    @property
    def _stopped(self) -> bool:
        """The money ran out, or a refused call left a task undone."""
        return self._begun or (
            self._ledger.refused and any(o.status != "completed" for o in self._outcomes.values())
        )

    @property
    def reason(self) -> str | None:
        """Why the goal stopped for money (it ran out, or calls of some tasks were
        refused), with what it spent in the end; None when it did not."""
        if not self._stopped:
            return None
        return (
            f"{self._why}; ${self._ledger.spent_usd:.4f} spent. Raise the budget (--max-usd "
            "or BudgetPolicy max_usd)"
        )

    def alert(self) -> BudgetAlert | None:
        """The goal's ``exceeded`` alert, with what it spent in the end; None when the
        money did not stop it."""
        if not self._stopped:
            return None
        return BudgetAlert("exceeded", 1.0, self._ledger.spent_usd, self._limit_usd)

    def close(self) -> None:
        if self._draining is not None:
            self._draining.cancel()

    async def _stop_when_ended(self) -> None:
        # Polled: the ledger is settled from other threads too (a thread-safe lock, no loop).
        while self._ledger.reserved_usd > 0 or any(  # noqa: ASYNC110
            o.status == "running" for o in self._outcomes.values()
        ):
            await asyncio.sleep(SETTLE_POLL_SECONDS)
        self._guard.stop(self.reason or "")
