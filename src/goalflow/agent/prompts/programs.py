"""The prompts of a ``code`` task: the protocol the program follows (the protocol itself
is :mod:`goalflow.core.protocol`), its brief, and how a failed run comes back."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence

from goalflow.agent.prompts.tasks import preview
from goalflow.core.goal_data import data_form
from goalflow.core.program import ProgramLimits, SandboxResult
from goalflow.core.protocol import variable_for
from goalflow.core.task import TaskSpec

__all__ = [
    "failed_check",
    "program_brief",
    "program_feedback",
    "program_repeated",
    "program_restart",
    "program_system",
]

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
        lines.append(f"Input {name} ({where}):\n{preview(value, _CODE_PREVIEW)}")
    lines.append(_outputs_wanted(task.outputs))
    if task.format:
        lines.append(f"Their form: {task.format}")
    outline = _outline(task, inputs, variables)
    lines.append(f"The program, in outline:\n```python\n{outline}\n```")
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


def _outline(task: TaskSpec, inputs: Mapping[str, str], variables: Mapping[str, str]) -> str:
    """A program the model completes: the task's own names, an input that holds a number
    turned into one (the variables are text), the protocol's last line."""
    results = {name: variable_for(name) for name in task.outputs}
    given = [variables[name] for name in task.inputs if name in variables]
    forms = {data_form(inputs.get(name, "")) for name in task.inputs if name in variables}
    modules = [
        module
        for module, needed in (
            ("csv", "csv" in forms),
            ("json", len(results) > 1 or "json" in forms),
        )
        if needed
    ]
    lines = [*(f"import {module}" for module in modules), ""] if modules else []
    if given:
        lines.append(f"# already defined: {', '.join(given)}")
    for name in task.inputs:
        if name in variables:
            lines.extend(_read_as(variables[name], inputs.get(name, "")))
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
        f"{name} = {preview(value, _VALUE_SHOWN)!r}" for name, value in outputs.items()
    )
    return f"its outputs did not pass the acceptance check {acceptance} (it handed back {shown})"


def program_repeated(earlier: int, reason: str) -> str:
    """What a retry gets back that sends a program the model already sent."""
    return (
        f"That is the same program as attempt {earlier}, which failed: {reason}. Sent again, "
        "it fails again: a retry must change the program. Write the whole program again, "
        "changed to fix that."
    )


def program_restart(reason: str) -> str:
    """The last ask after resent programs, in a fresh conversation: what failed before."""
    return (
        f"A program written for this task before failed: {reason}. Write a different "
        "program, in another way, that does the task."
    )


def _read_as(variable: str, value: str) -> list[str]:
    """The outline's lines that turn a text input into what it holds (the goal's own
    ``json_text``, ``csv_text``, ``text_lines`` into ``data``, ``rows``, ``lines``; a
    CSV's columns of numbers into numbers)."""
    form = data_form(value)
    if form in ("int", "float"):
        return [f"{variable} = {form}({variable})  # given as text"]
    if form == "json":
        data = "data" if variable == "json_text" else f"{variable}_data"
        return [f"{data} = json.loads({variable})  # given as JSON text"]
    if form == "csv":
        rows = "rows" if variable == "csv_text" else f"{variable}_rows"
        read = [f"{rows} = list(csv.DictReader({variable}.splitlines()))  # dicts of text"]
        numbers = _number_columns(value)
        if numbers:
            read.append(f"for row in {rows}:  # the columns of numbers as numbers")
            read += [f"    row[{column!r}] = {kind}(row[{column!r}])" for column, kind in numbers]
        return read
    if form == "lines":
        lines = "lines" if variable == "text_lines" else f"{variable}_lines"
        return [f"{lines} = {variable}.splitlines()"]
    return []


def _number_columns(table: str) -> list[tuple[str, str]]:
    """The columns of a CSV whose every value is a number: (column, 'int' or 'float')."""
    reader = csv.DictReader(table.strip().splitlines())
    rows = list(reader)
    columns: list[tuple[str, str]] = []
    for column in reader.fieldnames or []:
        kinds = {data_form(row.get(column) or "") for row in rows}
        if rows and kinds <= {"int", "float"}:
            columns.append((column, "float" if "float" in kinds else "int"))
    return columns
