"""The Docker engine's API client: connecting to it, and saying why a call failed.

Shared by the container runs (:mod:`goalflow.sandbox.engine`) and the image helpers
(:mod:`goalflow.sandbox.image`). Every call here blocks; async callers run it in a
worker thread.
"""

from __future__ import annotations

from typing import Any

import docker
from docker.errors import APIError, DockerException

from goalflow.errors import SandboxUnavailableError
from goalflow.sandbox.config import SandboxConfig

__all__ = ["Api", "connect", "explain"]

Api = Any  # docker.APIClient; docker-py ships no type hints


def connect(config: SandboxConfig, timeout: float) -> Api:
    """A low-level client of ``config``'s engine whose calls give up after ``timeout`` s.

    Raises ``SandboxUnavailableError``, saying how to start an engine, when it cannot.
    """
    try:
        if config.docker_host:
            return docker.APIClient(base_url=config.docker_host, timeout=timeout)
        return docker.APIClient(timeout=timeout, **docker.utils.kwargs_from_env())
    except DockerException as e:
        raise SandboxUnavailableError(
            f"cannot reach the Docker engine at {config.where} ({explain(e)}): start it (as "
            "root: `dockerd &`, or `make docker` in a goalflow checkout), or point DOCKER_HOST "
            "or the DockerSandbox block's docker_host at a running engine"
        ) from e


def explain(error: BaseException) -> str:
    """The engine's own explanation, or the root cause (e.g. 'Connection refused')."""
    if isinstance(error, APIError) and error.explanation:
        return str(error.explanation)
    root = error
    while (cause := root.__cause__ or root.__context__) is not None:
        root = cause
    if isinstance(root, OSError) and root.strerror:
        return root.strerror
    return str(error) or type(error).__name__
