"""Settling a model's plan where its meaning is unambiguous, before the rules judge it.

Small models write a task id where its output belongs, name a deliverable a little
differently from the output that makes it, forget the combining task's inputs, forget
to deliver the final task, or name a one-task plan's deliverable after nothing it
makes. Each repair here fixes one such slip in place or returns what it changed; the
planner logs each as ``settled: ...``. No Prefect, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from goalflow.core.forms import requested_places, without_places
from goalflow.core.goal_data import stated_data
from goalflow.core.plan import PlanDraft
from goalflow.core.rules import names_listed
from goalflow.core.task import NAME, GoalInput, TaskKind, TaskSpec
from goalflow.core.values import requested_separator, without_separator

__all__ = [
    "as_one_step",
    "carry_goal_places",
    "deliver_final_task",
    "deliver_only_task",
    "drop_unasked_separator",
    "drop_value_deliverables",
    "fuse_code_chains",
    "match_deliverables",
    "quote_goal_data",
    "resolve_task_ids",
    "wire_dangling_outputs",
]


def quote_goal_data(goal: str, draft: PlanDraft) -> list[str]:
    """Give the data the goal states to the code tasks that take no input; say so.

    Data stated in the goal belongs in the plan's inputs, so that a program reads it
    exactly; a small model that leaves the inputs empty copies the data into its program
    by hand instead, and slips (``'perfect'[::-1]`` for the word 'prefect', a CSV pasted
    into a one-line string). When a plan has no inputs at all, each piece of data the
    goal states (:func:`~goalflow.core.goal_data.stated_data`: ``word``, ``text``,
    ``csv_text``, ``json_text``, ...) becomes an input of every code task that has none.
    """
    data = stated_data(goal)
    takers = [task for task in draft.tasks if task.kind == "code" and not task.inputs]
    if draft.inputs or not data or not takers:
        return []
    draft.inputs = [GoalInput(name=name, value=value) for name, value in data]
    for task in takers:
        task.inputs = [name for name, _ in data]
    given = ", ".join(
        f"{name} = {value!r}" if len(value) <= 40 else f"{name} ({len(value)} characters)"
        for name, value in data
    )
    return [f"the goal's data given to {names_listed(t.id for t in takers)}: {given}"]


def resolve_task_ids(
    tasks: Sequence[TaskSpec], *, available: Iterable[str], deliverables: Sequence[str]
) -> list[str]:
    """Replace task ids used where value names belong; return the deliverables resolved.

    Models often name the task where they mean what it produces. A name that is no
    value's name (no output, no available input) but a task's id stands for that
    task's outputs: in every task's inputs (in place) and in the deliverables.
    """
    values = set(available) | {name for task in tasks for name in task.outputs}
    by_id = {task.id: task for task in tasks}

    def resolve(names: Iterable[str], owner: str | None = None) -> list[str]:
        resolved: list[str] = []
        for name in names:
            meant = by_id.get(name) if name not in values and name != owner else None
            for value in meant.outputs if meant else [name]:
                if value not in resolved:
                    resolved.append(value)
        return resolved

    for task in tasks:
        task.inputs = resolve(task.inputs, owner=task.id)
    return resolve(deliverables)


def drop_value_deliverables(
    tasks: Sequence[TaskSpec], deliverables: Sequence[str], data: Iterable[str] = ()
) -> tuple[list[str], list[str]]:
    """The deliverables that are names, and those that are values written in their place.

    Small models copy the goal's data into the deliverables ('14', '27'; 'banana', 'fig'
    for a list of fruit) where the name of the result belongs. Something no task makes
    that cannot even be a name, or that is a word of the plan's input ``data``, is no
    deliverable; once such values are dropped, the settlements below find the output
    that answers the goal (the only task's, or the one final task's).
    """
    made = {name for task in tasks for name in task.outputs}
    words = {word for value in data for word in re.findall(r"[^\s,;:]+", value.lower())}
    kept = [
        name
        for name in deliverables
        if name in made or (NAME.match(name) and name.lower() not in words)
    ]
    return kept, [name for name in deliverables if name not in kept]


def match_deliverables(tasks: Sequence[TaskSpec], deliverables: Sequence[str]) -> list[str]:
    """The deliverables, each unproduced one replaced by the one unused output it names.

    Small models name the deliverable 'seasons' and the output 'seasons_poem'. When a
    deliverable is produced by no task and exactly one output nobody consumes shares
    all its words (or all of that output's words are in it), that output is meant.
    """
    produced = {name for task in tasks for name in task.outputs}
    consumed = {name for task in tasks for name in task.inputs}
    unused = [n for n in produced if n not in consumed and n not in deliverables]

    def words(name: str) -> set[str]:
        return {w for w in re.split(r"[^a-z0-9]+", name.lower()) if w}

    matched = []
    for name in deliverables:
        candidates = [n for n in unused if words(name) <= words(n) or words(n) <= words(name)]
        matched.append(candidates[0] if name not in produced and len(candidates) == 1 else name)
    return matched


def deliver_final_task(tasks: Sequence[TaskSpec], deliverables: Sequence[str]) -> list[str]:
    """The deliverables, plus the outputs of the one dead-end task that uses them all.

    Small models list the parts ('autumn_haiku', 'spring_haiku') as deliverables and
    forget the task that combines them into the answer. When exactly one task's outputs
    are used by nobody and delivered by nobody, and that task consumes every
    deliverable, its outputs are what the goal asked for: they are delivered too.
    """
    consumed = {name for task in tasks for name in task.inputs}
    dead_ends = [
        task
        for task in tasks
        if task.outputs and not set(task.outputs) & (consumed | set(deliverables))
    ]
    if len(dead_ends) != 1 or not set(deliverables) <= set(dead_ends[0].inputs):
        return list(deliverables)
    return [*deliverables, *dead_ends[0].outputs]


def deliver_only_task(tasks: Sequence[TaskSpec], deliverables: Sequence[str]) -> list[str]:
    """The deliverables of a one-task plan: its single output, when it delivers nothing.

    A goal that is one step is one task, and small models then name the deliverable
    'answer' while the task makes 'vowel_count'. With one task making one output, and at
    most one deliverable that the task does not make, nothing else can be meant. Several
    deliverables, or several outputs, are left for the rules to report.
    """
    if len(tasks) != 1 or len(tasks[0].outputs) != 1 or len(deliverables) > 1:
        return list(deliverables)
    output = tasks[0].outputs[0]
    return [output] if output not in deliverables else list(deliverables)


def wire_dangling_outputs(tasks: Sequence[TaskSpec], deliverables: Sequence[str]) -> list[str]:
    """Feed unused results into the one task that makes the deliverables; say what moved.

    Small models plan "do A, do B, then combine" and forget to list A's and B's outputs
    as the last task's inputs. Where exactly one task produces the deliverables, every
    other task whose outputs nobody consumes is wired into it (unless that would close
    a cycle). With several final tasks the intent is unclear, and the rules report it.
    """
    finals = [task for task in tasks if set(task.outputs) & set(deliverables)]
    if len(finals) != 1:
        return []
    final = finals[0]
    producer = {name: task for task in tasks for name in task.outputs}
    consumed = {name for task in tasks for name in task.inputs}

    def upstream(task: TaskSpec, seen: set[str]) -> set[str]:
        for name in task.inputs:
            source = producer.get(name)
            if source is not None and source.id not in seen:
                seen.add(source.id)
                upstream(source, seen)
        return seen

    notes = []
    for task in tasks:
        dangling = [n for n in task.outputs if n not in consumed and n not in deliverables]
        if (
            task is final
            or len(dangling) != len(task.outputs)
            or not dangling
            or final.id in upstream(task, set())
        ):
            continue
        final.inputs = [*final.inputs, *dangling]
        notes.append(f"fed {names_listed(dangling)} of '{task.id}' into '{final.id}'")
    return notes


def drop_unasked_separator(
    goal: str, tasks: Sequence[TaskSpec], deliverables: Sequence[str]
) -> list[str]:
    """Take a separator the goal never asks for out of the form of the tasks making the
    deliverables; say what changed.

    Small models copy the form of a worked example ("words, comma-separated") onto a
    goal that asks for something else ("keeping the spaces"), and the answer is then
    re-joined with commas. A deliverable's separator is the user's to ask for: when
    the goal names none, the deliverable's form names none either.
    """
    if requested_separator(goal) is not None:
        return []
    notes = []
    for task in tasks:
        if set(task.outputs) & set(deliverables) and requested_separator(task.format):
            before, task.format = task.format, without_separator(task.format)
            notes.append(
                f"the form of '{task.id}' is {task.format!r}, not {before!r}: the goal asks "
                "for no separator"
            )
    return notes


def carry_goal_places(
    goal: str, tasks: Sequence[TaskSpec], deliverables: Sequence[str]
) -> list[str]:
    """Give the task making a goal's one deliverable the decimal places the goal asks
    for, when its form names none or others; say so.

    Small models write the form of "to two decimal places" as "one number" (or as "one
    decimal place"), and the answer then comes back as 73.4399999 (or 42.2). The places
    the goal asks for belong to its answer, so the form of the one task making it
    carries them (and is held to them, :mod:`goalflow.core.forms`).
    """
    places = requested_places(goal)
    makers = [task for task in tasks if set(task.outputs) & set(deliverables)]
    if places is None or len(deliverables) != 1 or len(makers) != 1:
        return []
    task = makers[0]
    if requested_places(task.format) == places:
        return []
    wanted = f"rounded to {places} decimal place{'s' * (places > 1)}"
    rest = without_places(task.format)
    task.format = f"{rest}, {wanted}" if rest else wanted
    return [f"the form of '{task.id}' is {task.format!r}, with the places the goal asks for"]


def fuse_code_chains(
    tasks: Sequence[TaskSpec], deliverables: Sequence[str]
) -> tuple[list[TaskSpec], list[str]]:
    """The tasks with each chain of code tasks made one program; say which were fused.

    Small models cut exact work into steps ("take 15 % off", then "add 8 % tax") whose
    programs each see one piece: the second never learns the price the first started
    from, the rounding of one is lost on the next. When a code task's outputs are used
    only by one other code task and delivered by none, one program does both: the
    first's instructions, then the second's, with the inputs of both, the outputs, form
    and acceptance of the second. Only links of a chain are fused: a task that joins
    several tasks' results keeps its parallel branches, and language tasks stay apart.
    """
    fused = list(tasks)
    notes: list[str] = []
    while True:
        pair = _chained_code(fused, deliverables)
        if pair is None:
            return fused, notes
        first, second = pair
        made = set(first.outputs)
        one = second.model_copy(
            update={
                "title": f"{first.title}; {second.title}",
                "instructions": f"{first.instructions}\nThen, with that "
                f"({', '.join(first.outputs)}): {second.instructions}",
                "inputs": list(
                    dict.fromkeys([*first.inputs, *(n for n in second.inputs if n not in made)])
                ),
                "value": max(first.value, second.value),
                "effort": max(first.effort, second.effort),
            }
        )
        fused[fused.index(second)] = one
        fused.remove(first)
        notes.append(f"the code tasks '{first.id}' and '{second.id}' are one program '{one.id}'")


def _chained_code(
    tasks: Sequence[TaskSpec], deliverables: Sequence[str]
) -> tuple[TaskSpec, TaskSpec] | None:
    """A code task and the one code task that alone uses its outputs and uses no other
    task's, if any: a link of a chain, not of a join."""
    producer = {name: task.id for task in tasks for name in task.outputs}
    for first in tasks:
        if first.kind != "code" or set(first.outputs) & set(deliverables):
            continue
        users = [t for t in tasks if t is not first and set(t.inputs) & set(first.outputs)]
        if len(users) != 1 or users[0].kind != "code":
            continue
        sources = {producer[name] for name in users[0].inputs if name in producer}
        if sources == {first.id}:
            return first, users[0]
    return None


def as_one_step(goal: str, draft: PlanDraft | None, kinds: Sequence[TaskKind]) -> PlanDraft:
    """The goal as one task, for when no plan the model wrote kept the rules.

    What the model's last plan made clear is kept: the data it took from the goal (the
    inputs with valid names), the name of its deliverable when it named one a task made
    ('answer' otherwise: several such names are as often the answer's values, 'banana',
    'fig', as its parts, and the goal asks for one answer), the form the tasks making
    it promised, and whether it saw exact work ('code' when any of its tasks was a code
    task and code can run, else 'llm').
    """
    drafted = draft.tasks if draft else []
    inputs = [item for item in draft.inputs if NAME.match(item.name)] if draft else []
    made = {name for task in drafted for name in task.outputs}
    named = [name for name in (draft.deliverables if draft else []) if name in made]
    valid = [name for name in dict.fromkeys(named) if NAME.match(name)]
    outputs = valid if len(valid) == 1 else ["answer"]
    makers = [task for task in drafted if set(outputs) & set(task.outputs)]
    formats = {task.format for task in makers or drafted if task.format}
    exact = "code" in kinds and any(task.kind == "code" for task in drafted)
    task = TaskSpec(
        id="goal",
        title="Do the whole goal",
        kind="code" if exact or "llm" not in kinds else "llm",
        instructions=goal,
        inputs=[item.name for item in inputs],
        outputs=outputs,
        format=formats.pop() if len(formats) == 1 else "",
    )
    return PlanDraft(inputs=inputs, deliverables=outputs, tasks=[task])
