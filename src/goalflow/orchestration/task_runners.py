"""Where a goal's leaf tasks run: the flow's own process, a Dask cluster, or Ray.

``threads`` (the default) runs each leaf task as a Prefect task awaited in the flow's
event loop, sharing the goal's LLM client, ledger and pacer in memory. ``dask``
(prefect-dask) and ``ray`` (prefect-ray) submit each ``llm`` leaf task to the cluster
through Prefect's task runner, so the task run belongs to the goal's flow run as usual
and its worker calls the model itself; its money and pacing go through the goal's
:class:`~goalflow.llm.broker.LedgerBroker` in the flow process, so budgets and rate limits
hold exactly as they do in one process. Planning, composite subflows, the scheduler
and ``code`` tasks (their sandbox is the flow's Docker engine) stay in the flow process.

With no address, a local cluster is started for the goal and stopped after it:
``runner_workers`` Dask worker processes, each with enough threads for the goal's
concurrency, or a Ray instance of ``runner_workers`` CPUs on which each leaf task takes a matching
fraction of a CPU, at least a quarter (Ray runs one task per worker process, so a local
instance runs at most 4 leaf tasks per CPU at once). With an address, the scheduler or
cluster is checked for a TCP answer before anything is planned, so a wrong address
costs nothing. Workers must import goalflow (the
same version) and reach the Prefect API, the model endpoint and the broker.
"""

from __future__ import annotations

import asyncio
import functools
import math
import os
import secrets
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit
from uuid import uuid4

from prefect import get_run_logger
from prefect.futures import PrefectFuture
from prefect.task_runners import TaskRunner
from prefect.tasks import Task

from goalflow.core.task import TaskSpec
from goalflow.errors import ConfigError, RunnerUnreachableError
from goalflow.llm.broker import LedgerBroker, token_variable
from goalflow.llm.provider import GoalModels
from goalflow.orchestration.leaf import LeafContext, run_leaf_task
from goalflow.orchestration.task_cache import cached
from goalflow.settings import Settings, TaskRunnerKind

__all__ = ["RemoteLeaves", "check_address", "open_remote_leaves"]

_DEFAULT_PORTS = {"dask": 8786, "ray": 10001}
_CONNECT_SECONDS = 5.0
_MIN_RAY_CPUS = 0.25


class RemoteLeaves:
    """Submits leaf tasks to a started Dask or Ray task runner and awaits their outputs."""

    def __init__(
        self,
        kind: TaskRunnerKind,
        runner: TaskRunner[Any],
        broker: LedgerBroker,
        *,
        attempts: int,
        cache_expiry: float,
        fresh: bool = False,
        ray_cpus: float = 1.0,
    ) -> None:
        self.kind = kind
        self._runner = runner
        self._broker = broker
        self._attempts = attempts
        self._ray_cpus = ray_cpus
        self._cached_leaf = cached(run_leaf_task, cache_expiry, fresh=fresh)

    @property
    def workers(self) -> set[str]:
        """The worker processes (``host:pid``) that ran leaf tasks so far."""
        return set(self._broker.workers)

    async def run(
        self,
        spec: TaskSpec,
        inputs: dict[str, str],
        path: str,
        *,
        goal: str,
        cache_scope: str | None,
        artifact: bool,
    ) -> tuple[dict[str, str], bool]:
        """The task's outputs, and whether they are an earlier run's (cached)."""
        leaf = self._cached_leaf if cache_scope else run_leaf_task
        context = LeafContext(
            goal=goal, attempts=self._attempts, artifact=artifact, ticket=self._broker.ticket
        )
        parameters = {
            "task": spec,
            "inputs": inputs,
            "path": path,
            "cache_scope": cache_scope,
            "context": context,
        }
        future: PrefectFuture[dict[str, str]]
        if self.kind == "ray":
            from prefect_ray.context import remote_options

            with remote_options(num_cpus=self._ray_cpus):
                future = self._runner.submit(leaf, parameters)
        else:
            future = _submit_to_dask(self._runner, leaf, parameters)
        return await _outputs(future)


def _submit_to_dask(
    runner: TaskRunner[Any], leaf: Task[..., Any], parameters: dict[str, Any]
) -> PrefectFuture[dict[str, str]]:
    """``DaskTaskRunner.submit`` with a key of our own: given none, Dask tokenizes every
    argument (the serialised flow context with the whole plan) to make one, which took
    ~20 % of the flow process's CPU on a 120-task plan (py-spy)."""
    from prefect_dask.task_runners import PrefectDaskFuture

    client = runner.client  # type: ignore[attr-defined]
    wrapped = client.submit(
        leaf,
        key=f"leaf-task-{uuid4().hex}",
        pure=False,
        parameters=parameters,
        return_type="state",
    )
    return PrefectDaskFuture[dict[str, str]](
        wrapped_future=wrapped, task_run_id=wrapped.task_run_id
    )


async def _outputs(future: PrefectFuture[dict[str, str]]) -> tuple[dict[str, str], bool]:
    """The task's outputs, awaited without holding a thread while it runs, and whether
    they came from the task cache."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle() -> None:
        if not done.done():
            done.set_result(None)

    def finished(_: PrefectFuture[dict[str, str]]) -> None:
        loop.call_soon_threadsafe(settle)

    future.add_done_callback(finished)
    try:
        await done
    except asyncio.CancelledError:
        _cancel(future)
        raise
    outputs = await asyncio.to_thread(future.result)
    return outputs, future.state.name == "Cached"


def _cancel(future: PrefectFuture[Any]) -> None:
    """Best effort: a task that has not started never starts; a running one finds the
    broker refusing its next call."""
    wrapped: Any = getattr(future, "wrapped_future", None)
    try:
        if hasattr(wrapped, "cancel"):
            wrapped.cancel()  # a distributed.Future
        elif wrapped is not None:
            import ray

            ray.cancel(wrapped)
    except Exception:  # a cluster going away must not hide why the goal stopped
        pass


def check_address(kind: TaskRunnerKind, address: str, timeout: float = _CONNECT_SECONDS) -> None:
    """Raise :class:`RunnerUnreachableError` unless something answers at ``address``."""
    what = "Dask scheduler" if kind == "dask" else "Ray cluster"
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port or _DEFAULT_PORTS[kind]
    except ValueError as e:
        raise ConfigError(f"{address!r} is not a {what} address: {e}") from e
    if not host:
        raise ConfigError(
            f"{address!r} is not a {what} address: give host:port, e.g. "
            + ("tcp://10.0.0.5:8786" if kind == "dask" else "ray://10.0.0.5:10001")
        )
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise RunnerUnreachableError(
            f"cannot reach the {what} at {address} ({reason}); nothing was planned or "
            f"spent. Start it (`{'dask scheduler' if kind == 'dask' else 'ray start --head'}`"
            "), fix GOALFLOW_RUNNER_ADDRESS (or the runner_address parameter), or unset it "
            "to start a local cluster for the goal"
        ) from e


@functools.cache
def _ray_local_only() -> None:
    """Close the local Ray instances this process starts to everyone else: they listen
    on loopback only, and take only clients that hold a token made here.

    Ray binds its servers to all interfaces unless it believes it is not part of a
    cluster (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, which Ray reads when imported:
    set in the environment for what imports it later and for Ray's own processes, and
    on Ray's constants for a Ray imported already). The token (``RAY_AUTH_TOKEN``,
    inherited by Ray's processes) replaces the one Ray would otherwise save in
    ``~/.ray`` for any local program to read; Ray turns its token authentication on
    for a new local instance unless ``RAY_AUTH_MODE`` says otherwise (kept, as is a
    token the user set). One token per process: Ray's client keeps the first it reads.
    """
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_urlsafe(32))
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    if "ray" in sys.modules:
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False


def _task_runner(
    kind: TaskRunnerKind, settings: Settings, concurrency: int, broker: LedgerBroker
) -> TaskRunner[Any]:
    """The Dask or Ray runner. The local Dask cluster speaks TLS with a credential made
    for this goal, and the local Ray instance takes only clients with this process's
    own token and listens on loopback only (:func:`_ray_local_only`), so no other
    client on the machine can submit work to them (and reach the broker token their
    workers hold); Ray's workers get the broker token in their environment."""
    threads = math.ceil(concurrency / settings.runner_workers)
    try:
        if kind == "dask":
            from distributed.security import Security
            from prefect_dask.task_runners import DaskTaskRunner

            if settings.runner_address:
                return DaskTaskRunner(address=settings.runner_address)
            return DaskTaskRunner(
                cluster_kwargs={
                    "n_workers": settings.runner_workers,
                    "threads_per_worker": threads,
                    "processes": True,
                    "dashboard_address": None,
                    "security": Security.temporary(),  # type: ignore[no-untyped-call]
                }
            )
        if not settings.runner_address:
            _ray_local_only()  # before Ray is imported
        from prefect_ray.task_runners import RayTaskRunner

        init: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "runtime_env": {"env_vars": {token_variable(broker.key): broker.token}},
        }
        if settings.runner_address:
            ray_runner: TaskRunner[Any] = RayTaskRunner(
                address=settings.runner_address, init_kwargs=init
            )
        else:
            ray_runner = RayTaskRunner(init_kwargs={**init, "num_cpus": settings.runner_workers})
        return ray_runner
    except ImportError as e:
        raise ConfigError(
            f"the {kind} task runner needs prefect-{kind}: pip install 'goalflow[{kind}]'"
        ) from e


def _start(runner: TaskRunner[Any], kind: TaskRunnerKind, broker: LedgerBroker) -> None:
    runner.__enter__()
    if kind == "dask":
        from goalflow.orchestration.dask_plugin import BrokerToken

        client = runner.client  # type: ignore[attr-defined]  # connects, or starts the cluster
        client.register_plugin(BrokerToken(broker.key, broker.token), name=broker.key)


@asynccontextmanager
async def open_remote_leaves(
    settings: Settings, models: GoalModels, concurrency: int
) -> AsyncIterator[RemoteLeaves | None]:
    """The goal's Dask or Ray runner with its broker, or None for ``threads``."""
    kind: TaskRunnerKind = settings.task_runner
    if kind == "threads":
        yield None
        return
    if settings.runner_address and settings.runner_address != "auto":  # Ray's "this node"
        await asyncio.to_thread(check_address, kind, settings.runner_address)
    async with LedgerBroker(models, settings.broker_host) as broker:
        runner = _task_runner(kind, settings, concurrency, broker)
        try:
            await asyncio.to_thread(_start, runner, kind, broker)
        except Exception as e:
            await asyncio.to_thread(runner.__exit__, None, None, None)
            raise RunnerUnreachableError(
                f"the {kind} task runner could not start: {e}; nothing was planned or spent"
            ) from e
        # Ray runs one task per process: at most 4 per CPU of the local instance.
        ray_cpus = max(settings.runner_workers / concurrency, _MIN_RAY_CPUS)
        leaves = RemoteLeaves(
            kind,
            runner,
            broker,
            attempts=settings.task_attempts,
            cache_expiry=settings.task_cache_expiry,
            fresh=settings.fresh,
            ray_cpus=ray_cpus,
        )
        try:
            yield leaves
        finally:
            broker.stop()
            if leaves.workers:
                get_run_logger().info(
                    "leaf tasks ran on %d %s worker process(es): %s",
                    len(leaves.workers),
                    kind,
                    ", ".join(sorted(leaves.workers)),
                )
            await asyncio.to_thread(runner.__exit__, None, None, None)
