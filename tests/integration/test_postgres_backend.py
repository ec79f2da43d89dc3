"""Large fan-out on a Prefect server backed by PostgreSQL: no HTTP 503, nothing lost.

Needs the cluster of ``make postgres`` (``scripts/postgres-up.sh``), which ``make test``
and ``.ci/run`` bring up first; without it the test is skipped and says so.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from goalflow.testing import OpenAITestServer
from goalflow.testing.prefect_process import PrefectServerProcess
from tests.helpers import TEST_KEY, echo_answer

pytestmark = pytest.mark.postgres

DATABASE_URL = os.environ.get(
    "GOALFLOW_TEST_POSTGRES_URL", "postgresql+asyncpg://prefect:prefect@127.0.0.1:5432/prefect"
)

PLAN_ARGS = ["--tasks", "300", "--composites", "30", "--concurrency", "400"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def postgres_prefect() -> Iterator[str]:
    """A real ``prefect server start`` on PostgreSQL, for this module; yields its API URL."""
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
    except OSError:
        pytest.skip("no PostgreSQL on 127.0.0.1:5432: run `make postgres` first")
    with PrefectServerProcess(_free_port(), DATABASE_URL) as server:
        yield server.api_url


def test_hundreds_of_tasks_and_dozens_of_subflows_complete_without_503(
    postgres_prefect: str,
) -> None:
    llm = OpenAITestServer(api_key=TEST_KEY, default=echo_answer, latency=1.0)
    env = {
        **os.environ,
        "PREFECT_API_URL": postgres_prefect,
        "PREFECT_API_DATABASE_CONNECTION_URL": DATABASE_URL,
        "OPENAI_API_KEY": TEST_KEY,
        "GOALFLOW_MODEL": "test-model",
        "GOALFLOW_MAX_TASKS": "1000",
        # A rate told (1,000 a second) lets all 300 leaves leave at once; untold, they
        # would leave in the slow start that finds an unknown limit (about 1.6 s).
        "GOALFLOW_REQUESTS_PER_MINUTE": "60000",
    }
    with llm:
        env["OPENAI_BASE_URL"] = llm.base_url
        child = subprocess.run(
            [sys.executable, "-m", "goalflow.testing.plan_run", *PLAN_ARGS],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert child.returncode == 0, child.stderr[-3000:]
    report = json.loads(child.stdout.strip().splitlines()[-1])

    assert report["status"] == "completed", report
    assert report["failed"] == 0
    assert llm.stats.completed == 300 + 30 * 2
    assert llm.stats.max_in_flight >= 250  # the leaves really ran side by side
    for sign in ("Service Unavailable", "status code 503", "database is locked"):
        assert sign not in child.stderr  # no 503, not even one that was retried
    subflows = httpx.post(
        f"{postgres_prefect}/flow_runs/count",
        json={"flow_runs": {"name": {"like_": "composite:"}}},
    ).json()
    assert subflows >= 30
