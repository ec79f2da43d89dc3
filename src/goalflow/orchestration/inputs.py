"""What a goal run is given, checked before anything runs: the goal text, a saved plan
(as an object or a file, checked once against the plan rules), and how far planning
may go. The CLI uses the same checks, so a bad input fails before a run starts."""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import ValidationError

from goalflow.agent.planner import PlanningOptions
from goalflow.core.plan import Plan
from goalflow.core.rules import describe_validation_error
from goalflow.core.task import TaskKind
from goalflow.errors import ConfigError, PlanFileError
from goalflow.settings import Settings

__all__ = [
    "check_goal",
    "checked_plan",
    "given_plan",
    "load_plan",
    "planning_options",
    "read_goal",
]


def check_goal(goal: str) -> str:
    """The goal text, stripped; a clear error when there is none."""
    text = goal.strip()
    if not text:
        raise ConfigError('the goal is empty: say what you want done, e.g. "Write a haiku"')
    return text


def read_goal(given: str | None, goal_file: Path | None) -> str | None:
    """The goal as given on the command line: the text itself, ``-`` for standard input,
    or the contents of ``goal_file``; None when neither was given."""
    if goal_file is not None:
        if given:
            raise ConfigError("give the goal as text or as --goal-file, not both")
        try:
            return goal_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) else "it is not UTF-8 text"
            raise ConfigError(f"cannot read the goal file {goal_file}: {reason}") from e
    if given == "-":
        return sys.stdin.read()
    return given


def load_plan(path: Path, *, max_tasks: int | None = None) -> Plan:
    """A saved plan file, checked against the plan rules (once) before anything runs."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise PlanFileError(f"cannot read the plan file {path}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise PlanFileError(
            f"the plan file {path} is not UTF-8 text ({e.reason} at byte {e.start}): save it "
            "as UTF-8, e.g. with goalflow plan GOAL -o plan.json"
        ) from e
    try:
        plan = Plan.model_validate_json(text)
    except ValidationError as e:
        raise PlanFileError(
            f"{path} is not a valid goalflow plan:\n- "
            + "\n- ".join(describe_validation_error(e))
            + '\nWrite one with: goalflow plan "GOAL" -o plan.json'
        ) from e
    return checked_plan(plan, max_tasks=max_tasks, source=f"the plan in {path}")


def given_plan(
    plan: Plan | None, plan_file: str | None, *, max_tasks: int, goal: str
) -> Plan | None:
    """The plan a run of ``goal`` was given, as an object or a file, checked once and
    made for that goal (a saved plan runs the goal it was made for); None: plan."""
    if plan is not None and plan_file:
        raise ConfigError("give a saved plan as plan or as plan_file, not both")
    if plan_file:
        plan = load_plan(Path(plan_file), max_tasks=max_tasks)
        source = f"the plan in {plan_file}"
    elif plan is not None:
        plan = checked_plan(plan, max_tasks=max_tasks)
        source = "the plan"
    else:
        return None
    if " ".join(plan.goal.split()) != " ".join(goal.split()):
        raise ConfigError(
            f"{source} was made for the goal {plan.goal!r}, not {goal!r}: give its goal "
            "(a saved plan runs the goal it was made for), or leave the plan out to plan "
            "this one"
        )
    return plan


def checked_plan(plan: Plan, *, max_tasks: int | None = None, source: str = "the plan") -> Plan:
    """``plan`` when it keeps the plan rules, else a PlanFileError listing what it breaks."""
    errors = plan.errors(max_tasks=max_tasks) if max_tasks else plan.errors()
    if errors:
        raise PlanFileError(f"{source} breaks the plan rules:\n- " + "\n- ".join(errors))
    return plan


def planning_options(
    settings: Settings, *, code_tasks: bool, tiers: bool = False
) -> PlanningOptions:
    """How far planning may go for a goal; code tasks only where a sandbox runs them;
    each task marked simple or hard when the goal has a task model (``tiers``)."""
    kinds: tuple[TaskKind, ...] = (
        ("llm", "code", "composite") if code_tasks else ("llm", "composite")
    )
    return PlanningOptions(
        max_depth=settings.max_depth,
        max_tasks=settings.max_tasks,
        attempts=settings.plan_attempts,
        allowed_kinds=kinds,
        tiers=tiers,
    )
