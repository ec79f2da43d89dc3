"""Goal runs in containers, for real: `goalflow setup`, `prefect deploy -n goal-docker`,
a Docker worker (`prefect worker start --pool goalflow-docker --type docker`) and
`prefect deployment run 'achieve-goal/goal-docker' --watch`.

The goal flow runs in a container of the runner image (`goalflow image build`, built
by `make docker`), on host networking so that it reaches the Prefect server and the
project's OpenAI-compatible test server on loopback; the model is named by an
LLMProvider block saved on the server. Code tasks reach the engine only through the
Docker host a DockerSandbox block names: here a TCP port on loopback, forwarded to the
engine's socket by this test, which counts the connections it carries.
"""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from goalflow.deploy.runner_image import DEFAULT_RUNNER_IMAGE
from goalflow.deploy.work_pools import K8S_POOL, load_template
from goalflow.testing import ChatRequest, OpenAITestServer, Reply
from goalflow.testing.deployment_stack import DeploymentStack
from tests.helpers import DIAMOND, NUMBERS, NUMBERS_PLAN, SUMS, TEST_KEY, echo_answer, task_title

ROOT = Path(__file__).resolve().parents[2]
MISSING = "goalflow-runner:not-built"

pytestmark = pytest.mark.slow


def _answer(request: ChatRequest) -> str | Reply:
    if request.schema_name == "PlanDraft":
        return json.dumps(NUMBERS_PLAN if "Add up some numbers" in request.text else DIAMOND)
    if request.schema_name == "Program":
        return json.dumps({"code": SUMS})
    if task_title(request) == "List numbers":
        return json.dumps({"numbers": NUMBERS})
    return echo_answer(request)


class _EngineOverTcp(socketserver.ThreadingTCPServer):
    """A loopback TCP port that carries each connection to the engine's unix socket."""

    daemon_threads = True
    connections = 0

    def __init__(self, engine_socket: str = "/var/run/docker.sock") -> None:
        self.engine_socket = engine_socket
        super().__init__(("127.0.0.1", 0), _Forward)

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.server_address[1]}"


class _Forward(socketserver.BaseRequestHandler):
    server: _EngineOverTcp

    def handle(self) -> None:
        self.server.connections += 1
        with socket.socket(socket.AF_UNIX) as engine:
            engine.connect(self.server.engine_socket)
            back = threading.Thread(target=_pipe, args=(engine, self.request), daemon=True)
            back.start()
            _pipe(self.request, engine)
            back.join(timeout=60)


def _pipe(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
        target.shutdown(socket.SHUT_WR)


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def llm() -> Iterator[OpenAITestServer]:
    with OpenAITestServer(api_key=TEST_KEY, default=_answer) as server:
        yield server


@pytest.fixture(scope="module")
def engine_over_tcp() -> Iterator[_EngineOverTcp]:
    forwarder = _EngineOverTcp()
    thread = threading.Thread(target=forwarder.serve_forever, daemon=True)
    thread.start()
    yield forwarder
    forwarder.shutdown()
    forwarder.server_close()


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


def _save_sandbox_block(stack: DeploymentStack, name: str, docker_host: str) -> None:
    code = (
        "from goalflow.orchestration.blocks import DockerSandbox; "
        f"DockerSandbox(docker_host={docker_host!r}).save({name!r}, overwrite=True)"
    )
    saved = stack.run("python", "-c", code)
    assert saved.returncode == 0, saved.stderr


def test_setup_creates_the_pools_and_finds_the_runner_image(
    stack: DeploymentStack,
) -> None:
    assert "work pool 'goalflow-docker' (docker): created" in stack.setup_output
    assert "work pool 'goalflow-k8s' (kubernetes): created" in stack.setup_output
    assert f"goal runner image {DEFAULT_RUNNER_IMAGE!r}: present" in stack.setup_output
    pool = stack.get(f"/work_pools/{K8S_POOL}")
    assert pool["type"] == "kubernetes" and pool["base_job_template"] == load_template()

    again = stack.run("goalflow", "setup")

    assert again.returncode == 0, again.stderr
    assert f"work pool '{K8S_POOL}' (kubernetes): exists" in again.stderr
    assert "work pool 'goalflow-docker' (docker): exists" in again.stderr


def test_a_goal_runs_to_completion_inside_a_runner_container(stack: DeploymentStack) -> None:
    code, flow_run_id = stack.deployment_run(
        "achieve-goal/goal-docker",
        # Kept after the run (the deployment removes it) so that it can be inspected.
        job_variables={"auto_remove": False, "env": {"GOALFLOW_SANDBOX": "off"}},
        goal="Write a short report on green tea",
        advanced={"llm_block": "test-llm"},
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
    assert "&lt;report from Write report>" in stack.report(flow_run_id)


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


def test_code_tasks_of_a_containerised_goal_run_through_the_configured_docker_host(
    stack: DeploymentStack, engine_over_tcp: _EngineOverTcp
) -> None:
    _save_sandbox_block(stack, "engine-over-tcp", engine_over_tcp.url)
    before = engine_over_tcp.connections

    code, flow_run_id = stack.deployment_run(
        "achieve-goal/goal-docker",
        goal="Add up some numbers",
        advanced={"llm_block": "test-llm", "sandbox_block": "engine-over-tcp"},
    )

    assert code == 0 and stack.flow_run(flow_run_id)["state"]["type"] == "COMPLETED"
    report = stack.report(flow_run_id)
    assert "| sum | Sum numbers | code | completed |" in report and "108" in report
    # The sandbox's engine calls (check, then create, files, exec, remove on pooled
    # connections) came this way: the goal's container has no socket of its own.
    assert engine_over_tcp.connections - before >= 2
    leftovers = _docker("ps", "-aq", "--filter", "label=goalflow.sandbox")
    assert not leftovers.split()
