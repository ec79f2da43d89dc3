"""A real Prefect stack for deployment tests: `goalflow server start`, `goalflow setup`,
`prefect deploy` of every deployment, and a process worker, with the model served by the
project's OpenAI-compatible test server in this process.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from goalflow.testing import OpenAITestServer, ReplySource
from tests.conftest import TEST_KEY

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DEPLOYMENTS = ("goal", "weekly-green-tea-digest", "reflect")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stack:
    def __init__(self, env: dict[str, str], llm: OpenAITestServer) -> None:
        self.env, self.llm = env, llm

    def run(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args, env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
        )

    def deployment_run(self, **params: object) -> tuple[int, str]:
        """Exit code of `prefect deployment run --watch` and the flow run id."""
        command = [str(BIN / "prefect"), "deployment", "run", "achieve-goal/goal", "--watch"]
        for key, value in params.items():
            command += ["--param", f"{key}={value}"]
        done = self.run(*command, "--watch-timeout", "180")
        found = re.search(r"UUID: ([0-9a-f-]{36})", done.stdout)
        assert found, done.stdout + done.stderr
        return done.returncode, found.group(1)

    def flow_run(self, flow_run_id: str) -> dict[str, Any]:
        response = httpx.get(f"{self.env['PREFECT_API_URL']}/flow_runs/{flow_run_id}")
        return dict(response.json())

    def flow_runs(self, flow_name: str) -> list[dict[str, Any]]:
        response = httpx.post(
            f"{self.env['PREFECT_API_URL']}/flow_runs/filter",
            json={"flows": {"name": {"any_": [flow_name]}}, "sort": "START_TIME_ASC"},
        )
        return list(response.json())

    def report(self, flow_run_id: str) -> str:
        response = httpx.post(
            f"{self.env['PREFECT_API_URL']}/artifacts/filter",
            json={
                "artifacts": {
                    "flow_run_id": {"any_": [flow_run_id]},
                    "key": {"any_": ["goal-report"]},
                }
            },
        )
        return str(response.json()[0]["data"])


@contextmanager
def running_stack(home: Path, answer: ReplySource, *setup_options: str) -> Iterator[Stack]:
    """A server in ``home``, set up with ``setup_options``, every deployment, a worker."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "GOALFLOW_", "OPENAI_"))
    }
    env |= {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "GOALFLOW_SERVER_PORT": str(_free_port()),
    }
    llm = OpenAITestServer(api_key=TEST_KEY, default=answer)
    with llm:
        stack = Stack(env, llm)
        started = stack.run(str(BIN / "goalflow"), "server", "start")
        assert started.returncode == 0, started.stderr
        url = f"http://127.0.0.1:{env['GOALFLOW_SERVER_PORT']}/api"
        assert stack.run(str(BIN / "goalflow"), "server", "status").returncode == 0
        env["PREFECT_API_URL"] = url
        worker = None
        try:
            setup = stack.run(str(BIN / "goalflow"), "setup", *setup_options)
            assert setup.returncode == 0, setup.stderr
            assert "deployment 'reflect/reflect' is missing" in setup.stderr
            for name in DEPLOYMENTS:
                # prefect 3.9.1's `deploy` creates the deployment, then fails (exit 1) on
                # its own "is a worker online?" query (HTTP 422: limit null), so `--all`
                # stops after the first one. Deploy by name and check what was created.
                deployed = stack.run(str(BIN / "prefect"), "--no-prompt", "deploy", "-n", name)
                assert "successfully created" in deployed.stdout, deployed.stdout
            # Again, now that the deployments exist: idempotent, and reflect-on-stall joins.
            again = stack.run(str(BIN / "goalflow"), "setup", *setup_options)
            assert "automation 'goalflow-budget-exceeded': updated" in again.stderr
            assert "automation 'goalflow-reflect-on-stall': created" in again.stderr
            worker_env = env | {
                "OPENAI_BASE_URL": llm.base_url,
                "OPENAI_API_KEY": TEST_KEY,
                "GOALFLOW_MODEL": "test-model",
                "GOALFLOW_SANDBOX": "off",
                "GOALFLOW_PRICES": json.dumps({"test-model": {"input": 1, "output": 1}}),
                "PREFECT_WORKER_QUERY_SECONDS": "2",
            }
            worker = subprocess.Popen(
                [str(BIN / "prefect"), "worker", "start", "--pool", "goalflow-process"],
                env=worker_env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            yield stack
        finally:
            if worker is not None:
                os.killpg(worker.pid, signal.SIGTERM)
                worker.wait(timeout=30)
            env.pop("PREFECT_API_URL")
            assert stack.run(str(BIN / "goalflow"), "server", "stop").returncode == 0
            assert stack.run(str(BIN / "goalflow"), "server", "status").returncode == 1
