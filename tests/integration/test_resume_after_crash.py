"""A goal run killed mid-way on a process worker: Prefect marks it Crashed, and running
the same plan again pays only for the tasks that had not finished (the task cache).

The whole CI path for real: `goalflow server start`, the deployments, a process worker,
`prefect deployment run`; the run's own process is killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from goalflow.testing import OpenAITestServer, Reply
from goalflow.testing.deployment_stack import DeploymentStack
from goalflow.testing.plans import layered_plan
from tests.helpers import TEST_KEY, asked_tasks, echo_answer

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture
def llm() -> Iterator[OpenAITestServer]:
    slow = OpenAITestServer(
        api_key=TEST_KEY, default=lambda r: Reply(content=str(echo_answer(r)), delay=0.5)
    )
    with slow as server:
        yield server


def _process_of(flow_run_id: str) -> int:
    """The pid of the process the worker started for ``flow_run_id``."""
    marker = f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in environ:
            return int(entry.name)
    raise AssertionError(f"no process runs flow run {flow_run_id}")


def test_a_killed_run_is_crashed_and_its_rerun_reuses_finished_tasks(
    llm: OpenAITestServer, tmp_path: Path
) -> None:
    plan_file = tmp_path / "plan.json"
    plan = layered_plan(12, 3)
    plan_file.write_text(plan.model_dump_json())
    worker_env = {
        "OPENAI_BASE_URL": llm.base_url,
        "OPENAI_API_KEY": TEST_KEY,
        "GOALFLOW_MODEL": "test-model",
        "GOALFLOW_SANDBOX": "off",
        "GOALFLOW_PRICES": json.dumps({"test-model": {"input": 1, "output": 1}}),
    }
    with DeploymentStack(ROOT, worker_env) as stack:
        _, first = stack.deployment_run(
            watch=False, goal=plan.goal, plan_file=plan_file, advanced={"concurrency": 2}
        )
        deadline = time.monotonic() + 120
        while llm.stats.completed < 5:  # the first layer and a bit of the second
            assert time.monotonic() < deadline, "the run never got going"
            time.sleep(0.05)
        os.kill(_process_of(first), signal.SIGKILL)

        crashed = stack.wait_for_state(first, {"CRASHED"}, timeout=60)
        finished = {
            run["name"].removeprefix("task: ")
            for run in stack.post(
                "/task_runs/filter",
                {"flow_runs": {"id": {"any_": [first]}}, "limit": 100},
            )
            if run["name"].startswith("task: ") and run["state_type"] == "COMPLETED"
        }
        asked_before = set(asked_tasks(llm))
        llm.reset()
        code, second = stack.deployment_run(
            goal=plan.goal, plan_file=plan_file, advanced={"concurrency": 2}
        )

        assert code == 0, stack.flow_run(second)["state"]
        report = stack.report(second)
    assert "SIGKILL" in (crashed["state"]["message"] or "")
    assert 4 <= len(finished) < 12 and finished <= asked_before
    asked = set(asked_tasks(llm))
    assert not asked & finished  # nothing paid twice
    assert len(asked) <= 12 - len(finished)
    assert "&lt;v2_3 from step t2_3>" in report
