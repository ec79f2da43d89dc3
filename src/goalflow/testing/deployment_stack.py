"""The CI path as one object: a real Prefect server, ``goalflow setup``, the deployments
of ``prefect.yaml`` and workers (a process worker by default; a Docker worker for the
``goal-docker`` deployment), for the deployment tests and benchmarks.

The server is ``goalflow server start`` on a free loopback port with its own
``PREFECT_HOME``; commands run as subprocesses, as a CI job would run them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from goalflow.errors import ConfigError

__all__ = ["DeploymentStack", "free_port", "model_env", "run_seconds"]

BIN = Path(sys.executable).parent
DEPLOYMENTS = ("goal", "weekly-green-tea-digest", "reflect")


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def model_env(base_url: str, api_key: str) -> dict[str, str]:
    """A worker's environment for goals answered by the test server at ``base_url``:
    model ``test-model`` at $1 per million tokens either way, no sandbox."""
    return {
        "OPENAI_BASE_URL": base_url,
        "OPENAI_API_KEY": api_key,
        "GOALFLOW_MODEL": "test-model",
        "GOALFLOW_SANDBOX": "off",
        "GOALFLOW_PRICES": json.dumps({"test-model": {"input": 1, "output": 1}}),
    }


def run_seconds(flow_run: dict[str, Any]) -> float:
    """How long the server saw ``flow_run`` Running, from its own start and end times."""
    end = datetime.fromisoformat(flow_run["end_time"])
    return (end - datetime.fromisoformat(flow_run["start_time"])).total_seconds()


class DeploymentStack:
    """Server, automations, deployments and a worker for the project in ``project``.

    ``setup_options`` go to both runs of ``goalflow setup`` (before the deployments, and
    after them, when ``--reflect-after`` reaches the trigger ``prefect deploy`` made);
    ``setup_output`` holds what both printed. ``deployments`` are deployed by name; one
    worker starts per ``workers`` entry (pool, worker type). ``worker_env`` is added to
    the workers' environment (OPENAI_*, GOALFLOW_*); ``server_env`` to the server's
    (e.g. a shorter scheduler loop).
    """

    def __init__(
        self,
        project: Path,
        worker_env: dict[str, str],
        *,
        setup_options: tuple[str, ...] = (),
        server_env: dict[str, str] | None = None,
        deployments: Sequence[str] = DEPLOYMENTS,
        workers: Sequence[tuple[str, str]] = (("goalflow-process", "process"),),
    ) -> None:
        self.project = project
        self._deployments = tuple(deployments)
        self._workers_wanted = tuple(workers)
        self._home = tempfile.TemporaryDirectory(prefix="goalflow-stack-")
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PREFECT_", "GOALFLOW_", "OPENAI_"))
        }
        self.env = base | {
            "PREFECT_HOME": self._home.name,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "GOALFLOW_SERVER_PORT": str(free_port()),
            # What the test server counted stays with this stack, not in the user's home.
            "GOALFLOW_PROMPT_COUNTS": os.path.join(self._home.name, "prompt-counts.json"),
        }
        self._server_env = server_env or {}
        self._worker_env = worker_env
        self._setup = ("goalflow", "setup", *setup_options)
        self._workers: list[subprocess.Popen[bytes]] = []
        self.setup_output = ""

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.env['GOALFLOW_SERVER_PORT']}/api"

    def run(
        self, *args: str, timeout: float = 240, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a command of the venv (``goalflow``, ``prefect``) against the stack."""
        command = [str(BIN / args[0]), *args[1:]]
        return subprocess.run(
            command,
            env=env or self.env,
            cwd=self.project,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def _must(self, *args: str) -> str:
        done = self.run(*args)
        if done.returncode != 0:
            raise ConfigError(f"`{' '.join(args)}` failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout + done.stderr

    def __enter__(self) -> DeploymentStack:
        started = self.run("goalflow", "server", "start", env=self.env | self._server_env)
        if started.returncode != 0:
            raise ConfigError(f"`goalflow server start` failed:\n{started.stderr}")
        self.env["PREFECT_API_URL"] = self.api_url
        try:
            self.setup_output = self._must(*self._setup)
            for name in self._deployments:
                # prefect 3.9.1's `deploy` creates the deployment, then exits 1 on its own
                # "is a worker online?" query (HTTP 422: limit null), so `--all` stops
                # after the first one. Deploy by name and check what was created.
                deployed = self.run("prefect", "--no-prompt", "deploy", "-n", name)
                if "successfully created" not in deployed.stdout:
                    raise ConfigError(f"deploying {name} failed:\n{deployed.stdout}")
            self.setup_output += self._must(*self._setup)  # now with their triggers
            # Workers look for runs every 2 s (Prefect's default: 10 s).
            worker_env = {"PREFECT_WORKER_QUERY_SECONDS": "2"} | self._worker_env
            for pool, kind in self._workers_wanted:
                command = ["worker", "start", "--pool", pool, "--type", kind]
                self._workers.append(
                    subprocess.Popen(
                        [str(BIN / "prefect"), *command],
                        env=self.env | worker_env,
                        cwd=self.project,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            while self._workers:
                worker = self._workers.pop()
                os.killpg(worker.pid, signal.SIGTERM)
                try:
                    worker.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    # Seen: an idle worker that shut down only on a second signal.
                    os.killpg(worker.pid, signal.SIGKILL)
                    worker.wait(timeout=30)
        finally:
            self.env.pop("PREFECT_API_URL", None)
            self.run("goalflow", "server", "stop")
            self._home.cleanup()

    def deployment_run(
        self,
        deployment: str = "achieve-goal/goal",
        job_env: dict[str, str] | None = None,
        watch: bool = True,
        job_variables: dict[str, Any] | None = None,
        **params: object,
    ) -> tuple[int, str]:
        """Exit code of ``prefect deployment run [--watch]`` and the flow run's id.

        ``job_env`` is added to that run's environment (a process job variable);
        ``job_variables`` are further job variables of the run."""
        command = ["prefect", "deployment", "run", deployment]
        for key, value in (job_variables or {}).items():
            command += ["--job-variable", f"{key}={json.dumps(value)}"]
        if watch:
            command += ["--watch", "--watch-timeout", "180"]
        for key, value in params.items():  # a section (a dict) goes as JSON
            shown = json.dumps(value) if isinstance(value, dict) else str(value)
            command += ["--param", f"{key}={shown}"]
        if job_env:
            command += ["--job-variable", f"env={json.dumps(job_env)}"]
        done = self.run(*command)
        found = re.search(r"UUID: ([0-9a-f-]{36})", done.stdout)
        if not found:
            raise ConfigError(f"no flow run was created:\n{done.stdout}\n{done.stderr}")
        return done.returncode, found.group(1)

    def wait_for_state(
        self, flow_run_id: str, types: set[str], timeout: float = 120
    ) -> dict[str, Any]:
        """The flow run once its state type is one of ``types`` (e.g. {"RUNNING"})."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.flow_run(flow_run_id)
            if run["state"] and run["state"]["type"] in types:
                return run
            time.sleep(0.5)
        raise ConfigError(f"flow run {flow_run_id} did not reach {sorted(types)} in {timeout} s")

    def get(self, path: str) -> Any:
        return httpx.get(f"{self.api_url}{path}").raise_for_status().json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return httpx.post(f"{self.api_url}{path}", json=body).raise_for_status().json()

    def flow_runs(self, flow_name: str) -> list[dict[str, Any]]:
        """The runs of the flow named ``flow_name``, oldest first."""
        body = {"flows": {"name": {"any_": [flow_name]}}, "sort": "START_TIME_ASC", "limit": 50}
        return list(self.post("/flow_runs/filter", body))

    def flow_run(self, flow_run_id: str) -> dict[str, Any]:
        return dict(self.get(f"/flow_runs/{flow_run_id}"))

    def report(self, flow_run_id: str) -> str:
        """The run's goal report artifact (Markdown)."""
        found = self.post(
            "/artifacts/filter",
            {
                "artifacts": {
                    "flow_run_id": {"any_": [flow_run_id]},
                    "key": {"any_": ["goal-report"]},
                }
            },
        )
        return str(found[0]["data"])
