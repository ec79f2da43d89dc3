"""Sandbox errors and settings a user meets before any program runs."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from goalflow.core.program import OutputCapture
from goalflow.errors import ConfigError, SandboxUnavailableError
from goalflow.orchestration.blocks import DockerSandbox
from goalflow.sandbox.config import SandboxConfig
from goalflow.sandbox.debian_image import build_image
from goalflow.sandbox.engine import Sandbox, check


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        (f"tcp://127.0.0.1:{_closed_port()}", "Connection refused"),
        ("unix:///nonexistent/goalflow/docker.sock", "No such file or directory"),
    ],
)
async def test_an_unreachable_engine_says_how_to_fix_it(host: str, reason: str) -> None:
    config = SandboxConfig(docker_host=host)

    with pytest.raises(SandboxUnavailableError) as caught:
        await Sandbox(config).run("print(1)", {}, [])
    status = await check(config)

    message = str(caught.value)
    assert message.startswith(f"cannot reach the Docker engine at {host} ({reason}): ")
    assert "dockerd" in message and "docker_host" in message
    assert not status.ready and status.engine is None and status.message == message


async def test_docker_host_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/goalflow/docker.sock")

    status = await check(SandboxConfig())

    assert "at unix:///nonexistent/goalflow/docker.sock (" in status.message


def test_programs_never_run_as_root() -> None:
    for user in ("0", "0:0", "root", "root:root"):
        with pytest.raises(ConfigError, match="is root"):
            SandboxConfig(user=user)
    with pytest.raises(ConfigError, match="is root"):
        DockerSandbox(user="0:0").config()


def test_the_block_maps_onto_the_config() -> None:
    block = DockerSandbox(image="python:3.12-slim", memory="512m", timeout=5, network=True)

    config = block.config()

    assert config == SandboxConfig(image="python:3.12-slim", memory="512m", timeout=5, network=True)
    assert all(field.description for field in DockerSandbox.model_fields.values())


@pytest.mark.parametrize("name", ["../escape", "sub/dir", ".program.py", ""])
async def test_file_names_stay_in_the_working_directory(name: str) -> None:
    with pytest.raises(ConfigError, match="cannot be a sandbox file name"):
        await Sandbox().run("print(1)", {name: b"x"}, [])


def test_output_capture_keeps_the_start_and_counts_the_rest() -> None:
    capture = OutputCapture(cap=5)
    for chunk in (b"abc", b"defg", b"hi"):
        capture.add(chunk)

    assert capture.truncated
    assert capture.text() == "abcde\n[output truncated: 9 bytes in all, the first 5 kept]"


async def test_building_needs_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)

    with pytest.raises(ConfigError, match="needs root"):
        await build_image(SandboxConfig())


async def test_building_needs_debootstrap(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(ConfigError, match="apt-get install debootstrap"):
        await build_image(SandboxConfig())
