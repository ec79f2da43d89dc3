"""The code-task protocol: how a program gets its inputs and hands back its outputs.

A program a model writes for a ``code`` task does not read or write files unless it
wants to:

- **Inputs are variables.** Each input is a ``str`` variable named as the input
  (:func:`input_variables` says which), set by a launcher (:func:`launcher`) before the
  program runs. Each input is also a file of its name in the working directory, so a
  program that reads files still works, and a name that cannot be a variable is a file
  only.
- **Outputs are what it prints** (:func:`hand_back`). An output the program wrote to a
  file of its name is that file. Otherwise, with one output, the output is what the
  program printed on stdout; with several, stdout is one JSON object whose keys are the
  output names. A program that printed nothing but left variables named as its outputs
  hands those back instead (the launcher prints them). Every output must be handed
  back and not blank, and stdout that was cut at the sandbox's cap is never delivered
  as an output.
- **An acceptance check can be code** (:func:`acceptance_program`). A task whose
  ``acceptance`` is a Python ``assert`` statement, or a Python expression, about its
  outputs is checked by running it in the sandbox; any other acceptance text is prose.

No Docker here: the sandbox (:mod:`goalflow.sandbox.engine`) runs the launcher and
applies :func:`hand_back`; the coder (:mod:`goalflow.agent.coder`) tells the model.
"""

from __future__ import annotations

import ast
import builtins
import json
import keyword
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from goalflow.core.program import OutputCapture
from goalflow.errors import ConfigError

__all__ = [
    "CHECK_MODULES",
    "acceptance_program",
    "hand_back",
    "input_variables",
    "launcher",
    "variable_for",
    "without_pasted_inputs",
]

CHECK_MODULES = ("json", "math", "re")
"""Modules an acceptance check may use without importing them."""

_BUILTINS = frozenset(dir(builtins))


def variable_for(name: str) -> str:
    """The variable a value named ``name`` would be: ``sales.csv`` -> ``sales_csv``, and
    a keyword or builtin gets an underscore (``list`` -> ``list_``) rather than hide it."""
    variable = re.sub(r"\W", "_", name, flags=re.ASCII)
    if not variable.isidentifier():
        variable = "_" + variable
    if keyword.iskeyword(variable) or variable in _BUILTINS:
        variable += "_"
    return variable


def without_pasted_inputs(code: str, variables: Iterable[str]) -> tuple[str, list[str]]:
    """``code`` without the lines that assign a text literal to an input's variable,
    and the variables whose literal went.

    The launcher defines every input variable with its exact value. Small models paste
    the value in by hand anyway, and a CSV or log of several lines in an ordinary
    string is a syntax error (``csv_text = "city,sales`` ...); even a clean copy may be
    a wrong one. Such an assignment can only replace the exact value with a guess, so
    it goes: a top-level ``name = '...'`` of a program that parses, or, in one that does
    not, the fewest lines from such a start to a line its quote ends that leave a
    program that parses.
    """
    names = set(variables)
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError):
        return _cut_unparsed_literal(code, names)
    lines = code.splitlines(keepends=True)
    pasted = [
        node
        for node in tree.body
        if isinstance(node, ast.Assign)
        and len(node.targets) == 1
        and isinstance(node.targets[0], ast.Name)
        and node.targets[0].id in names
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    ]
    for node in reversed(pasted):
        del lines[node.lineno - 1 : node.end_lineno]
    found = [node.targets[0].id for node in pasted if isinstance(node.targets[0], ast.Name)]
    return "".join(lines), found


def _cut_unparsed_literal(code: str, names: set[str]) -> tuple[str, list[str]]:
    lines = code.splitlines(keepends=True)
    for start, line in enumerate(lines):
        assigned = _LITERAL_START.match(line)
        if assigned is None or assigned.group("name") not in names:
            continue
        for end in range(start + 1, len(lines) + 1):
            if not lines[end - 1].rstrip().endswith(assigned.group("quote")):
                continue  # the literal ends where its quote closes it
            rest = "".join(lines[:start] + lines[end:])
            try:
                ast.parse(rest)
            except (SyntaxError, ValueError, RecursionError):
                continue
            return rest, [assigned.group("name")]
        break
    return code, []


_LITERAL_START = re.compile(r"(?P<name>[A-Za-z_]\w*)\s*=\s*[rRuU]?(?P<quote>'|\")")


def input_variables(names: Iterable[str]) -> dict[str, str]:
    """The variable each of ``names`` is given as in a program: name -> variable.

    A name that is a plain identifier is its own variable; others are given
    :func:`variable_for`'s. A name whose variable another name already has, or that
    would be a dunder (``__file__``), gets none: it is a file only.
    """
    ordered = list(dict.fromkeys(names))
    chosen: dict[str, str] = {}
    # Names that are their own variable first: 'a.b' never takes the place of 'a_b'.
    for name in sorted(ordered, key=lambda n: variable_for(n) != n):
        variable = variable_for(name)
        if variable not in chosen.values() and not variable.startswith("__"):
            chosen[name] = variable
    return {name: chosen[name] for name in ordered if name in chosen}


_LAUNCHER = """\
def _launch():
    import json
    import os
    import sys

    class Watched:
        def __init__(self, stream):
            self.stream, self.wrote = stream, False

        def write(self, text):
            self.wrote = self.wrote or bool(text)
            return self.stream.write(text)

        def __getattr__(self, name):
            return getattr(self.stream, name)

    scope = globals()
    del scope["_launch"]
    for file, variable in {variables!r}.items():
        with open(file, encoding="utf-8", errors="replace") as text:
            scope[variable] = text.read()
    path = {program!r}
    scope["__file__"] = path
    with open(path, encoding="utf-8") as source:
        code = source.read()
    out = sys.stdout = Watched(sys.stdout)
    try:
        exec(compile(code, path, "exec"), scope)
    except SystemExit:
        raise
    except BaseException as error:
        import traceback

        frames = error.__traceback__
        while frames is not None and frames.tb_frame.f_code.co_filename != path:
            frames = frames.tb_next
        traceback.print_exception(type(error), error, frames)
        sys.exit(1)
    sys.stdout = out.stream
    # Printed nothing and wrote no file: hand back the variables named as the outputs.
    wanted = {{n: v for n, v in {outputs!r}.items() if not os.path.exists(n)}}
    if out.wrote or not wanted or any(v not in scope for v in wanted.values()):
        return
    values = {{n: scope[v] for n, v in wanted.items()}}
    text = {{n: x if isinstance(x, str) else json.dumps(x, default=str) for n, x in values.items()}}
    print(next(iter(text.values())) if len(text) == 1 else json.dumps(text))


_launch()
"""


def launcher(program: str, variables: Mapping[str, str], outputs: Sequence[str] = ()) -> str:
    """The source of a script that runs the program at path ``program`` as ``__main__``,
    with each file of ``variables`` (file -> variable) read into its variable first.

    A program that ran to the end, printed nothing and wrote no output file, but left a
    variable named as each of its ``outputs`` (:func:`variable_for`), hands those back as
    if it had printed them: small models often compute the answer and forget to print.

    The program is compiled on its own, so its line numbers, ``from __future__``
    imports and ``if __name__ == "__main__":`` work as if it ran directly; a traceback
    shows the program's frames only; ``sys.exit`` and exit codes pass through.
    """
    for variable in variables.values():
        if not variable.isidentifier() or keyword.iskeyword(variable):
            raise ConfigError(
                f"{variable!r} cannot be a Python variable: use input_variables() for names"
            )
    named = {name: variable_for(name) for name in outputs}
    return _LAUNCHER.format(variables=dict(variables), program=program, outputs=named)


def hand_back(
    names: Sequence[str], files: Mapping[str, bytes], stdout: OutputCapture
) -> tuple[dict[str, bytes], str | None]:
    """What a program that ran to the end handed back for the outputs ``names``, and
    what is wrong with that (None: nothing), worded for the model that wrote it.

    ``files`` are the output files it wrote. An output with no file comes from stdout:
    with one output, all it printed (without the newlines around it); with several, a
    JSON object printed as the whole of stdout or as its last line (a value that is not
    a string is kept as JSON text).
    """
    outputs = {name: files[name] for name in names if name in files}
    unwritten = [name for name in names if name not in outputs]
    if unwritten and stdout.truncated:
        return outputs, (
            f"it printed {stdout.total} bytes, more than the {stdout.cap} the sandbox keeps, "
            f"so {_listing(unwritten)} would arrive cut short: print only the result"
        )
    printed = stdout.kept.decode("utf-8", errors="replace")
    if len(names) == 1 and unwritten:
        value = printed.strip("\r\n")
        if not value.strip():
            return outputs, f"it printed nothing: print the value of {names[0]}"
        outputs[names[0]] = value.encode()
    elif unwritten:
        found = _json_object(printed)
        if found is None:
            return outputs, (
                f"it did not hand back {_listing(unwritten)}: print one JSON object with "
                f"the keys {_keys(names)}"
            )
        for name in unwritten:
            if name in found:
                outputs[name] = _as_text(found[name]).encode()
        absent = [name for name in unwritten if name not in outputs]
        if absent:
            return outputs, (
                f"the JSON object it printed has no {_listing(absent)}: print one JSON object "
                f"with the keys {_keys(names)}"
            )
    blank = [name for name in names if not outputs[name].strip()]
    if blank:
        return outputs, f"{_listing(blank)} came back empty: it must hold the result"
    return outputs, None


def _json_object(printed: str) -> dict[str, Any] | None:
    lines = printed.strip().splitlines()
    for text in (printed.strip(), lines[-1] if lines else ""):
        try:
            value = json.loads(text)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _listing(names: Sequence[str]) -> str:
    return ", ".join(names)


def _keys(names: Sequence[str]) -> str:
    return ", ".join(json.dumps(name) for name in names)


def acceptance_program(
    acceptance: str, variables: Mapping[str, str], outputs: Sequence[str]
) -> str | None:
    """The program that checks ``acceptance`` against a task's values, or None when the
    acceptance is prose for a reviewer.

    The rule: ``acceptance`` is an executable check when it parses as Python, is one
    expression or only ``assert`` statements, reads at least one of the ``outputs``'
    variables, and reads no other name than the task's variables (``variables``: name ->
    variable, of its inputs and outputs), builtins, the modules of ``CHECK_MODULES`` and
    names it binds itself (a comprehension's, a lambda's). An expression is asserted.
    The program fails (exit code 1, the failed line in its traceback) when the check
    does not hold. ``the total is one integer``, ``sorted`` or ``done`` are prose;
    ``int(total) == 108`` and ``assert len(primes.split(",")) == 10`` are checks.
    """
    text = acceptance.strip()
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError):
        return None
    body = tree.body
    single_expression = len(body) == 1 and isinstance(body[0], ast.Expr)
    if not body or not (single_expression or all(isinstance(s, ast.Assert) for s in body)):
        return None
    read: set[str] = set()
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    known = set(variables.values()) | _BUILTINS | set(CHECK_MODULES) | bound
    output_variables = {variables[name] for name in outputs if name in variables}
    if not read & output_variables or not read <= known:
        return None
    check = f"assert (\n{text}\n)" if single_expression else text
    return f"import {', '.join(CHECK_MODULES)}\n\n{check}\n"
