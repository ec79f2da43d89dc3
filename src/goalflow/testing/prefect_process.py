"""A throwaway ``prefect server start`` on a chosen database, for scale tests and benchmarks.

Unlike :class:`goalflow.deploy.local_server.LocalServer` (the user's long-lived server), this
one belongs to the test or benchmark that starts it: it keeps the process handle, uses
its own ``PREFECT_HOME``, reports its peak memory, and is stopped on exit.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from goalflow.deploy.local_server import spawn_server, wait_until_healthy
from goalflow.errors import ConfigError
from goalflow.testing.deployment_stack import free_port

__all__ = ["PrefectServerProcess", "process_tree_cpu_seconds"]


class PrefectServerProcess:
    """``prefect server start`` on 127.0.0.1:``port`` (None: a free one) with
    ``database_url`` (None: SQLite in a fresh temporary home)."""

    def __init__(self, port: int | None = None, database_url: str | None = None) -> None:
        self.port = port or free_port()
        self.database_url = database_url
        self._home = tempfile.TemporaryDirectory(prefix="goalflow-prefect-")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

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

    def cpu_seconds(self) -> float | None:
        """CPU seconds the server has used so far, its child processes included (Linux)."""
        if self._process is None:
            return None
        return process_tree_cpu_seconds(self._process.pid)

    def __enter__(self) -> PrefectServerProcess:
        env = {
            **os.environ,
            "PREFECT_HOME": self._home.name,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        if self.database_url:
            env["PREFECT_API_DATABASE_CONNECTION_URL"] = self.database_url
        self._process = spawn_server(self.port, env, self.log_file, detach=False)
        try:
            wait_until_healthy(self._process, self.api_url, self.log_file)
        except ConfigError:
            self.__exit__(None, None, None)
            raise
        return self

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


def process_tree_cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of process ``pid`` and its live descendants, with what
    its finished children used (Linux ``/proc``; 0 for a process that is gone)."""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                text = (entry / "stat").read_text()
            except OSError:
                continue
            stats[int(entry.name)] = text.rsplit(")", 1)[1].split()
    children: dict[int, list[int]] = {}
    for process, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(process)  # field 4: ppid
    ticks, pending = 0, [pid]
    while pending:
        process = pending.pop()
        if process in stats:  # utime, stime, cutime, cstime
            ticks += sum(int(f) for f in stats[process][11:15])
        pending += children.get(process, [])
    return ticks / os.sysconf("SC_CLK_TCK")
