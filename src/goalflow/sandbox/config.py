"""A sandboxed run, apart from Docker: its limits, its files and what it reports.

Kept apart from the modules that talk to Docker (:mod:`goalflow.sandbox.engine`,
``client`` and ``image``) so that blocks, artifacts and tests use them without importing
``docker``. What a run reports is :class:`goalflow.core.program.SandboxResult`.
"""

from __future__ import annotations

import io
import os
import tarfile
import time
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import Field, model_validator

from goalflow.core.program import ProgramLimits
from goalflow.errors import ConfigError

__all__ = [
    "DEFAULT_IMAGE",
    "CleanReport",
    "SandboxConfig",
    "SandboxStatus",
    "check_file_name",
    "pack_files",
]

DEFAULT_IMAGE = "goalflow-sandbox:bookworm"


class SandboxConfig(ProgramLimits):
    """Where programs run and within which limits; the ``DockerSandbox`` block
    (:mod:`goalflow.orchestration.blocks`) wraps it.

    Closed by default: no network, a read-only root, a non-root user with no
    capabilities, and limits on memory, CPU, processes, time and output.
    """

    docker_host: str | None = Field(
        default=None,
        description="Docker engine URL (unix://, tcp://, ssh://); empty means DOCKER_HOST "
        "or the local socket.",
    )
    image: str = Field(
        default=DEFAULT_IMAGE,
        description="Image with python3 to run programs in; the default is built by "
        "`goalflow sandbox build`, any other (e.g. python:3.12-slim) must be on the engine.",
    )
    cpus: float = Field(default=1.0, gt=0, description="CPUs a program may use, e.g. 0.5.")
    pids_limit: int = Field(
        default=64, ge=8, description="Most processes and threads at once (stops fork bombs)."
    )
    output_cap: int = Field(
        default=64 * 1024,
        ge=1024,
        description="Bytes of stdout and of stderr kept; the rest is counted and dropped.",
    )
    work_size: str = Field(
        default="64m",
        pattern=r"^[1-9][0-9]*[bkmg]?$",
        description="Size of the writable working directory and of /tmp (in memory).",
    )
    user: str = Field(
        default="65534:65534",
        description="uid:gid programs run as (65534 is 'nobody'); never root.",
    )

    @model_validator(mode="after")
    def _not_root(self) -> SandboxConfig:
        if self.user.split(":")[0] in ("", "0", "root"):
            raise ConfigError(
                f"the sandbox user {self.user!r} is root: programs must run as an "
                "unprivileged uid:gid, e.g. 65534:65534 (nobody)"
            )
        return self

    @property
    def where(self) -> str:
        """The engine's address, for messages."""
        return self.docker_host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


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
