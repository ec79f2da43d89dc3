"""Shared fixtures: a clean environment, a real Prefect server, the test LLM server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from goalflow.testing import OpenAITestServer
from tests.helpers import TEST_KEY, echo_answer


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own key, endpoint or goalflow settings never reach a test."""
    for name in list(os.environ):
        if name.startswith(("GOALFLOW_", "OPENAI_")):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def prompt_counts(clean_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's counts of prompts in its own file (also for its child processes):
    what one test's endpoint counted must not bound another test's calls."""
    path = tmp_path / "prompt-counts.json"
    monkeypatch.setenv("GOALFLOW_PROMPT_COUNTS", str(path))
    return path


@pytest.fixture(autouse=True)
def result_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Each test's cached task results in its own folder (also for its child processes):
    a plan one test ran must not be answered from the cache in another."""
    from prefect.settings import PREFECT_RESULTS_LOCAL_STORAGE_PATH, temporary_settings

    folder = tmp_path / "prefect-results"
    monkeypatch.setenv("PREFECT_RESULTS_LOCAL_STORAGE_PATH", str(folder))
    with temporary_settings(updates={PREFECT_RESULTS_LOCAL_STORAGE_PATH: folder}):
        yield folder


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """A real Prefect server (SQLite) for the whole session; yields its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"  # no phoning home in tests
    with prefect_test_harness(server_startup_timeout=120):
        yield str(PREFECT_API_URL.value())


@pytest.fixture
def llm_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAITestServer]:
    """The project's OpenAI-compatible test server, configured as the goal's endpoint."""
    server = OpenAITestServer(api_key=TEST_KEY, default=echo_answer)
    with server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
        monkeypatch.setenv("GOALFLOW_MODEL", "test-model")
        yield server
