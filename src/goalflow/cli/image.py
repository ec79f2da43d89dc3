"""``goalflow image build | check``: the goal runner image that Docker work pools run.

Exit codes: 0 done (``check``: the image is there); 1 the engine, the base image or the
build failed, or (``check``) the image is missing, with the fix; 2 the command cannot
work as given (not a checkout, a base without Python 3.11).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from goalflow.cli.console import err, fail
from goalflow.deploy.runner_image import DEFAULT_RUNNER_IMAGE
from goalflow.errors import GoalflowError
from goalflow.sandbox.config import DEFAULT_IMAGE, SandboxConfig

__all__ = ["build", "check", "image_app"]

image_app = typer.Typer(
    help="The goal runner image (goalflow installed) that the goal-docker deployment runs in.",
    no_args_is_help=True,
)

TagOpt = Annotated[str, typer.Option("--tag", "-t", help="Name of the runner image.")]
HostOpt = Annotated[
    str | None,
    typer.Option("--docker-host", help="Docker engine URL (default: DOCKER_HOST or local)."),
]


@image_app.command()
def build(
    base: Annotated[
        str,
        typer.Option(
            help="Image to build on: python3 >= 3.11 with venv (default: the sandbox image)."
        ),
    ] = DEFAULT_IMAGE,
    tag: TagOpt = DEFAULT_RUNNER_IMAGE,
    docker_host: HostOpt = None,
    project: Annotated[
        str | None,
        typer.Option(help="The goalflow checkout to install (default: the one running)."),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Build every layer again (e.g. after a pip fix).")
    ] = False,
) -> None:
    """Build the runner image from this checkout: no registry, only the package index."""
    from pathlib import Path

    from goalflow.deploy.runner_image import PROJECT_ROOT, build_runner_image

    try:
        built = asyncio.run(
            build_runner_image(
                SandboxConfig(docker_host=docker_host),
                base=base,
                tag=tag,
                project=Path(project) if project else PROJECT_ROOT,
                no_cache=no_cache,
                say=lambda line: err.print(line, highlight=False, markup=False),
            )
        )
    except GoalflowError as e:
        raise fail(e) from None
    err.print(
        f"built {built.tag} ({built.image_id[:19]}) on {built.base}, Python {built.python}, "
        f"in {built.seconds:.0f} s",
        highlight=False,
    )


@image_app.command()
def check(tag: TagOpt = DEFAULT_RUNNER_IMAGE, docker_host: HostOpt = None) -> None:
    """Say whether the engine has the runner image, built from this checkout; the fix if not.

    The sources are compared when goalflow runs from a checkout (an editable install).
    """
    from goalflow.deploy.runner_image import PROJECT_ROOT, runner_image_status

    checkout = PROJECT_ROOT if (PROJECT_ROOT / "pyproject.toml").is_file() else None
    config = SandboxConfig(docker_host=docker_host)
    ready, message = asyncio.run(runner_image_status(config, tag, checkout))
    print(message)
    if not ready:
        raise typer.Exit(1)
