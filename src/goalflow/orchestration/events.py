"""The events a goal run emits on the Prefect server, all about one resource.

Every event's resource is ``goalflow.goal.<flow run id>``, with the goal's flow run as
a related resource: ``goalflow.progress`` (plan ready, each finished task),
``goalflow.reflection.<verdict>``, ``goalflow.goal.finished``, and the budget alerts
``goalflow.budget.warning`` / ``goalflow.budget.exceeded``. A run stops itself at once
when its money is spent and then emits ``goalflow.goal.finished``; the
``goalflow-budget-exceeded`` automation cancels the flow run only when that does not
follow within its grace time, so a run that misbehaves is still stopped by the server,
and one that behaves keeps its own final state and message.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from prefect.events import emit_event

from goalflow.core.budget import BudgetAlert

__all__ = ["emit_budget_event", "emit_goal_event"]


def emit_goal_event(event: str, flow_run_id: UUID | None, payload: dict[str, Any]) -> None:
    """Emit ``event`` about the goal of ``flow_run_id`` (resource ``goalflow.goal.<id>``,
    the flow run related); nothing for a goal run outside a flow run."""
    if flow_run_id is None:
        return
    emit_event(
        event=event,
        resource={
            "prefect.resource.id": f"goalflow.goal.{flow_run_id}",
            "prefect.resource.name": "goal",
        },
        related=[
            {
                "prefect.resource.id": f"prefect.flow-run.{flow_run_id}",
                "prefect.resource.role": "flow-run",
            }
        ],
        payload={"flow_run_id": str(flow_run_id), **payload},
    )


def emit_budget_event(alert: BudgetAlert, flow_run_id: UUID | None) -> None:
    """Tell the Prefect server that spend crossed a threshold or ran out."""
    emit_goal_event(
        f"goalflow.budget.{alert.kind}",
        flow_run_id,
        {
            "fraction": alert.fraction,
            "spent_usd": round(alert.spent_usd, 6),
            "limit_usd": alert.limit_usd,
        },
    )
