"""The code-task protocol apart from Docker: inputs as variables (the launcher, run by
this machine's Python), outputs read from files or stdout, and which acceptance texts
are executable checks."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from goalflow.core.program import OutputCapture
from goalflow.core.protocol import (
    acceptance_program,
    hand_back,
    input_variables,
    launcher,
    without_pasted_inputs,
)


def test_an_input_is_a_variable_of_its_name_or_of_a_name_made_from_it() -> None:
    names = ["numbers", "sales.csv", "word-list", "list", "class", "__file__"]

    assert input_variables(names) == {
        "numbers": "numbers",
        "sales.csv": "sales_csv",
        "word-list": "word_list",
        "list": "list_",  # never hides a builtin
        "class": "class_",
    }  # a dunder stays a file only


def test_a_name_whose_variable_is_taken_is_a_file_only() -> None:
    # 'a_b' is its own variable whichever comes first; 'a.b' and 'a-b' would both be a_b.
    assert input_variables(["a.b", "a_b", "a-b"]) == {"a_b": "a_b"}
    assert input_variables(["a.b", "a-b"]) == {"a.b": "a_b"}


def _launch(
    folder: Path, program: str, files: dict[str, str], outputs: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """Run ``program`` through the launcher in ``folder``, as the sandbox does."""
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    path = folder / ".program.py"
    path.write_text(program, encoding="utf-8")
    (folder / ".launch.py").write_text(launcher(str(path), input_variables(files), outputs))
    return subprocess.run(
        [sys.executable, ".launch.py"], cwd=folder, capture_output=True, text=True, timeout=60
    )


def test_the_program_gets_its_inputs_as_variables_and_still_as_files(tmp_path: Path) -> None:
    program = (
        "from __future__ import annotations\n"
        "print(sum(int(x) for x in numbers.split()))\n"
        "print(sales_csv.splitlines()[1])\n"
        "print(open('sales.csv').read() == sales_csv)\n"
        "if __name__ == '__main__':\n"
        "    print('main')\n"
        "print(sorted(n for n in globals() if not n.startswith('__')))\n"
    )

    done = _launch(tmp_path, program, {"numbers": "4 8 15 16 23 42", "sales.csv": "a,b\n1,2\n"})

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "108",
        "1,2",
        "True",
        "main",
        "['annotations', 'numbers', 'sales_csv']",  # nothing of the launcher's
    ]


PASTED = [
    # A CSV pasted into an ordinary string: a syntax error the given value cures.
    (
        'import csv\ncsv_text = "city,sales\nParis,120\nLyon,80"\n'
        "rows = list(csv.DictReader(csv_text.splitlines()))\nprint(len(rows))\n",
        "import csv\nrows = list(csv.DictReader(csv_text.splitlines()))\nprint(len(rows))\n",
        ["csv_text"],
    ),
    # A clean copy, and a wrong one: the exact value is used either way.
    ('word = "perfect"\nprint(word[::-1])\n', "print(word[::-1])\n", ["word"]),
    ('text = """a\nb"""\nprint(text)\n', "print(text)\n", ["text"]),
]


@pytest.mark.parametrize(
    ("program", "kept", "pasted"), PASTED, ids=["broken", "one-line", "triple"]
)
def test_a_value_pasted_over_an_input_variable_goes_and_the_given_one_is_used(
    program: str, kept: str, pasted: list[str]
) -> None:
    assert without_pasted_inputs(program, ["csv_text", "word", "text"]) == (kept, pasted)


@pytest.mark.parametrize(
    "program",
    [
        "word = word.strip()\nprint(word[::-1])\n",  # works on the given value
        'other = "perfect"\nprint(other)\n',  # not an input
        'word = "a\nprint(word\n',  # broken past the literal: left for the model to fix
    ],
)
def test_any_other_program_is_left_as_it_is(program: str) -> None:
    assert without_pasted_inputs(program, ["word"]) == (program, [])


def test_a_traceback_shows_the_program_with_its_own_line_numbers(tmp_path: Path) -> None:
    done = _launch(tmp_path, "total = 0\ntotal += int(numbers)\n", {"numbers": "4 8"})

    lines = done.stderr.splitlines()
    assert done.returncode == 1
    assert lines[:3] == [  # no frame of the launcher
        "Traceback (most recent call last):",
        f'  File "{tmp_path}/.program.py", line 2, in <module>',
        "    total += int(numbers)",
    ]
    assert lines[-1] == "ValueError: invalid literal for int() with base 10: '4 8'"


def test_exit_codes_and_syntax_errors_come_through(tmp_path: Path) -> None:
    exited = _launch(tmp_path, "import sys\nsys.exit('bad input')\n", {})
    broken = _launch(tmp_path, "x = (\n", {})

    assert (exited.returncode, exited.stderr) == (1, "bad input\n")
    assert broken.returncode == 1
    assert f'File "{tmp_path}/.program.py", line 1' in broken.stderr
    assert broken.stderr.rstrip().endswith("SyntaxError: '(' was never closed")


def _printed(text: str, cap: int = 64 * 1024) -> OutputCapture:
    capture = OutputCapture(cap)
    capture.add(text.encode())
    return capture


def test_with_one_output_what_the_program_prints_is_the_output() -> None:
    assert hand_back(["total"], {}, _printed("108\n")) == ({"total": b"108"}, None)
    assert hand_back(["poem"], {}, _printed("a\n  b\nc\n\n")) == ({"poem": b"a\n  b\nc"}, None)


def test_a_file_of_the_output_s_name_wins_over_what_was_printed() -> None:
    outputs, failure = hand_back(["total"], {"total": b"108"}, _printed("debug: adding\n"))

    assert (outputs, failure) == ({"total": b"108"}, None)


@pytest.mark.parametrize(
    "printed",
    [
        '{"low": 4, "high": "42", "other": 1}',
        'reading the numbers\n{"low": 4, "high": "42"}\n',  # the last line
        '{\n  "low": 4,\n  "high": "42"\n}\n',  # indented
    ],
)
def test_with_several_outputs_the_program_prints_a_json_object(printed: str) -> None:
    outputs, failure = hand_back(["low", "high"], {}, _printed(printed))

    assert failure is None
    assert outputs == {"low": b"4", "high": b"42"}  # not a string: kept as JSON


def test_several_outputs_may_mix_files_and_a_json_object() -> None:
    outputs, failure = hand_back(
        ["low", "high", "all"], {"all": b"4 42"}, _printed('{"low": ["a", 1], "high": "z"}')
    )

    assert failure is None
    assert outputs == {"all": b"4 42", "low": b'["a", 1]', "high": b"z"}


@pytest.mark.parametrize(
    ("names", "printed", "failure"),
    [
        (["total"], "", "it printed nothing: print the value of total"),
        (["total"], "\n \n", "it printed nothing: print the value of total"),
        (
            ["low", "high"],
            "4 42\n",
            'it did not hand back low, high: print one JSON object with the keys "low", "high"',
        ),
        (
            ["low", "high"],
            '{"low": 4}',
            'the JSON object it printed has no high: print one JSON object with the keys "low", '
            '"high"',
        ),
        (["low", "high"], '{"low": 4, "high": ""}', "high came back empty"),
    ],
)
def test_an_output_not_handed_back_is_named(names: list[str], printed: str, failure: str) -> None:
    _, why = hand_back(names, {}, _printed(printed))

    assert why is not None and why.startswith(failure)


def test_ten_megabytes_printed_are_capped_and_reported_not_delivered() -> None:
    flood = OutputCapture(64 * 1024)
    for _ in range(10):
        flood.add(b"y" * (1 << 20))

    outputs, failure = hand_back(["total"], {}, flood)

    assert outputs == {}
    assert failure == (
        "it printed 10485760 bytes, more than the 65536 the sandbox keeps, so total would "
        "arrive cut short: print only the result"
    )
    # Printing that much is fine when the output is a file.
    assert hand_back(["total"], {"total": b"108"}, flood) == ({"total": b"108"}, None)


VARIABLES = input_variables(["numbers", "total", "primes.csv"])


@pytest.mark.parametrize(
    "acceptance",
    [
        "the total is one integer",
        "a comma-separated list of 10 primes",
        "sorted",  # a name, but no output
        "done",
        "not empty",  # 'empty' is nobody's name
        "total > 0; total < 5",  # two expressions are not a check
        "import os",
        "",
    ],
)
def test_prose_acceptance_is_not_run(acceptance: str) -> None:
    assert acceptance_program(acceptance, VARIABLES, ["total", "primes.csv"]) is None


@pytest.mark.parametrize(
    ("acceptance", "check"),
    [
        ("int(total) == 108", "assert (\nint(total) == 108\n)"),
        ("  assert len(primes_csv.split(',')) == 10  ", "assert len(primes_csv.split(',')) == 10"),
        (
            "int(total) == sum(int(x) for x in numbers.split())",  # inputs too
            "assert (\nint(total) == sum(int(x) for x in numbers.split())\n)",
        ),
        (
            "assert json.loads(total)\nassert total.strip()",
            "assert json.loads(total)\nassert total.strip()",
        ),
    ],
)
def test_an_assert_or_expression_about_the_outputs_is_a_check(acceptance: str, check: str) -> None:
    program = acceptance_program(acceptance, VARIABLES, ["total", "primes.csv"])

    assert program is not None and program.startswith("import json, math, re\n")
    assert check in program


@pytest.mark.parametrize(("total", "passes"), [("108", True), ("one hundred", False)])
def test_a_check_program_fails_exactly_when_the_check_does_not_hold(
    tmp_path: Path, total: str, passes: bool
) -> None:
    check = acceptance_program("int(total) == 108", {"total": "total"}, ["total"])
    assert check is not None

    done = _launch(tmp_path, check, {"total": total})

    assert (done.returncode == 0) is passes


def test_a_program_that_printed_nothing_hands_back_its_output_variables(tmp_path: Path) -> None:
    one = _launch(tmp_path, "reversed_word = word[::-1]\n", {"word": "prefect"}, ["reversed_word"])
    assert (one.returncode, one.stdout) == (0, "tceferp\n")

    several = "low = min(int(x) for x in numbers.split())\nhigh = [1, 2]\n"
    two = _launch(tmp_path, several, {"numbers": "4 8 15"}, ["low", "high"])
    assert json.loads(two.stdout) == {"low": "4", "high": "[1, 2]"}


def test_what_a_program_prints_wins_over_its_variables_and_a_missing_one_hands_back_nothing(
    tmp_path: Path,
) -> None:
    printed = _launch(tmp_path, "total = 1\nprint(2)\n", {}, ["total"])
    assert printed.stdout == "2\n"

    partial = _launch(tmp_path, "low = 1\n", {}, ["low", "high"])
    assert (partial.returncode, partial.stdout) == (0, "")
