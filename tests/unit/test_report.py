"""The Markdown of the artifacts shows model text as written in the Prefect UI."""

from __future__ import annotations

from goalflow.core.report import task_output_markdown


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
