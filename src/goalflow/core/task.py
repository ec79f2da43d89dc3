"""A task of a plan: what it does, the named values it consumes and produces.

No Prefect and no I/O here; the rules a set of tasks must keep are in
:mod:`goalflow.core.rules`, the plan that holds them in :mod:`goalflow.core.plan`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

__all__ = [
    "AT_LEAST_ONE",
    "DEFAULT_MAX_TASKS",
    "DIFFICULTY_DESCRIPTION",
    "MAX_DEPTH",
    "NAME",
    "Difficulty",
    "GoalInput",
    "Score",
    "Task",
    "TaskKind",
    "TaskSpec",
]

DEFAULT_MAX_TASKS = 25
MAX_DEPTH = 5  # the deepest breakdown a goal may ask for (--max-depth)
TaskKind = Literal["llm", "code", "composite"]
Difficulty = Literal["simple", "hard"]
DIFFICULTY_DESCRIPTION = (
    "'simple': routine language work a small model does well (rewording, a short "
    "summary, a list from given text); 'hard': anything needing reasoning, knowledge or "
    "care. Simple tasks run on a cheaper model."
)
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
# Said in the schema the model sees (grammar-constrained servers enforce it), but not
# validated by pydantic: check_tasks reports an empty list with a clearer message.
AT_LEAST_ONE: dict[str, Any] = {"minItems": 1}


def _clamp_score(value: Any) -> Any:
    """An estimate outside 1-10 is clamped, not worth a re-ask."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return min(max(float(value), 1.0), 10.0)
    return value


Score = Annotated[float, BeforeValidator(_clamp_score)]


class TaskSpec(BaseModel):
    """One step of a plan, as the model writes it."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(description="Short unique identifier, e.g. 'summarise'.")
    title: str = Field(description="A few words saying what the task does.")
    kind: TaskKind = Field(
        description="'llm': language work, answered in text; 'code': exact work (counting, "
        "arithmetic, sorting, string manipulation, parsing, conversions), done by a Python "
        "program; 'composite': too big for one step, to be broken down further."
    )
    instructions: str = Field(description="What to do, precisely enough to do it.")
    inputs: list[str] = Field(
        default_factory=list,
        description="Names of the values this task reads (goal inputs or other tasks' outputs).",
    )
    outputs: list[str] = Field(
        description="Names of the values this task produces.", json_schema_extra=AT_LEAST_ONE
    )
    format: str = Field(
        default="",
        description="The exact form of the outputs when the goal asks for one, e.g. 'one "
        "integer', 'names, comma-separated', 'a JSON object with keys name, capital' "
        "(empty: free text).",
    )
    acceptance: str = Field(
        default="", description="How to tell that the outputs are right (empty: no check)."
    )
    value: Score = Field(default=1.0, description="How much the task matters, 1-10.")
    effort: Score = Field(default=1.0, description="How much work it is, 1-10.")
    # Asked of the planner only when the goal has a task model (the planner then puts it
    # in the schema the model sees); a task without it runs on the planning model.
    difficulty: SkipJsonSchema[Difficulty] = "hard"


class Task(TaskSpec):
    """A task of a refined plan: a composite task carries its own sub-plan."""

    subtasks: list[Task] = Field(
        default_factory=list,
        description="The sub-plan a composite task was broken into (empty for leaf tasks).",
    )


class GoalInput(BaseModel):
    """Data the goal states literally, given a name that tasks can consume."""

    name: str = Field(description="Short identifier, e.g. 'sales_csv'.")
    value: str = Field(description="The data itself, copied from the goal.")
