"""Code tasks on Prefect: which sandbox a goal uses, and each attempt as a task run.

At the start of a goal the sandbox is checked once (engine reachable, image present).
When it passes, plans may contain ``code`` tasks and each program the model writes runs
as a task run ``code attempt N: <title>`` (a task's executable acceptance check of its
outputs as ``acceptance check N: <title>``) with a Markdown artifact holding the program
and its stdout and stderr. When it does not, the reason and its fix are logged, the
planner is not offered ``code`` tasks, and a saved plan's code tasks fail saying so.
"""

from __future__ import annotations

from functools import partial

from prefect import get_run_logger, task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from goalflow.agent.coder import CodeAttempt, attempt_markdown, code_runner
from goalflow.agent.executor import CodeRunner
from goalflow.core.chat import ChatModel
from goalflow.core.program import SandboxResult
from goalflow.sandbox.config import SandboxConfig
from goalflow.sandbox.engine import Sandbox, check

__all__ = ["ready_sandbox", "run_code_attempt", "sandbox_code_runner"]


async def ready_sandbox(config: SandboxConfig | None) -> tuple[SandboxConfig | None, str]:
    """``config`` when code tasks can run with it, else None and the reason."""
    if config is None:
        return None, "GOALFLOW_SANDBOX is 'off'"
    status = await check(config)
    return (config if status.ready else None), status.message


async def sandbox_code_runner(
    config: SandboxConfig | None, llm: ChatModel, goal: str, *, attempts: int
) -> CodeRunner | None:
    """The runner for one goal's code tasks, or None when no sandbox can run them."""
    ready, reason = await ready_sandbox(config)
    if ready is None:
        get_run_logger().warning("code tasks are off: %s", reason)
        return None
    return code_runner(
        llm, goal, run=partial(run_code_attempt, Sandbox(ready)), attempts=attempts, limits=ready
    )


@task(name="code-attempt", task_run_name="{attempt.label}", cache_policy=NO_CACHE)
async def run_code_attempt(sandbox: Sandbox, attempt: CodeAttempt) -> SandboxResult:
    """Run one program (or acceptance check) in the sandbox; its code and output become
    an artifact."""
    labels = {"goalflow.task": attempt.task.id, "goalflow.flow-run": flow_run.get_id() or ""}
    result = await sandbox.run(
        attempt.code, attempt.files, attempt.outputs, variables=attempt.variables, labels=labels
    )
    await acreate_markdown_artifact(
        attempt_markdown(attempt, result), description=attempt.description
    )
    if result.failure:
        what = "acceptance check" if attempt.check else "program"
        get_run_logger().warning("%s failed: %s", what, result.failure)
    return result
