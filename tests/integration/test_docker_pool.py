"""Goal runs in containers, for real: `goalflow setup`, `prefect deploy -n goal-docker`,
a Docker worker (`prefect worker start --pool goalflow-docker --type docker`) and
`prefect deployment run 'achieve-goal/goal-docker' --watch`.

The goal flow runs in a container of the runner image (`goalflow image build`, built
by `make docker`), on host networking so that it reaches the Prefect server and the
project's OpenAI-compatible test server on loopback; the model is named by an
LLMProvider block saved on the server.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from goalflow.sandbox_run import DEFAULT_RUNNER_IMAGE
from goalflow.testing import ChatRequest, OpenAITestServer, Reply
from goalflow.testing.deployment_stack import DeploymentStack
from tests.conftest import TEST_KEY, echo_answer
from tests.flows.test_goal_flow import DIAMOND

ROOT = Path(__file__).resolve().parents[2]
MISSING = "goalflow-runner:not-built"

pytestmark = pytest.mark.slow


def _answer(request: ChatRequest) -> str | Reply:
    if request.schema_name == "PlanDraft":
        return json.dumps(DIAMOND)
    return echo_answer(request)


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def llm() -> Iterator[OpenAITestServer]:
    with OpenAITestServer(api_key=TEST_KEY, default=_answer) as server:
        yield server


@pytest.fixture(scope="module")
def stack(llm: OpenAITestServer) -> Iterator[DeploymentStack]:
    checked = subprocess.run(
        [Path(sys.executable).parent / "goalflow", "image", "check"],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout  # says how to build it (`make docker`)
    with DeploymentStack(
        ROOT,
        worker_env={},
        deployments=("goal-docker",),
        workers=(("goalflow-docker", "docker"),),
    ) as stack:
        saved = stack.run(
            "python", "blocks/save_llm_provider.py", "test-llm",
            "--base-url", llm.base_url, "--model", "test-model",
            env=stack.env | {"OPENAI_API_KEY": TEST_KEY},
        )  # fmt: skip
        assert saved.returncode == 0, saved.stderr
        yield stack


def test_setup_creates_the_pools_and_finds_the_runner_image(
    stack: DeploymentStack,
) -> None:
    assert "work pool 'goalflow-docker' (docker): created" in stack.setup_output
    assert "work pool 'goalflow-k8s' (kubernetes): created" in stack.setup_output
    assert f"goal runner image {DEFAULT_RUNNER_IMAGE!r}: present" in stack.setup_output


def test_a_goal_runs_to_completion_inside_a_runner_container(stack: DeploymentStack) -> None:
    code, flow_run_id = stack.deployment_run(
        "achieve-goal/goal-docker",
        # Kept after the run (the deployment removes it) so that it can be inspected.
        job_variables={"auto_remove": False, "env": {"GOALFLOW_SANDBOX": "off"}},
        goal="Write a short report on green tea",
        llm_block="test-llm",
    )
    run = stack.flow_run(flow_run_id)
    # The Docker worker records "<engine>:<container id>" as the run's infrastructure.
    container_id = str(run["infrastructure_pid"]).rsplit(":", 1)[-1]
    try:
        container: dict[str, Any] = json.loads(_docker("inspect", container_id))[0]
        shown = subprocess.run(["docker", "logs", container_id], capture_output=True, text=True)
        logs = shown.stdout + shown.stderr
    finally:
        subprocess.run(["docker", "rm", "-f", container_id], capture_output=True)

    assert code == 0 and run["state"]["type"] == "COMPLETED"
    assert container["Config"]["Image"] == DEFAULT_RUNNER_IMAGE
    assert container["Config"]["User"] == "65534:65534"
    assert container["State"]["ExitCode"] == 0
    assert container["HostConfig"]["NetworkMode"] == "host"
    assert not [m for m in container["Mounts"] if "docker.sock" in m.get("Source", "")]
    # The flow engine itself ran in there: its own log lines are the container's output.
    assert "Finished in state Completed()" in logs
    assert "<report from Write report>" in stack.report(flow_run_id)


def test_a_missing_runner_image_is_named_with_the_command_that_builds_it(
    stack: DeploymentStack,
) -> None:
    checked = stack.run("goalflow", "image", "check", "--tag", MISSING)
    assert checked.returncode == 1
    assert f"`goalflow image build --tag {MISSING}`" in checked.stdout

    setup = stack.run("goalflow", "setup", "--docker-image", MISSING)
    assert setup.returncode == 0, setup.stderr
    assert f"warning: the goal runner image {MISSING!r} is not on the Docker engine" in (
        " ".join(setup.stderr.split())
    )
    assert f"`goalflow image build --tag {MISSING}`" in setup.stderr

    # A run on the worker fails at once (pull policy Never: no registry is tried).
    code, flow_run_id = stack.deployment_run(
        "achieve-goal/goal-docker", job_variables={"image": MISSING}, goal="Anything"
    )
    state = stack.flow_run(flow_run_id)["state"]
    assert code != 0 and state["type"] == "CRASHED"
    assert f"No such image: {MISSING}" in state["message"]
