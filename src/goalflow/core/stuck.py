"""Stuck detection: cheap, deterministic signs that a goal run is looping or stalled.

No Prefect and no model here. The goal run tells a :class:`StuckDetector` about every
failed attempt, model call, finished task and refined plan; each sign found comes back
once as a :class:`StuckSignal` (a name and the evidence), which makes the run reflect
at once (:mod:`goalflow.orchestration.reflector`):

- ``repeated_failure``: the same task, with the same inputs, failed the same way N times;
- ``repeated_call``: the same model call (same prompt, hashed) was made N times;
- ``duplicate_output``: a task produced a value identical to another task's output;
- ``self_decomposition``: a composite task's breakdown holds the same step again;
- ``no_progress``: no new output for a while (seconds or model calls) while calls are
  still being paid for.

Executors report failed attempts through :func:`report_failed_attempt`, inside the
:func:`reporting_attempts` block the goal run opens around each task.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Literal

from pydantic import BaseModel, Field

from goalflow.core.task import Task, TaskSpec
from goalflow.errors import ConfigError

__all__ = [
    "SignalName",
    "StuckDetector",
    "StuckSignal",
    "fingerprint",
    "report_failed_attempt",
    "reporting_attempts",
]

SignalName = Literal[
    "repeated_failure", "repeated_call", "duplicate_output", "self_decomposition", "no_progress"
]
# Shorter values ("yes", "42") are legitimately produced by several tasks.
_MIN_DUPLICATE_CHARS = 40


class StuckSignal(BaseModel):
    """One sign that the run is stuck: what was seen, and the evidence."""

    name: SignalName = Field(description="Which pattern was seen.")
    evidence: str = Field(description="What exactly repeated or stalled, for people and the model.")
    tasks: list[str] = Field(default_factory=list, description="Paths of the tasks involved.")


def _digest(*parts: object) -> str:
    text = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fingerprint(task: TaskSpec) -> str:
    """What a task does (kind, instructions, inputs, outputs), whatever its id and title."""
    return _digest(task.kind, task.instructions.strip().lower(), task.inputs, task.outputs)


class StuckDetector:
    """Watches one goal run; each method returns the signals that its news completes.

    ``repeats`` is N for repeated failures and calls. ``stall_seconds`` and
    ``stall_calls`` bound how long the run may go without a new output while spending
    (None: that check is off). A signal is reported once; ``no_progress`` again only
    after new progress.
    """

    def __init__(
        self,
        *,
        repeats: int = 3,
        stall_seconds: float | None = None,
        stall_calls: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if repeats < 2:
            raise ConfigError(f"repeats must be at least 2, got {repeats}")
        self.repeats = repeats
        self.stall_seconds = stall_seconds
        self.stall_calls = stall_calls
        self.signals: list[StuckSignal] = []
        self._clock = clock
        self._failures: Counter[str] = Counter()
        self._calls: Counter[str] = Counter()
        self._outputs: dict[str, tuple[str, str]] = {}  # value digest -> (task path, name)
        self._reported: set[str] = set()
        self._progress_at = clock()
        self._calls_since_progress = 0
        self._spent_at_progress = 0.0
        self._spent = 0.0

    def failed_attempt(
        self, path: str, task: TaskSpec, inputs: Mapping[str, str], failure: str
    ) -> list[StuckSignal]:
        """One attempt at ``task`` failed with ``failure`` (a review, an error)."""
        key = _digest(fingerprint(task), sorted(inputs.items()), failure.strip())
        self._failures[key] += 1
        if self._failures[key] < self.repeats:
            return []
        return self._signal(
            "failure:" + key,
            "repeated_failure",
            f"task '{path}' failed {self._failures[key]} times with the same inputs and the "
            f"same failure: {_short(failure)}",
            [path],
        )

    def model_call(self, purpose: str, prompt_hash: str, spent_usd: float) -> list[StuckSignal]:
        """A model call was answered; ``spent_usd`` is the goal's spend after it."""
        self._spent = spent_usd
        self._calls_since_progress += 1
        signals: list[StuckSignal] = []
        if prompt_hash:
            self._calls[prompt_hash] += 1
            if self._calls[prompt_hash] >= self.repeats:
                signals += self._signal(
                    "call:" + prompt_hash,
                    "repeated_call",
                    f"the same model call ({purpose}) was made {self._calls[prompt_hash]} "
                    "times with an identical prompt",
                    [],
                )
        if self.stall_calls is not None and self._calls_since_progress >= self.stall_calls:
            signals += self._stalled(f"{self._calls_since_progress} model calls")
        return signals

    def task_finished(self, path: str, outputs: Mapping[str, str]) -> list[StuckSignal]:
        """A task completed with ``outputs``; a value never seen before is progress."""
        signals: list[StuckSignal] = []
        new = False
        for name, value in outputs.items():
            digest = _digest(value.strip())
            earlier = self._outputs.get(digest)
            if earlier is None:
                self._outputs[digest] = (path, name)
                new = True
            elif earlier[0] != path and len(value.strip()) >= _MIN_DUPLICATE_CHARS:
                signals += self._signal(
                    f"duplicate:{digest}:{path}",
                    "duplicate_output",
                    f"'{name}' of task '{path}' is identical to '{earlier[1]}' of task "
                    f"'{earlier[0]}': {_short(value)}",
                    [earlier[0], path],
                )
        if new:
            self._progress_at = self._clock()
            self._calls_since_progress = 0
            self._spent_at_progress = self._spent
            self._reported.discard("stall")
        return signals

    def plan_ready(self, tasks: Iterable[Task], prefix: str = "") -> list[StuckSignal]:
        """The refined plan: a composite whose breakdown repeats the composite itself."""
        signals: list[StuckSignal] = []
        for task in tasks:
            path = prefix + task.id
            same = [
                sub
                for sub in task.subtasks
                if set(sub.inputs) == set(task.inputs) and set(sub.outputs) == set(task.outputs)
            ]
            if same:
                signals += self._signal(
                    "decompose:" + path,
                    "self_decomposition",
                    f"composite task '{path}' was broken down into '{same[0].id}', which "
                    "takes the same inputs and makes the same outputs: the breakdown is the "
                    "task itself again",
                    [path, f"{path}/{same[0].id}"],
                )
            signals += self.plan_ready(task.subtasks, prefix=path + "/")
        return signals

    def check_progress(self) -> list[StuckSignal]:
        """The time check of ``no_progress``; call it now and then."""
        idle = self._clock() - self._progress_at
        if self.stall_seconds is None or idle < self.stall_seconds:
            return []
        return self._stalled(f"{idle:.0f} s")

    def _stalled(self, how_long: str) -> list[StuckSignal]:
        # Spend grows by calls; an unpriced model's calls cost $0 but are spend all the same.
        if self._calls_since_progress == 0:
            return []
        grown = self._spent - self._spent_at_progress
        return self._signal(
            "stall",
            "no_progress",
            f"no new output for {how_long} while {self._calls_since_progress} model calls "
            f"spent ${grown:.4f}",
            [],
        )

    def _signal(
        self, key: str, name: SignalName, evidence: str, tasks: list[str]
    ) -> list[StuckSignal]:
        if key in self._reported:
            return []
        self._reported.add(key)
        signal = StuckSignal(name=name, evidence=evidence, tasks=tasks)
        self.signals.append(signal)
        return [signal]


def _short(text: str, width: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


_ATTEMPTS: ContextVar[Callable[[str], None] | None] = ContextVar("goalflow_attempts", default=None)


@contextmanager
def reporting_attempts(report: Callable[[str], None]) -> Iterator[None]:
    """Send the failed attempts reported inside this block to ``report``."""
    token = _ATTEMPTS.set(report)
    try:
        yield
    finally:
        _ATTEMPTS.reset(token)


def report_failed_attempt(failure: str) -> None:
    """An attempt at the current task failed with ``failure``; nobody listening is fine."""
    report = _ATTEMPTS.get()
    if report is not None:
        report(failure)
