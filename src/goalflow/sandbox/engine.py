"""Running one Python program in a throw-away, locked-down Docker container.

``Sandbox`` runs programs; ``check`` says whether they can run and ``clean`` removes what
killed runs left behind. Each run gets its own container: no network, a read-only root,
a non-root user with no capabilities and ``no-new-privileges``, memory (swap equal to
it, so none extra), CPU and pids limits, and a wall-clock timeout that kills. The
container is removed in every case (``finally`` with ``force``, also when the awaiting
task is cancelled), and is labelled ``goalflow.sandbox`` so that
``goalflow sandbox clean`` can find what a killed process left behind.

How files get in and out without a bind mount (measured on engine 20.10): Docker's
archive API refuses to write into a read-only root, and it does not reach a tmpfs
mounted with ``--tmpfs`` or ``type=tmpfs`` either (the files land in the rootfs, hidden
under the mount, and vanish). It does reach volumes, so the working directory is an
anonymous ``local`` volume backed by tmpfs: size-capped, in memory, created and removed
with the container. Such a volume holds data only while a container has it mounted, so
the container's main process is a keeper that sleeps until a deadline and the program
runs as an ``exec`` in the running container::

    create, start the keeper -> put_archive(inputs, program, launcher) -> exec python3
    -> stream stdout/stderr, capped -> exit code, OOM kills -> get_archive(each output)
    -> remove (force, with the volume)

What runs is a launcher (:func:`goalflow.core.protocol.launcher`) that gives the program
its input files as variables and then runs it as ``__main__``; what the program hands
back, as files or on stdout, is read by :func:`goalflow.core.protocol.hand_back`.

The keeper's deadline plus ``auto_remove`` make a container whose owner died remove
itself. Docker sets ``State.OOMKilled`` only when the main process dies, so an out-of-
memory kill of the program is read from the container's own cgroup counters. Every
docker call runs in a worker thread; the event loop never blocks on the engine. The
client comes from :mod:`goalflow.sandbox.client`; images are :mod:`goalflow.sandbox.image`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import tarfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from docker.errors import APIError, DockerException, NotFound
from docker.types import DriverConfig, Mount

from goalflow.core.program import OutputCapture, SandboxResult, describe_failure
from goalflow.core.protocol import hand_back, launcher
from goalflow.errors import ConfigError, SandboxError, SandboxUnavailableError
from goalflow.sandbox.client import Api, connect, explain
from goalflow.sandbox.config import (
    CleanReport,
    SandboxConfig,
    SandboxStatus,
    check_file_name,
    pack_files,
)

__all__ = ["LABEL", "WORKDIR", "Sandbox", "SandboxConfig", "check", "clean"]

LABEL = "goalflow.sandbox"
WORKDIR = "/work"
_DEADLINE_LABEL = "goalflow.sandbox.deadline"
# check_file_name refuses names starting with ".": neither is ever an input.
_PROGRAM = ".program.py"
_LAUNCHER = ".launch.py"
_GRACE_SECONDS = 60
_ENV = {"HOME": "/tmp", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
# Reads the container cgroup's count of out-of-memory kills (cgroup v2, then v1).
_OOM_PROBE = """import re
for path in ('/sys/fs/cgroup/memory.events', '/sys/fs/cgroup/memory/memory.oom_control'):
    try:
        print(re.search(r'^oom_kill (\\d+)', open(path).read(), re.M).group(1))
        break
    except (OSError, AttributeError):
        pass
"""
T = TypeVar("T")
logger = logging.getLogger("goalflow.sandbox")


class Sandbox:
    """Runs programs under one ``SandboxConfig``; each run gets a fresh container."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()

    async def run(
        self,
        program: str,
        files: Mapping[str, bytes],
        outputs: Sequence[str],
        *,
        variables: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> SandboxResult:
        """Run ``program`` with ``files`` in its working directory; bring back ``outputs``.

        ``variables`` (file name -> variable name) are files of ``files`` the program
        also gets as ``str`` variables. Each output comes back from the file of its name,
        or from what the program printed (:func:`goalflow.core.protocol.hand_back`).
        Raises ``SandboxUnavailableError`` when the engine or image is missing and
        ``SandboxError`` when the engine fails around the program; the program's own
        failures are in the result.
        """
        for file_name in [*files, *outputs]:
            check_file_name(file_name)
        unknown = [name for name in variables or {} if name not in files]
        if unknown:
            raise ConfigError(f"variables are asked of files that are not given: {unknown}")
        start = launcher(f"{WORKDIR}/{_PROGRAM}", variables or {}, outputs)
        staged = {**files, _PROGRAM: program.encode(), _LAUNCHER: start.encode()}
        config = self.config
        name = f"goalflow-sandbox-{uuid.uuid4().hex[:12]}"
        api = await _finish(connect, config, config.timeout + _GRACE_SECONDS)
        try:
            return await self._run(api, name, staged, outputs, dict(labels or {}))
        except (DockerException, OSError) as e:  # requests' errors are OSErrors
            raise SandboxError(
                f"the Docker engine at {config.where} failed while running a program: {explain(e)}"
            ) from e
        finally:
            await _finish(_dispose, api, name)
            await _finish(api.close)

    async def _run(
        self,
        api: Api,
        name: str,
        files: Mapping[str, bytes],
        outputs: Sequence[str],
        labels: dict[str, str],
    ) -> SandboxResult:
        config = self.config
        await _finish(_create, api, name, config, labels)
        await _finish(_start, api, name)
        await _finish(_put, api, name, pack_files(files), config)
        command = ["python3", f"{WORKDIR}/{_LAUNCHER}"]
        exec_id = (
            await _finish(
                api.exec_create, name, command, user=config.user, workdir=WORKDIR, environment=_ENV
            )
        )["Id"]
        started = time.monotonic()
        # Shielded: at the timeout the stream is ended by removing the container, and
        # the thread reading it returns what it read.
        reader = asyncio.ensure_future(
            asyncio.to_thread(_read_streams, api, exec_id, config.output_cap)
        )
        timed_out, exit_code, oom, collected = False, None, False, {}
        try:
            out, err = await asyncio.wait_for(asyncio.shield(reader), config.timeout)
        except TimeoutError:
            timed_out = True
            await _finish(_dispose, api, name)
            out, err = await reader
        seconds = time.monotonic() - started
        if not timed_out:
            exit_code = (await _finish(api.exec_inspect, exec_id)).get("ExitCode")
            if exit_code is None:
                raise SandboxError("the program's output stream broke off before it ended")
            oom = exit_code != 0 and await _finish(_oom_killed, api, name, config.user)
            for output in outputs:
                data = await _finish(_get_file, api, name, output)
                if data is not None:
                    collected[output] = data
        failure = describe_failure(
            timeout=config.timeout if timed_out else None,
            oom_memory=config.memory if oom else None,
            exit_code=exit_code,
            error=err.last_line(),
        )
        if failure is None:
            collected, failure = hand_back(outputs, collected, out)
        missing = [] if timed_out else [o for o in outputs if o not in collected]
        return SandboxResult(
            exit_code=exit_code,
            timed_out=timed_out,
            oom_killed=oom,
            stdout=out.text(),
            stderr=err.text(),
            truncated=out.truncated or err.truncated,
            outputs=collected,
            missing=missing,
            seconds=round(seconds, 3),
            failure=failure,
        )


async def check(config: SandboxConfig) -> SandboxStatus:
    """Can programs run: is the engine reachable and the image there? With the fix if not."""
    return await asyncio.to_thread(_check, config)


async def clean(config: SandboxConfig, *, everything: bool = False) -> CleanReport:
    """Remove sandbox containers past their deadline (all of them with ``everything``),
    and the sandbox volumes no container uses.

    A live run's container is always within its deadline, so the default is safe while
    goals run; ``everything`` also stops the programs of goals still running.
    """
    return await asyncio.to_thread(_clean, config, everything)


async def _finish(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``call`` in a worker thread; when cancelled, wait for it before re-raising.

    A cancelled ``to_thread`` leaves its thread running: a container still being created
    would appear after the cleanup had looked for it, and never be removed.
    """
    future = asyncio.ensure_future(asyncio.to_thread(call, *args, **kwargs))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait([future])
        if not future.cancelled():
            future.exception()  # retrieved: the cancellation is what propagates
        raise


def _image_missing(config: SandboxConfig) -> str:
    return (
        f"the sandbox image {config.image!r} is not on the Docker engine at {config.where}: "
        "build it with `goalflow sandbox build`, pull it, or name an image the engine has "
        "(any with python3, e.g. python:3.12-slim) in the DockerSandbox block's image field"
    )


def _create(api: Api, name: str, config: SandboxConfig, labels: dict[str, str]) -> None:
    work = Mount(
        WORKDIR,
        None,
        type="volume",
        labels={LABEL: "1"},
        driver_config=DriverConfig(
            "local",
            {
                "type": "tmpfs",
                "device": "tmpfs",
                "o": f"size={config.work_size},mode=1777,nosuid,nodev,noexec",
            },
        ),
    )
    host_config = api.create_host_config(
        auto_remove=True,
        read_only=True,
        mounts=[work],
        tmpfs={"/tmp": f"rw,nosuid,nodev,noexec,size={config.work_size}"},
        network_mode=None if config.network else "none",
        mem_limit=config.memory,
        memswap_limit=config.memory,
        nano_cpus=int(config.cpus * 1e9),
        pids_limit=config.pids_limit,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
    )
    keep = int(config.timeout) + _GRACE_SECONDS
    deadline = int(time.time()) + keep + _GRACE_SECONDS
    try:
        api.create_container(
            config.image,
            ["python3", "-S", "-c", f"import time; time.sleep({keep})"],
            name=name,
            hostname="sandbox",
            user=config.user,
            working_dir=WORKDIR,
            environment=_ENV,
            labels={LABEL: "1", _DEADLINE_LABEL: str(deadline), **labels},
            host_config=host_config,
        )
    except NotFound as e:
        raise SandboxUnavailableError(_image_missing(config)) from e


def _start(api: Api, name: str) -> None:
    try:
        api.start(name)
    except APIError as e:
        raise SandboxError(
            f"the sandbox container did not start: {explain(e)} (the image must have "
            "python3 on its PATH)"
        ) from e


def _put(api: Api, name: str, archive: bytes, config: SandboxConfig) -> None:
    try:
        api.put_archive(name, WORKDIR, archive)
    except APIError as e:
        raise SandboxError(
            f"could not copy the program and its inputs ({len(archive)} bytes) into the "
            f"sandbox: {explain(e)}; the working directory holds {config.work_size} "
            "(the DockerSandbox block's work_size)"
        ) from e


def _read_streams(api: Api, exec_id: str, cap: int) -> tuple[OutputCapture, OutputCapture]:
    out, err = OutputCapture(cap), OutputCapture(cap)
    try:
        for stdout, stderr in api.exec_start(exec_id, stream=True, demux=True):
            if stdout:
                out.add(stdout)
            if stderr:
                err.add(stderr)
    except (DockerException, OSError):
        pass  # the container was removed under the stream: what was read stands
    return out, err


def _oom_killed(api: Api, name: str, user: str) -> bool:
    try:
        probe = api.exec_create(name, ["python3", "-S", "-c", _OOM_PROBE], user=user)
        kills = api.exec_start(probe["Id"]).strip()
        state = api.inspect_container(name)["State"]
    except (DockerException, OSError):
        return False
    return bool(state.get("OOMKilled")) or int(kills or 0) > 0


def _get_file(api: Api, name: str, filename: str) -> bytes | None:
    try:
        stream, _ = api.get_archive(name, f"{WORKDIR}/{filename}")
    except NotFound:
        return None
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
        member = archive.next()
        content = archive.extractfile(member) if member and member.isfile() else None
        return content.read() if content else None


def _dispose(api: Api, name: str) -> None:
    """Remove the container and its volume; a container already going is waited for."""
    try:
        api.remove_container(name, force=True, v=True)
    except NotFound:
        return
    except APIError as e:
        if e.status_code != 409:  # 409: auto_remove is already removing it
            logger.warning("could not remove %s: %s (`goalflow sandbox clean` will)", name, e)
            return
        with contextlib.suppress(DockerException, OSError):
            api.wait(name, timeout=30, condition="removed")
    except (DockerException, OSError) as e:
        logger.warning("could not remove %s: %s (`goalflow sandbox clean` will)", name, e)


def _check(config: SandboxConfig) -> SandboxStatus:
    try:
        api = connect(config, timeout=10)
    except SandboxUnavailableError as e:
        return SandboxStatus(ready=False, message=str(e), engine=None)
    engine = None
    try:
        engine = f"Docker {api.version().get('Version', '?')} at {config.where}"
        api.inspect_image(config.image)
    except NotFound:
        return SandboxStatus(ready=False, message=_image_missing(config), engine=engine)
    except (DockerException, OSError) as e:
        message = f"the Docker engine at {config.where} failed: {explain(e)}"
        return SandboxStatus(ready=False, message=message, engine=engine)
    finally:
        api.close()
    return SandboxStatus(
        ready=True, message=f"ready: {engine}, image {config.image}", engine=engine
    )


def _clean(config: SandboxConfig, everything: bool) -> CleanReport:
    api = connect(config, timeout=30)
    try:
        now, containers = time.time(), 0
        for found in api.containers(all=True, filters={"label": LABEL}):
            deadline = found.get("Labels", {}).get(_DEADLINE_LABEL, "")
            if everything or not deadline.isdigit() or int(deadline) < now:
                _dispose(api, found["Id"])
                containers += 1
        volumes = 0
        listed = api.volumes(filters={"label": LABEL, "dangling": True}).get("Volumes") or []
        for volume in listed:
            try:
                api.remove_volume(volume["Name"], force=True)
                volumes += 1
            except APIError as e:
                logger.info("kept volume %s: %s", volume["Name"], explain(e))
        return CleanReport(containers=containers, volumes=volumes)
    finally:
        api.close()
