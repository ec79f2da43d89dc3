"""A throwaway ``prefect server start`` on a chosen database, for scale tests and benchmarks.

Unlike :class:`goalflow.local_server.LocalServer` (the user's long-lived server), this
one belongs to the test or benchmark that starts it: it keeps the process handle, uses
its own ``PREFECT_HOME``, reports its peak memory, and is stopped on exit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

from goalflow.errors import ConfigError

__all__ = ["PrefectServerProcess"]

_BOOT_SECONDS = 180.0


class PrefectServerProcess:
    """``prefect server start`` on 127.0.0.1:``port`` with ``database_url`` (None: SQLite
    in a fresh temporary home)."""

    def __init__(self, port: int, database_url: str | None = None) -> None:
        self.port = port
        self.database_url = database_url
        self._home = tempfile.TemporaryDirectory(prefix="goalflow-prefect-")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def log_file(self) -> Path:
        return Path(self._home.name) / "server.log"

    def peak_rss_mib(self) -> float | None:
        """The server process's peak resident memory so far (Linux), in MiB."""
        if self._process is None:
            return None
        try:
            status = Path(f"/proc/{self._process.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return None

    def __enter__(self) -> PrefectServerProcess:
        env = {
            **os.environ,
            "PREFECT_HOME": self._home.name,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        if self.database_url:
            env["PREFECT_API_DATABASE_CONNECTION_URL"] = self.database_url
        prefect = Path(sys.executable).with_name("prefect")
        with self.log_file.open("wb") as log:
            self._process = subprocess.Popen(
                [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + _BOOT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self.__exit__(None, None, None)
                raise ConfigError(f"prefect server exited while starting: see {self.log_file}")
            try:
                if httpx.get(f"{self.api_url}/health", timeout=2.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.__exit__(None, None, None)
        raise ConfigError(f"prefect server did not answer in {_BOOT_SECONDS:.0f} s")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._home.cleanup()
