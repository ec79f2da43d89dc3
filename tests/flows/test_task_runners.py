"""Leaf tasks on a real local Dask cluster and a real local Ray instance, through
``achieve_goal`` on a real Prefect server, with the test server as the model."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import re
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.sorting import TaskRunSort
from prefect.logging.handlers import APILogHandler

from goalflow.errors import GoalStoppedError, RunnerUnreachableError
from goalflow.orchestration.goal_flow import achieve_goal
from goalflow.settings import Settings, TaskRunnerKind
from goalflow.testing import OpenAITestServer
from goalflow.testing.plans import layered_plan
from tests.helpers import TEST_KEY, echo_answer, run_plan, task_requests

pytestmark = pytest.mark.usefixtures("prefect_server")

RPM = 10
PRICE_PER_TOKEN = 1e-3  # $1000 per million tokens: a few calls spend a dollar budget


@pytest.fixture
def limited_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAITestServer]:
    """The test server refusing more than RPM requests a minute (HTTP 429), priced."""
    server = OpenAITestServer(api_key=TEST_KEY, default=echo_answer, latency=0.3, rpm=RPM)
    with server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
        # The test server meters a sliding minute and allows all of it at once.
        monkeypatch.setenv("GOALFLOW_BURST_SECONDS", "60")
        monkeypatch.setenv("GOALFLOW_MODEL", "test-model")
        price = {"input": PRICE_PER_TOKEN * 1e6, "output": PRICE_PER_TOKEN * 1e6}
        monkeypatch.setenv("GOALFLOW_PRICES", json.dumps({"test-model": price}))
        yield server


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again on exit: nothing listens there


async def _worker_pids(flow_run_id: str, kind: str) -> set[int]:
    """The worker processes the goal's log line names (see goalflow.orchestration.task_runners)."""
    await APILogHandler.aflush()
    async with get_client() as client:
        logs = await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(flow_run_id)])),
            limit=200,
            offset=0,
        )
    lines = [log.message for log in logs if f"{kind} worker process(es)" in log.message]
    assert lines, f"no log line names the {kind} workers"
    return {int(pid) for pid in re.findall(r":(\d+)", lines[0])}


@pytest.mark.parametrize(
    ("kind", "address"), [("dask", "tcp://127.0.0.1:{port}"), ("ray", "ray://127.0.0.1:{port}")]
)
async def test_an_unreachable_cluster_fails_before_planning_spends_anything(
    llm_server: OpenAITestServer, kind: str, address: str
) -> None:
    address = address.format(port=_closed_port())
    started = time.monotonic()

    with pytest.raises(RunnerUnreachableError, match=re.escape(address)) as caught:
        await achieve_goal(
            "Write a haiku", advanced={"task_runner": kind, "runner_address": address}
        )

    assert "nothing was planned or spent" in str(caught.value)
    assert llm_server.requests == []  # not even the planning call
    assert time.monotonic() - started < 30


async def _run_on(kind: str, server: OpenAITestServer) -> None:
    """A plan of 12 calls, 4 parallel branches, at 10 requests/min: results, workers, pacing;
    then a small money budget that stops the same plan: spend stays within it."""
    plan = layered_plan(12, 3)  # width 4: each task reads two outputs of the layer before
    started = time.monotonic()

    # Reflection off: every call counted here is a leaf task's, made on a worker.
    result = await achieve_goal(
        plan.goal,
        plan=plan,
        advanced={"task_runner": kind, "concurrency": 4, "reflection": False},
    )

    assert result.status == "completed"
    assert result.deliverables == {
        f"v2_{i}": f"<v2_{i} from step t2_{i}>" for i in range(4)
    }  # values travelled by name across workers
    assert "<v0_1 from step t0_1>" in task_requests(server, "step t1_0")[0].last_user
    assert server.stats.completed == 12 and server.stats.rate_limited == 0
    assert time.monotonic() - started >= 60  # the 11th and 12th calls waited for the window
    assert result.usage.calls == 12  # every worker's call is in the flow's ledger
    pids = await _worker_pids(result.flow_run_id, kind)
    assert pids and os.getpid() not in pids
    async with get_client() as client:
        task_runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(result.flow_run_id)])),
            limit=50,
            sort=TaskRunSort.EXPECTED_START_TIME_ASC,
        )
    leaves = [t for t in task_runs if t.name.startswith("task: ")]
    assert len(leaves) == 12 and all(t.state and t.state.is_completed() for t in leaves)

    server.reset()
    # A call reserves many times what it spends (its prompt's bytes as tokens, plus its
    # answer tokens), one at a time: the budget stops the goal after a few calls.
    budget = 2.5
    with pytest.raises(GoalStoppedError, match="money budget") as stopped:
        await run_plan(
            layered_plan(12, 3),
            max_usd=budget,
            advanced={
                "task_runner": kind,
                "concurrency": 1,
                "reflection": False,
                "task_cache": False,
            },
        )

    usage = stopped.value.result.usage
    billed = (server.stats.prompt_tokens + server.stats.completion_tokens) * PRICE_PER_TOKEN
    assert 2 <= usage.calls == server.stats.completed < 12
    assert usage.cost_usd == pytest.approx(billed)
    assert billed <= budget


@asynccontextmanager
async def _local_cluster(kind: TaskRunnerKind, server: OpenAITestServer) -> AsyncIterator[Any]:
    """The local Dask cluster or Ray instance a goal starts (one worker), while open."""
    from goalflow.llm.client import LLM
    from goalflow.llm.config import LLMConfig
    from goalflow.llm.provider import GoalModels
    from goalflow.orchestration.task_runners import open_remote_leaves

    llm = LLM(LLMConfig(model="test-model", base_url=server.base_url))
    try:
        settings = Settings(task_runner=kind, runner_workers=1)
        async with open_remote_leaves(settings, GoalModels(llm, None), concurrency=1) as leaves:
            assert leaves is not None
            yield leaves
    finally:
        await llm.close()


@pytest.mark.slow  # starting a 2-worker LocalCluster
async def test_the_local_dask_cluster_takes_no_client_without_the_goals_credential(
    limited_server: OpenAITestServer,
) -> None:
    from distributed.comm import connect
    from distributed.security import Security

    async with _local_cluster("dask", limited_server) as leaves:
        address = leaves._runner.client.scheduler.address  # type: ignore[attr-defined]
        assert address.startswith("tls://")
        # Another local client, even one with a credential of its own, is refused.
        with pytest.raises((OSError, TimeoutError, ValueError, TypeError)):
            await connect(address, timeout=5)
        forged = Security.temporary().get_connection_args("client")
        with pytest.raises((OSError, TimeoutError)):
            comm = await connect(address, timeout=5, **forged)
            await comm.write({"op": "identity"})
            await comm.read()


_INTRUDER = """
import sys, ray
ray.init(address=sys.argv[1], log_to_driver=False)
print("ran:", ray.get(ray.remote(lambda: 1).remote(), timeout=20))
"""


def _listening() -> set[tuple[str, int]]:
    """The TCP sockets listening on this machine now: (address, port)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            for row in list(rows)[1:]:
                local, state = row.split()[1], row.split()[3]
                if state == "0A":  # LISTEN
                    address, port = local.split(":")
                    # Each 32-bit word is little-endian; an IPv4 mapped into IPv6 keeps
                    # its address in the last word.
                    words = [bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, 32, 8)]
                    raw = b"".join(words) if len(address) == 32 else words[0]
                    found.add((str(ipaddress.ip_address(raw)), int(port, 16)))
    return found


def _on_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_loopback


@pytest.mark.slow  # starting a local Ray instance, and a client waiting to be refused
async def test_the_local_ray_instance_listens_on_loopback_and_takes_only_the_goals_token(
    limited_server: OpenAITestServer,
) -> None:
    import ray

    before = _listening()
    async with _local_cluster("ray", limited_server):
        opened = _listening() - before
        # Nothing of Ray's can be reached from another machine.
        assert opened, "the Ray instance opened no port"
        assert [s for s in opened if not _on_loopback(s[0])] == []
        address = ray.get_runtime_context().gcs_address
        # Another local program, without this process's token, is refused: in token
        # mode it finds none in ~/.ray either (where Ray would have saved one for any
        # program to read).
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
        env["RAY_AUTH_MODE"] = "token"
        intruder = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _INTRUDER,
            address,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(intruder.communicate(), 180)
    assert intruder.returncode != 0
    assert b"ran:" not in output
    # Refused for its token: by the instance, or by Ray's client when it finds none.
    refusals = (b"token is missing or incorrect", b"no authentication token was found")
    assert any(refusal in output for refusal in refusals), output


@pytest.mark.slow  # a minute of pacing, plus starting a 2-worker LocalCluster
async def test_dask_runs_parallel_branches_on_workers_within_rate_and_budget(
    limited_server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOALFLOW_REQUESTS_PER_MINUTE", str(RPM))
    await _run_on("dask", limited_server)


@pytest.mark.slow  # a minute of pacing, plus starting a local Ray instance
async def test_ray_runs_parallel_branches_on_workers_within_rate_and_budget(
    limited_server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOALFLOW_REQUESTS_PER_MINUTE", str(RPM))
    await _run_on("ray", limited_server)


@pytest.mark.slow  # starting a 2-worker LocalCluster
async def test_on_dask_workers_simple_tasks_go_to_the_task_models_own_endpoint(
    limited_server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydantic import SecretStr

    from goalflow.core.prices import Price
    from goalflow.orchestration.blocks import LLMProvider

    plan = layered_plan(4)
    simple = [t.model_copy(update={"difficulty": "simple"}) for t in plan.tasks]
    plan = plan.model_copy(update={"tasks": simple})
    with OpenAITestServer(api_key="sk-task-key", models=("small",), default=echo_answer) as tasks:
        await LLMProvider(
            base_url=tasks.base_url,
            api_key=SecretStr("sk-task-key"),
            model="small",
            prices={"small": Price(input=1, output=1)},
        ).asave("dask-task-endpoint", overwrite=True)

        result = await run_plan(
            plan,
            max_usd=50.0,
            advanced={
                "task_runner": "dask",
                "reflection": False,
                "task_llm_block": "dask-task-endpoint",
            },
        )

    assert result.status == "completed"
    # Every answer came from a worker, at the task endpoint; none at the planning one.
    assert tasks.stats.completed == 4 and limited_server.stats.completed == 0
    assert result.usage.calls_by_model == {"small": 4}
    prompt, completion = tasks.stats.tokens_by_model["small"]
    assert result.usage.cost_usd == pytest.approx((prompt + completion) / 1e6, abs=2e-6)
    pids = await _worker_pids(result.flow_run_id, "dask")
    assert pids and os.getpid() not in pids
