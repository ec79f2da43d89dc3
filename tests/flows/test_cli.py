"""The ``goalflow`` command, on a real Prefect server with the test LLM server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from goalflow.cli.app import app
from goalflow.testing import OpenAITestServer, Reply
from goalflow.testing.plans import layered_plan
from tests.helpers import DIAMOND, TEST_KEY, asks_for, is_plan, task

pytestmark = pytest.mark.usefixtures("prefect_server")
GOAL = "Write a short report on green tea"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def test_run_json_prints_the_result_on_stdout(llm_server: OpenAITestServer) -> None:
    llm_server.script(is_plan, json.dumps(DIAMOND))

    result = invoke("run", GOAL, "--json")

    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)  # stdout holds the JSON document and nothing else
    assert data["status"] == "completed"
    assert data["deliverables"] == {"report": "<report from Write report>"}
    assert [t["path"] for t in data["tasks"]] == ["facts", "pros", "cons", "report"]
    assert data["usage"]["calls"] == 5 and data["usage"]["prompt_tokens"] > 0
    assert data["flow_run_id"]


def test_a_finished_runs_deliverables_are_read_back_by_its_id(
    llm_server: OpenAITestServer,
) -> None:
    llm_server.script(is_plan, json.dumps(DIAMOND))
    ran = json.loads(invoke("run", GOAL, "--json").stdout)

    result = invoke("result", ran["flow_run_id"], "--json")

    assert result.exit_code == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert (
        outcome["deliverables"] == ran["deliverables"] == {"report": "<report from Write report>"}
    )
    # The final state's message carries them too: what `--watch` and the UI show.
    assert outcome["state"] == "COMPLETED"
    assert outcome["message"].endswith("report = <report from Write report>")
    plain = invoke("result", ran["flow_run_id"])
    assert plain.stdout.strip() == "<report from Write report>"
    unknown = invoke("result", "not-a-run")
    assert unknown.exit_code == 2 and "not a flow run id" in unknown.stderr


def test_run_json_prints_a_json_document_even_when_goalflow_itself_fails(
    llm_server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from goalflow.orchestration import goal_flow

    async def broken(*args: object, **kwargs: object) -> None:
        raise OverflowError("cannot convert float infinity to integer")

    monkeypatch.setattr(goal_flow, "achieve_goal", broken)

    result = invoke("run", GOAL, "--json")

    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data == {
        "status": "error",
        "error": "unexpected OverflowError: cannot convert float infinity to integer",
    }


def test_run_json_prints_a_json_document_when_an_option_does_not_parse() -> None:
    command = [sys.executable, "-m", "goalflow.cli", "run", GOAL, "--max-usd", "abc", "--json"]

    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)

    assert done.returncode == 2
    data = json.loads(done.stdout)  # Typer refuses it before any command runs
    assert data["status"] == "error" and "--max-usd" in data["error"]
    assert "Usage: " in done.stderr and "--max-usd" in done.stderr


def test_run_json_prints_a_json_document_on_an_error_too_and_the_error_keeps_its_brackets(
    llm_server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOALFLOW_MODEL", "no-such-[local]-model")

    result = invoke("run", GOAL, "--json")

    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["status"] == "error" and "no-such-[local]-model" in data["error"]
    assert "no-such-[local]-model" in result.stderr  # not eaten as rich markup


def test_a_setting_that_cannot_work_is_exit_2_naming_the_variable_not_a_traceback(
    llm_server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOALFLOW_CONCURRENCY", "0")

    result = invoke("run", GOAL)

    assert result.exit_code == 2
    assert "GOALFLOW_CONCURRENCY='0'" in result.stderr and "Traceback" not in result.stderr
    assert llm_server.requests == []  # nothing was asked of the model


def test_a_max_depth_beyond_the_cap_is_refused_before_planning(
    llm_server: OpenAITestServer,
) -> None:
    result = invoke("run", GOAL, "--max-depth", "100")

    assert result.exit_code == 2
    assert "'--max-depth': Input should be less than or equal to 5" in result.stderr
    assert llm_server.requests == []


def test_the_goal_can_come_from_stdin_or_from_a_file(
    llm_server: OpenAITestServer, tmp_path: Path
) -> None:
    llm_server.script(is_plan, json.dumps(DIAMOND))
    goal_file = tmp_path / "goal.txt"
    goal_file.write_text(GOAL + "\n", encoding="utf-8")

    piped = CliRunner().invoke(app, ["run", "-", "--json"], input=GOAL)
    read = invoke("run", "--goal-file", str(goal_file), "--json")

    for result in (piped, read):
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["goal"] == GOAL
    missing = invoke("run", "--goal-file", str(tmp_path / "nothing.txt"))
    assert missing.exit_code == 2 and "cannot read the goal file" in missing.stderr


def test_version_is_printed() -> None:
    result = invoke("--version")

    assert result.exit_code == 0 and result.stdout.startswith("goalflow 0.")


def test_run_prints_the_deliverables(llm_server: OpenAITestServer) -> None:
    llm_server.script(is_plan, json.dumps(DIAMOND))

    result = invoke("run", GOAL)

    assert result.exit_code == 0, result.stderr
    assert "<report from Write report>" in result.stdout
    assert "goal completed" in result.stderr and "5 model calls" in result.stderr
    assert "no price known for test-model: counted as $0" in result.stderr
    # Off a terminal, progress is one line per event, in order.
    assert "plan ready: 4 tasks" in result.stderr
    running = result.stderr.index("  running  pros: List pros")
    assert result.stderr.index("completed  facts: Gather facts") < running


def test_saved_plan_is_written_then_run_without_planning(
    llm_server: OpenAITestServer, tmp_path: Path
) -> None:
    llm_server.script(is_plan, json.dumps(DIAMOND))
    plan_file = tmp_path / "plan.json"

    planned = invoke("plan", GOAL, "-o", str(plan_file))
    llm_server.reset()
    ran = invoke("run", "--plan", str(plan_file), "--json")

    assert planned.exit_code == 0, planned.stderr
    assert json.loads(plan_file.read_text())["deliverables"] == ["report"]
    assert ran.exit_code == 0, ran.stderr
    assert json.loads(ran.stdout)["status"] == "completed"
    assert not [r for r in llm_server.requests if is_plan(r)]


def test_failed_goal_exits_1_and_still_reports(llm_server: OpenAITestServer) -> None:
    plan = {
        "inputs": [],
        "deliverables": ["a", "b"],
        "tasks": [task("left", "Left", [], ["a"]), task("right", "Right", [], ["b"])],
    }
    llm_server.script(is_plan, json.dumps(plan))
    llm_server.script(asks_for("TaskAnswer", "Left"), Reply(status=400))

    result = invoke("run", "Two things", "--json")

    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["status"] == "failed" and data["deliverables"] == {"b": "<b from Right>"}
    assert "a not produced" in data["message"]


@pytest.mark.parametrize("goal", ["", "   \n\t "])
def test_empty_goal_is_refused(llm_server: OpenAITestServer, goal: str) -> None:
    result = invoke("run", goal)

    assert result.exit_code == 2
    assert "the goal is empty" in result.stderr
    assert not llm_server.requests


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json at all", "is not a valid goalflow plan"),
        ('{"goal": "x", "deliverables": ["a"], "tasks": [{"id": "t"}]}', "tasks.0.title"),
        (
            json.dumps(
                {
                    "goal": "loop",
                    "deliverables": ["b"],
                    "tasks": [task("x", "X", ["b"], ["a"]), task("y", "Y", ["a"], ["b"])],
                }
            ),
            "tasks form a cycle",
        ),
    ],
)
def test_invalid_plan_file_is_refused_before_any_model_call(
    llm_server: OpenAITestServer, tmp_path: Path, content: str, message: str
) -> None:
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(content)

    result = invoke("run", "--plan", str(plan_file))

    assert result.exit_code == 2
    assert message in result.stderr
    assert not llm_server.requests


def test_a_saved_plan_wider_than_the_default_limit_runs_when_the_limit_is_raised(
    llm_server: OpenAITestServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan_file = tmp_path / "wide.json"
    plan_file.write_text(layered_plan(30).model_dump_json())

    refused = invoke("run", "--plan", str(plan_file))
    monkeypatch.setenv("GOALFLOW_MAX_TASKS", "abc")
    bad = invoke("run", "--plan", str(plan_file))
    monkeypatch.setenv("GOALFLOW_MAX_TASKS", "30")
    ran = invoke("run", "--plan", str(plan_file), "--json")

    assert refused.exit_code == 2 and "more than the limit of 25" in refused.stderr
    assert bad.exit_code == 2 and "GOALFLOW_MAX_TASKS='abc'" in bad.stderr
    assert ran.exit_code == 0, ran.stderr
    assert json.loads(ran.stdout)["status"] == "completed"
    assert len(llm_server.requests) >= 30


def test_a_goal_and_a_plan_together_are_refused(tmp_path: Path) -> None:
    result = invoke("run", "Another goal", "--plan", str(tmp_path / "plan.json"))

    assert result.exit_code == 2
    assert "give a goal or --plan, not both" in result.stderr


def test_missing_plan_file_is_refused(tmp_path: Path) -> None:
    result = invoke("run", "--plan", str(tmp_path / "nope.json"))

    assert result.exit_code == 2
    assert "cannot read the plan file" in result.stderr


def test_unreachable_endpoint_says_what_to_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    monkeypatch.setenv("GOALFLOW_MAX_RETRIES", "0")

    result = invoke("run", GOAL)

    assert result.exit_code == 1
    assert "cannot reach the model endpoint http://127.0.0.1:9/v1" in result.stderr


def test_wrong_api_key_is_reported_without_showing_any_key(
    llm_server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "sk-wrong-9876543210zyxwvutsrqponm"
    monkeypatch.setenv("OPENAI_API_KEY", wrong)

    result = invoke("run", GOAL, "--json")

    assert result.exit_code == 1
    assert "refused the API key (HTTP 401)" in result.stderr
    for key in (wrong, TEST_KEY):
        for part in (key, key[:10], key[-6:]):
            assert part not in result.output


def test_model_answering_prose_fails_clearly(llm_server: OpenAITestServer) -> None:
    llm_server.script(is_plan, "Sure! Here is my plan: first research, then write.")

    result = invoke("run", GOAL)

    assert result.exit_code == 1
    assert "never gave a valid PlanDraft" in result.stderr
    assert "Sure! Here is my plan" in result.stderr


def test_unknown_model_names_the_served_ones(llm_server: OpenAITestServer) -> None:
    result = invoke("run", GOAL, "--model", "gpt-9")

    assert result.exit_code == 1
    assert "no model 'gpt-9'" in result.stderr and "serves: test-model" in result.stderr


def test_failed_planning_writes_no_plan_file(llm_server: OpenAITestServer, tmp_path: Path) -> None:
    llm_server.script(is_plan, '{"tasks": [')
    plan_file = tmp_path / "plan.json"

    result = invoke("plan", GOAL, "-o", str(plan_file))

    assert result.exit_code == 1
    assert not list(tmp_path.iterdir())  # neither the plan nor a partial file


def test_json_schema_refusal_falls_back_to_json_object(monkeypatch: pytest.MonkeyPatch) -> None:
    server = OpenAITestServer(reject_json_schema=True)
    server.script(is_plan, json.dumps(DIAMOND))
    server.script(
        lambda r: True,
        lambda r: json.dumps(dict.fromkeys((r.schema or {}).get("properties", {}), "v")),
    )
    with server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("GOALFLOW_MODEL", "test-model")

        result = invoke("run", GOAL, "--json")

        formats = [r.response_format["type"] for r in server.requests if r.response_format]
    assert formats[:2] == ["json_schema", "json_object"]
    assert set(formats[2:]) == {"json_object"}
    assert result.exit_code == 0, result.stderr


def test_run_on_an_unreachable_dask_scheduler_exits_2_before_planning(
    llm_server: OpenAITestServer,
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"  # nothing listens once closed

    result = invoke("run", GOAL, "--task-runner", "dask", "--runner-address", address)

    assert result.exit_code == 2
    assert f"cannot reach the Dask scheduler at {address}" in result.stderr
    assert llm_server.requests == []
