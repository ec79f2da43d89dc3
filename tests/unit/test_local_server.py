"""The local Prefect server goalflow starts: how it is started, not a running one."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from goalflow.deploy import local_server
from goalflow.deploy.local_server import SERVER_TUNING, spawn_server


def test_the_server_gets_its_tuning_unless_the_environment_sets_it_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[dict[str, Any]] = []
    monkeypatch.setattr(
        local_server.subprocess, "Popen", lambda command, **kwargs: started.append(kwargs)
    )
    batch = "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE"

    spawn_server(4321, {"HOME": "/root"}, tmp_path / "log", detach=False)
    spawn_server(4321, {batch: "1"}, tmp_path / "log", detach=False)

    tuned, told = (kwargs["env"] for kwargs in started)
    assert {name: tuned[name] for name in SERVER_TUNING} == SERVER_TUNING
    assert tuned["PREFECT_UI_API_URL"] == "http://127.0.0.1:4321/api"
    assert told[batch] == "1"  # a user's own setting wins
    assert started[0]["stdin"] is subprocess.DEVNULL
