"""Progress of a goal run, for whoever watches it in the same process (the CLI)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

from goalflow.core.budget import Ledger
from goalflow.core.plan import Plan
from goalflow.core.scheduler import TaskOutcome

__all__ = ["Observer", "current_observer", "observe"]


class Observer:
    """Told what a goal run does; the base class ignores everything."""

    def attach(self, ledger: Ledger, max_seconds: float | None) -> None:
        """The goal's ledger (tokens, cost, money budget) and its time budget, if any."""

    def step(self, message: str) -> None:
        """A planning step began, or a plan or deliverable was settled ("settled: ...")."""

    def awaiting_approval(
        self, plan: Plan, flow_run_id: str, seconds_left: float, problems: Sequence[str]
    ) -> None:
        """The run paused for a person's decision on ``plan``; ``problems`` say why the
        last decision could not be used (empty on the first wait)."""

    def plan_ready(self, plan: Plan) -> None:
        """The plan is final; its tasks are about to run."""

    def task_changed(self, path: str, outcome: TaskOutcome) -> None:
        """A task started or ended; ``path`` is e.g. ``draft/outline``."""


_OBSERVER: ContextVar[Observer] = ContextVar("goalflow_observer", default=Observer())  # noqa: B039


def current_observer() -> Observer:
    return _OBSERVER.get()


@contextmanager
def observe(observer: Observer) -> Iterator[None]:
    """Report the goal runs started inside this block to ``observer``."""
    token = _OBSERVER.set(observer)
    try:
        yield
    finally:
        _OBSERVER.reset(token)
