"""The reference solutions at work: as the test server's model, and on their own.

:class:`ReferenceModel` is a ``default=`` reply function for
:class:`goalflow.testing.OpenAITestServer`: it answers each call of a goal run from the
current goal's reference solution, telling calls apart by their response schema
(``PlanDraft``, ``SubPlanDraft``, ``TaskAnswer``, ``Program``, ``Verdict``,
``Reflection``). The task a call is about is found by what goalflow must tell the
model whatever its prompts say: a ``TaskAnswer``'s fields are the task's outputs, and a
program or sub-plan request carries the task's instructions. A call it cannot answer
gets HTTP 400 saying why, so a plumbing fault shows as a failed goal, never as a lucky
answer.

:func:`solve_locally` runs a reference solution without goalflow (the programs as
plain subprocesses), which is how the suite's unit test checks that every reference
answer is right.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from goalflow.testing import ChatRequest, Reply

from .suite import Goal, Reference, Step

__all__ = ["REFERENCE_MODEL", "ReferenceModel", "solve_locally"]

REFERENCE_MODEL = "goal-suite-reference"
"""The model name the test server answers to when it serves the reference solutions."""


class ReferenceModel:
    """Answers the calls of one goal at a time from its reference solution; set
    ``goal`` before running it (goals run one after another)."""

    def __init__(self) -> None:
        self.goal: Goal | None = None

    def __call__(self, request: ChatRequest) -> str | Reply:
        goal = self.goal
        if goal is None:
            return _refuse("no goal is being run")
        solution = goal.reference
        match request.schema_name:
            case "PlanDraft":
                return json.dumps(solution.plan_draft())
            case "SubPlanDraft":
                step = _named_by_instructions(request, solution, "composite")
                if step is None:
                    return _refuse(f"no composite task of {goal.id} is named in this request")
                return json.dumps({"tasks": [sub.spec() for sub in step.steps]})
            case "TaskAnswer":
                outputs = set((request.schema or {}).get("properties", {}))
                step = next(
                    (s for s in solution.walk() if s.kind == "llm" and set(s.outputs) == outputs),
                    None,
                )
                if step is None:
                    return _refuse(f"no llm task of {goal.id} has the outputs {sorted(outputs)}")
                return json.dumps(dict(step.answer))
            case "Program":
                step = _named_by_instructions(request, solution, "code")
                if step is None:
                    return _refuse(f"no code task of {goal.id} is named in this request")
                return json.dumps({"code": step.program})
            case "Verdict":
                return json.dumps({"passed": True, "reason": "it is the reference answer"})
            case "Reflection":
                return json.dumps({"verdict": "on_track", "reason": "the reference plan"})
            case other:
                return _refuse(f"the reference solutions do not answer {other!r}")


def _named_by_instructions(request: ChatRequest, solution: Reference, kind: str) -> Step | None:
    """The task of ``kind`` whose instructions the request carries (the longest such, so
    that one task's instructions inside another's do not confuse them)."""
    named = [s for s in solution.walk() if s.kind == kind and s.instructions in request.text]
    return max(named, key=lambda s: len(s.instructions), default=None)


def _refuse(why: str) -> Reply:
    return Reply(status=400, error_message=f"goal suite reference model: {why}")


def solve_locally(solution: Reference, *, timeout: float = 30.0) -> dict[str, str]:
    """The deliverables ``solution`` produces, run without goalflow: ``llm`` tasks give
    their scripted answers, programs run as subprocesses under the file protocol."""
    values = _run_level(solution.steps, dict(solution.inputs), timeout)
    return {name: values[name] for name in solution.deliverables}


def _run_level(steps: Iterable[Step], available: dict[str, str], timeout: float) -> dict[str, str]:
    values = dict(available)
    pending = list(steps)
    while pending:
        ready = [s for s in pending if all(name in values for name in s.inputs)]
        if not ready:
            raise ValueError(f"tasks {[s.id for s in pending]} wait on inputs nobody produces")
        for step in ready:
            inputs = {name: values[name] for name in step.inputs}
            if step.kind == "llm":
                produced = dict(step.answer)
            elif step.kind == "code":
                produced = _run_program(step, inputs, timeout)
            else:
                produced = _run_level(step.steps, inputs, timeout)
            values.update({name: produced[name] for name in step.outputs})
            pending.remove(step)
    return values


def _run_program(step: Step, inputs: dict[str, str], timeout: float) -> dict[str, str]:
    with tempfile.TemporaryDirectory(prefix="goal-suite-") as folder:
        work = Path(folder)
        for name, value in inputs.items():
            (work / name).write_text(value, encoding="utf-8")
        done = subprocess.run(
            [sys.executable, "-I", "-c", step.program],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"program of {step.id} failed:\n{done.stderr}")
        return {name: (work / name).read_text(encoding="utf-8") for name in step.outputs}
