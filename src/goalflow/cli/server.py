"""``goalflow server start|stop|status`` and ``goalflow setup``.

The server commands manage the local Prefect server that goal runs use when no
``PREFECT_API_URL`` is set; ``setup`` prepares whichever server is configured (the
local one otherwise) for deployments: work pool, Block types, automations.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from goalflow.cli.console import err, fail
from goalflow.deploy.local_server import LocalServer, prefect_api
from goalflow.deploy.runner_image import DEFAULT_RUNNER_IMAGE
from goalflow.errors import GoalflowError
from goalflow.settings import Settings

__all__ = ["server_app", "setup", "start", "status", "stop"]

server_app = typer.Typer(
    help="The local Prefect server goal runs use when PREFECT_API_URL is unset.",
    no_args_is_help=True,
)


def _server() -> LocalServer:
    try:
        return LocalServer(Settings.load().server_port)
    except GoalflowError as e:
        raise fail(e) from None


@server_app.command()
def start() -> None:
    """Start the local server on 127.0.0.1 (GOALFLOW_SERVER_PORT, default 4200), or reuse it."""
    server = _server()
    try:
        started = server.start()
    except GoalflowError as e:
        raise fail(e, 1) from None
    verb = "started" if started else "already running"
    err.print(f"Prefect server {verb}: {server.api_url} (UI: {server.api_url[:-4]})")
    err.print(f"use it elsewhere with: export PREFECT_API_URL={server.api_url}", highlight=False)


@server_app.command()
def stop() -> None:
    """Stop the local server that goalflow started."""
    server = _server()
    if server.stop():
        err.print(f"Prefect server on port {server.port} stopped")
    else:
        err.print(f"goalflow started no Prefect server on port {server.port}")


@server_app.command()
def status() -> None:
    """Say whether the local server answers; exit 1 when it does not."""
    server = _server()
    if server.healthy():
        pid = server.pid()
        owner = f"pid {pid}, log {server.log_file}" if pid else "not started by goalflow"
        print(f"running: {server.api_url} ({owner})")
        return
    print(f"not running: nothing answers at {server.api_url}")
    raise typer.Exit(1)


def setup(
    work_pool: Annotated[
        str, typer.Option(help="Process work pool the deployments in prefect.yaml use.")
    ] = "goalflow-process",
    time_backstop: Annotated[
        float | None,
        typer.Option(
            min=10,  # Prefect's least `within` for a proactive trigger
            help="Seconds after which the server cancels any goal run still Running "
            "(default: goalflow/deploy/automations/time-backstop.yaml, 3600; at least 10).",
        ),
    ] = None,
    reflect_after: Annotated[
        float | None,
        typer.Option(
            min=10,
            help="Seconds without a progress event after which the server asks a running "
            "goal to reflect (the reflect deployment's trigger in prefect.yaml: 600).",
        ),
    ] = None,
    docker_image: Annotated[
        str,
        typer.Option(help="Runner image the goalflow-docker pool's runs need on this engine."),
    ] = DEFAULT_RUNNER_IMAGE,
) -> None:
    """Prepare the Prefect server for goal deployments; safe to run again."""
    from goalflow.deploy.setup import setup_server

    try:
        with prefect_api(Settings.load().server_port):
            from prefect.settings import PREFECT_API_URL

            url = str(PREFECT_API_URL.value())
            report = asyncio.run(
                setup_server(
                    work_pool=work_pool,
                    time_backstop=time_backstop,
                    reflect_after=reflect_after,
                    api_url=url,
                    docker_image=docker_image,
                )
            )
    except GoalflowError as e:
        raise fail(e, 2) from None
    for line in report.lines:
        if line.startswith("warning: "):
            err.print(f"[bold yellow]warning:[/] {line[9:]}", highlight=False)
        else:
            err.print(line, highlight=False)
    err.print(f"ready: {url}", highlight=False)
