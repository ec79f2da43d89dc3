"""A suite of checkable goals for goalflow (issue 12), with reference solutions.

Each goal has an id, a category (:data:`CATEGORIES`), an exact check on its answer
(:mod:`.checks`) and a reference solution that the project's test server can serve
(:mod:`.scripted`). ``benchmarks/goals.py`` runs any subset of :data:`SUITE`.
"""

from __future__ import annotations

from . import composed, data, exact
from .suite import CATEGORIES, Category, Goal, Reference, Step

__all__ = ["CATEGORIES", "SUITE", "Category", "Goal", "Reference", "Step", "select"]

SUITE: tuple[Goal, ...] = (*exact.GOALS, *data.GOALS, *composed.GOALS)


def select(only: list[str] | None = None, categories: list[str] | None = None) -> list[Goal]:
    """The goals named in ``only`` (in that order) or of ``categories`` (suite order);
    every goal when neither is given. An unknown id or category is a ValueError."""
    by_id = {goal.id: goal for goal in SUITE}
    unknown = [gid for gid in only or [] if gid not in by_id]
    unknown += [c for c in categories or [] if c not in CATEGORIES]
    if unknown:
        raise ValueError(
            f"unknown goal id or category: {', '.join(unknown)}; ids are "
            f"{', '.join(by_id)}; categories are {', '.join(CATEGORIES)}"
        )
    goals = [by_id[gid] for gid in only] if only else list(SUITE)
    if categories:
        goals = [goal for goal in goals if goal.category in categories]
    return goals
