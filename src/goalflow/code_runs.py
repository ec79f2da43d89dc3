"""Code tasks on Prefect: which sandbox a goal uses, and each attempt as a task run.

At the start of a goal the sandbox is checked once (engine reachable, image present).
When it passes, plans may contain ``code`` tasks and each program the model writes runs
as a task run ``code attempt N: <title>`` with a Markdown artifact holding the program
and its stdout and stderr. When it does not, the reason and its fix are logged, the
planner is not offered ``code`` tasks, and a saved plan's code tasks fail saying so.
"""

from __future__ import annotations

from functools import partial

from prefect import get_run_logger, task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from goalflow.coder import CodeAttempt, attempt_markdown, code_runner
from goalflow.executor import CodeRunner
from goalflow.llm import LLM
from goalflow.sandbox import Sandbox, check
from goalflow.sandbox_run import SandboxConfig, SandboxResult
from goalflow.settings import Settings

__all__ = ["load_sandbox_config", "ready_sandbox", "run_code_attempt", "sandbox_code_runner"]


async def load_sandbox_config(block_name: str | None) -> SandboxConfig:
    """The saved DockerSandbox block's configuration, or the defaults when none is named."""
    if block_name is None:
        return SandboxConfig()
    from goalflow.blocks import DockerSandbox, load_block

    block = await load_block(DockerSandbox, block_name, "GOALFLOW_SANDBOX_BLOCK")
    return block.to_config()


async def ready_sandbox(settings: Settings) -> tuple[SandboxConfig | None, str]:
    """The sandbox configuration when code tasks can run, else None and the reason."""
    if settings.sandbox == "off":
        return None, "GOALFLOW_SANDBOX is 'off'"
    config = await load_sandbox_config(settings.sandbox_block)
    status = await check(config)
    return (config if status.ready else None), status.message


async def sandbox_code_runner(settings: Settings, llm: LLM, goal: str) -> CodeRunner | None:
    """The runner for one goal's code tasks, or None when no sandbox can run them."""
    config, reason = await ready_sandbox(settings)
    if config is None:
        get_run_logger().warning("code tasks are off: %s", reason)
        return None
    return code_runner(
        llm,
        goal,
        run=partial(run_code_attempt, Sandbox(config)),
        attempts=settings.code_attempts,
        limits=config,
    )


@task(
    name="code-attempt",
    task_run_name="code attempt {attempt.number}: {attempt.task.title}",
    cache_policy=NO_CACHE,
)
async def run_code_attempt(sandbox: Sandbox, attempt: CodeAttempt) -> SandboxResult:
    """Run one program in the sandbox; its code and output become an artifact."""
    labels = {"goalflow.task": attempt.task.id, "goalflow.flow-run": flow_run.get_id() or ""}
    result = await sandbox.run(attempt.code, attempt.files, attempt.task.outputs, labels=labels)
    await acreate_markdown_artifact(
        attempt_markdown(attempt, result),
        description=f"Code attempt {attempt.number} of {attempt.task.id}",
    )
    if result.failure:
        get_run_logger().warning("program failed: %s", result.failure)
    return result
