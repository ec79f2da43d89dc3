"""The goal flow: ``achieve_goal`` reads its parameters, builds a goal run, awaits it.

Each parameter but ``goal``, ``plan`` and ``plan_file`` is a field of
:class:`~goalflow.settings.GoalOptions`; unset ones come from the environment, then the
blocks they name (:func:`~goalflow.orchestration.options.resolve_options`). The run
itself is :class:`~goalflow.orchestration.goal_run.GoalRun`. A goal that did not
produce every deliverable raises :class:`~goalflow.errors.GoalFailedError` (stopped:
:class:`~goalflow.errors.GoalStoppedError`), so the flow run's final state says why; a
goal cancelled on the server or by a signal ends ``Cancelled`` with its reason.
"""

from __future__ import annotations

import textwrap
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Cancelled

from goalflow.core.plan import Plan
from goalflow.core.progress import current_observer
from goalflow.core.report import GoalResult
from goalflow.errors import GoalStoppedError
from goalflow.orchestration.goal_run import GoalRun
from goalflow.orchestration.inputs import given_plan
from goalflow.orchestration.options import resolve_options
from goalflow.settings import GoalOptions

__all__ = ["achieve_goal"]


def _goal_run_name() -> str:
    parameters: dict[str, Any] = flow_run.get_parameters()
    goal = parameters.get("goal") or ""
    plan = parameters.get("plan")
    if not goal and parameters.get("plan_file"):
        goal = f"plan {parameters['plan_file']}"
    if not goal and plan is not None:
        goal = plan.goal if isinstance(plan, Plan) else dict(plan).get("goal", "")
    return "goal: " + textwrap.shorten(str(goal), width=60, placeholder="…")


@flow(name="achieve-goal", flow_run_name=_goal_run_name, log_prints=False)
async def achieve_goal(
    goal: str = "",
    plan: Plan | None = None,
    plan_file: str | None = None,
    model: str | None = None,
    concurrency: int | None = None,
    max_depth: int | None = None,
    max_usd: float | None = None,
    max_seconds: float | None = None,
    budget_block: str | None = None,
    llm_block: str | None = None,
    sandbox_block: str | None = None,
    approve: bool | None = None,
    approval_timeout: float | None = None,
    reflection: bool | None = None,
    reflection_block: str | None = None,
    reflect_every_tasks: int | None = None,
    reflect_every_seconds: float | None = None,
    stuck_repeats: int | None = None,
    max_revisions: int | None = None,
    task_runner: str | None = None,
    runner_address: str | None = None,
    task_cache: bool | None = None,
) -> GoalResult:
    """Plan ``goal`` (or take a saved ``plan``, or the one in ``plan_file``), run its
    tasks, hand back the deliverables. The other parameters are the goal's options
    (``goalflow.settings.GoalOptions``); unset, the environment and blocks decide."""
    given = {k: v for k, v in locals().items() if k in GoalOptions.model_fields}
    options = await resolve_options(GoalOptions.given(given))
    plan = given_plan(plan, plan_file, max_tasks=options.settings.max_tasks)
    run_id = UUID(flow_run.get_id()) if flow_run.get_id() else None
    run = GoalRun(goal, plan, options, flow_run_id=run_id, observer=current_observer())
    result = await run.run()
    get_run_logger().info(result.message)
    if result.status == "stopped" and run.guard.cancelled:
        # Cancelling -> Cancelled, with goalflow's reason (the server refuses a Failed
        # state for a run it is cancelling). Prefect makes a returned state the run's
        # final state and raises its data to the caller: GoalStoppedError, as before.
        stopped = GoalStoppedError(result.message, result)
        return Cancelled(message=result.message, data=stopped)  # type: ignore[return-value]
    return result.raise_for_status()
