"""A sandboxed run, apart from Docker: its limits, its files and what it reports.

Kept apart from :mod:`goalflow.sandbox` (the one module that talks to Docker) so that
blocks, the code-task loop, artifacts and tests use them without touching the engine.
"""

from __future__ import annotations

import io
import os
import tarfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from goalflow.errors import ConfigError

__all__ = [
    "DEFAULT_IMAGE",
    "DEFAULT_RUNNER_IMAGE",
    "CleanReport",
    "OutputCapture",
    "SandboxConfig",
    "SandboxResult",
    "SandboxStatus",
    "check_file_name",
    "describe_failure",
    "pack_files",
]

DEFAULT_IMAGE = "goalflow-sandbox:bookworm"
DEFAULT_RUNNER_IMAGE = "goalflow-runner:latest"  # goal runs in containers (runner_image.py)


@dataclass(frozen=True)
class SandboxConfig:
    """Where programs run and within which limits (see ``goalflow.blocks.DockerSandbox``)."""

    docker_host: str | None = None
    image: str = DEFAULT_IMAGE
    memory: str = "256m"
    cpus: float = 1.0
    pids_limit: int = 64
    timeout: float = 60.0
    output_cap: int = 64 * 1024
    work_size: str = "64m"
    network: bool = False
    user: str = "65534:65534"

    def __post_init__(self) -> None:
        if self.user.split(":")[0] in ("", "0", "root"):
            raise ConfigError(
                f"the sandbox user {self.user!r} is root: programs must run as an "
                "unprivileged uid:gid, e.g. 65534:65534 (nobody)"
            )

    @property
    def where(self) -> str:
        """The engine's address, for messages."""
        return self.docker_host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


@dataclass(frozen=True)
class SandboxResult:
    """What one run did. ``failure`` says why it did not succeed (None: it did).

    Each outcome is reported on its own: a run stopped at the timeout has no exit code,
    an out-of-memory kill is named as such rather than as exit code 137, and every
    requested output file the program did not write is listed in ``missing``.
    """

    exit_code: int | None
    timed_out: bool
    oom_killed: bool
    stdout: str
    stderr: str
    truncated: bool
    outputs: dict[str, bytes]
    missing: list[str]
    seconds: float
    failure: str | None


@dataclass(frozen=True)
class SandboxStatus:
    """Whether programs can run, and, when not, what to do about it.

    ``engine`` names the engine and its version when it answered (None: unreachable).
    """

    ready: bool
    message: str
    engine: str | None


@dataclass(frozen=True)
class CleanReport:
    """What ``goalflow sandbox clean`` removed."""

    containers: int
    volumes: int


@dataclass
class OutputCapture:
    """The first ``cap`` bytes of a stream, and how many there were in all.

    A program that floods its output is read to the end (or to the timeout), so that it
    never blocks on a full pipe, but only ``cap`` bytes are kept.
    """

    cap: int
    kept: bytearray = field(default_factory=bytearray)
    total: int = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.cap - len(self.kept)
        if room > 0:
            self.kept += chunk[:room]

    @property
    def truncated(self) -> bool:
        return self.total > len(self.kept)

    def text(self) -> str:
        text = self.kept.decode("utf-8", errors="replace")
        if self.truncated:
            text += f"\n[output truncated: {self.total} bytes in all, the first {self.cap} kept]"
        return text


def describe_failure(
    *, timeout: float | None, oom_memory: str | None, exit_code: int | None, missing: list[str]
) -> str | None:
    """Why a run failed, worded for the model that wrote the program; None if it did not.

    ``timeout`` is set when the run was stopped at it, ``oom_memory`` (the limit) when
    it was killed for memory.
    """
    if timeout is not None:
        return f"it was stopped at the time limit of {timeout:g} s"
    if oom_memory is not None:
        return f"it was killed for using more than its memory limit of {oom_memory}"
    if exit_code != 0:
        return f"it exited with code {exit_code}"
    if missing:
        return "it did not write " + ", ".join(missing) + " in its working directory"
    return None


def pack_files(files: Mapping[str, bytes]) -> bytes:
    """An archive the program can read but not change (owned by root, mode 0444)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o444, int(time.time())
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def check_file_name(name: str) -> None:
    """Refuse names that would leave the working directory or hide the program file."""
    if not name or name.startswith(".") or "/" in name or "\0" in name:
        raise ConfigError(
            f"{name!r} cannot be a sandbox file name: use a plain name such as 'data.csv' "
            "(no '/', not starting with '.')"
        )
