"""Running suite goals through goalflow's real ``achieve_goal`` flow, and judging them.

Needs a Prefect API (``PREFECT_API_URL`` or a test harness) and a model: whatever the
environment configures (``OPENAI_*``, else the offline model), which for the reference
solutions is the test server with a :class:`~goal_suite.scripted.ReferenceModel`.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from goalflow import GoalFailedError, GoalOptions, GoalResult, achieve_goal
from goalflow.orchestration.parameters import flow_parameters

from .suite import CATEGORIES, Goal

__all__ = ["GoalOutcome", "run_goal", "summary"]


@dataclass(frozen=True)
class GoalOutcome:
    """How one goal went: ``status`` is goalflow's (completed, failed, stopped), or
    ``error`` when the run raised before it had a result (e.g. planning gave up).
    Solved means completed, with a deliverable the goal's check accepts."""

    goal: Goal
    solved: bool
    status: str
    reason: str  # why it is not solved ('' when it is)
    seconds: float
    tasks: dict[str, int] = field(default_factory=dict)  # by kind
    calls: int | None = None
    tokens: int | None = None
    deliverables: dict[str, str] = field(default_factory=dict)
    plan: dict[str, Any] = field(default_factory=dict)  # the inputs and tasks it ran

    def record(self) -> dict[str, Any]:
        """Everything about the run as JSON, deliverables included."""
        return {
            "id": self.goal.id,
            "category": self.goal.category,
            "solved": self.solved,
            "status": self.status,
            "reason": self.reason,
            "seconds": round(self.seconds, 2),
            "tasks": self.tasks,
            "calls": self.calls,
            "tokens": self.tokens,
            "deliverables": self.deliverables,
            "plan": self.plan,
        }

    def line(self) -> str:
        """One row of the runner's table."""
        kinds = " ".join(f"{kind}={n}" for kind, n in sorted(self.tasks.items())) or "-"
        calls = "-" if self.calls is None else str(self.calls)
        tokens = "-" if self.tokens is None else str(self.tokens)
        row = (
            f"{self.goal.id:<26} {self.goal.category:<11} {'yes' if self.solved else 'NO':<6} "
            f"{self.status:<9} {kinds:<26} {calls:>5} {tokens:>7} {self.seconds:7.1f}"
        )
        return row if self.solved else f"{row}  {self.reason}"


HEADER = (
    f"{'goal':<26} {'category':<11} {'solved':<6} {'status':<9} {'tasks by kind':<26} "
    f"{'calls':>5} {'tokens':>7} {'seconds':>7}"
)


async def run_goal(goal: Goal, *, options: dict[str, Any] | None = None) -> GoalOutcome:
    """Run ``goal`` with ``achieve_goal`` (``options`` are GoalOptions fields: model,
    reflection, budgets...) and judge its deliverables with the goal's check."""
    started = time.monotonic()
    result: GoalResult | None = None
    error = ""
    try:
        parameters = flow_parameters(GoalOptions.given(options or {}))
        result = await achieve_goal(goal.text, **parameters)
    except GoalFailedError as e:  # stopped, too: it ran, and its result says how far
        result = e.result
    except Exception as e:  # planning gave up, a bug: the suite goes on with the next goal
        error = f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
    seconds = time.monotonic() - started
    if result is None:
        return GoalOutcome(goal, solved=False, status="error", reason=error, seconds=seconds)
    reason = goal.judge(result.deliverables)
    if result.status != "completed":  # goalflow itself says the goal was not achieved
        reason = f"{result.message} ({reason or 'the deliverables it has are right'})"
    return GoalOutcome(
        goal,
        solved=reason is None,
        status=result.status,
        reason=" ".join((reason or "").split())[:300],
        seconds=seconds,
        tasks=dict(Counter(t.kind for t in result.tasks)),
        calls=result.usage.calls,
        tokens=result.usage.prompt_tokens + result.usage.completion_tokens,
        deliverables=dict(result.deliverables),
        plan=result.plan.model_dump(include={"inputs", "deliverables", "tasks"})
        if result.plan
        else {},
    )


def summary(outcomes: Sequence[GoalOutcome]) -> dict[str, Any]:
    """The solved rate, in all and by category, with the median seconds and calls."""

    def rate(group: Sequence[GoalOutcome]) -> dict[str, Any]:
        solved = sum(o.solved for o in group)
        return {"solved": solved, "goals": len(group), "rate": round(solved / len(group), 3)}

    calls = [o.calls for o in outcomes if o.calls is not None]
    return {
        **rate(outcomes),
        "by_category": {
            category: rate(group)
            for category in CATEGORIES
            if (group := [o for o in outcomes if o.goal.category == category])
        },
        "median_seconds": round(statistics.median(o.seconds for o in outcomes), 2),
        "median_calls": statistics.median(calls) if calls else None,
        "unsolved": [o.goal.id for o in outcomes if not o.solved],
    }
