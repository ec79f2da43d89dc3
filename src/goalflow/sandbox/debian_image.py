"""Building the default sandbox image with no registry, from Debian packages.

``debootstrap --variant=minbase --include=python3`` installs a minimal Debian with
Python from the Debian mirror into a folder (about a minute), which is then imported
into the engine as an image, as ``docker import`` would (see
:func:`goalflow.sandbox.image.import_rootfs`). It includes ``python3`` rather than
``python3-minimal``: the minimal package leaves out json, statistics, decimal,
dataclasses and more, which model-written programs use all the time. The image is about
200 MB.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from goalflow.errors import ConfigError, SandboxUnavailableError
from goalflow.sandbox.config import SandboxConfig
from goalflow.sandbox.engine import check
from goalflow.sandbox.image import import_rootfs

__all__ = ["build_image"]


async def build_image(
    config: SandboxConfig,
    *,
    suite: str = "bookworm",
    mirror: str | None = None,
    say: Callable[[str], None] = lambda line: None,
) -> str:
    """Build ``config.image`` on ``config``'s engine; returns the image id.

    Needs root (debootstrap makes device nodes and runs a chroot) and debootstrap.
    """
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        raise ConfigError(
            "building the sandbox image needs root (debootstrap makes device nodes and "
            "runs a chroot): run `sudo goalflow sandbox build`, or name an image the engine "
            "already has (e.g. python:3.12-slim) in the DockerSandbox block"
        )
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise ConfigError(
            "building the sandbox image needs debootstrap: `apt-get install debootstrap`"
        )
    status = await check(config)
    if status.engine is None:  # fail before the minute that debootstrap takes
        raise SandboxUnavailableError(status.message)
    folder = await asyncio.to_thread(tempfile.mkdtemp, prefix="goalflow-rootfs-")
    root = str(Path(folder) / "rootfs")
    try:
        say(f"debootstrap {suite} with python3 into {root} (about a minute)")
        await _debootstrap(
            [debootstrap, "--variant=minbase", "--include=python3", suite, root]
            + ([mirror] if mirror else [])
        )
        say(f"importing it into {status.engine} as {config.image}")
        return await asyncio.to_thread(import_rootfs, config, root, config.image)
    finally:
        await asyncio.to_thread(shutil.rmtree, folder, ignore_errors=True)


async def _debootstrap(command: list[str]) -> None:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        output, _ = await process.communicate()
    finally:
        if process.returncode is None:  # cancelled (Ctrl-C): do not leave it running
            process.kill()
            await process.wait()
    if process.returncode != 0:
        tail = "\n".join(output.decode(errors="replace").splitlines()[-5:])
        raise SandboxUnavailableError(
            f"debootstrap failed (exit {process.returncode}); its last lines:\n{tail}\n"
            "Check that the Debian mirror is reachable, or pass --mirror URL"
        )
