"""Where a benchmark's processes spend their CPU: py-spy samples, summarised.

``profiled(folder, name, server_pid)`` samples the Prefect server (attached by pid, with
its subprocesses) for as long as the block runs, and hands back a wrapper that runs a
command under ``py-spy record``. Both write collapsed stacks (``<name>-runner.txt``,
``<name>-server.txt``); :func:`summary` turns one into the functions holding the most
samples (inclusive, each counted once per stack). py-spy is not a dependency of
goalflow: ``pip install py-spy``.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from goalflow.errors import ConfigError

__all__ = ["profiled", "summary"]

RATE = 50  # samples per second: enough for a 10-60 s run, light on 2 cores
Wrap = Callable[[list[str]], list[str]]


def _py_spy() -> str:
    found = shutil.which("py-spy")
    if found is None:
        raise ConfigError("profiling needs py-spy on PATH: pip install py-spy")
    return found


@contextmanager
def profiled(folder: Path | None, name: str, server_pid: int | None) -> Iterator[Wrap]:
    """Sample the server while the block runs; the yielded wrapper samples a command."""
    if folder is None:
        yield lambda command: command
        return
    folder.mkdir(parents=True, exist_ok=True)
    spy = _py_spy()
    record = [spy, "record", "--rate", str(RATE), "--format", "raw", "--nonblocking"]
    runner_out, server_out = folder / f"{name}-runner.txt", folder / f"{name}-server.txt"
    server = None
    if server_pid is not None:
        server = subprocess.Popen(
            [*record, "--subprocesses", "--pid", str(server_pid), "-o", str(server_out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    try:
        yield lambda command: [*record, "-o", str(runner_out), "--", *command]
    finally:
        if server is not None:
            server.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            server.wait(timeout=60)
    for out in (runner_out, server_out):
        if out.exists():
            print(f"--- {out}\n{summary(out)}")


def summary(collapsed: Path, top: int = 12) -> str:
    """Where the samples in a collapsed-stack file went: the packages and functions the
    CPU was in (self time), and the functions most often on the stack (inclusive)."""
    by_package: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples, frames = int(count), stack.split(";")[1:]  # [0]: the process/thread
        if not frames:
            continue
        total += samples
        by_package[_package(frames[-1])] += samples
        by_function[_short(frames[-1])] += samples
        for frame in {_short(f) for f in frames}:
            inclusive[frame] += samples
    if not total:
        return "(no samples)"
    lines = [f"{total} samples = {total / RATE:.1f} CPU-s at {RATE}/s"]
    for title, counter in (
        ("self, by package", by_package),
        ("self, by function", by_function),
        ("on the stack (inclusive)", inclusive),
    ):
        lines.append(f"  {title}:")
        lines += [f"  {n / total:6.1%}  {name}" for name, n in counter.most_common(top)]
    return "\n".join(lines)


def _short(frame: str) -> str:
    """``func (path/to/module.py:123)`` -> ``func (module.py)``: lines merge per function."""
    function, _, where = frame.partition(" (")
    module = where.rsplit("/", 1)[-1].split(":", 1)[0]
    return f"{function} ({module})" if module else function


def _package(frame: str) -> str:
    """The top-level package (or stdlib module) a frame's code belongs to."""
    where = frame.partition(" (")[2].split(":", 1)[0]
    if "site-packages/" in where:
        return where.split("site-packages/", 1)[1].split("/", 1)[0]
    if "/src/goalflow/" in where:
        return "goalflow"
    if "/lib/python3" in where:
        return "stdlib " + where.rsplit("/lib/python3", 1)[1].split("/", 2)[1].split(".py")[0]
    return where or "(native)"
