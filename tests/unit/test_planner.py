"""Planning with a scripted model: a valid plan, re-asks that show the broken rules, a
typed failure, and composite tasks broken down as far as the depth limit allows.

The model is a ``ScriptedChat`` answering by response schema; no Prefect, no server.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from goalflow.agent.planner import PlanningOptions, make_plan
from goalflow.agent.prompts.planning import plan_examples
from goalflow.core.plan import PlanDraft
from goalflow.core.rules import check_tasks
from goalflow.core.task import TaskKind
from goalflow.errors import GoalflowError, StructuredOutputError
from tests.helpers import DIAMOND, Answer, ChatCall, ScriptedChat, task

GOAL = "Write a short report on green tea"
CYCLIC = {
    "inputs": [],
    "deliverables": ["b"],
    "tasks": [task("x", "X", ["b"], ["a"]), task("y", "Y", ["a"], ["b"])],
}
ESSAY = {
    "inputs": [],
    "deliverables": ["essay"],
    "tasks": [
        task("brief", "Write brief", [], ["brief"]),
        {**task("draft", "Draft essay", ["brief"], ["essay"]), "kind": "composite"},
    ],
}


def _kind_field(call: ChatCall) -> dict[str, Any]:
    field: dict[str, Any] = call.schema.model_json_schema()["$defs"]["TaskSpec"]["properties"][
        "kind"
    ]
    return field


def _kinds_offered(call: ChatCall) -> set[str]:
    """The task kinds the response schema of ``call`` lets the model write."""
    kind = _kind_field(call)
    return set(kind["enum"]) if "enum" in kind else {kind["const"]}


def _kinds_described(call: ChatCall) -> set[str]:
    """The task kinds the schema's description of ``kind`` explains to the model."""
    described = _kind_field(call)["description"]
    return {kind for kind in ("llm", "code", "composite") if f"'{kind}'" in described}


async def test_a_valid_first_draft_is_the_plan() -> None:
    chat = ScriptedChat({"PlanDraft": [DIAMOND]})

    plan = await make_plan(chat, GOAL, PlanningOptions())

    assert plan.goal == GOAL
    assert plan.inputs == {"topic": "green tea"}
    assert plan.deliverables == ["report"]
    assert [t.id for t in plan.tasks] == ["facts", "pros", "cons", "report"]
    assert plan.errors() == []
    assert [c.schema_name for c in chat.calls] == ["PlanDraft"]
    assert GOAL in chat.calls[0].last_user


async def test_an_invalid_draft_is_re_asked_with_the_rules_it_broke() -> None:
    ghost = {
        **DIAMOND,
        "tasks": [*DIAMOND["tasks"][:3], task("report", "R", ["pros", "ghost"], ["report"])],
    }
    chat = ScriptedChat({"PlanDraft": [ghost, DIAMOND]})

    plan = await make_plan(chat, GOAL, PlanningOptions())

    assert [t.title for t in plan.tasks] == [
        "Gather facts",
        "List pros",
        "List cons",
        "Write report",
    ]
    first, second = chat.calls
    # The same conversation goes on: the model sees its own draft, then what is wrong.
    assert second.messages[: len(first.messages)] == first.messages
    shown = second.messages[len(first.messages)]
    assert shown["role"] == "assistant"
    assert "ghost" in json.loads(shown["content"])["tasks"][3]["inputs"]
    assert "task 'report' consumes 'ghost', which no task produces" in second.last_user


async def test_drafts_that_stay_invalid_leave_the_goal_as_one_step_after_the_attempts() -> None:
    chat = ScriptedChat({"PlanDraft": [CYCLIC, CYCLIC]})
    steps: list[str] = []

    plan = await make_plan(
        chat, "Go round in circles", PlanningOptions(attempts=2), on_step=steps.append
    )

    assert len(chat.calls) == 2
    assert plan.errors() == []
    [only] = plan.tasks
    assert only.instructions == "Go round in circles"  # the goal itself is the task
    assert only.kind == "llm" and plan.deliverables == only.outputs == ["b"]
    [said] = [step for step in steps if step.startswith("could not plan")]
    assert "cycle" in said and "one 'llm' step" in said  # why, and what happens instead


async def test_the_one_step_keeps_the_data_the_form_and_the_exact_work_of_the_last_draft() -> None:
    broken = {
        "inputs": [{"name": "sentence", "value": "the lazy dog"}, {"name": "a b", "value": "x"}],
        "deliverables": ["vowel_count"],
        "tasks": [
            {**task("count", "Count", ["sentence"], ["vowel_count"]), "kind": "code"},
            {**task("again", "Count again", ["sentence"], ["vowel_count"]), "format": "1 int"},
        ],
    }
    chat = ScriptedChat({"PlanDraft": [broken] * 3})

    plan = await make_plan(chat, "Count the vowels of 'the lazy dog'", PlanningOptions())

    [only] = plan.tasks
    assert only.kind == "code"  # the model saw exact work
    assert plan.inputs == {"sentence": "the lazy dog"}  # 'a b' is no name
    assert only.inputs == ["sentence"] and only.outputs == ["vowel_count"]
    assert only.format == "1 int"


async def test_a_model_that_never_answers_the_plans_schema_fails_planning_clearly() -> None:
    never = StructuredOutputError(
        "not JSON", schema_name="PlanDraft", n_attempts=3, last_completion="{"
    )
    chat = ScriptedChat({"PlanDraft": [never]})

    with pytest.raises(StructuredOutputError):  # its tasks would fare no better
        await make_plan(chat, GOAL, PlanningOptions(allowed_kinds=("code",)))


async def test_a_composite_task_is_broken_down_into_a_sub_plan_of_its_own() -> None:
    subplan = {
        "tasks": [
            task("outline", "Make outline", ["brief"], ["outline"]),
            task("write", "Write from outline", ["outline"], ["essay"]),
        ]
    }
    chat = ScriptedChat({"PlanDraft": [ESSAY], "SubPlanDraft": [subplan]})

    plan = await make_plan(chat, "Write an essay", PlanningOptions())

    draft = plan.tasks[1]
    assert draft.kind == "composite"
    assert [(t.id, t.inputs, t.outputs) for t in draft.subtasks] == [
        ("outline", ["brief"], ["outline"]),
        ("write", ["outline"], ["essay"]),
    ]
    assert plan.errors() == []
    assert [c.schema_name for c in chat.calls] == ["PlanDraft", "SubPlanDraft"]


async def test_composite_tasks_are_broken_down_to_max_depth_and_no_further() -> None:
    book = {
        "inputs": [],
        "deliverables": ["book"],
        "tasks": [{**task("book", "Write book", [], ["book"]), "kind": "composite"}],
    }
    chapters_and_binding = {
        "tasks": [
            {**task("chapters", "Write chapters", [], ["chapters"]), "kind": "composite"},
            task("bind", "Bind book", ["chapters"], ["book"]),
        ]
    }
    chapters = {
        "tasks": [
            task("one", "Chapter one", [], ["one"]),
            task("two", "Chapter two", ["one"], ["chapters"]),
        ]
    }
    chat = ScriptedChat({"PlanDraft": [book], "SubPlanDraft": [chapters_and_binding, chapters]})

    plan = await make_plan(chat, "Write a book", PlanningOptions(max_depth=2))

    assert [(t.id, t.kind) for t in plan.walk()] == [
        ("book", "composite"),
        ("chapters", "composite"),
        ("one", "llm"),
        ("two", "llm"),
        ("bind", "llm"),
    ]
    assert plan.errors() == []
    planned, first_breakdown, second_breakdown = chat.calls
    assert _kinds_offered(planned) == {"llm", "code", "composite"}
    assert _kinds_offered(first_breakdown) == {"llm", "code", "composite"}
    assert _kinds_offered(second_breakdown) == {"llm", "code"}  # at the depth limit


async def test_a_model_that_always_breaks_down_stops_at_the_goals_breakdown_budget() -> None:
    top = {
        "inputs": [],
        "deliverables": ["out"],
        "tasks": [{**task("top", "Everything", [], ["out"]), "kind": "composite"}],
    }
    again = {"tasks": [{**task("again", "Everything again", [], ["out"]), "kind": "composite"}]}
    chat = ScriptedChat({"PlanDraft": [top], "SubPlanDraft": [again] * 10})
    steps: list[str] = []
    options = PlanningOptions(max_depth=5, max_breakdowns=2)

    plan = await make_plan(chat, "Do it", options, on_step=steps.append)

    assert [c.schema_name for c in chat.calls] == ["PlanDraft", "SubPlanDraft", "SubPlanDraft"]
    assert [t.kind for t in plan.walk()] == ["composite", "composite", "llm"]
    assert plan.errors() == []
    assert any("used its 2 breakdowns" in step for step in steps)


@pytest.mark.parametrize(
    "breakdowns",
    [
        # Every breakdown misses the parent's output.
        [{"tasks": [task("outline", "Make outline", ["brief"], ["outline"])]}] * 3,
        [
            StructuredOutputError(
                "never valid", schema_name="SubPlanDraft", n_attempts=3, last_completion="{"
            )
        ],
    ],
    ids=["breakdowns-break-the-rules", "no-valid-answer"],
)
async def test_a_composite_task_that_cannot_be_broken_down_runs_as_one_llm_step(
    breakdowns: list[Answer],
) -> None:
    # Marked simple, as a planner may mark a big step: as one step it is a hard one.
    marked = {**ESSAY, "tasks": [{**t, "difficulty": "simple"} for t in ESSAY["tasks"]]}
    chat = ScriptedChat({"PlanDraft": [marked], "SubPlanDraft": breakdowns})
    steps: list[str] = []

    plan = await make_plan(chat, "Write an essay", PlanningOptions(), on_step=steps.append)

    assert [(t.id, t.kind, t.subtasks, t.difficulty) for t in plan.walk()] == [
        ("brief", "llm", [], "simple"),
        ("draft", "llm", [], "hard"),
    ]
    assert plan.errors() == []
    assert len(chat.calls_for("SubPlanDraft")) == len(breakdowns)
    assert any("could not break down 'draft'" in step for step in steps)


@pytest.mark.parametrize(
    ("options", "offered"),
    [
        (PlanningOptions(), {"llm", "code", "composite"}),
        (PlanningOptions(allowed_kinds=("llm", "composite")), {"llm", "composite"}),
        (PlanningOptions(max_depth=0), {"llm", "code"}),
    ],
    ids=["all", "no-code", "no-breakdown"],
)
async def test_the_plan_schema_offers_only_the_kinds_that_can_run(
    options: PlanningOptions, offered: set[str]
) -> None:
    chat = ScriptedChat({"PlanDraft": [DIAMOND]})

    await make_plan(chat, GOAL, options)

    assert _kinds_offered(chat.calls[0]) == offered
    # The field's description explains only those: no 'code' advice without a sandbox.
    assert _kinds_described(chat.calls[0]) == offered


async def test_options_that_leave_no_kind_to_run_fail_before_any_model_call() -> None:
    chat = ScriptedChat({})
    options = PlanningOptions(allowed_kinds=("composite",), max_depth=0)

    with pytest.raises(GoalflowError, match="allow 'llm' or 'code' tasks"):
        await make_plan(chat, GOAL, options)

    assert chat.calls == []


COUNT_VOWELS = {
    "inputs": [{"name": "sentence", "value": "green tea is good"}],
    "deliverables": ["answer"],
    "tasks": [
        {
            **task("count", "Count vowels", ["sentence"], ["vowel_count"]),
            "kind": "code",
            "format": "one integer",
        }
    ],
}


async def test_a_one_task_plan_delivering_what_it_does_not_make_settles_without_a_re_ask() -> None:
    chat = ScriptedChat({"PlanDraft": [COUNT_VOWELS]})
    steps: list[str] = []

    plan = await make_plan(chat, "Count the vowels", PlanningOptions(), on_step=steps.append)

    assert plan.deliverables == ["vowel_count"]
    assert plan.errors() == []
    assert len(chat.calls) == 1  # settled, not sent back
    settled = [step for step in steps if step.startswith("settled: ")]
    assert len(settled) == 1
    assert "'answer'" in settled[0] and "'vowel_count'" in settled[0]


async def test_a_one_task_plan_with_no_deliverable_named_delivers_its_output() -> None:
    chat = ScriptedChat({"PlanDraft": [{**COUNT_VOWELS, "deliverables": []}]})
    steps: list[str] = []

    plan = await make_plan(chat, "Count the vowels", PlanningOptions(), on_step=steps.append)

    assert plan.deliverables == ["vowel_count"]
    assert len(chat.calls) == 1
    assert any(step.startswith("settled: ") and "'vowel_count'" in step for step in steps)


async def test_values_written_as_deliverables_are_dropped_and_the_output_delivered() -> None:
    evens = {
        "inputs": [{"name": "numbers", "value": "14, 3, 27, 8"}],
        "deliverables": ["14", "8", "even numbers"],  # the data, and a name with a space
        "tasks": [{**task("keep", "Keep evens", ["numbers"], ["evens"]), "kind": "code"}],
    }
    chat = ScriptedChat({"PlanDraft": [evens]})
    steps: list[str] = []

    plan = await make_plan(chat, "Keep the even numbers", PlanningOptions(), on_step=steps.append)

    assert plan.deliverables == ["evens"]
    assert len(chat.calls) == 1  # settled, not sent back
    assert "settled: '14', '8', 'even numbers' written as deliverables are values: dropped" in steps


async def test_words_of_the_goals_data_written_as_deliverables_are_dropped_too() -> None:
    fruit = {
        "inputs": [{"name": "words", "value": "banana, fig, cherry"}],
        "deliverables": ["banana", "fig", "cherry"],
        "tasks": [{**task("sort", "Sort by length", ["words"], ["by_length"]), "kind": "code"}],
    }
    chat = ScriptedChat({"PlanDraft": [fruit]})

    plan = await make_plan(chat, "Sort banana, fig, cherry by length", PlanningOptions())

    assert plan.deliverables == ["by_length"]
    assert len(chat.calls) == 1


async def test_the_one_step_of_a_plan_that_delivered_values_delivers_one_answer() -> None:
    words = ["banana", "fig", "cherry"]
    broken = {
        "inputs": [],
        "deliverables": words,
        "tasks": [{**task(w, "Sort", [], [w]), "kind": "code", "inputs": ["x"]} for w in words],
    }
    chat = ScriptedChat({"PlanDraft": [broken] * 3})
    steps: list[str] = []
    goal = "Sort the words 'banana', 'fig', 'cherry' by length"

    plan = await make_plan(chat, goal, PlanningOptions(), on_step=steps.append)

    [only] = plan.tasks
    assert plan.deliverables == only.outputs == ["answer"]
    # The one step is a program, and it reads the goal's data.
    assert only.kind == "code" and only.inputs == ["word", "word_2", "word_3"]
    assert plan.inputs == {"word": "banana", "word_2": "fig", "word_3": "cherry"}


async def test_the_one_step_delivers_only_names_a_task_made() -> None:
    broken = {**CYCLIC, "deliverables": ["b", "nothing_makes_this"]}
    chat = ScriptedChat({"PlanDraft": [broken] * 3})

    plan = await make_plan(chat, "Go round", PlanningOptions())

    assert plan.deliverables == ["b"]


async def test_text_the_goal_quotes_reaches_code_tasks_that_take_no_input() -> None:
    reverse = {
        "inputs": [],
        "deliverables": ["reversed", "greeting"],
        "tasks": [
            {**task("reverse", "Reverse the word", [], ["reversed"]), "kind": "code"},
            task("greet", "Greet the user", [], ["greeting"]),
        ],
    }
    chat = ScriptedChat({"PlanDraft": [reverse], "OneAnswer": [{"one_answer": False}]})
    steps: list[str] = []
    goal = "Reverse the word 'prefect' and say \"why\"; Anna's answer does not count."

    plan = await make_plan(chat, goal, PlanningOptions(), on_step=steps.append)

    # A program reads the goal's data exactly, rather than the model copying it by hand.
    assert plan.inputs == {"word": "prefect", "word_2": "why"}
    assert plan.tasks[0].inputs == ["word", "word_2"]
    assert plan.tasks[1].inputs == []  # a language task reads the goal itself
    assert any("data given to 'reverse': word = 'prefect'" in step for step in steps)


async def test_a_csv_or_json_pasted_in_the_goal_reaches_the_program_whole() -> None:
    total = {
        "inputs": [],
        "deliverables": ["total"],
        "tasks": [{**task("total", "Sum the orders", [], ["total"]), "kind": "code"}],
    }
    chat = ScriptedChat({"PlanDraft": [total]})
    orders = "product,quantity\npen,10\nstapler,1"
    goal = f'Given these orders:\n{orders}\nand the prices {{"pen": 1.5, "stapler": 12}}, sum them.'

    plan = await make_plan(chat, goal, PlanningOptions())

    # Whole, not cut at the quotes inside the JSON or at the lines of the CSV.
    assert plan.inputs == {"csv_text": orders, "json_text": '{"pen": 1.5, "stapler": 12}'}
    assert plan.tasks[0].inputs == ["csv_text", "json_text"]


async def test_the_form_the_goal_asks_for_is_kept_on_the_task_that_delivers_it() -> None:
    chat = ScriptedChat({"PlanDraft": [COUNT_VOWELS]})

    plan = await make_plan(chat, "Count the vowels; the number only", PlanningOptions())

    assert plan.tasks[0].format == "one integer"
    assert "format" in chat.calls[0].schema.model_json_schema()["$defs"]["TaskSpec"]["properties"]


async def test_a_separator_the_goal_never_asks_for_leaves_the_deliverables_form() -> None:
    strip = {
        "inputs": [{"name": "text", "value": "Orchestration Is Hard"}],
        "deliverables": ["stripped"],
        "tasks": [
            {
                **task("strip", "Remove vowels", ["text"], ["stripped"]),
                "kind": "code",
                "format": "words, comma-separated",  # the worked example's form, copied
            }
        ],
    }
    steps: list[str] = []

    asked_none = await make_plan(
        ScriptedChat({"PlanDraft": [strip]}),
        "Remove every vowel from 'Orchestration Is Hard', keeping the spaces.",
        PlanningOptions(),
        on_step=steps.append,
    )
    asked_commas = await make_plan(
        ScriptedChat({"PlanDraft": [strip]}),
        "Remove every vowel from each word of 'Orchestration Is Hard'; comma-separated.",
        PlanningOptions(),
    )

    assert asked_none.tasks[0].format == "words"
    assert (
        "settled: the form of 'strip' is 'words', not 'words, comma-separated': the goal asks "
        "for no separator" in steps
    )
    assert asked_commas.tasks[0].format == "words, comma-separated"


async def test_a_chain_of_code_tasks_is_one_program_and_parallel_branches_stay() -> None:
    def code(id_: str, inputs: list[str], outputs: list[str], **extra: str) -> dict[str, Any]:
        return {**task(id_, id_.title(), inputs, outputs), "kind": "code", **extra}

    price = {
        "inputs": [{"name": "price", "value": "80"}],
        "deliverables": ["total"],
        "tasks": [
            code("discount", ["price"], ["discounted"]),
            code("tax", ["discounted"], ["taxed"]),
            code("shipping", [], ["fee"]),  # a parallel branch
            code("total", ["taxed", "fee"], ["total"], format="number, two decimal places"),
        ],
    }
    steps: list[str] = []

    plan = await make_plan(
        ScriptedChat({"PlanDraft": [price]}), "Price it", PlanningOptions(), on_step=steps.append
    )

    fused, shipping, total = plan.tasks
    assert (fused.id, fused.kind, shipping.id, total.id) == ("tax", "code", "shipping", "total")
    assert fused.inputs == ["price"] and fused.outputs == ["taxed"]
    # The instructions of both, in order, with the name that linked them.
    assert fused.instructions.index("Do Discount") < fused.instructions.index("Do Tax")
    assert "(discounted)" in fused.instructions
    assert total.inputs == ["taxed", "fee"]  # the join keeps its branches
    assert total.format == "number, two decimal places"
    assert steps.count("settled: the code tasks 'discount' and 'tax' are one program 'tax'") == 1
    assert plan.errors() == []


async def test_the_decimal_places_the_goal_asks_for_reach_the_form_of_its_answer() -> None:
    convert = {
        "inputs": [],
        "deliverables": ["celsius"],
        "tasks": [
            {**task("convert", "Convert", [], ["celsius"]), "kind": "code", "format": "one number"}
        ],
    }
    steps: list[str] = []

    plan = await make_plan(
        ScriptedChat({"PlanDraft": [convert]}),
        "Convert 451 degrees Fahrenheit to Celsius, rounded to one decimal place.",
        PlanningOptions(),
        on_step=steps.append,
    )

    assert plan.tasks[0].format == "one number, rounded to 1 decimal place"
    assert (
        "settled: the form of 'convert' is 'one number, rounded to 1 decimal place', with the "
        "places the goal asks for" in steps
    )


async def test_the_goals_decimal_places_replace_other_places_in_its_answers_form() -> None:
    convert = {
        "inputs": [],
        "deliverables": ["km"],
        "tasks": [
            {**task("km", "To km", [], ["km"]), "kind": "code", "format": "one decimal place"}
        ],
    }

    plan = await make_plan(
        ScriptedChat({"PlanDraft": [convert]}),
        "How many km is 26.2 miles? To two decimal places.",
        PlanningOptions(),
    )

    assert plan.tasks[0].format == "rounded to 2 decimal places"


CAPITALS_APART = {
    "inputs": [],
    "deliverables": ["capital_france", "capital_italy"],
    "tasks": [
        task("france", "Capital of France", [], ["capital_france"]),
        task("italy", "Capital of Italy", [], ["capital_italy"]),
    ],
}
CAPITALS_JOINED = {
    **CAPITALS_APART,
    "tasks": [
        *CAPITALS_APART["tasks"],
        {
            **task("join", "Join them", ["capital_france", "capital_italy"], ["capitals"]),
            "kind": "code",
        },
    ],
}
CAPITALS_GOAL = "Find the capitals of France and Italy; answer with both, joined by ' and '."


async def test_results_handed_back_apart_where_the_goal_wants_one_answer_go_back() -> None:
    joined_only = {**CAPITALS_JOINED, "deliverables": ["capitals"]}
    chat = ScriptedChat(
        {"PlanDraft": [CAPITALS_APART, joined_only], "OneAnswer": [{"one_answer": True}]}
    )

    plan = await make_plan(chat, CAPITALS_GOAL, PlanningOptions())

    assert plan.deliverables == ["capitals"]
    asked = chat.calls_for("PlanDraft")[1]
    assert "the plan hands back capital_france, capital_italy apart" in asked.last_user
    question = chat.calls_for("OneAnswer")[0]
    assert CAPITALS_GOAL in question.last_user and "capital_italy" in question.last_user
    assert question.max_tokens is not None and question.max_tokens <= 64


async def test_parts_one_task_makes_apart_become_its_one_output_when_one_answer_is_wanted() -> None:
    split = {
        "inputs": [],
        "deliverables": ["hours", "minutes", "seconds"],
        "tasks": [
            {
                **task("split", "Split the seconds", [], ["hours", "minutes", "seconds"]),
                "kind": "code",
                "format": "H:MM:SS",
            }
        ],
    }
    chat = ScriptedChat({"PlanDraft": [split], "OneAnswer": [{"one_answer": True}]})
    steps: list[str] = []

    plan = await make_plan(
        chat, "Write 9999 s as H:MM:SS.", PlanningOptions(), on_step=steps.append
    )

    assert plan.deliverables == ["hours_minutes_seconds"]
    (made,) = plan.tasks
    assert made.outputs == ["hours_minutes_seconds"] and made.format == "H:MM:SS"
    assert made.instructions.endswith(
        "Hand back hours, minutes, seconds together as one value, in the form H:MM:SS."
    )
    assert len(chat.calls_for("PlanDraft")) == 1  # settled, not sent back
    assert (
        "settled: the goal asks for one answer: 'hours', 'minutes', 'seconds' of 'split' are "
        "one output 'hours_minutes_seconds'" in steps
    )


async def test_a_model_that_cannot_combine_the_parts_when_asked_keeps_its_plan() -> None:
    chat = ScriptedChat(
        {"PlanDraft": [CAPITALS_APART, CAPITALS_APART], "OneAnswer": [{"one_answer": True}]}
    )
    steps: list[str] = []

    plan = await make_plan(chat, CAPITALS_GOAL, PlanningOptions(), on_step=steps.append)

    assert plan.deliverables == ["capital_france", "capital_italy"]  # not the one-step fallback
    assert len(chat.calls_for("PlanDraft")) == 2 and len(chat.calls_for("OneAnswer")) == 1
    assert any(step.startswith("kept: the plan delivers 'capital_france'") for step in steps)


async def test_parts_delivered_beside_the_task_combining_them_settle_to_its_output() -> None:
    chat = ScriptedChat({"PlanDraft": [CAPITALS_JOINED], "OneAnswer": [{"one_answer": True}]})
    steps: list[str] = []

    plan = await make_plan(chat, CAPITALS_GOAL, PlanningOptions(), on_step=steps.append)

    assert plan.deliverables == ["capitals"]
    assert len(chat.calls_for("PlanDraft")) == 1  # settled, not sent back
    assert (
        "settled: the goal asks for one answer: 'capitals' of 'join' delivered, not the parts "
        "it is made from" in steps
    )


@pytest.mark.parametrize(
    "verdict",
    [
        {"one_answer": False},
        StructuredOutputError(
            "not JSON", schema_name="OneAnswer", n_attempts=3, last_completion="{"
        ),
    ],
    ids=["separate-results", "no-verdict"],
)
async def test_results_the_goal_wants_apart_or_with_no_verdict_stay_apart(
    verdict: Answer,
) -> None:
    chat = ScriptedChat({"PlanDraft": [CAPITALS_APART], "OneAnswer": [verdict]})

    plan = await make_plan(chat, "Name the capitals of France and Italy.", PlanningOptions())

    assert plan.deliverables == ["capital_france", "capital_italy"]
    assert len(chat.calls) == 2


async def test_a_composite_tasks_form_passes_to_the_subtask_that_makes_its_output() -> None:
    essay = {
        **ESSAY,
        "tasks": [
            ESSAY["tasks"][0],
            {**ESSAY["tasks"][1], "format": "three paragraphs"},
        ],
    }
    subplan = {
        "tasks": [
            task("outline", "Make outline", ["brief"], ["outline"]),
            task("write", "Write from outline", ["outline"], ["essay"]),
        ]
    }
    chat = ScriptedChat({"PlanDraft": [essay], "SubPlanDraft": [subplan]})

    plan = await make_plan(chat, "Write an essay in three paragraphs", PlanningOptions())

    outline, write = plan.tasks[1].subtasks
    assert write.format == "three paragraphs"
    assert outline.format == ""  # an intermediate result keeps its own (free) form


@pytest.mark.parametrize(
    "kinds",
    [("llm", "code", "composite"), ("llm", "composite"), ("llm", "code")],
    ids=["all", "no-code", "no-breakdown"],
)
async def test_every_worked_example_shown_is_a_plan_that_keeps_the_rules(
    kinds: tuple[TaskKind, ...],
) -> None:
    chat = ScriptedChat({"PlanDraft": [DIAMOND]})
    await make_plan(chat, GOAL, PlanningOptions(allowed_kinds=kinds))
    system = chat.calls[0].messages[0]["content"]

    examples = plan_examples(kinds)

    for _, example in examples:
        assert json.dumps(example) in system  # the model sees it as written here
        draft = PlanDraft.model_validate(example)
        available = [item.name for item in draft.inputs]
        assert (
            check_tasks(
                draft.tasks,
                available=available,
                deliverables=draft.deliverables,
                allowed_kinds=kinds,
            )
            == []
        )
    shown = [PlanDraft.model_validate(example) for _, example in examples]
    one_step_code = [
        d for d in shown if len(d.tasks) == 1 and d.tasks[0].kind == "code" and d.tasks[0].format
    ]
    # Exact work as one code task in the form asked for, where code tasks can run.
    assert bool(one_step_code) == ("code" in kinds)


async def test_with_two_model_tiers_the_planner_marks_each_task_simple_or_hard() -> None:
    marked = {**DIAMOND, "tasks": [{**t, "difficulty": "simple"} for t in DIAMOND["tasks"]]}
    marked["tasks"][-1]["difficulty"] = "hard"
    one = ScriptedChat({"PlanDraft": [DIAMOND]})
    two = ScriptedChat({"PlanDraft": [marked]})

    single = await make_plan(one, GOAL, PlanningOptions())
    tiered = await make_plan(two, GOAL, PlanningOptions(tiers=True))

    # One model: the schema the model sees does not ask; every task runs on it.
    spec = one.calls[0].schema.model_json_schema()["$defs"]["TaskSpec"]
    assert "difficulty" not in spec["properties"]
    assert {t.difficulty for t in single.tasks} == {"hard"}
    # Two: a required field, with what each mark means.
    spec = two.calls[0].schema.model_json_schema()["$defs"]["TaskSpec"]
    assert "difficulty" in spec["required"]
    assert "'simple'" in spec["properties"]["difficulty"]["description"]
    assert [t.difficulty for t in tiered.tasks] == ["simple", "simple", "simple", "hard"]


async def test_a_re_ask_shows_the_model_no_field_it_was_not_asked_for() -> None:
    ghost = {**DIAMOND, "tasks": [*DIAMOND["tasks"][:3], task("report", "R", ["x"], ["report"])]}
    chat = ScriptedChat({"PlanDraft": [ghost, DIAMOND]})

    await make_plan(chat, GOAL, PlanningOptions())

    shown = chat.calls[1].messages[-2]["content"]  # its own draft, before the rules it broke
    assert '"report"' in shown and "difficulty" not in shown
