"""The Markdown of the artifacts shows model text as written in the Prefect UI."""

from __future__ import annotations

from goalflow.core.budget import UsageSummary
from goalflow.core.plan import Plan
from goalflow.core.report import (
    GoalResult,
    TaskReport,
    plan_markdown,
    report_markdown,
    task_output_markdown,
)
from goalflow.core.task import Task


def test_a_less_than_sign_in_prose_is_escaped_so_the_ui_does_not_drop_it_as_a_tag() -> None:
    markdown = task_output_markdown("p", "Compare <sizes>", {"answer": "a<b and c>d"})

    # The UI's sanitiser showed "a<b and c>d" as "ad" (tests/integration/test_ui.py).
    assert "a&lt;b and c>d" in markdown
    assert "# Compare &lt;sizes>" in markdown


def test_code_keeps_its_less_than_signs_where_an_entity_would_show_literally() -> None:
    value = "Use `List<int>`:\n\n```python\nif a<b and c>d:\n    pass\n```\n\nthen x<y."

    markdown = task_output_markdown("p", "Code", {"answer": value})

    assert "`List<int>`" in markdown
    assert "```python\nif a<b and c>d:\n    pass\n```" in markdown
    assert "then x&lt;y." in markdown


def test_an_unclosed_code_fence_runs_to_the_end() -> None:
    markdown = task_output_markdown("p", "Code", {"answer": "```\nif a<b:"})

    assert markdown.endswith("```\nif a<b:")


def _result(models: dict[str, list[str]], calls: dict[str, int]) -> GoalResult:
    usage = UsageSummary(
        calls=sum(calls.values()),
        prompt_tokens=300,
        completion_tokens=60,
        cost_usd=0.0003,
        cost_by_model={name: 0.0001 * n for name, n in calls.items()},
        calls_by_model=calls,
        tokens_by_model={name: 120 * n for name, n in calls.items()},
        models_by_task=models,
    )
    tasks = [
        TaskReport(path=p, title=p.title(), kind="llm", status="completed", models=m)
        for p, m in models.items()
    ]
    return GoalResult(
        goal="g", status="completed", message="done", deliverables={}, tasks=tasks,
        usage=usage, seconds=1.0,
    )  # fmt: skip


def test_with_two_models_the_report_says_which_answered_each_task() -> None:
    markdown = report_markdown(
        _result({"facts": ["small"], "poem": ["small", "big"]}, {"small": 2, "big": 1})
    )

    assert "| task | title | kind | status | seconds | error | model |" in markdown
    assert "| poem | Poem | llm | completed |  |  | small → big |" in markdown  # escalated
    assert "| small | 2 | 240 | 0.000200 |" in markdown  # calls, tokens, cost by model


def test_with_one_model_the_task_table_has_no_model_column() -> None:
    markdown = report_markdown(_result({"facts": ["big"]}, {"big": 2}))

    assert "| task | title | kind | status | seconds | error |\n" in markdown
    assert "| big | 2 | 240 | 0.000200 |" in markdown


def test_the_plan_table_marks_the_tasks_for_the_task_model() -> None:
    simple = Task(
        id="facts", title="List facts", kind="llm", instructions="List them.",
        outputs=["facts"], difficulty="simple",
    )  # fmt: skip
    program = simple.model_copy(update={"id": "sum", "kind": "code", "outputs": ["sum"]})
    plan = Plan(goal="g", deliverables=["facts", "sum"], tasks=[simple, program])

    table = plan_markdown(plan)
    assert "| facts | List facts | llm, simple |" in table
    assert "| sum | List facts | code |" in table  # code runs on the planning model
