"""A local ``prefect server start`` on loopback that outlives one command.

Prefect's fallback when no ``PREFECT_API_URL`` is set is a temporary server inside the
process: it loses task runs when the process exits and its scheduler never runs. So the
CLI starts (or reuses) a real server instead, in its own session, and leaves it running
for the UI and the next command; ``goalflow server stop`` ends it. Its pid and log live
in ``$PREFECT_HOME/goalflow-server/``; its database is Prefect's usual one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from goalflow.errors import ConfigError

__all__ = ["LocalServer", "prefect_api", "spawn_server", "wait_until_healthy"]

_BOOT_SECONDS = 180.0  # a fresh SQLite database took 25-29 s here; slow CI machines more


@dataclass(frozen=True)
class LocalServer:
    """The local Prefect server on ``port``, started and stopped by goalflow."""

    port: int = 4200

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def state_dir(self) -> Path:
        from prefect.settings import PREFECT_HOME

        return Path(PREFECT_HOME.value()) / "goalflow-server"

    @property
    def log_file(self) -> Path:
        return self.state_dir / f"server-{self.port}.log"

    @property
    def _pid_file(self) -> Path:
        return self.state_dir / f"server-{self.port}.pid"

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.api_url}/health", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def pid(self) -> int | None:
        """The server's process id when goalflow started it and it still runs."""
        try:
            pid = int(self._pid_file.read_text())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def start(self) -> bool:
        """Start the server unless one answers already; True when this call started it."""
        if self.healthy():
            return False
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        # Its own session: it survives this command and is stopped by `server stop`.
        process = spawn_server(self.port, env, self.log_file, detach=True)
        self._pid_file.write_text(str(process.pid))
        try:
            wait_until_healthy(process, self.api_url, self.log_file)
        except ConfigError:
            self.stop()
            raise
        return True

    def stop(self) -> bool:
        """Stop the server goalflow started; False when there was none."""
        pid = self.pid()
        self._pid_file.unlink(missing_ok=True)
        if pid is None:
            return False
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except OSError:
                return True
            time.sleep(0.2)
        os.killpg(pid, signal.SIGKILL)
        return True


def spawn_server(
    port: int, env: dict[str, str], log_file: Path, *, detach: bool
) -> subprocess.Popen[bytes]:
    """``prefect server start`` on 127.0.0.1:``port``, its output appended to ``log_file``."""
    prefect = Path(sys.executable).with_name("prefect")
    command = [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    # The UI's pages call the API at PREFECT_UI_API_URL, which Prefect derives from its
    # port *setting*, not from --port: on any port but 4200 the UI would call 4200.
    ui_api = {"PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api"}
    with log_file.open("ab") as log:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=ui_api | env,
            start_new_session=detach,
        )


def wait_until_healthy(process: subprocess.Popen[bytes], api_url: str, log_file: Path) -> None:
    """Wait for the server ``process`` to answer on ``api_url``; ConfigError if it cannot."""
    deadline = time.monotonic() + _BOOT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ConfigError(
                f"the Prefect server exited with code {process.returncode} while starting: "
                f"see {log_file}; is its port taken? Choose another (GOALFLOW_SERVER_PORT), "
                "or set PREFECT_API_URL"
            )
        try:
            if httpx.get(f"{api_url}/health", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise ConfigError(
        f"the Prefect server did not answer within {_BOOT_SECONDS:.0f} s: see {log_file}"
    )


@contextmanager
def prefect_api(port: int) -> Iterator[str | None]:
    """Point Prefect at the configured API, or at the local server (started if needed).

    Yields the local server's URL when it was used, None when ``PREFECT_API_URL`` is set.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield None
        return
    server = LocalServer(port)
    server.start()
    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        yield server.api_url
