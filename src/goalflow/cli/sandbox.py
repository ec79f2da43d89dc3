"""``goalflow sandbox build | check | clean``: the Docker sandbox that code tasks run in.

Exit codes: 0 done (``check``: ready); 1 the engine or image is not usable (``check``
says why and how to fix it); 2 the command cannot work as given (not root, no
debootstrap, an unknown block).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from goalflow.cli.console import err, fail
from goalflow.errors import GoalflowError
from goalflow.sandbox.config import DEFAULT_IMAGE, SandboxConfig

__all__ = ["build", "check", "clean", "sandbox_app"]

sandbox_app = typer.Typer(
    help="The Docker sandbox that code tasks run in: build its image, check it, clean up.",
    no_args_is_help=True,
)

BlockOpt = Annotated[
    str | None,
    typer.Option("--block", help="Use this saved DockerSandbox block (needs the Prefect API)."),
]
HostOpt = Annotated[
    str | None,
    typer.Option("--docker-host", help="Docker engine URL (default: DOCKER_HOST or local)."),
]
ImageOpt = Annotated[str | None, typer.Option("--image", help=f"Image (default {DEFAULT_IMAGE}).")]


def _config(block: str | None, docker_host: str | None, image: str | None) -> SandboxConfig:
    if block is not None:
        from goalflow.orchestration.blocks import DockerSandbox, load_block

        config = asyncio.run(load_block(DockerSandbox, block, "--block")).config()
    else:
        config = SandboxConfig()
    if docker_host:
        config = config.model_copy(update={"docker_host": docker_host})
    return config.model_copy(update={"image": image}) if image else config


def _say(line: str) -> None:
    err.print(line, highlight=False)


@sandbox_app.command()
def build(
    image: ImageOpt = None,
    docker_host: HostOpt = None,
    suite: Annotated[str, typer.Option(help="Debian release to build from.")] = "bookworm",
    mirror: Annotated[
        str | None, typer.Option(help="Debian mirror URL (default: debootstrap's).")
    ] = None,
) -> None:
    """Build the sandbox image from Debian packages (root, debootstrap; about a minute)."""
    from goalflow.sandbox.debian_image import build_image

    try:
        config = _config(None, docker_host, image)
        image_id = asyncio.run(build_image(config, suite=suite, mirror=mirror, say=_say))
    except GoalflowError as e:
        raise fail(e) from None
    err.print(f"built {config.image} ({image_id[:19]})", highlight=False)


@sandbox_app.command()
def check(block: BlockOpt = None, docker_host: HostOpt = None, image: ImageOpt = None) -> None:
    """Say whether code tasks can run: engine reachable, image present; the fix if not."""
    from goalflow.sandbox.engine import check as check_sandbox

    try:
        status = asyncio.run(check_sandbox(_config(block, docker_host, image)))
    except GoalflowError as e:
        raise fail(e) from None
    print(status.message)
    if not status.ready:
        raise typer.Exit(1)


@sandbox_app.command()
def clean(
    block: BlockOpt = None,
    docker_host: HostOpt = None,
    everything: Annotated[
        bool,
        typer.Option("--all", help="Also remove the containers of goals still running."),
    ] = False,
) -> None:
    """Remove sandbox containers and volumes a killed or crashed run left behind."""
    from goalflow.sandbox.engine import clean as clean_sandbox

    try:
        report = asyncio.run(
            clean_sandbox(_config(block, docker_host, None), everything=everything)
        )
    except GoalflowError as e:
        raise fail(e) from None
    print(f"removed {report.containers} container(s) and {report.volumes} volume(s)")
