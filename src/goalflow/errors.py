"""The goalflow exception tree.

Every error goalflow raises on purpose is a ``GoalflowError``; its message says what
failed, why, and what to change. No message ever contains an API key.

    GoalflowError
    ├── ConfigError                  settings, blocks, files or arguments that cannot work
    │   ├── PlanFileError            a saved plan file that cannot be read or is invalid
    │   └── RunnerUnreachableError   the Dask scheduler or Ray cluster named cannot be reached
    ├── LLMError                     talking to the model failed
    │   ├── LLMUnreachableError      no answer from the endpoint (connection, timeouts)
    │   ├── LLMAuthError             the endpoint refused the API key (401/403)
    │   ├── LLMModelNotFoundError    the endpoint does not serve the model (404)
    │   ├── LLMRateLimitError        429s went on past the patience for one call
    │   ├── LLMRequestError          any other refusal (4xx/5xx after retries)
    │   └── StructuredOutputError    answers never matched the schema, after re-asking
    ├── PlanningError                a plan stayed invalid after re-asks (the step then runs whole)
    ├── PlanPatchError               a revision of a running plan breaks the plan rules
    ├── PlanRejectedError            a person rejected the plan, or nobody approved it in time
    ├── BudgetExceededError          a model call would not fit what is left of the money budget
    ├── LocalModelError              the offline model cannot be prepared or started
    ├── GoalFailedError              a goal ran but did not produce every deliverable
    │   └── GoalStoppedError         stopped early: a budget, a cancel, a rejected plan, reflection
    └── TaskError                    one task of a goal could not produce its outputs
        ├── SandboxUnavailableError  no Docker engine or image to run programs, and the fix
        └── SandboxError             the engine failed around a program (not the program)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from goalflow.core.report import GoalResult

__all__ = [
    "BudgetExceededError",
    "ConfigError",
    "GoalFailedError",
    "GoalStoppedError",
    "GoalflowError",
    "LLMAuthError",
    "LLMError",
    "LLMModelNotFoundError",
    "LLMRateLimitError",
    "LLMRequestError",
    "LLMUnreachableError",
    "LocalModelError",
    "PlanFileError",
    "PlanPatchError",
    "PlanRejectedError",
    "PlanningError",
    "RunnerUnreachableError",
    "SandboxError",
    "SandboxUnavailableError",
    "StructuredOutputError",
    "TaskError",
]


class GoalflowError(Exception):
    """Root of every error goalflow raises on purpose."""


class ConfigError(GoalflowError):
    """Settings, blocks, files or arguments that cannot work as given."""


class PlanFileError(ConfigError):
    """A saved plan file that cannot be read or does not hold a valid plan."""


class RunnerUnreachableError(ConfigError):
    """The Dask scheduler or Ray cluster a goal should run its tasks on cannot be reached."""


class LLMError(GoalflowError):
    """Talking to the model failed."""


class LLMUnreachableError(LLMError):
    """The endpoint did not answer (refused connection, DNS, timeouts)."""


class LLMAuthError(LLMError):
    """The endpoint refused the API key."""


class LLMModelNotFoundError(LLMError):
    """The endpoint does not serve the requested model."""


class LLMRateLimitError(LLMError):
    """The endpoint kept answering 429 for longer than the patience for one call;
    ``waited`` is how long, in seconds."""

    def __init__(self, message: str, *, waited: float) -> None:
        super().__init__(message)
        self.waited = waited


class LLMRequestError(LLMError):
    """The endpoint refused the request for another reason, after retries."""


class StructuredOutputError(LLMError):
    """The model's answers never matched the requested schema.

    Carries what was asked and what came back, for the user and for debugging.
    """

    def __init__(
        self, message: str, *, schema_name: str, n_attempts: int, last_completion: str
    ) -> None:
        super().__init__(message)
        self.schema_name = schema_name
        self.n_attempts = n_attempts
        self.last_completion = last_completion


class PlanningError(GoalflowError):
    """The model kept answering with plans that break the plan rules."""

    def __init__(self, message: str, *, n_attempts: int, last_errors: list[str]) -> None:
        super().__init__(message)
        self.n_attempts = n_attempts
        self.last_errors = last_errors


class PlanPatchError(GoalflowError):
    """A revision of a running plan breaks the plan rules; ``errors`` lists each."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("the revised plan breaks the plan rules:\n- " + "\n- ".join(errors))
        self.errors = errors


class PlanRejectedError(GoalflowError):
    """A plan waiting for approval was rejected, or no decision came before the timeout.

    ``note`` is what the person wrote (empty when none); ``timed_out`` tells the two apart.
    """

    def __init__(self, message: str, *, note: str = "", timed_out: bool = False) -> None:
        super().__init__(message)
        self.note = note
        self.timed_out = timed_out


class BudgetExceededError(GoalflowError):
    """A model call was not made: its worst-case cost does not fit the money left."""

    def __init__(self, message: str, *, spent_usd: float, limit_usd: float) -> None:
        super().__init__(message)
        self.spent_usd = spent_usd
        self.limit_usd = limit_usd


class LocalModelError(GoalflowError):
    """The offline model cannot be prepared or started."""


class TaskError(GoalflowError):
    """One task could not produce its outputs."""


class SandboxUnavailableError(TaskError):
    """A code task was asked to run, but no sandbox can run its program.

    Also raised when the sandbox image cannot be built. The message says how to fix it:
    start the engine, build the image, or name another engine or image.
    """


class SandboxError(TaskError):
    """The Docker engine failed around a program: copying files in, starting, streaming.

    A program's own failures (exit code, timeout, out of memory, missing outputs) are not
    errors of the sandbox: they are reported in its result and shown to the model.
    """


class GoalFailedError(GoalflowError):
    """The goal ran but did not produce every deliverable; ``result`` says what did."""

    def __init__(self, message: str, result: GoalResult) -> None:
        super().__init__(message)
        self.result = result


class GoalStoppedError(GoalFailedError):
    """The goal was stopped before it finished (a budget, a cancellation, a rejected
    plan, reflection); the message names the reason and ``result`` holds what finished."""
