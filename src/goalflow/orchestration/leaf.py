"""The one leaf task: a Prefect task run ``task: <title>`` per executable task.

Everything it needs arrives as parameters. In the flow's own process (the ``threads``
runner) its :class:`LeafContext` names the live goal run (:class:`RunRef`), whose model,
ledger, pacer, sandbox and reflector the task uses. On a Dask or Ray worker the context
carries the goal's broker ticket instead: the worker calls the model itself, with money
and pacing settled by the broker in the flow process (:mod:`goalflow.llm.broker`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol
from uuid import uuid4

from prefect import get_run_logger, task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE

from goalflow.agent.executor import run_leaf
from goalflow.core.report import task_output_markdown
from goalflow.core.task import TaskSpec
from goalflow.errors import ConfigError
from goalflow.llm.broker import BrokerTicket, worker_name
from goalflow.llm.brokered import brokered_models
from goalflow.orchestration.task_cache import keep_result

__all__ = ["LeafContext", "LeafHost", "RunRef", "host_of", "hosting", "run_leaf_task"]


class LeafHost(Protocol):
    """What runs a leaf task in the flow's process: the goal run."""

    async def run_leaf(self, task: TaskSpec, inputs: dict[str, str], path: str) -> dict[str, str]:
        """The task's outputs, from the goal's own model and sandbox."""
        ...


@dataclass(frozen=True)
class RunRef:
    """A live goal run in this process, by key: what a task run's parameters can carry."""

    key: str


_HOSTS: dict[str, LeafHost] = {}


@contextmanager
def hosting(host: LeafHost) -> Iterator[RunRef]:
    """Makes ``host`` reachable by the :class:`RunRef` it yields, while the block runs."""
    ref = RunRef(uuid4().hex)
    _HOSTS[ref.key] = host
    try:
        yield ref
    finally:
        del _HOSTS[ref.key]


def host_of(ref: RunRef) -> LeafHost:
    """The live goal run ``ref`` names; a ConfigError when it is not in this process."""
    try:
        return _HOSTS[ref.key]
    except KeyError:
        raise ConfigError(
            f"goal run {ref.key} is not live in this process: a task or subflow of a goal "
            "runs only inside its goal's flow run"
        ) from None


@dataclass(frozen=True)
class LeafContext:
    """What a leaf task needs besides the task: the goal, and where its model is."""

    goal: str
    attempts: int
    artifact: bool  # give the outputs an artifact (small plans) or a log line (large ones)
    run: RunRef | None = None  # in the flow's process
    ticket: BrokerTicket | None = None  # on a Dask or Ray worker


@task(name="leaf-task", task_run_name="task: {task.title}", cache_policy=NO_CACHE)
async def run_leaf_task(
    task: TaskSpec,
    inputs: dict[str, str],
    path: str,
    cache_scope: str | None,
    context: LeafContext,
) -> dict[str, str]:
    """One executable task; ``cache_scope`` keys its cached result
    (:mod:`goalflow.orchestration.task_cache`), None: not cached."""
    where = ""
    if context.ticket is not None:
        async with brokered_models(context.ticket, path) as (llm, task_llm):
            outputs = await run_leaf(
                llm, context.goal, task, inputs, attempts=context.attempts, task_llm=task_llm
            )
        where = f" on worker {worker_name()}"
    elif context.run is not None:
        outputs = await host_of(context.run).run_leaf(task, inputs, path)
    else:
        raise ConfigError(f"leaf task {path!r} has neither a goal run nor a broker ticket")
    if cache_scope:
        await keep_result(outputs)
    if context.artifact:
        await acreate_markdown_artifact(
            task_output_markdown(path, task.title, outputs), description=f"Output of {path}"
        )
        get_run_logger().info("produced %s%s", ", ".join(outputs), where)
    else:
        get_run_logger().info("produced %s%s", _outputs_line(outputs), where)
    return outputs


def _outputs_line(outputs: dict[str, str], width: int = 300) -> str:
    """The outputs in one log line, each cut to ``width`` characters."""
    return "; ".join(
        f"{name}: {value if len(value) <= width else value[:width] + '…'}"
        for name, value in outputs.items()
    )
