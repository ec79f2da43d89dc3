"""The goal flow: ``achieve_goal`` reads its parameters, builds a goal run, awaits it.

Each parameter but ``goal``, ``plan`` and ``plan_file`` is a field of
:class:`~goalflow.settings.GoalOptions`; unset ones come from the environment, then the
blocks they name (:func:`~goalflow.orchestration.options.resolve_options`). The run
itself is :class:`~goalflow.orchestration.goal_run.GoalRun`. A goal that did not
produce every deliverable raises :class:`~goalflow.errors.GoalFailedError` (stopped:
:class:`~goalflow.errors.GoalStoppedError`) to its caller, and its flow run ends Failed
with the reason as the state's message (Cancelled, when it was cancelled on the server
or by a signal); input that cannot work (a parameter, a setting, a block) ends it Failed
with the one-line error, not a traceback. Each constrained option is constrained in the
parameter schema too, so a deployment run that breaks one is refused when it is created.
"""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Cancelled, Completed, Failed

from goalflow.core.plan import Plan
from goalflow.core.progress import current_observer
from goalflow.core.report import GoalResult, delivered_line
from goalflow.errors import GoalFailedError, GoalflowError
from goalflow.orchestration.goal_run import GoalRun
from goalflow.orchestration.inputs import given_plan
from goalflow.orchestration.options import resolve_options
from goalflow.settings import GoalOptions

__all__ = ["achieve_goal"]


def _checked(name: str, kind: Any) -> Any:
    """``kind`` with the constraints of the GoalOptions field ``name`` (``ge=1``, ...):
    Prefect writes them into the deployment's parameter schema, so a run that breaks
    one is refused when it is created, with the reason, instead of failing later."""
    return Annotated[(kind, *GoalOptions.model_fields[name].metadata)]


if TYPE_CHECKING:  # the plain types; at run time, the same with their constraints
    _Concurrency = int | None
    _MaxDepth = int | None
    _MaxUsd = float | None
    _MaxSeconds = float | None
    _ApprovalTimeout = float | None
    _ReflectEveryTasks = int | None
    _ReflectEverySeconds = float | None
    _StuckRepeats = int | None
    _MaxRevisions = int | None
else:
    _Concurrency = _checked("concurrency", int | None)
    _MaxDepth = _checked("max_depth", int | None)
    _MaxUsd = _checked("max_usd", float | None)
    _MaxSeconds = _checked("max_seconds", float | None)
    _ApprovalTimeout = _checked("approval_timeout", float | None)
    _ReflectEveryTasks = _checked("reflect_every_tasks", int | None)
    _ReflectEverySeconds = _checked("reflect_every_seconds", float | None)
    _StuckRepeats = _checked("stuck_repeats", int | None)
    _MaxRevisions = _checked("max_revisions", int | None)


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
    concurrency: _Concurrency = None,
    max_depth: _MaxDepth = None,
    max_usd: _MaxUsd = None,
    max_seconds: _MaxSeconds = None,
    budget_block: str | None = None,
    llm_block: str | None = None,
    sandbox_block: str | None = None,
    approve: bool | None = None,
    approval_timeout: _ApprovalTimeout = None,
    reflection: bool | None = None,
    reflection_block: str | None = None,
    reflect_every_tasks: _ReflectEveryTasks = None,
    reflect_every_seconds: _ReflectEverySeconds = None,
    stuck_repeats: _StuckRepeats = None,
    max_revisions: _MaxRevisions = None,
    task_runner: str | None = None,
    runner_address: str | None = None,
    task_cache: bool | None = None,
    fresh: bool | None = None,
) -> GoalResult:
    """Plan ``goal`` (or take a saved ``plan``, or the one in ``plan_file``), run its
    tasks, hand back the deliverables. The other parameters are the goal's options
    (``goalflow.settings.GoalOptions``); unset, the environment and blocks decide."""
    given = {k: v for k, v in locals().items() if k in GoalOptions.model_fields}
    try:
        options = await resolve_options(GoalOptions.given(given))
        plan = given_plan(plan, plan_file, max_tasks=options.settings.max_tasks)
        run_id = UUID(flow_run.get_id()) if flow_run.get_id() else None
        run = GoalRun(goal, plan, options, flow_run_id=run_id, observer=current_observer())
        result = await run.run()
    except GoalflowError as e:  # what to change, said once: no traceback in the run's log
        get_run_logger().error("%s", e)
        return Failed(message=str(e), data=e)  # type: ignore[return-value]
    get_run_logger().info(result.message)
    # A returned state is the run's final state: its message says how the goal ended and
    # what it delivered (where `prefect deployment run --watch` and the UI show it).
    # Prefect hands its data to the caller, raising it when it is an error.
    line = delivered_line(result)
    try:
        return Completed(message=line, data=result.raise_for_status())  # type: ignore[return-value]
    except GoalFailedError as e:
        # A run cancelled on the server (or by a signal) goes Cancelling -> Cancelled
        # with goalflow's reason: the server refuses Failed for it.
        cancelled = result.status == "stopped" and run.guard.cancelled
        final = Cancelled if cancelled else Failed
        return final(message=line, data=e)  # type: ignore[return-value]


_GIVEN = {
    "goal": "What you want done, in plain words (leave empty when you give a plan).",
    "plan": "A saved plan (goalflow plan GOAL -o plan.json) to run instead of planning.",
    "plan_file": "The path of a saved plan file, on the machine the run executes on.",
}


def _describe_parameters() -> None:
    """Each parameter's description, where Prefect reads it (a Google-style ``Args:``
    section of the flow function's docstring) for the deployment's run form: the goal's
    own, then each option's from GoalOptions (one description for the CLI, the
    environment and the form)."""
    described = {**_GIVEN, **{n: f.description or "" for n, f in GoalOptions.model_fields.items()}}
    lines = [f"        {name}: {' '.join(text.split())}" for name, text in described.items()]
    documented = f"{achieve_goal.fn.__doc__}\n\n    Args:\n" + "\n".join(lines)
    achieve_goal.fn.__doc__ = achieve_goal.__doc__ = documented  # the Flow copied it at init


_describe_parameters()
