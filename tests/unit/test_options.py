"""One description of a goal run's options: the flow's parameters (and its run form),
the CLI and the environment all go through GoalOptions."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest
from prefect.exceptions import ParameterTypeError
from prefect.utilities.callables import parameter_schema

from goalflow.errors import ConfigError
from goalflow.orchestration.goal_flow import achieve_goal
from goalflow.orchestration.parameters import (
    FORM_OPTIONS,
    AdvancedOptions,
    flow_parameters,
    given_options,
)
from goalflow.settings import GoalOptions, Settings


def _schema() -> dict[str, Any]:
    return parameter_schema(achieve_goal).model_dump()


def test_the_flow_takes_each_option_once_the_less_common_ones_in_one_section() -> None:
    parameters = set(inspect.signature(achieve_goal.fn).parameters)
    advanced = set(_schema()["definitions"]["AdvancedOptions"]["properties"])

    assert parameters == {"goal", "plan", "plan_file", *FORM_OPTIONS, "advanced"}
    assert advanced == set(GoalOptions.model_fields) - set(FORM_OPTIONS)


def test_the_goal_is_required_and_first_in_the_run_form() -> None:
    schema = _schema()

    assert schema["required"] == ["goal"]
    assert schema["properties"]["goal"]["position"] == 0
    assert schema["properties"]["goal"]["minLength"] == 1


def test_every_constraint_of_an_option_is_in_the_flows_parameter_schema() -> None:
    schema = _schema()
    advanced = schema["definitions"]["AdvancedOptions"]["properties"]

    for name, field in GoalOptions.model_fields.items():
        limits = {
            key: getattr(rule, attr)
            for rule in field.metadata
            for key, attr in (("minimum", "ge"), ("exclusiveMinimum", "gt"), ("maximum", "le"))
            if hasattr(rule, attr)
        }
        # What a deployment run is checked against when it is created (UI, CLI, API).
        shown = advanced[name] if name in advanced else schema["properties"][name]["anyOf"][0]
        assert limits.items() <= shown.items(), name


def test_an_empty_field_of_the_advanced_section_is_an_input_that_sends_nothing() -> None:
    advanced = _schema()["definitions"]["AdvancedOptions"]["properties"]

    # A plain input, no switch to "None" and no null default the form would send back.
    assert advanced["concurrency"] == {
        "type": "integer",
        "minimum": 1,
        "title": "concurrency",  # as the CLI's JSON and the environment spell it
        "description": GoalOptions.model_fields["concurrency"].description,
    }
    assert "by default 2" in advanced["max_depth"]["description"]
    # A yes/no option keeps its "None" (a switch left alone would send "no").
    assert {"type": "null"} in advanced["reflection"]["anyOf"]
    assert AdvancedOptions(concurrency=2).model_dump() == {"concurrency": 2}


def test_every_parameter_of_the_run_form_says_what_it_is() -> None:
    schema = _schema()
    advanced = schema["definitions"]["AdvancedOptions"]["properties"]

    assert set(schema["properties"]) == set(inspect.signature(achieve_goal.fn).parameters)
    assert all(field.get("description") for field in schema["properties"].values())
    assert all(field.get("description") for field in advanced.values())
    # An option's words are the ones the CLI and the settings show.
    description = GoalOptions.model_fields["max_usd"].description or ""
    said = schema["properties"]["max_usd"]["description"]
    assert said.startswith(" ".join(description.split()))
    assert said.endswith("Unset here: the worker's GOALFLOW_MAX_USD first.")


@pytest.mark.parametrize(
    ("parameters", "refused"),
    [
        ({"goal": "x", "advanced": {"concurrency": 0}}, "concurrency"),
        ({"goal": "x", "advanced": {"max_depth": 6}}, "max_depth"),
        ({"goal": "x", "max_usd": 0}, "max_usd"),
        ({"goal": ""}, "goal"),
    ],
)
def test_a_flow_run_with_a_parameter_an_option_refuses_is_refused(
    parameters: dict[str, Any], refused: str
) -> None:
    with pytest.raises(ParameterTypeError, match=refused):
        achieve_goal.validate_parameters(parameters)


def test_the_options_a_caller_set_become_the_flows_parameters_and_back() -> None:
    options = GoalOptions.given({"max_usd": 1.0, "concurrency": 3, "model": None})
    parameters = flow_parameters(options)

    assert parameters == {"max_usd": 1.0, "advanced": {"concurrency": 3}}
    section = AdvancedOptions(**parameters.pop("advanced"))
    assert given_options(section, **parameters) == options


def test_an_option_sent_empty_leaves_the_workers_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOALFLOW_BUDGET_BLOCK", "team-cap")
    monkeypatch.setenv("GOALFLOW_MODEL", "gpt-4o")

    given = given_options(AdvancedOptions(budget_block="", max_depth=1), model="", max_usd=None)
    merged = Settings().with_options(given)

    assert (merged.budget_block, merged.model, merged.max_depth) == ("team-cap", "gpt-4o", 1)


def test_every_option_is_a_setting_with_an_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert set(GoalOptions.model_fields) <= set(Settings.model_fields)
    monkeypatch.setenv("GOALFLOW_MAX_USD", "0.25")
    monkeypatch.setenv("GOALFLOW_CONCURRENCY", "3")

    settings = Settings()

    assert (settings.max_usd, settings.concurrency) == (0.25, 3)


def test_an_option_set_explicitly_wins_over_the_environment_and_unset_ones_do_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GOALFLOW_MAX_USD", "0.25")
    monkeypatch.setenv("GOALFLOW_MAX_DEPTH", "1")

    merged = Settings().with_options(GoalOptions.given({"max_usd": 1.0, "max_depth": None}))

    assert merged.max_usd == 1.0  # given
    assert merged.max_depth == 1  # None means unset: the environment's stays


def test_an_option_that_cannot_work_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="concurrency: Input should be greater than or equal"):
        GoalOptions.given({"concurrency": 0})
    with pytest.raises(ConfigError, match="concurrncy: Extra inputs are not permitted"):
        GoalOptions.given({"concurrncy": 2})


def test_an_empty_model_name_is_refused_and_an_empty_variable_is_unset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigError, match="model: String should have at least 1 character"):
        GoalOptions.given({"model": ""})  # --model '' sends nothing to an endpoint
    for name in ("GOALFLOW_MODEL", "GOALFLOW_LOCAL_MODEL", "GOALFLOW_TASK_LLM_BLOCK"):
        monkeypatch.setenv(name, "")

    settings = Settings.load()

    assert (settings.model, settings.local_model, settings.task_llm_block) == (None, "1.5b", None)


def test_a_variable_that_cannot_work_is_a_config_error_naming_it_and_its_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GOALFLOW_CONCURRENCY", "0")
    monkeypatch.setenv("GOALFLOW_MAX_USD", "abc")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value")

    with pytest.raises(ConfigError) as caught:
        Settings.load()

    message = str(caught.value)
    assert "GOALFLOW_CONCURRENCY='0'" in message and "GOALFLOW_MAX_USD='abc'" in message
    assert "Fix or unset" in message and "sk-secret" not in message


def test_a_price_table_is_read_from_json_or_from_a_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GOALFLOW_PRICES", '{"m": {"input": 0.15, "output": 0.6}}')
    assert Settings.load().prices["m"].output == 0.6

    table = tmp_path / "prices.yaml"
    table.write_text("my-model:\n  input: 2\n  output: 8\n", encoding="utf-8")
    monkeypatch.setenv("GOALFLOW_PRICES", str(table))
    assert Settings.load().prices["my-model"].input == 2

    monkeypatch.setenv("GOALFLOW_PRICES", str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match=r"GOALFLOW_PRICES=.*json': neither a JSON object"):
        Settings.load()
    table.write_text("my-model: {input: cheap}\n", encoding="utf-8")
    monkeypatch.setenv("GOALFLOW_PRICES", str(table))
    with pytest.raises(ConfigError, match=r"GOALFLOW_PRICES=.*: my-model\.input: Input should"):
        Settings.load()


async def test_a_task_model_on_the_endpoint_is_resolved_as_that_endpoint_asked_for_it() -> None:
    from pydantic import SecretStr

    from goalflow.orchestration.options import resolve_options

    settings = Settings(
        openai_base_url="http://127.0.0.1:9/v1", openai_api_key=SecretStr("k"), model="big"
    )
    resolved = await resolve_options(GoalOptions(task_model="small"), settings)

    assert resolved.tiers and resolved.endpoint is not None and resolved.task_endpoint
    assert (resolved.endpoint.model, resolved.task_endpoint.model) == ("big", "small")
    assert resolved.task_endpoint.same_endpoint(resolved.endpoint)  # one pacer for both
    assert resolved.endpoint.task_model is None  # the task model has one home
    one = await resolve_options(GoalOptions(task_model="big"), settings)
    assert not one.tiers and one.task_endpoint is None


@pytest.mark.parametrize(
    ("variables", "options", "message"),
    [
        ({}, {"task_model": "small"}, "task model 'small' needs an endpoint"),
        ({"local_task_model": "1.5b"}, {}, "both 'qwen2.5-coder-1.5b-instruct'"),
        (
            {"local_task_model": "0.5b"},
            {"task_model": "small"},
            "GOALFLOW_LOCAL_TASK_MODEL (0.5b) and task_model both name the task model",
        ),
        (
            {"local_task_model": "0.5b"},
            {"task_llm_block": "elsewhere"},
            "and task_llm_block both name the task model",
        ),
    ],
)
async def test_a_task_model_that_cannot_be_had_offline_is_refused_naming_the_fix(
    variables: dict[str, str], options: dict[str, str], message: str
) -> None:
    from goalflow.orchestration.options import resolve_options

    with pytest.raises(ConfigError, match=re.escape(message)):
        await resolve_options(GoalOptions(**options), Settings(**variables))


async def test_an_offline_task_model_beside_the_offline_planner_makes_two_tiers() -> None:
    from goalflow.orchestration.options import resolve_options

    resolved = await resolve_options(None, Settings(local_task_model="0.5b"))

    assert resolved.endpoint is None and resolved.task_endpoint is None and resolved.tiers
