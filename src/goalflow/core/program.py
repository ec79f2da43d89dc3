"""What one run of a model-written program reports, and the limits it ran under.

Shared by the coder (:mod:`goalflow.agent.coder`), which shows failures to the model,
and the sandbox (:mod:`goalflow.sandbox`), which produces them. No Docker here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["OutputCapture", "ProgramLimits", "SandboxResult", "describe_failure"]

_SIZE = r"^[1-9][0-9]*[bkmg]?$"


class ProgramLimits(BaseModel):
    """What a program may use; the model is told these before it writes one."""

    model_config = ConfigDict(frozen=True)

    memory: str = Field(
        default="256m",
        pattern=_SIZE,
        description="Memory limit, e.g. 256m; swap is limited to the same, so none extra.",
    )
    timeout: float = Field(
        default=60.0, gt=0, description="Seconds a program may run before it is killed."
    )
    network: bool = Field(
        default=False, description="Give programs a network; off, they have none at all."
    )


@dataclass(frozen=True)
class SandboxResult:
    """What one run did. ``failure`` says why it did not succeed (None: it did).

    Each outcome is reported on its own: a run stopped at the timeout has no exit code,
    an out-of-memory kill is named as such rather than as exit code 137, and every
    requested output the program did not hand back (as a file or on stdout, see
    :mod:`goalflow.core.protocol`) is listed in ``missing``; ``outputs`` holds those it
    did hand back.
    """

    exit_code: int | None
    timed_out: bool
    oom_killed: bool
    stdout: str
    stderr: str
    truncated: bool
    outputs: dict[str, bytes]
    missing: list[str]
    seconds: float
    failure: str | None


@dataclass
class OutputCapture:
    """The first ``cap`` bytes of a stream, and how many there were in all.

    A program that floods its output is read to the end (or to the timeout), so that it
    never blocks on a full pipe, but only ``cap`` bytes are kept.
    """

    cap: int
    kept: bytearray = field(default_factory=bytearray)
    total: int = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.cap - len(self.kept)
        if room > 0:
            self.kept += chunk[:room]

    @property
    def truncated(self) -> bool:
        return self.total > len(self.kept)

    def last_line(self, width: int = 200) -> str:
        """The last non-blank line kept (a traceback's: the error), cut to ``width``."""
        lines = [line.strip() for line in self.kept.decode("utf-8", "replace").splitlines()]
        last = next((line for line in reversed(lines) if line), "")
        return last if len(last) <= width else last[: width - 1] + "…"

    def text(self) -> str:
        text = self.kept.decode("utf-8", errors="replace")
        if self.truncated:
            text += f"\n[output truncated: {self.total} bytes in all, the first {self.cap} kept]"
        return text


def describe_failure(
    *, timeout: float | None, oom_memory: str | None, exit_code: int | None, error: str = ""
) -> str | None:
    """Why a run did not end well, worded for the model that wrote the program; None if
    it exited with code 0. What it handed back is judged apart
    (:func:`goalflow.core.protocol.hand_back`).

    ``timeout`` is set when the run was stopped at it, ``oom_memory`` (the limit) when
    it was killed for memory; ``error`` is the last line of what it wrote on stderr
    (a traceback's exception), said with a non-zero exit code.
    """
    if timeout is not None:
        return f"it was stopped at the time limit of {timeout:g} s"
    if oom_memory is not None:
        return f"it was killed for using more than its memory limit of {oom_memory}"
    if exit_code != 0:
        return f"it exited with code {exit_code}" + (f" ({error})" if error else "")
    return None
