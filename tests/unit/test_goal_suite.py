"""The goal suite is sound: enough goals in every category of issue 12, checkers that
accept the right answer (in the forms a user accepts) and reject plausible wrong ones,
and reference solutions that are valid plans whose answers are right."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from benchmarks.goal_suite import CATEGORIES, SUITE, Goal, select
from benchmarks.goal_suite.checks import any_of, items, json_value, number, text
from benchmarks.goal_suite.scripted import ReferenceModel, solve_locally
from goalflow.core.plan import PlanDraft
from goalflow.testing import ChatRequest

ISSUE_CATEGORIES = {
    "text",
    "counting",
    "arithmetic",
    "sorting",
    "parsing",
    "conversion",
    "format",
    "multistep",
    "code_input",
}

by_id = pytest.mark.parametrize("goal", SUITE, ids=[goal.id for goal in SUITE])


def test_at_least_30_goals_with_unique_ids_in_every_category_of_the_issue() -> None:
    assert len(SUITE) >= 30
    assert len({goal.id for goal in SUITE}) == len(SUITE)
    assert set(CATEGORIES) == ISSUE_CATEGORIES
    per_category = Counter(goal.category for goal in SUITE)
    assert set(per_category) == ISSUE_CATEGORIES
    assert min(per_category.values()) >= 3


@by_id
def test_the_reference_solution_solves_the_goal(goal: Goal) -> None:
    deliverables = solve_locally(goal.reference)

    assert goal.judge(deliverables) is None, deliverables


@by_id
def test_the_checker_rejects_a_plausible_wrong_answer(goal: Goal) -> None:
    assert goal.judge({"answer": goal.wrong}) is not None
    assert goal.judge({}) == "no deliverable"


@by_id
def test_the_reference_plan_is_one_goalflow_accepts(goal: Goal) -> None:
    draft = PlanDraft.model_validate(goal.reference.plan_draft())
    assert draft.deliverables == list(goal.reference.deliverables)
    assert goal.reference.plan(goal.text).errors() == []
    # The reference model finds a program or sub-plan by the task's instructions: they
    # must name one task only, wherever else they might appear in a request.
    steps = list(goal.reference.walk())
    elsewhere = [goal.text, *goal.reference.inputs.values()]
    for step in steps:
        others = [s.instructions for s in steps if s is not step]
        assert not any(step.instructions in text for text in elsewhere + others), step.id


def test_multistep_goals_have_parallel_branches_and_a_combining_step() -> None:
    for goal in select(categories=["multistep"]):
        leaves = [step for step in goal.reference.walk() if not step.steps]
        assert 2 <= len(leaves) <= 5, goal.id
        produced = {name for step in leaves for name in step.outputs}
        combining = [s for s in leaves if sum(name in produced for name in s.inputs) >= 2]
        assert combining, f"{goal.id} has no step that combines two results"


def test_code_input_goals_give_a_literal_input_to_a_code_task() -> None:
    for goal in select(categories=["code_input"]):
        literal = set(goal.reference.inputs)
        assert any(
            step.kind == "code" and literal & set(step.inputs) for step in goal.reference.walk()
        ), goal.id


def test_checkers_accept_what_a_user_accepts() -> None:
    assert text("tceferp")("  `tceferp`\n") is None
    assert text("Paris and Rome")('"Paris  and Rome"') is None
    assert text("Paris and Rome")("Paris and Rome.") is None  # a sentence's full stop
    assert text("Tuesday", ignore_case=True)("tuesday") is None
    assert number(1215.51, places=2, units=("$",))("$1,215.51") is None
    assert number(232.8, places=1, units=("°C",))("232.78 °C") is None  # more digits
    assert number(108)("108.0") is None
    assert any_of(text("2:46:39"), text("02:46:39"))("02:46:39") is None
    assert items(["a", "b"], sep=", ")("a,b") is None
    assert items(["2", "3"], sep="\n")("2\n\n3\n") is None
    assert json_value({"min": 1, "sum": 25})('```json\n{"sum": 25.0, "min": 1}\n```') is None


def test_checkers_reject_other_values_forms_and_chatter() -> None:
    assert text("tceferp")("The reversed word is tceferp.") is not None
    assert text("tceferp")("tceferp!") is not None
    assert any_of(text("2:46:39"), text("02:46:39"))("2:46") is not None
    assert number(108)("about 108") is not None
    assert number(232.8, places=1)("232.7") is not None
    assert number(232.8, places=1)("233") is not None  # fewer digits than asked
    assert number(1)("true") is not None
    assert items(["a", "b"], sep=", ")("b, a") is not None
    assert items(["a", "b"], sep=", ")("a\nb") is not None  # not the separator asked for
    assert items(["a", "b"], sep=", ")('["a", "b"]') is not None
    assert json_value({"min": 1})('{"min": 1, "max": 9}') is not None  # an extra key
    assert json_value({"ok": 1})('{"ok": true}') is not None


def test_one_right_deliverable_among_several_solves_a_goal_whatever_its_name() -> None:
    goal = next(goal for goal in SUITE if goal.id == "arith-sum")

    assert goal.judge({"whatever_name": "108"}) is None
    assert goal.judge({"numbers": "4 8 15 16 23 42", "total": "108"}) is None
    reason = goal.judge({"numbers": "4 8 15 16 23 42", "total": "106"})
    assert reason is not None and reason.startswith("none of 2 deliverables")


def test_select_by_id_and_category() -> None:
    assert [g.id for g in select(["arith-sum", "count-vowels"])] == ["arith-sum", "count-vowels"]
    assert {g.category for g in select(categories=["format"])} == {"format"}
    assert select(["arith-sum"], ["format"]) == []
    with pytest.raises(ValueError, match="unknown goal id or category: nope"):
        select(["nope"])


def _request(schema_name: str, content: str, properties: tuple[str, ...] = ()) -> ChatRequest:
    schema = {"title": schema_name, "properties": {name: {} for name in properties}}
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": content}],
        "response_format": {"type": "json_schema", "json_schema": {"name": schema_name,
                                                                   "schema": schema}},
    }  # fmt: skip
    return ChatRequest.from_body(body, received_at=0.0)


def test_the_reference_model_answers_each_call_from_the_current_goal() -> None:
    goal = next(goal for goal in SUITE if goal.id == "multi-capitals")
    model = ReferenceModel()
    model.goal = goal
    join = next(step for step in goal.reference.walk() if step.id == "join")

    plan = json.loads(str(model(_request("PlanDraft", f"Goal: {goal.text}"))))
    answer = model(_request("TaskAnswer", "Your task: ...", ("italy_capital",)))
    program = json.loads(str(model(_request("Program", f"whatever\n{join.instructions}"))))
    verdict = json.loads(str(model(_request("Verdict", "Task: ..."))))

    assert plan == goal.reference.plan_draft()
    assert json.loads(str(answer)) == {"italy_capital": "Rome"}
    assert program == {"code": join.program}
    assert verdict["passed"] is True


def test_the_reference_model_refuses_what_it_cannot_answer() -> None:
    model = ReferenceModel()
    assert getattr(model(_request("PlanDraft", "Goal: x")), "status", 200) == 400
    model.goal = SUITE[0]
    for request in (
        _request("TaskAnswer", "x", ("no_such_output",)),
        _request("Program", "instructions of no task"),
        _request("SomethingNew", "x"),
    ):
        reply = model(request)
        assert getattr(reply, "status", 200) == 400
        assert "goal suite reference model" in getattr(reply, "error_message", "")
