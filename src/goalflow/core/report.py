"""What a goal run hands back, and the Markdown that Prefect shows as artifacts."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, Field

from goalflow.core.budget import UsageSummary
from goalflow.core.plan import Plan
from goalflow.core.revision import ReflectionRecord
from goalflow.core.scheduler import GraphRun, TaskOutcome, TaskStatus
from goalflow.core.task import Task, TaskSpec
from goalflow.errors import GoalFailedError, GoalStoppedError

__all__ = [
    "GoalResult",
    "TaskReport",
    "delivered_line",
    "estimated_part",
    "finished_values",
    "goal_result",
    "graph_markdown",
    "plan_markdown",
    "report_markdown",
    "task_output_markdown",
    "task_reports",
]


class TaskReport(BaseModel):
    """One task's fate; ``path`` is its place in the plan, e.g. ``draft/outline``."""

    path: str
    title: str
    kind: str
    status: TaskStatus
    cached: bool = Field(
        default=False, description="Completed with an earlier run's result (no model call)."
    )
    seconds: float | None = None
    start_delay: float | None = Field(
        default=None,
        description="Seconds from ready (inputs there, a slot free) to running: the Prefect "
        "task run's or subflow's work begun (None where not measured: Dask and Ray workers).",
    )
    error: str | None = None
    models: list[str] = Field(
        default_factory=list,
        description="The models that answered it, in order (two: it was escalated from "
        "the task model to the planning model); empty when it made no call.",
    )


class GoalResult(BaseModel):
    """The outcome of one goal: deliverables, every task's fate, usage and time."""

    goal: str
    status: Literal["completed", "failed", "stopped"]
    message: str = Field(description="One line saying how the goal ended.")
    deliverables: dict[str, str]
    tasks: list[TaskReport]
    usage: UsageSummary
    seconds: float
    flow_run_id: str | None = None
    plan: Plan | None = Field(
        default=None,
        description="The plan as it ended (revisions applied); None when stopped while planning.",
    )
    reflections: list[ReflectionRecord] = Field(
        default_factory=list, description="Every reflection of the run, in order."
    )

    def raise_for_status(self) -> GoalResult:
        """This result when the goal was achieved; else :class:`GoalStoppedError` (it
        was stopped) or :class:`GoalFailedError` (it ran and missed a deliverable),
        holding this result."""
        if self.status == "stopped":
            raise GoalStoppedError(self.message, self)
        if self.status == "failed":
            raise GoalFailedError(self.message, self)
        return self


def task_reports(
    tasks: Sequence[Task],
    outcomes: Mapping[str, TaskOutcome],
    models: Mapping[str, list[str]],
    prefix: str = "",
) -> list[TaskReport]:
    """Reports for every task at every level, in plan order; ``outcomes`` and the
    ``models`` that answered each task, by path."""
    reports = []
    for task in tasks:
        path = prefix + task.id
        outcome = outcomes.get(path)
        reports.append(
            TaskReport(
                path=path,
                title=task.title,
                kind=task.kind,
                status=outcome.status if outcome else "pending",
                cached=outcome.cached if outcome else False,
                seconds=round(outcome.duration, 3) if outcome and outcome.duration else None,
                start_delay=round(outcome.start_delay, 4)
                if outcome and outcome.start_delay is not None
                else None,
                error=outcome.error if outcome else None,
                models=models.get(path, []),
            )
        )
        reports += task_reports(task.subtasks, outcomes, models, prefix=path + "/")
    return reports


# Fenced code blocks (closed or running to the end) and inline code spans.
_CODE = re.compile(r"(```.*?(?:```|\Z)|`[^`\n]*`)", re.DOTALL)


def _text(text: str) -> str:
    """``text`` as Markdown that shows as written. Outside code, a ``<`` starts an HTML
    tag to the Prefect UI, whose sanitiser then drops it and what follows: a model's
    ``a<b and c>d`` showed as ``ad``. Code keeps its ``<``, as there an entity would show
    literally."""
    parts = _CODE.split(text)
    return "".join(part if i % 2 else part.replace("<", "&lt;") for i, part in enumerate(parts))


def _cell(text: str) -> str:
    return _text(text).replace("|", "\\|").replace("\n", " ")


def _kind(task: Task) -> str:
    """A task's kind, and "simple" for an ``llm`` task the plan gives the task model."""
    return "llm, simple" if task.kind == "llm" and task.difficulty == "simple" else task.kind


def plan_markdown(plan: Plan) -> str:
    lines = [
        f"# Plan\n\n**Goal:** {_text(plan.goal)}\n",
        f"**Deliverables:** {', '.join(plan.deliverables)}\n",
        "| task | title | kind | inputs | outputs | value | effort | acceptance | format |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def rows(tasks: Iterable[Task], prefix: str) -> Iterable[str]:
        for t in tasks:
            yield (
                f"| {prefix}{t.id} | {_cell(t.title)} | {_kind(t)} | {', '.join(t.inputs)} | "
                f"{', '.join(t.outputs)} | {t.value:g} | {t.effort:g} | {_cell(t.acceptance)} | "
                f"{_cell(t.format)} |"
            )
            yield from rows(t.subtasks, f"{prefix}{t.id}/")

    lines += rows(plan.tasks, "")
    if plan.inputs:
        lines += ["", "**Goal inputs:** " + ", ".join(plan.inputs)]
    return "\n".join(lines)


def _node(path: str) -> str:
    return "n_" + re.sub(r"[^A-Za-z0-9_]", "_", path)


def graph_markdown(plan: Plan) -> str:
    """The task graph as Mermaid: goal inputs, tasks, named edges, deliverables."""
    lines = ["```mermaid", "flowchart LR"]

    def level(tasks: Sequence[Task], sources: Mapping[str, str], prefix: str, depth: int) -> None:
        producer = {name: _node(prefix + t.id) for t in tasks for name in t.outputs}
        pad = "  " * depth
        for t in tasks:
            node = _node(prefix + t.id)
            title = t.title.replace('"', "'")
            if t.subtasks:
                lines.append(f'{pad}subgraph {node}["{title}"]')
                inner = {name: sources.get(name, producer.get(name, "")) for name in t.inputs}
                level(t.subtasks, inner, f"{prefix}{t.id}/", depth + 1)
                lines.append(f"{pad}end")
            else:
                lines.append(f'{pad}{node}["{title}"]')
            for name in t.inputs:
                source = producer.get(name) or sources.get(name)
                if source:
                    lines.append(f"{pad}{source} -->|{name}| {node}")

    inputs = {name: _node("input_" + name) for name in plan.inputs}
    for name, node in inputs.items():
        lines.append(f"{node}([{name}])")
    level(plan.tasks, inputs, "", 1)
    for name in plan.deliverables:
        for t in plan.tasks:
            if name in t.outputs:
                lines.append(f"{_node(t.id)} --> {_node('out_' + name)}[[{name}]]")
    lines.append("```")
    return "\n".join(lines)


def task_output_markdown(path: str, title: str, outputs: Mapping[str, str]) -> str:
    parts = [f"# {_text(title)}\n\n`{path}`"]
    parts += [f"## {name}\n\n{_text(value)}" for name, value in outputs.items()]
    return "\n\n".join(parts)


def report_markdown(result: GoalResult) -> str:
    usage = result.usage
    lines = [
        f"# Goal report: {result.status}\n\n**Goal:** {_text(result.goal)}\n\n"
        f"{_text(result.message)}\n",
        "## Deliverables\n",
    ]
    for name, value in result.deliverables.items():
        lines.append(f"### {name}\n\n{_text(value)}\n")
    if not result.deliverables:
        lines.append("(none produced)\n")
    # With a task model beside the planning model, which one answered each task.
    tiers = len(usage.calls_by_model) > 1 and any(t.models for t in result.tasks)
    lines += [
        "## Tasks\n",
        "| task | title | kind | status | seconds | error |" + (" model |" if tiers else ""),
        "|---|---|---|---|---|---|" + ("---|" if tiers else ""),
    ]
    for t in result.tasks:
        seconds = f"{t.seconds:.1f}" if t.seconds is not None else ""
        lines.append(
            f"| {t.path} | {_cell(t.title)} | {t.kind} | {'cached' if t.cached else t.status} | "
            f"{seconds} | {_cell(t.error or '')} |"
            + (f" {_cell(' → '.join(t.models))} |" if tiers else "")
        )
    if result.reflections:
        lines += [
            "\n## Reflections\n",
            "| why | verdict | reason | outcome |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {_cell(r.why)} | {r.verdict} | {_cell(r.reason)} | {_cell(r.outcome)} |"
            for r in result.reflections
        ]
    lines += [
        "\n## Usage\n",
        f"- model calls: {usage.calls}",
        f"- tokens: {usage.prompt_tokens} in, {usage.completion_tokens} out",
        f"- cost: ${usage.cost_usd:.4f}"
        + (f" of a ${usage.limit_usd:g} budget" if usage.limit_usd else "")
        + estimated_part(usage),
        f"- wall time: {result.seconds:.1f} s",
    ]
    if usage.cost_by_task:
        lines += ["\n| task | cost (USD) |", "|---|---|"]
        lines += [f"| {_cell(name)} | {cost:.6f} |" for name, cost in usage.cost_by_task.items()]
    if usage.calls_by_model:
        lines += ["\n| model | calls | tokens | cost (USD) |", "|---|---|---|---|"]
        lines += [
            f"| {_cell(name)} | {calls} | {usage.tokens_by_model.get(name, 0)} | "
            f"{usage.cost_by_model.get(name, 0.0):.6f} |"
            for name, calls in usage.calls_by_model.items()
        ]
    if usage.unpriced_models:
        lines.append(
            f"- no price known for {', '.join(usage.unpriced_models)}: counted as $0; set "
            "prices in the LLMProvider block"
        )
    return "\n".join(lines)


def estimated_part(usage: UsageSummary) -> str:
    """What of the cost is an estimate, said after it; nothing when all of it was billed."""
    n = usage.estimated_calls
    if not n:
        return ""
    attempts = "1 attempt" if n == 1 else f"{n} attempts"
    its = "its" if n == 1 else "their"
    return (
        f" (${usage.estimated_usd:.4f} of it estimated: {attempts} whose bill is unknown, "
        f"counted at {its} worst case)"
    )


def delivered_line(result: GoalResult, width: int = 300) -> str:
    """The result's message and its deliverables in one line of at most ``width``
    characters: a flow run's final state message, where CI and the UI show it."""
    values = "; ".join(
        f"{name} = {' '.join(value.split())}" for name, value in result.deliverables.items()
    )
    line = f"{result.message}: {values}" if values else result.message
    return line if len(line) <= width else line[: width - 1] + "…"


def finished_values(plan: Plan | None, outcomes: Mapping[str, TaskOutcome]) -> dict[str, str]:
    """The values that exist after a stop: goal inputs and finished top-level outputs."""
    values = dict(plan.inputs) if plan else {}
    for path, outcome in outcomes.items():
        if "/" not in path and outcome.status == "completed":
            values.update(outcome.outputs)
    return values


def goal_result(
    goal: str,
    planned: Plan | None,
    plan: Plan | None,
    graph: GraphRun | None,
    outcomes: Mapping[str, TaskOutcome],
    values: Mapping[str, str],
    *,
    stopped: str | None,
    usage: UsageSummary,
    seconds: float,
    flow_run_id: str | None,
    reflections: list[ReflectionRecord],
) -> GoalResult:
    """How a goal ended: ``planned`` the plan it started running, ``plan`` the plan now
    (revisions applied), ``graph`` its top level as it ran, ``values`` every value that
    exists, ``stopped`` the reason when it was stopped."""
    revised = _revised(plan, graph)
    wanted = revised.deliverables if revised else []
    deliverables = {name: values[name] for name in wanted if name in values}
    missing = [name for name in wanted if name not in values]
    tasks = _every_task(planned, graph) if planned else []
    reports = task_reports(tasks, outcomes, usage.models_by_task)
    failed = [r for r in reports if r.status == "failed"]
    if stopped is not None:
        done = sum(r.status == "completed" for r in reports)
        status: Literal["completed", "failed", "stopped"] = "stopped"
        message = (
            f"goal stopped: {stopped}; {done} of {len(reports)} tasks finished, "
            f"{len(deliverables)} of {len(wanted)} deliverable(s) produced"
        )
    elif missing:
        reasons = "; ".join(f"{r.path}: {r.error}" for r in failed) or "no reason recorded"
        status, message = "failed", f"goal failed: {', '.join(missing)} not produced ({reasons})"
    else:
        status = "completed"
        message = f"goal completed: {len(deliverables)} deliverable(s) from {len(reports)} tasks"
        reused = sum(r.cached for r in reports)
        if reused:
            message += f" ({reused} from the task cache of an earlier run)"
    return GoalResult(
        goal=goal,
        status=status,
        message=message,
        deliverables=deliverables,
        tasks=reports,
        usage=usage,
        seconds=round(seconds, 3),
        flow_run_id=flow_run_id,
        plan=revised,
        reflections=reflections,
    )


def _as_tasks(plan: Plan, specs: Sequence[TaskSpec]) -> list[Task]:
    """Plan tasks for ``specs``: the planned ones (with their sub-plans) where they exist."""
    planned = {task.id: task for task in plan.tasks}
    return [
        planned[s.id].model_copy(update={"value": s.value, "effort": s.effort})
        if s.id in planned
        else Task(**s.model_dump())
        for s in specs
    ]


def _revised(plan: Plan | None, graph: GraphRun | None) -> Plan | None:
    """The plan as reflection left it: removed and failed tasks out, added ones in."""
    if plan is None or graph is None or graph.version == 0:
        return plan
    return plan.only({task.id for task in graph.tasks})


def _every_task(plan: Plan | None, graph: GraphRun | None) -> list[Task]:
    """For the report: the plan's tasks and every task a revision removed."""
    if plan is None:
        return []
    if graph is None or graph.version == 0:
        return plan.tasks
    return _as_tasks(plan, graph.every_task)
