"""The plan rules: each broken rule gives one error a model can act on, valid plans none.

The messages are read by the model that wrote the plan, so each test checks the words
it needs to fix it: the task id, the offending name, and what to do instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytest
from pydantic import ValidationError

from goalflow.core.plan import Plan, PlanDraft, PlanPatch, PriorityChange
from goalflow.core.repairs import (
    deliver_final_task,
    deliver_only_task,
    match_deliverables,
    resolve_task_ids,
    wire_dangling_outputs,
)
from goalflow.core.rules import (
    check_tasks,
    critical_tasks,
    describe_validation_error,
    priority_order,
)
from goalflow.core.task import DEFAULT_MAX_TASKS, GoalInput, Task, TaskKind, TaskSpec
from goalflow.errors import PlanPatchError
from tests.helpers import spec


def task(
    task_id: str,
    inputs: Sequence[str] = (),
    outputs: Sequence[str] | None = None,
    *,
    kind: TaskKind = "llm",
    subtasks: Sequence[Task] = (),
) -> Task:
    return Task(
        **spec(task_id, inputs, outputs, kind=kind).model_dump(),
        subtasks=list(subtasks),
    )


def only_error(errors: list[str]) -> str:
    assert len(errors) == 1, errors
    return errors[0]


def diamond() -> list[TaskSpec]:
    """load -> (left, right) -> join, delivering 'report'."""
    return [
        spec("load", ["numbers"], ["rows"]),
        spec("left", ["rows"], ["totals"], effort=5),
        spec("right", ["rows"], ["chart"], effort=1),
        spec("join", ["totals", "chart"], ["report"]),
    ]


def nested_plan() -> Plan:
    return Plan(
        goal="Write a short report on the topic.",
        inputs={"topic": "graph scheduling"},
        deliverables=["report"],
        tasks=[
            task(
                "research",
                ["topic"],
                ["facts"],
                kind="composite",
                subtasks=[
                    task("search", ["topic"], ["hits"], kind="code"),
                    task("distil", ["hits"], ["facts"]),
                ],
            ),
            task("write", ["facts"], ["report"]),
        ],
    )


# -- valid plans ----------------------------------------------------------------------


def test_a_valid_diamond_plan_has_no_errors() -> None:
    assert check_tasks(diamond(), available=["numbers"], deliverables=["report"]) == []


def test_a_valid_nested_plan_has_no_errors() -> None:
    assert nested_plan().errors() == []


def test_a_goal_input_satisfies_a_task_input() -> None:
    plan = Plan(
        goal="Sum 1, 2, 3.",
        inputs={"numbers": "1, 2, 3"},
        deliverables=["total"],
        tasks=[task("add", ["numbers"], ["total"], kind="code")],
    )
    assert plan.errors() == []


def test_a_parent_input_satisfies_a_subtask_input_but_a_goal_input_it_lacks_does_not() -> None:
    plan = nested_plan()
    assert plan.errors() == []
    # The sub-plan sees only its parent's inputs: drop 'topic' from the parent and the
    # subtask that reads it has nothing to read.
    plan.tasks[0].inputs = []
    errors = plan.errors()
    assert any(
        e.startswith("in the breakdown of task 'research': task 'search' consumes 'topic'")
        for e in errors
    ), errors


# -- one rule per test ----------------------------------------------------------------


def test_an_empty_plan_is_rejected() -> None:
    error = only_error(check_tasks([], available=[], deliverables=["report"]))
    assert "no tasks" in error
    assert "at least one task" in error


def test_more_tasks_than_the_limit_is_rejected_naming_both_numbers() -> None:
    chain = [spec("t1", [], ["a"]), spec("t2", ["a"], ["b"]), spec("t3", ["b"], ["c"])]
    assert check_tasks(chain, available=[], deliverables=["c"], max_tasks=3) == []
    error = only_error(check_tasks(chain, available=[], deliverables=["c"], max_tasks=2))
    assert "3 tasks" in error
    assert "limit of 2 (GOALFLOW_MAX_TASKS)" in error  # the setting that raises it
    assert "composite" in error


def test_the_default_task_limit_applies_to_plan_errors() -> None:
    tasks = [task(f"t{i}", [f"v{i - 1}"] if i else [], [f"v{i}"]) for i in range(26)]
    plan = Plan(goal="g", deliverables=["v25"], tasks=tasks)
    assert DEFAULT_MAX_TASKS == 25
    assert "26 tasks" in only_error(plan.errors())
    assert plan.errors(max_tasks=26) == []


def test_a_plan_without_deliverables_is_rejected() -> None:
    errors = check_tasks([spec("write", [], ["report"])], available=[], deliverables=[])
    assert any("no deliverables" in e for e in errors), errors


def test_a_deliverable_no_task_produces_is_rejected_naming_it() -> None:
    tasks = [spec("write", [], ["draft"])]
    errors = check_tasks(tasks, available=[], deliverables=["draft", "report"])
    error = only_error(errors)
    assert "deliverable 'report' is not produced by any task" in error
    assert "add 'report' to the outputs" in error


def test_an_input_no_task_produces_is_rejected_listing_what_exists() -> None:
    tasks = [spec("load", ["numbers"], ["rows"]), spec("sum", ["rows", "rowz"], ["total"])]
    error = only_error(check_tasks(tasks, available=["numbers"], deliverables=["total"]))
    assert "task 'sum' consumes 'rowz'" in error
    assert "no task produces" in error
    assert "use one of 'numbers', 'rows', 'total'" in error  # the names that do exist


def test_two_producers_of_one_output_are_rejected_naming_both() -> None:
    tasks = [
        spec("first", [], ["summary"]),
        spec("second", [], ["summary"]),
    ]
    error = only_error(check_tasks(tasks, available=[], deliverables=["summary"]))
    assert "'summary'" in error
    assert "'first'" in error and "'second'" in error
    assert "exactly one producing task" in error


CYCLE = re.compile(r"tasks form a cycle: ([\w.-]+(?: -> [\w.-]+)+):")


def named_cycle(error: str) -> list[str]:
    match = CYCLE.search(error)
    assert match is not None, error
    path = match.group(1).split(" -> ")
    assert path[0] == path[-1], f"the cycle does not close: {error}"
    return path[:-1]


def rotations(cycle: list[str]) -> list[list[str]]:
    return [cycle[i:] + cycle[:i] for i in range(len(cycle))]


def test_a_two_task_cycle_is_rejected_naming_both_tasks() -> None:
    tasks = [spec("ask", ["answer"], ["question"]), spec("reply", ["question"], ["answer"])]
    errors = check_tasks(tasks, available=[], deliverables=["answer"])
    [error] = [e for e in errors if "cycle" in e]
    assert named_cycle(error) in rotations(["ask", "reply"])
    assert "break the cycle" in error


def three_cycle() -> list[TaskSpec]:
    # Data flows a -> b -> c -> a; 'extra' sits outside the cycle.
    return [
        spec("extra", [], ["seed"]),
        spec("a", ["z", "seed"], ["x"]),
        spec("b", ["x"], ["y"]),
        spec("c", ["y"], ["z"]),
    ]


def test_a_three_task_cycle_names_exactly_its_tasks_in_cycle_order() -> None:
    errors = check_tasks(three_cycle(), available=[], deliverables=["z"])
    error = only_error(errors)
    cycle = named_cycle(error)
    assert sorted(cycle) == ["a", "b", "c"]
    # Whichever way the arrows point, consecutive tasks must be linked in the graph.
    assert cycle in rotations(["a", "b", "c"]) + rotations(["c", "b", "a"])


def test_a_cycle_is_named_in_the_direction_the_data_flows() -> None:
    error = only_error(check_tasks(three_cycle(), available=[], deliverables=["z"]))
    assert named_cycle(error) in rotations(["a", "b", "c"])


def test_a_task_consuming_its_own_output_is_a_cycle() -> None:
    tasks = [spec("loop", ["draft"], ["draft"])]
    error = only_error(check_tasks(tasks, available=[], deliverables=["draft"]))
    assert named_cycle(error) == ["loop"]


def test_a_task_whose_outputs_nobody_uses_is_rejected_as_inessential() -> None:
    tasks = [spec("write", [], ["report"]), spec("doodle", [], ["sketch", "notes"])]
    error = only_error(check_tasks(tasks, available=[], deliverables=["report"]))
    assert "task 'doodle'" in error
    assert "'notes', 'sketch'" in error
    assert "no task consumes" in error and "not a deliverable" in error
    assert "remove it" in error


def test_a_task_with_no_outputs_is_rejected() -> None:
    tasks = [spec("write", [], ["report"]), spec("think", [], [])]
    error = only_error(check_tasks(tasks, available=[], deliverables=["report"]))
    assert "task 'think' produces nothing" in error
    assert "at least one output" in error


def test_an_output_that_shadows_an_input_is_rejected() -> None:
    tasks = [spec("clean", ["numbers"], ["numbers", "report"])]
    error = only_error(check_tasks(tasks, available=["numbers"], deliverables=["report"]))
    assert "task 'clean' produces 'numbers', which is already an input" in error
    assert "new name" in error


def test_duplicate_task_ids_are_rejected() -> None:
    tasks = [spec("step", [], ["a"]), spec("step", [], ["b"]), spec("end", ["a", "b"], ["c"])]
    error = only_error(check_tasks(tasks, available=[], deliverables=["c"]))
    assert "two tasks have the id 'step'" in error
    assert "its own id" in error


def test_duplicate_task_ids_in_a_chain_are_not_also_reported_as_a_cycle() -> None:
    tasks = [spec("step", [], ["a"]), spec("step", ["a"], ["b"])]
    error = only_error(check_tasks(tasks, available=[], deliverables=["b"]))
    assert "two tasks have the id 'step'" in error


@pytest.mark.parametrize("literal", ["1, 2, 3", "the quick brown fox", "42"])
def test_literal_data_as_a_name_is_rejected_with_advice_to_use_plan_inputs(
    literal: str,
) -> None:
    tasks = [spec("count", [literal], ["count"])]
    errors = check_tasks(tasks, available=[literal], deliverables=["count"])
    error = only_error(errors)
    assert "task 'count'" in error
    assert repr(literal) in error
    assert "put literal data in the plan's inputs" in error


def test_a_long_or_literal_output_name_is_rejected_too() -> None:
    tasks = [spec("say", [], ["the quick brown fox"])]
    errors = check_tasks(tasks, available=[], deliverables=["the quick brown fox"])
    assert any("'the quick brown fox'" in e and "plan's inputs" in e for e in errors), errors


def test_a_kind_that_cannot_run_here_is_rejected_naming_the_allowed_ones() -> None:
    tasks = [spec("big", [], ["report"], kind="composite")]
    assert check_tasks(tasks, available=[], deliverables=["report"]) == []
    errors = check_tasks(
        tasks, available=[], deliverables=["report"], allowed_kinds=("llm", "code")
    )
    error = only_error(errors)
    assert "task 'big' has kind 'composite'" in error
    assert "'code', 'llm'" in error


def test_an_unknown_kind_is_a_validation_error_naming_the_field() -> None:
    answer = {
        "deliverables": ["report"],
        "tasks": [
            {
                "id": "write",
                "title": "Write",
                "kind": "sql",
                "instructions": "Write it.",
                "outputs": ["report"],
            }
        ],
    }
    with pytest.raises(ValidationError) as caught:
        PlanDraft.model_validate(answer)
    [line] = describe_validation_error(caught.value)
    assert line.startswith("tasks.0.kind: ")
    assert "'llm'" in line and "'code'" in line and "'composite'" in line


def test_validation_errors_give_one_line_per_problem_and_name_the_whole_answer() -> None:
    with pytest.raises(ValidationError) as caught:
        PlanDraft.model_validate({"deliverables": ["r"], "tasks": [{"id": "t", "kind": "llm"}]})
    lines = describe_validation_error(caught.value)
    assert sorted(line.split(":")[0] for line in lines) == [
        "tasks.0.instructions",
        "tasks.0.outputs",
        "tasks.0.title",
    ]
    assert all("Field required" in line for line in lines)
    with pytest.raises(ValidationError) as caught:
        PlanDraft.model_validate("not a plan")
    [line] = describe_validation_error(caught.value)
    assert line.startswith("the answer: ")


def test_a_composite_task_without_subtasks_is_rejected() -> None:
    plan = Plan(
        goal="g",
        deliverables=["report"],
        tasks=[task("big", [], ["report"], kind="composite")],
    )
    error = only_error(plan.errors())
    assert "task 'big' is composite but has no subtasks" in error
    assert "break it down" in error


def test_a_leaf_kind_with_subtasks_is_rejected() -> None:
    plan = Plan(
        goal="g",
        deliverables=["report"],
        tasks=[task("big", [], ["report"], kind="llm", subtasks=[task("part", [], ["report"])])],
    )
    error = only_error(plan.errors())
    assert "task 'big' has subtasks" in error
    assert "'composite'" in error


def test_errors_inside_a_sub_plan_are_prefixed_with_the_parent_task() -> None:
    plan = nested_plan()
    # The breakdown no longer delivers what its parent promised.
    plan.tasks[0].subtasks[1].outputs = ["summary"]
    errors = plan.errors()
    assert errors, "a broken sub-plan must be reported"
    assert all(e.startswith("in the breakdown of task 'research': ") for e in errors), errors
    assert any("deliverable 'facts' is not produced" in e for e in errors), errors


def test_errors_two_levels_down_name_the_innermost_parent() -> None:
    plan = nested_plan()
    plan.tasks[0].subtasks[0] = task(
        "search",
        ["topic"],
        ["hits"],
        kind="composite",
        subtasks=[task("query", ["topic"], ["hits"]), task("dup", ["topic"], ["hits"])],
    )
    error = only_error(plan.errors())
    assert error.startswith("in the breakdown of task 'search': ")
    assert "'query' and 'dup'" in error


# -- drafts and the saved-plan format -------------------------------------------------


def test_from_draft_keeps_goal_inputs_by_name_and_makes_leaf_tasks() -> None:
    draft = PlanDraft(
        inputs=[GoalInput(name="numbers", value="1, 2, 3"), GoalInput(name="unit", value="kg")],
        deliverables=["total"],
        tasks=[spec("add", ["numbers", "unit"], ["total"], kind="code")],
    )
    plan = Plan.from_draft("Add the numbers.", draft)
    assert plan.goal == "Add the numbers."
    assert plan.inputs == {"numbers": "1, 2, 3", "unit": "kg"}
    assert plan.deliverables == ["total"]
    assert [(t.id, t.kind, t.inputs, t.outputs, t.subtasks) for t in plan.tasks] == [
        ("add", "code", ["numbers", "unit"], ["total"], [])
    ]
    assert plan.errors() == []


def test_a_nested_plan_survives_a_json_round_trip() -> None:
    plan = nested_plan()
    plan.tasks[1].acceptance = "Mentions at least three facts."
    saved = plan.model_dump_json()
    loaded = Plan.model_validate_json(saved)
    assert loaded == plan
    assert loaded.tasks[0].subtasks[0].kind == "code"
    assert loaded.leaf_count() == 3
    assert loaded.errors() == []


def test_a_saved_plan_from_before_the_format_field_loads_with_no_format() -> None:
    saved = {
        "goal": "Sum 1, 2, 3.",
        "inputs": {"numbers": "1, 2, 3"},
        "deliverables": ["total"],
        "tasks": [
            {
                "id": "add",
                "title": "Add",
                "kind": "code",
                "instructions": "Add the numbers.",
                "inputs": ["numbers"],
                "outputs": ["total"],
                "acceptance": "",
                "value": 1.0,
                "effort": 1.0,
                "subtasks": [],
            }
        ],
    }

    plan = Plan.model_validate(saved)

    assert plan.tasks[0].format == ""
    assert plan.errors() == []


def test_a_tasks_format_survives_the_saved_plan_file() -> None:
    plan = nested_plan()
    plan.tasks[1].format = "three sentences, one per line"

    loaded = Plan.model_validate_json(plan.model_dump_json())

    assert loaded.tasks[1].format == "three sentences, one per line"


# -- priority -------------------------------------------------------------------------


def test_critical_tasks_follow_the_heavier_branch_of_a_diamond() -> None:
    assert critical_tasks(diamond()) == {"load", "left", "join"}


def test_critical_path_tasks_come_first_even_when_worth_less_per_effort() -> None:
    tasks = [
        spec("chart", [], ["picture"], value=10, effort=1),  # off the path, best ratio
        spec("load", [], ["rows"], value=1, effort=5),
        spec("report", ["rows"], ["summary"], value=2, effort=5),
    ]
    assert priority_order(tasks) == ["report", "load", "chart"]


def test_among_equals_higher_value_per_effort_comes_first() -> None:
    tasks = [
        spec("alpha", [], ["a"], value=2, effort=1),  # 2.0
        spec("beta", [], ["b"], value=9, effort=3),  # 3.0
        spec("gamma", [], ["c"], value=1, effort=1),  # 1.0
        spec("main", [], ["m"], value=1, effort=10),  # the critical path
    ]
    assert priority_order(tasks) == ["main", "beta", "alpha", "gamma"]


def test_task_ids_written_for_their_outputs_are_resolved() -> None:
    tasks = [spec("pros", [], ["pro_list"]), spec("verdict", ["pros", "topic"], ["text"])]

    deliverables = resolve_task_ids(tasks, available=["topic"], deliverables=["verdict"])

    assert tasks[1].inputs == ["pro_list", "topic"]
    assert deliverables == ["text"]
    assert check_tasks(tasks, available=["topic"], deliverables=deliverables) == []


def test_names_that_are_values_are_never_taken_for_task_ids() -> None:
    # 'summary' is both a task id and an output: it means the output.
    tasks = [spec("summary", [], ["summary"]), spec("title", ["summary", "title"], ["t"])]

    deliverables = resolve_task_ids(tasks, available=[], deliverables=["summary", "t"])

    assert deliverables == ["summary", "t"]
    # A task naming itself is not rewritten into a self-loop; the rules report it.
    assert tasks[1].inputs == ["summary", "title"]


def test_results_left_unwired_are_fed_into_the_one_final_task() -> None:
    tasks = [spec("sights"), spec("food"), spec("itinerary", [], ["plan"])]

    notes = wire_dangling_outputs(tasks, ["plan"])

    assert tasks[2].inputs == ["sights_out", "food_out"]
    assert notes == [
        "fed 'sights_out' of 'sights' into 'itinerary'",
        "fed 'food_out' of 'food' into 'itinerary'",
    ]
    assert check_tasks(tasks, available=[], deliverables=["plan"]) == []


def test_unclear_wiring_is_left_for_the_rules_to_report() -> None:
    two_finals = [spec("a"), spec("b", [], ["x"]), spec("c", [], ["y"])]
    assert wire_dangling_outputs(two_finals, ["x", "y"]) == []
    assert (
        "task 'a' produces 'a_out'"
        in check_tasks(two_finals, available=[], deliverables=["x", "y"])[0]
    )

    # A dangling task downstream of the final task would close a cycle: left alone.
    downstream = [spec("final", [], ["x"]), spec("after", ["x"], ["late"])]
    assert wire_dangling_outputs(downstream, ["x"]) == []
    assert downstream[0].inputs == []


def test_a_deliverable_named_loosely_is_matched_to_the_one_unused_output() -> None:
    tasks = [spec("autumn"), spec("combine", ["autumn_out"], ["seasons_poem"])]

    assert match_deliverables(tasks, ["seasons"]) == ["seasons_poem"]
    assert match_deliverables(tasks, ["seasons_poem"]) == ["seasons_poem"]
    # Two unused outputs could be meant: left for the rules to report.
    two = [spec("a", [], ["poem_one"]), spec("b", [], ["poem_two"])]
    assert match_deliverables(two, ["poem"]) == ["poem"]


def test_the_one_task_that_combines_every_deliverable_delivers_too() -> None:
    tasks = [spec("autumn"), spec("spring"), spec("combine", ["autumn_out", "spring_out"])]

    final = deliver_final_task(tasks, ["autumn_out", "spring_out"])

    assert final == ["autumn_out", "spring_out", "combine_out"]
    assert check_tasks(tasks, available=[], deliverables=final) == []
    # A dead end that does not use every deliverable is not the answer.
    partial = [spec("autumn"), spec("spring"), spec("note", ["autumn_out"])]
    assert deliver_final_task(partial, ["autumn_out", "spring_out"]) == ["autumn_out", "spring_out"]


def test_a_one_task_plan_delivers_its_single_output() -> None:
    count = [spec("count", ["sentence"], ["vowel_count"])]

    for named in (["answer"], ["sentence"], []):  # nothing made, the input, nothing named
        final = deliver_only_task(count, named)
        assert final == ["vowel_count"]
        assert check_tasks(count, available=["sentence"], deliverables=final) == []
    assert deliver_only_task(count, ["vowel_count"]) == ["vowel_count"]


def test_a_one_task_plan_that_could_mean_several_things_is_left_for_the_rules() -> None:
    two_outputs = [spec("split", [], ["title", "body"])]
    assert deliver_only_task(two_outputs, ["answer"]) == ["answer"]
    two_deliverables = [spec("count", [], ["vowels"])]
    assert deliver_only_task(two_deliverables, ["vowels_n", "consonants_n"]) == [
        "vowels_n",
        "consonants_n",
    ]
    two_tasks = [spec("a", [], ["x"]), spec("b", ["x"], ["y"])]
    assert deliver_only_task(two_tasks, ["answer"]) == ["answer"]


def _chain_plan() -> Plan:
    tasks = [task("facts", [], ["facts"]), task("analysis", ["facts"], ["analysis"])]
    tasks.append(task("report", ["analysis"], ["report"]))
    return Plan(goal="Report on tea", deliverables=["report"], tasks=tasks)


def test_applying_a_patch_gives_a_new_plan_and_leaves_the_old_one_as_it_was() -> None:
    plan = _chain_plan()
    patch = PlanPatch(
        cancel=["analysis"],
        add=[spec("analysis2", ["facts"], ["analysis"])],
        priorities=[PriorityChange(id="report", effort=4)],
    )

    revised = plan.apply(patch, finished=["facts"], produced=["facts"])

    assert [t.id for t in revised.tasks] == ["facts", "report", "analysis2"]
    assert next(t for t in revised.tasks if t.id == "report").effort == 4
    assert [t.id for t in plan.tasks] == ["facts", "analysis", "report"]
    assert revised.goal == plan.goal and revised.deliverables == plan.deliverables


def test_a_patch_that_breaks_the_plan_rules_raises_every_broken_rule() -> None:
    plan = _chain_plan()

    with pytest.raises(PlanPatchError) as raised:
        plan.apply(PlanPatch(cancel=["report"]), finished=["facts"], produced=["facts"])

    assert any("deliverable 'report' is not produced" in e for e in raised.value.errors)
    assert "breaks the plan rules" in str(raised.value)


def test_results_that_exist_already_count_as_inputs_of_added_tasks() -> None:
    plan = _chain_plan()
    patch = PlanPatch(
        cancel=["facts", "analysis", "report"], add=[spec("summary", ["facts"], ["report"])]
    )

    revised = plan.apply(patch, produced=["facts"])
    assert [t.id for t in revised.tasks] == ["summary"]

    with pytest.raises(PlanPatchError, match="consumes 'facts', which no task produces"):
        plan.apply(patch)
