"""The planning prompts: a goal into a plan, a composite task into a sub-plan, and the
feedback that sends a broken plan back."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from goalflow.core.task import TaskKind, TaskSpec

__all__ = [
    "ONE_ANSWER_SYSTEM",
    "apart_feedback",
    "kind_description",
    "one_answer_request",
    "plan_examples",
    "plan_feedback",
    "plan_request",
    "plan_system",
    "refine_request",
    "refine_system",
]

# Planning: a goal -> a plan, a composite task -> a sub-plan.

_KIND_HELP: dict[TaskKind, str] = {
    "llm": "'llm' = language work a model answers in text (writing, summarising, translating)",
    "code": "'code' = exact work a Python program does (counting, arithmetic, sorting, "
    "string manipulation, parsing, conversions)",
    "composite": "'composite' = a big step that will be broken down into smaller ones later",
}

# Said only when code tasks can run: with no sandbox, exact work has to be an 'llm' task.
_EXACT_WORK = "\n- Exact work is a 'code' task, never 'llm', however small."

_RULES = """Rules:
- A task has: id, title, kind, instructions, inputs, outputs, format, acceptance, \
value (1-10), effort (1-10).
- kind is one of: {kinds}.{exact}
- inputs and outputs are short snake_case names, never the data itself. Every task has \
at least one output.
- Every input is {sources}. Each output has exactly one producing task.
- Every output is consumed by another task or is {sinks}.
- Use as few tasks as needed (at most {max_tasks}). Tasks that do not depend on each \
other run in parallel."""


# Worked examples: small models copy their shape far more reliably than they follow rules.
_LANGUAGE_GOAL = "Summarise this article in French, with keywords: ..."
_LANGUAGE_EXAMPLE: dict[str, Any] = {
    "inputs": [{"name": "article", "value": "(the article text, copied from the goal)"}],
    "deliverables": ["french_summary"],
    "tasks": [
        {
            "id": "summarise",
            "title": "Summarise the article",
            "kind": "llm",
            "instructions": "Summarise the article in three sentences.",
            "inputs": ["article"],
            "outputs": ["summary"],
            "acceptance": "three sentences",
            "value": 8,
            "effort": 2,
        },
        {
            "id": "keywords",
            "title": "Pick keywords",
            "kind": "llm",
            "instructions": "List the five most important keywords of the article.",
            "inputs": ["article"],
            "outputs": ["keywords"],
            "value": 5,
            "effort": 1,
        },
        {
            "id": "translate",
            "title": "Write the French summary",
            "kind": "llm",
            "instructions": "Translate the summary into French and add the keywords.",
            "inputs": ["summary", "keywords"],
            "outputs": ["french_summary"],
            "acceptance": "written in French",
            "value": 8,
            "effort": 2,
        },
    ],
}


# The second example: one step of exact work is one 'code' task, in the form asked for.
_EXACT_GOAL = (
    "Which words of 'the quick brown fox jumps' have more than four letters? Comma-separated."
)
_EXACT_EXAMPLE: dict[str, Any] = {
    "inputs": [{"name": "text", "value": "the quick brown fox jumps"}],
    "deliverables": ["long_words"],
    "tasks": [
        {
            "id": "long_words",
            "title": "Keep the long words",
            "kind": "code",
            "instructions": "Split the text into words; keep those longer than four "
            "letters, in order.",
            "inputs": ["text"],
            "outputs": ["long_words"],
            "format": "words, comma-separated",
        }
    ],
}


def plan_examples(kinds: Sequence[TaskKind]) -> list[tuple[str, dict[str, Any]]]:
    """The worked examples the planning prompt shows, as (goal, plan): the one-task code
    example only where code tasks can run."""
    examples = [(_LANGUAGE_GOAL, _LANGUAGE_EXAMPLE)]
    if "code" in kinds:
        examples.append((_EXACT_GOAL, _EXACT_EXAMPLE))
    return examples


def kind_description(kinds: Sequence[TaskKind]) -> str:
    """What the plan schema's ``kind`` field says: only the ``kinds`` that can run."""
    return "; ".join(_KIND_HELP[k] for k in kinds) + "."


def plan_system(kinds: Sequence[TaskKind], *, max_tasks: int) -> str:
    """The system prompt that asks for a whole goal's plan, with tasks of ``kinds``."""
    examples = "\n".join(
        f"Example, for the goal {goal!r}:\n{json.dumps(plan)}"
        for goal, plan in plan_examples(kinds)
    )
    return (
        "You plan the work of an autonomous agent: break the user's goal into tasks that "
        "pass named values to each other.\n"
        + _rules(
            kinds,
            max_tasks=max_tasks,
            sources="a plan input or an output of another task",
            sinks="listed in the plan's deliverables",
        )
        + "\n- A goal that is one step is one task; its output is the deliverable."
        + "\n- Data written in the goal (numbers, lists, text to work on) goes in the plan's "
        '"inputs" as {"name": ..., "value": ...}, and tasks consume it by name.\n'
        '- "deliverables" names the output that is the answer to the whole goal: one name, '
        "unless the goal asks for separate results. When the goal asks to combine, compare "
        "or use earlier results, a last task does that, and its output is the deliverable. "
        "A JSON object, a list or a sentence asked for is one output holding all of it.\n"
        "- When the goal asks for a form (a number only, comma-separated, JSON keys), the "
        'task making the deliverable says it in "format".\n'
        'Answer with a JSON object: {"inputs": [...], "deliverables": [...], "tasks": [...]}.'
        f"\n{examples}"
    )


def _rules(kinds: Sequence[TaskKind], *, max_tasks: int, sources: str, sinks: str) -> str:
    return _RULES.format(
        kinds="; ".join(_KIND_HELP[k] for k in kinds),
        exact=_EXACT_WORK if "code" in kinds else "",
        sources=sources,
        sinks=sinks,
        max_tasks=max_tasks,
    )


def plan_request(goal: str) -> str:
    """The user message that asks for a plan of ``goal``."""
    return f"Goal: {goal}"


def refine_system(kinds: Sequence[TaskKind], task: TaskSpec, *, max_tasks: int) -> str:
    """The system prompt that asks for the breakdown of the composite ``task``."""
    return (
        "You break one step of a larger plan into smaller tasks that pass named values to "
        "each other.\n"
        + _rules(
            kinds,
            max_tasks=max_tasks,
            sources=f"one of the step's inputs ({_listing(task.inputs)}) or an output of "
            "another task",
            sinks=f"one of the step's outputs ({_listing(task.outputs)}), which must all be "
            "produced",
        )
        + '\nAnswer with a JSON object: {"tasks": [...]}.'
    )


def refine_request(goal: str, task: TaskSpec) -> str:
    """The user message that names the step to break down, within the overall goal."""
    return (
        f"Overall goal: {goal}\nStep to break down: {task.title}\n"
        f"Its instructions: {task.instructions}\n"
        f"Its inputs: {_listing(task.inputs)}\nIts outputs: {_listing(task.outputs)}"
    )


def plan_feedback(errors: Sequence[str]) -> str:
    """What a plan (or sub-plan) that breaks the rules gets back: the rules it broke."""
    broken = "\n- ".join(errors)
    return f"This plan breaks the rules:\n- {broken}\nAnswer with the whole corrected plan."


# The question asked of a plan that hands back several results: are they the answer?

ONE_ANSWER_SYSTEM = (
    "You check whether a plan hands back what its goal asks for. Read the goal closely."
)


def one_answer_request(goal: str, deliverables: Sequence[str]) -> str:
    """The user message that asks whether ``goal`` wants one answer made from the
    ``deliverables`` a plan hands back apart, or those results themselves."""
    return (
        f"Goal: {goal}\nThe plan hands back {len(deliverables)} separate results: "
        f"{_listing(deliverables)}.\nDoes the goal ask for one answer made from these "
        "results (one value, text, list or JSON object that combines, compares or uses "
        "them), or for these results themselves, each on its own?"
    )


def apart_feedback(deliverables: Sequence[str]) -> str:
    """The broken rule of a plan that hands back apart what the goal wants as one answer."""
    return (
        f"the goal asks for one answer, and the plan hands back {_listing(deliverables)} "
        "apart: add a last task that takes them as inputs and makes that one answer, in "
        "the form the goal asks for, and list only its output in deliverables"
    )


def _listing(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "none"
