"""Images on the Docker engine: importing a root filesystem, building a Dockerfile
context, and looking into an image (its id and labels, a command's output).

Used to build the default sandbox image (:mod:`goalflow.sandbox.debian_image`) and the
goal runner image (:mod:`goalflow.deploy.runner_image`). Every function blocks; async
callers run it in a worker thread.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Mapping, Sequence
from typing import IO, cast

import docker
from docker.errors import DockerException, NotFound

from goalflow.errors import SandboxUnavailableError
from goalflow.sandbox.client import connect, explain
from goalflow.sandbox.config import SandboxConfig

__all__ = ["build_from_context", "image_facts", "import_rootfs", "run_in_image"]


def import_rootfs(config: SandboxConfig, rootfs: str, image: str) -> str:
    """Import a root filesystem folder into the engine as ``image``; returns its id.

    Blocking. The archive is streamed, so a remote engine works too; package caches are
    left out, as nothing in the sandbox installs packages.
    """
    api = connect(config, timeout=600)
    excludes = ["--exclude=./var/cache/apt/archives/*.deb", "--exclude=./var/lib/apt/lists/*"]
    tar = subprocess.Popen(["tar", "-C", rootfs, *excludes, "-c", "."], stdout=subprocess.PIPE)
    pipe = cast(IO[bytes], tar.stdout)
    repository, tag = docker.utils.parse_repository_tag(image)
    try:
        api.import_image(
            src=iter(lambda: pipe.read(1 << 20), b""),
            repository=repository,
            tag=tag or "latest",
            changes=["ENV LANG=C.UTF-8", 'CMD ["python3"]'],
            stream_src=True,
        )
        if tar.wait() != 0:
            raise SandboxUnavailableError(f"tar could not archive {rootfs} (exit {tar.returncode})")
        return str(api.inspect_image(image)["Id"])
    except (DockerException, OSError) as e:
        raise SandboxUnavailableError(
            f"the Docker engine at {config.where} did not import the image: {explain(e)}"
        ) from e
    finally:
        pipe.close()
        tar.wait()
        api.close()


def image_facts(config: SandboxConfig, image: str) -> tuple[str, dict[str, str]] | None:
    """The id and labels of ``image`` on ``config``'s engine; None when it lacks it.

    Blocking; raises ``SandboxUnavailableError`` when the engine cannot be reached.
    """
    api = connect(config, timeout=10)
    try:
        found = api.inspect_image(image)
        return str(found["Id"]), dict(found.get("Config", {}).get("Labels") or {})
    except NotFound:
        return None
    except (DockerException, OSError) as e:
        raise SandboxUnavailableError(
            f"the Docker engine at {config.where} failed: {explain(e)}"
        ) from e
    finally:
        api.close()


def run_in_image(config: SandboxConfig, image: str, command: Sequence[str]) -> str:
    """Run ``command`` in a throw-away container of ``image`` (no network); its stdout.

    Blocking; for probing a base image (e.g. its Python version) before a build.
    """
    api = connect(config, timeout=120)
    container = None
    try:
        container = api.create_container(
            image, list(command), host_config=api.create_host_config(network_mode="none")
        )["Id"]
        api.start(container)
        status = api.wait(container, timeout=110)
        output = api.logs(container, stdout=True, stderr=True).decode(errors="replace")
        if status.get("StatusCode") != 0:
            raise SandboxUnavailableError(
                f"`{' '.join(command)}` failed in {image} (exit {status.get('StatusCode')}): "
                f"{output.strip()[-500:]}"
            )
        return str(api.logs(container, stdout=True, stderr=False).decode(errors="replace"))
    except NotFound as e:
        raise SandboxUnavailableError(
            f"the image {image!r} is not on the Docker engine at {config.where}"
        ) from e
    except (DockerException, OSError) as e:
        raise SandboxUnavailableError(
            f"the Docker engine at {config.where} failed: {explain(e)}"
        ) from e
    finally:
        if container is not None:
            with contextlib.suppress(DockerException, OSError):
                api.remove_container(container, force=True)
        api.close()


def build_from_context(
    config: SandboxConfig,
    context: str,
    tag: str,
    *,
    buildargs: Mapping[str, str] | None = None,
    no_cache: bool = False,
    say: Callable[[str], None] = lambda line: None,
) -> str:
    """Build the Dockerfile in folder ``context`` as ``tag`` on ``config``'s engine.

    Blocking. The context is streamed, so a remote engine works; the build has no
    network (everything it installs is in the context). The image ``tag`` named before
    is removed when nothing uses it. Returns the image id.
    """
    api = connect(config, timeout=1800)
    recent: list[str] = []
    try:
        previous = str(api.inspect_image(tag)["Id"])
    except (DockerException, OSError):
        previous = None
    try:
        for chunk in api.build(
            path=context,
            tag=tag,
            buildargs=dict(buildargs or {}),
            network_mode="none",
            nocache=no_cache,
            rm=True,
            forcerm=True,
            decode=True,
        ):
            if "error" in chunk:
                output = "\n".join(recent[-12:])
                raise SandboxUnavailableError(
                    f"the image build failed: {chunk['error'].strip()}\n{output}"
                )
            line = str(chunk.get("stream", "")).strip()
            recent.append(line)
            if line.startswith(("Step ", "---> Using cache")) or "Successfully" in line:
                say(line)
        built = str(api.inspect_image(tag)["Id"])
        if previous not in (None, built):
            with contextlib.suppress(DockerException, OSError):  # in use: it stays
                api.remove_image(previous)
        return built
    except (DockerException, OSError) as e:
        raise SandboxUnavailableError(
            f"the Docker engine at {config.where} did not build {tag}: {explain(e)}"
        ) from e
    finally:
        api.close()
