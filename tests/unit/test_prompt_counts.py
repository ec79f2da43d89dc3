"""What an endpoint counted for earlier prompts bounds the next ones, from goal to goal."""

from __future__ import annotations

import json
from pathlib import Path

from goalflow.llm.answers import message_bound, worst_case_tokens
from goalflow.llm.prompt_counts import PromptCounts

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}}
SYSTEM = {"role": "system", "content": "You answer one task of a plan, exactly. " * 40}
ENDPOINT = "https://api.example.com/v1"


def _asking(question: str) -> list[dict[str, str]]:
    return [SYSTEM, {"role": "user", "content": question}]


def test_a_prompt_is_bounded_by_the_count_of_one_it_repeats_plus_its_new_messages() -> None:
    counts = PromptCounts()
    first = _asking("What is the capital of France?")
    assert counts.bound("m", first, SCHEMA) is None  # nothing counted yet

    counts.saw("m", first, SCHEMA, 420)

    second = _asking("And of Spain, please?")
    assert counts.bound("m", second, SCHEMA) == 420 + message_bound(second[1]) + 8
    assert counts.bound("m", second, SCHEMA) < worst_case_tokens(second, SCHEMA) / 2
    other_schema = {"type": "object", "properties": {"capital": {"type": "string"}}}
    # A provider may write the schema into the prompt: another schema's bytes count.
    schema_bytes = len(json.dumps(other_schema).encode())
    expected = 420 + message_bound(second[1]) + schema_bytes + 8
    assert counts.bound("m", second, other_schema) == expected
    re_ask = [*first, {"role": "assistant", "content": "Paris"}, {"role": "user", "content": "?"}]
    expected = 420 + message_bound(re_ask[2]) + message_bound(re_ask[3]) + 8
    assert counts.bound("m", re_ask, SCHEMA) == expected
    assert counts.bound("another-model", second, SCHEMA) is None  # another tokenizer
    assert counts.bound("m", [{"role": "system", "content": "Other."}], SCHEMA) is None
    counts.saw("m", second, SCHEMA, 0)  # a provider that reports no usage teaches nothing
    assert counts.bound("m", second, SCHEMA) == 420 + message_bound(second[1]) + 8


def test_the_counts_are_kept_per_endpoint_in_the_file_without_the_prompts_text(
    tmp_path: Path,
) -> None:
    store = tmp_path / "counts" / "prompt-counts.json"
    first, second = _asking("Capital of France?"), _asking("Capital of Spain?")
    one_goal = PromptCounts(store, ENDPOINT)
    one_goal.saw("m", first, SCHEMA, 420)
    one_goal.save()
    elsewhere = PromptCounts(store, "http://127.0.0.1:8000/v1")
    elsewhere.saw("m", first, SCHEMA, 99)
    elsewhere.save()

    next_goal = PromptCounts(store, ENDPOINT)

    # A count of an earlier goal is taken half again: the model behind the name may
    # have changed since.
    assert next_goal.bound("m", second, SCHEMA) == 630 + message_bound(second[1]) + 8
    assert PromptCounts(store, "http://127.0.0.1:8000/v1").bound("m", first, SCHEMA) == 149 + 8
    assert PromptCounts(store, "https://other.example/v1").bound("m", second, SCHEMA) is None
    kept = store.read_text()
    assert "capital" not in kept.lower() and "answer one task" not in kept


def test_a_broken_counts_file_is_a_cache_miss_and_is_written_anew(tmp_path: Path) -> None:
    store = tmp_path / "prompt-counts.json"
    store.write_text("{not json")
    counts = PromptCounts(store, ENDPOINT)
    first = _asking("Capital of France?")
    assert counts.bound("m", first, SCHEMA) is None

    counts.saw("m", first, SCHEMA, 420)
    counts.save()

    assert PromptCounts(store, ENDPOINT).bound("m", first, SCHEMA) == 630 + 8


def test_counts_found_wrong_bound_nothing_and_the_file_forgets_them(tmp_path: Path) -> None:
    store = tmp_path / "prompt-counts.json"
    first = _asking("Capital of France?")
    earlier = PromptCounts(store, ENDPOINT)
    earlier.saw("m", first, SCHEMA, 420)
    earlier.save()
    counts = PromptCounts(store, ENDPOINT)

    counts.distrust()  # the endpoint counted a prompt above its bound
    counts.saw("m", first, SCHEMA, 2000)
    counts.save()

    assert counts.bound("m", first, SCHEMA) is None
    assert PromptCounts(store, ENDPOINT).bound("m", first, SCHEMA) is None


def test_a_counts_file_that_cannot_be_written_loses_only_the_counts(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the folder would be")
    counts = PromptCounts(blocker / "prompt-counts.json", ENDPOINT)
    counts.saw("m", _asking("Capital of France?"), SCHEMA, 420)

    counts.save()  # logged; the goal ends as it would have
    a_folder = PromptCounts(tmp_path, ENDPOINT)  # GOALFLOW_PROMPT_COUNTS names a directory
    a_folder.saw("m", _asking("Capital of France?"), SCHEMA, 420)
    a_folder.save()

    assert not (blocker / "prompt-counts.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["not-a-directory"]  # no temporary left
