"""The goal flow: ``achieve_goal`` reads its parameters, builds a goal run, awaits it.

The goal is required; a saved plan (``plan`` or ``plan_file``) made for it runs instead
of a new plan. Every other parameter, and every field of the ``advanced`` section, is a
field of :class:`~goalflow.settings.GoalOptions`
(:mod:`~goalflow.orchestration.parameters`); unset ones come from the environment, then
the blocks they name (:func:`~goalflow.orchestration.options.resolve_options`). The run
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
from pydantic import Field

from goalflow.core.plan import Plan
from goalflow.core.progress import current_observer
from goalflow.core.report import GoalResult, delivered_line
from goalflow.errors import GoalFailedError, GoalflowError
from goalflow.orchestration.goal_run import GoalRun
from goalflow.orchestration.inputs import given_plan
from goalflow.orchestration.options import resolve_options
from goalflow.orchestration.parameters import FORM_OPTIONS, AdvancedOptions, given_options
from goalflow.settings import GoalOptions

__all__ = ["achieve_goal"]


def _checked(name: str, kind: Any) -> Any:
    """``kind`` with the constraints of the GoalOptions field ``name`` (``gt=0``, ...):
    Prefect writes them into the deployment's parameter schema, so a run that breaks
    one is refused when it is created, with the reason, instead of failing later."""
    return Annotated[(kind, *GoalOptions.model_fields[name].metadata)]


if TYPE_CHECKING:  # the plain types; at run time, the same with their constraints
    _Goal = str
    _MaxUsd = float | None
    _MaxSeconds = float | None
else:
    _Goal = Annotated[str, Field(min_length=1)]
    _MaxUsd = _checked("max_usd", float | None)
    _MaxSeconds = _checked("max_seconds", float | None)


def _goal_run_name() -> str:
    goal = str(flow_run.get_parameters().get("goal") or "")
    return "goal: " + textwrap.shorten(goal, width=60, placeholder="…")


@flow(name="achieve-goal", flow_run_name=_goal_run_name, log_prints=False)
async def achieve_goal(
    goal: _Goal,
    plan: Plan | None = None,
    plan_file: str | None = None,
    model: str | None = None,
    max_usd: _MaxUsd = None,
    max_seconds: _MaxSeconds = None,
    approve: bool | None = None,
    advanced: AdvancedOptions = AdvancedOptions(),  # noqa: B008 (a frozen default)
) -> GoalResult:
    """Plan ``goal`` (or run the saved ``plan``, or the one in ``plan_file``, made for
    it), run its tasks, hand back the deliverables. The other parameters are the goal's
    options (``goalflow.settings.GoalOptions``), the less common ones in ``advanced``;
    unset, the environment and blocks decide."""
    top = {name: value for name, value in locals().items() if name in FORM_OPTIONS}
    try:
        options = await resolve_options(given_options(advanced, **top))
        plan = given_plan(plan, plan_file, max_tasks=options.settings.max_tasks, goal=goal)
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
    "goal": "What you want done, in plain words (with a saved plan: the goal it was made for).",
    "plan": "A saved plan as an object, to run instead of planning.",
    "plan_file": "The path of a saved plan (goalflow plan GOAL -o plan.json) on the machine "
    "the run executes on, to run instead of planning.",
}
_ADVANCED = (
    "More options: concurrency, planning depth, blocks, approval, reflection, task runner, "
    "cache. A field left empty takes the worker's setting (its GOALFLOW_* variable, then a block)."
)


def _describe_parameters() -> None:
    """Each parameter's description, where Prefect reads it (a Google-style ``Args:``
    section of the flow function's docstring) for the deployment's run form: the goal's
    own, then each option's from GoalOptions (one description for the CLI, the
    environment and the form; the advanced section's fields carry theirs)."""
    options = {
        name: f"{GoalOptions.model_fields[name].description} Unset here: the worker's "
        f"GOALFLOW_{name.upper()} first."
        for name in FORM_OPTIONS
    }
    described = {**_GIVEN, **options, "advanced": _ADVANCED}
    lines = [f"        {name}: {' '.join(text.split())}" for name, text in described.items()]
    documented = f"{achieve_goal.fn.__doc__}\n\n    Args:\n" + "\n".join(lines)
    achieve_goal.fn.__doc__ = achieve_goal.__doc__ = documented  # the Flow copied it at init


_describe_parameters()
