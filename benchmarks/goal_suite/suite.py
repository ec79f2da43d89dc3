"""What a suite goal is: its text, its category, an exact check, and a reference solution.

A reference solution is the plan a capable planner would write (a ``PlanDraft`` as JSON:
goal inputs, deliverables, tasks) with the answer of each ``llm`` task and the program
of each ``code`` task. Programs keep to the file protocol of code tasks: each input is a
file named after it in the working directory, and each output is written to a file
named after it. The project's test server answers with these
(:class:`~goal_suite.scripted.ReferenceModel`), which checks goalflow's plumbing apart
from any model; the suite's unit test runs them without goalflow
(:func:`~goal_suite.scripted.solve_locally`), which checks the solutions themselves.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from goalflow.core.plan import Plan
from goalflow.core.task import Task

from .checks import Check

__all__ = [
    "CATEGORIES",
    "Category",
    "Goal",
    "Reference",
    "Step",
    "code",
    "composite",
    "llm",
    "reference",
]

Category = Literal[
    "text",
    "counting",
    "arithmetic",
    "sorting",
    "parsing",
    "conversion",
    "format",
    "multistep",
    "code_input",
]

CATEGORIES: dict[Category, str] = {
    "text": "text transforms",
    "counting": "counting",
    "arithmetic": "arithmetic",
    "sorting": "sorting and filtering",
    "parsing": "parsing CSV/JSON stated in the goal",
    "conversion": "unit and date conversions",
    "format": "formatted outputs (comma-separated, one per line, JSON with given keys)",
    "multistep": "two to five tasks with parallel branches and a combining step",
    "code_input": "a code task reading a literal input",
}
"""The categories of issue 12, with what each covers."""


@dataclass(frozen=True)
class Step:
    """One task of a reference plan, with what the model should answer for it."""

    id: str
    title: str
    kind: Literal["llm", "code", "composite"]
    instructions: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    acceptance: str = ""
    answer: Mapping[str, str] = field(default_factory=dict)  # llm: output -> value
    program: str = ""  # code: the whole program
    steps: tuple[Step, ...] = ()  # composite: its sub-plan

    def spec(self) -> dict[str, Any]:
        """The task as a model writes it in a plan (JSON)."""
        return {
            "id": self.id,
            "title": self.title,
            "kind": self.kind,
            "instructions": self.instructions,
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "acceptance": self.acceptance,
        }

    def task(self) -> Task:
        return Task(**self.spec(), subtasks=[step.task() for step in self.steps])


def llm(
    tid: str,
    title: str,
    instructions: str,
    inputs: list[str],
    outputs: list[str],
    answer: str | Mapping[str, str],
    *,
    acceptance: str = "",
) -> Step:
    """An ``llm`` task; ``answer`` is its one output's value, or the values by output."""
    values = {outputs[0]: answer} if isinstance(answer, str) else dict(answer)
    return Step(tid, title, "llm", instructions, tuple(inputs), tuple(outputs), acceptance, values)


def code(
    tid: str,
    title: str,
    instructions: str,
    inputs: list[str],
    outputs: list[str],
    program: str,
    *,
    acceptance: str = "",
) -> Step:
    """A ``code`` task and its program (dedented)."""
    body = textwrap.dedent(program).strip() + "\n"
    return Step(
        tid, title, "code", instructions, tuple(inputs), tuple(outputs), acceptance, program=body
    )


def composite(
    tid: str, title: str, instructions: str, inputs: list[str], outputs: list[str], *steps: Step
) -> Step:
    """A ``composite`` task and the sub-plan it is broken into."""
    return Step(tid, title, "composite", instructions, tuple(inputs), tuple(outputs), steps=steps)


@dataclass(frozen=True)
class Reference:
    """A goal's reference solution: literal inputs, deliverables, and the tasks."""

    inputs: Mapping[str, str]
    deliverables: tuple[str, ...]
    steps: tuple[Step, ...]

    def plan_draft(self) -> dict[str, Any]:
        """The top level of the plan, as the planner's model answers it (``PlanDraft``)."""
        return {
            "inputs": [{"name": name, "value": value} for name, value in self.inputs.items()],
            "deliverables": list(self.deliverables),
            "tasks": [step.spec() for step in self.steps],
        }

    def plan(self, goal: str) -> Plan:
        """The whole plan, composite tasks broken down, as goalflow runs it."""
        return Plan(
            goal=goal,
            inputs=dict(self.inputs),
            deliverables=list(self.deliverables),
            tasks=[step.task() for step in self.steps],
        )

    def walk(self) -> Iterator[Step]:
        """Every step at every level, parents before their sub-steps."""

        def walk(steps: tuple[Step, ...]) -> Iterator[Step]:
            for step in steps:
                yield step
                yield from walk(step.steps)

        return walk(self.steps)


def reference(inputs: Mapping[str, str], deliverables: list[str], *steps: Step) -> Reference:
    return Reference(dict(inputs), tuple(deliverables), steps)


@dataclass(frozen=True)
class Goal:
    """One goal of the suite.

    ``check`` judges one deliverable's text; ``wrong`` is a plausible wrong answer (the
    kind a model gives) that it must reject.
    """

    id: str
    category: Category
    text: str
    check: Check
    wrong: str
    reference: Reference

    def judge(self, deliverables: Mapping[str, str]) -> str | None:
        """None when the goal is solved, else why not.

        The goal asks for one answer; the deliverables' names are the planner's choice,
        so the values are checked, not the names. A plan may also deliver intermediate
        results: the goal is solved when one deliverable holds the answer.
        """
        if not deliverables:
            return "no deliverable"
        reasons = [self.check(value) for value in deliverables.values()]
        if any(reason is None for reason in reasons):
            return None
        if len(reasons) == 1:
            return reasons[0]
        return f"none of {len(reasons)} deliverables is right: " + "; ".join(
            f"{name}: {reason}" for name, reason in zip(deliverables, reasons, strict=True)
        )
