"""Every text the agent layer sends to a model, in one place.

The planner (:mod:`goalflow.agent.planner`), executor (:mod:`goalflow.agent.executor`),
coder (:mod:`goalflow.agent.coder`) and the reflector
(:mod:`goalflow.orchestration.reflector`) hold the loops; the wording they send is here:
system prompts, rules, the worked example, task briefs and the feedback that sends a
broken answer back. Fixed texts are constants, the rest small functions that render
them from their arguments. A prompt is product: tests tell model calls apart by their
response schema, not by this wording.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from goalflow.core.chat import Message
from goalflow.core.program import ProgramLimits, SandboxResult
from goalflow.core.protocol import variable_for
from goalflow.core.revision import RunState
from goalflow.core.stuck import StuckSignal
from goalflow.core.task import TaskKind, TaskSpec

__all__ = [
    "REFLECTION_SYSTEM",
    "REVIEW_SYSTEM",
    "TASK_SYSTEM",
    "answer_feedback",
    "answer_field",
    "failed_check",
    "kind_description",
    "plan_examples",
    "plan_feedback",
    "plan_request",
    "plan_system",
    "program_brief",
    "program_feedback",
    "program_repeated",
    "program_system",
    "refine_request",
    "refine_system",
    "reflection_messages",
    "review_request",
    "task_brief",
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
        '- "deliverables" names the final outputs that answer the whole goal. When the goal '
        "asks to combine, compare or use earlier results, a last task does that, and its "
        "output is the deliverable.\n"
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


def _listing(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "none"


# Tasks: an ``llm`` task's answer and the review of it.

_INPUT_PREVIEW = 6000

TASK_SYSTEM = (
    "You carry out one task of a larger plan. Use the inputs you are given, follow the "
    "instructions, and answer with a JSON object holding one text value per named output. "
    "Each value is the output itself, in the form asked for: no introduction, no "
    "explanation, no code fences."
)


def task_brief(goal: str, task: TaskSpec, inputs: Mapping[str, str]) -> str:
    """What the model is told about one task: the goal, the task, its inputs, its outputs."""
    lines = [f"Overall goal: {goal}", f"Your task: {task.title}", task.instructions]
    for name, value in inputs.items():
        lines.append(f"Input {name}:\n{_preview(value, _INPUT_PREVIEW)}")
    lines.append(f"Outputs to produce: {', '.join(task.outputs)}")
    if task.format:
        lines.append(f"Their form: {task.format}")
    if task.acceptance:
        lines.append(f"They must satisfy: {task.acceptance}")
    return "\n\n".join(lines)


def _preview(value: str, width: int) -> str:
    return value if len(value) <= width else value[:width] + " […]"


def answer_field(name: str, form: str) -> str:
    """The description of one output in an ``llm`` task's answer schema."""
    return f"The value of '{name}' itself" + (f", as {form}." if form else ".")


def answer_feedback(reason: str) -> str:
    """What an ``llm`` task's answer gets back when the reviewer rejected it."""
    return f"A reviewer rejected this answer: {reason}\nAnswer again, fixing that."


REVIEW_SYSTEM = (
    "You review one task's outputs against its acceptance check. Be "
    "strict about the check and ignore everything else."
)


def review_request(task: TaskSpec, outputs: Mapping[str, str]) -> str:
    """The user message that shows a task's outputs to the reviewer, with the check."""
    shown = "\n\n".join(f"{name}:\n{value}" for name, value in outputs.items())
    return (
        f"Task: {task.title}\n{task.instructions}\n\nAcceptance check: "
        f"{task.acceptance}\n\nOutputs:\n{shown}"
    )


# Programs: a code task's brief, the protocol it follows, how a failed run comes back.
# The protocol itself is goalflow.core.protocol; a 1.5B model follows it when it is shown
# as the shape of a whole program, with the task's own names.

_CODE_PREVIEW = 1500  # the program gets the whole value; the model needs only its shape
_TRACEBACK_LINES = 12
_TRACEBACK_SHOWN = 2000
_STDOUT_SHOWN = 1000
_VALUE_SHOWN = 200

_PROGRAM_EXAMPLE = """temperatures_list = [float(t) for t in temperatures.split(",")]
warmest = max(temperatures_list)
print(warmest)"""


def program_system(limits: ProgramLimits) -> str:
    """The system prompt of a code task: the protocol, an example and the sandbox's limits."""
    network = "a network" if limits.network else "no network"
    return (
        "You write one short Python 3 program that does one step of a larger plan. It runs "
        f"unattended with {network}, the standard library only, {limits.memory} of memory "
        f"and {limits.timeout:g} seconds.\n"
        "- Each input is already a Python variable holding its text (a str), named as the "
        "input. Use it; do not read files or call input().\n"
        "- Compute the result in the program; never write an answer in by hand.\n"
        "- Print the result and nothing else. One output: print its value. Several "
        "outputs: print one JSON object whose keys are the output names.\n"
        "Example, for a step with the input temperatures and the output warmest:\n"
        f"{_PROGRAM_EXAMPLE}\n"
        'Answer with a JSON object whose "code" is the whole program.'
    )


def program_brief(
    goal: str,
    task: TaskSpec,
    inputs: Mapping[str, str],
    variables: Mapping[str, str],
    *,
    check: bool,
) -> str:
    """What the model is told about a code task: the goal, the task, each input as the
    variable (``variables``: input name -> variable) or file it is, how to hand back the
    outputs, and the outline of a program that does. ``check``: the task's acceptance is
    an executable check (:func:`goalflow.core.protocol.acceptance_program`)."""
    lines = [f"Overall goal: {goal}", f"Your task: {task.title}", task.instructions]
    for name, value in inputs.items():
        size = f"{len(value)} characters"
        variable = variables.get(name)
        if variable is None:
            where = f"the file {name}, {size}; read it with open({name!r}).read()"
        elif variable == name:
            where = f"the str variable {variable}, {size}"
        else:
            where = f"the str variable {variable}, also the file {name}, {size}"
        lines.append(f"Input {name} ({where}):\n{_preview(value, _CODE_PREVIEW)}")
    lines.append(_outputs_wanted(task.outputs))
    if task.format:
        lines.append(f"Their form: {task.format}")
    lines.append(f"The program, in outline:\n```python\n{_outline(task, variables)}\n```")
    if task.acceptance and check:
        lines.append(
            "Its outputs must pass this check, run with each output as a str variable: "
            + task.acceptance
        )
    elif task.acceptance:
        lines.append(f"They must satisfy: {task.acceptance}")
    return "\n\n".join(lines)


def _outputs_wanted(outputs: Sequence[str]) -> str:
    if len(outputs) == 1:
        return f"Output: {outputs[0]}. Print its value and nothing else."
    return (
        f"Outputs: {', '.join(outputs)}. Print one JSON object with these keys, and nothing else."
    )


def _outline(task: TaskSpec, variables: Mapping[str, str]) -> str:
    """A program the model completes: the task's own names, the protocol's last line."""
    results = {name: variable_for(name) for name in task.outputs}
    given = [variables[name] for name in task.inputs if name in variables]
    lines = ["import json", ""] if len(results) > 1 else []
    if given:
        lines.append(f"# already defined: {', '.join(given)}")
    lines.append(f"# compute {', '.join(results.values())} here")
    if len(results) == 1:
        lines.append(f"print({next(iter(results.values()))})")
    else:
        pairs = ", ".join(f"{json.dumps(name)}: {variable}" for name, variable in results.items())
        lines.append(f"print(json.dumps({{{pairs}}}))")
    return "\n".join(lines)


def _expected(outputs: Sequence[str], check: str | None) -> str:
    if len(outputs) == 1:
        printed = f"prints the value of {outputs[0]} and nothing else"
    else:
        keys = ", ".join(json.dumps(name) for name in outputs)
        printed = f"prints one JSON object with the keys {keys} and nothing else"
    passes = f", and its outputs pass the check {check}" if check else ""
    return f"Expected: the program runs to its end (exit code 0), {printed}{passes}."


def program_feedback(
    reason: str, result: SandboxResult, outputs: Sequence[str], check: str | None
) -> str:
    """What a failed program gets back: why, the last lines of its traceback (of the
    check's, when the check failed) and of what it printed, and what was expected.
    ``check``: the task's executable acceptance check, if it has one."""
    lines = [f"That program failed: {reason}."]
    traceback = "\n".join(result.stderr.rstrip().splitlines()[-_TRACEBACK_LINES:])
    if traceback:
        lines.append("The last lines of its traceback:\n" + traceback[-_TRACEBACK_SHOWN:])
    if result.stdout.strip():
        lines.append("The end of what it printed:\n" + result.stdout[-_STDOUT_SHOWN:])
    lines.append(_expected(outputs, check))
    lines.append("Write the whole program again, changed to fix that.")
    return "\n\n".join(lines)


def failed_check(acceptance: str, outputs: Mapping[str, str]) -> str:
    """The reason an executable acceptance check failed, with the values it was run on."""
    shown = "; ".join(
        f"{name} = {_preview(value, _VALUE_SHOWN)!r}" for name, value in outputs.items()
    )
    return f"its outputs did not pass the acceptance check {acceptance} (it handed back {shown})"


def program_repeated(earlier: int, reason: str) -> str:
    """What a retry gets back that sends a program the model already sent."""
    return (
        f"That is the same program as attempt {earlier}, which failed: {reason}. Sent again, "
        "it fails again: a retry must change the program. Write the whole program again, "
        "changed to fix that."
    )


# Reflection: the verdict on a goal run in progress (goalflow.core.revision's models).

_VALUE_PREVIEW = 300
_PRODUCED_BUDGET = 3000  # characters of finished results shown to the model

REFLECTION_SYSTEM = """You review an autonomous agent's run of a goal while it runs. Judge \
it and answer with a JSON object {"verdict": ..., "reason": ..., "patch": ...}.
Verdicts:
- "on_track": the plan still leads to the goal; no patch.
- "revise": change the plan with a patch {"cancel": [ids of unfinished tasks], "add": \
[new tasks], "priorities": [{"id", "value", "effort"}]}. New tasks have the plan's task \
fields (id, title, kind, instructions, inputs, outputs, acceptance, value, effort), new \
ids, kind 'llm' or 'code', and may consume finished results by name. Finished results \
are kept: never redo them. Every unfinished task must still be needed, and every \
deliverable must still be produced by one task.
- "stuck": the run loops or cannot finish. "off_topic": the outputs drift away from the \
goal. Either stops the run; when a revision could still fix it, include the patch.
- "done": the finished results already answer the goal.
A task that was looping must not be added again unchanged: take a different approach."""


def reflection_messages(state: RunState, signals: Sequence[StuckSignal], why: str) -> list[Message]:
    """The prompt of one reflection: goal, plan, results so far, spend, time, signals."""
    lines = [
        f"Goal: {state.goal}",
        f"Deliverables: {', '.join(state.deliverables)}",
        f"Goal inputs: {', '.join(state.inputs) or 'none'}",
        "Plan (id [status] kind: title; inputs -> outputs):",
    ]
    for task in state.tasks:
        status = state.status.get(task.id, "pending")
        error = f" - failed: {_clip(state.errors[task.id], 200)}" if task.id in state.errors else ""
        lines.append(
            f"- {task.id} [{status}] {task.kind}: {task.title}; "
            f"{', '.join(task.inputs) or '-'} -> {', '.join(task.outputs)}{error}"
        )
    for tid, error in state.errors.items():
        if tid not in {task.id for task in state.tasks}:
            lines.append(f"- {tid} [failed]: {_clip(error, 200)}")
    lines.append("Produced so far:" if state.produced else "Produced so far: nothing")
    left = _PRODUCED_BUDGET
    for name, value in state.produced.items():
        shown = _clip(value, min(_VALUE_PREVIEW, max(left, 40)))
        left -= len(shown)
        lines.append(f"- {name}: {shown}")
    limit = f" of ${state.limit_usd:g}" if state.limit_usd else " (no limit)"
    clock = f" of {state.max_seconds:g} s" if state.max_seconds else " (no limit)"
    lines += [
        f"Spent: ${state.spent_usd:.4f}{limit} in {state.calls} model calls; "
        f"time: {state.elapsed_seconds:.0f} s{clock}; revisions left: {state.revisions_left}",
        "Stuck signals: " + ("none" if not signals else ""),
        *(f"- {s.name}: {s.evidence}" for s in signals),
        f"Why you are asked now: {why}",
    ]
    return [
        {"role": "system", "content": REFLECTION_SYSTEM},
        {"role": "user", "content": "\n".join(lines)},
    ]


def _clip(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
