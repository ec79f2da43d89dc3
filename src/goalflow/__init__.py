"""goalflow: an autonomous goal runner on Prefect.

An LLM plans a goal into tasks that declare what they consume and produce; goalflow
turns them into a graph, runs what is ready in parallel as Prefect runs, and hands
back the deliverables.

The public API is what ``__all__`` lists. Its names are imported when first used, so
that ``import goalflow.core`` (which needs neither Prefect nor openai) stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from goalflow.core.plan import Plan
    from goalflow.core.report import GoalResult, TaskReport
    from goalflow.core.task import Task, TaskSpec
    from goalflow.errors import (
        BudgetExceededError,
        ConfigError,
        GoalFailedError,
        GoalflowError,
        GoalStoppedError,
        LLMAuthError,
        LLMError,
        LLMModelNotFoundError,
        LLMRateLimitError,
        LLMRequestError,
        LLMUnreachableError,
        LocalModelError,
        PlanFileError,
        PlanningError,
        PlanPatchError,
        PlanRejectedError,
        RunnerUnreachableError,
        SandboxError,
        SandboxUnavailableError,
        StructuredOutputError,
        TaskError,
    )
    from goalflow.orchestration.goal_flow import achieve_goal
    from goalflow.orchestration.parameters import AdvancedOptions
    from goalflow.settings import GoalOptions

__version__ = "0.1.0"

__all__ = [
    "AdvancedOptions",
    "BudgetExceededError",
    "ConfigError",
    "GoalFailedError",
    "GoalOptions",
    "GoalResult",
    "GoalStoppedError",
    "GoalflowError",
    "LLMAuthError",
    "LLMError",
    "LLMModelNotFoundError",
    "LLMRateLimitError",
    "LLMRequestError",
    "LLMUnreachableError",
    "LocalModelError",
    "Plan",
    "PlanFileError",
    "PlanPatch",
    "PlanPatchError",
    "PlanRejectedError",
    "PlanningError",
    "RunnerUnreachableError",
    "SandboxError",
    "SandboxUnavailableError",
    "StructuredOutputError",
    "Task",
    "TaskError",
    "TaskReport",
    "TaskSpec",
    "achieve_goal",
]

_HOME = {
    "achieve_goal": "goalflow.orchestration.goal_flow",
    "AdvancedOptions": "goalflow.orchestration.parameters",
    "GoalOptions": "goalflow.settings",
    "GoalResult": "goalflow.core.report",
    "TaskReport": "goalflow.core.report",
    "Plan": "goalflow.core.plan",
    "PlanPatch": "goalflow.core.plan",
    "Task": "goalflow.core.task",
    "TaskSpec": "goalflow.core.task",
}


def __dir__() -> list[str]:
    return sorted(__all__)


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'goalflow' has no attribute {name!r}")
    module = importlib.import_module(_HOME.get(name, "goalflow.errors"))
    return getattr(module, name)
