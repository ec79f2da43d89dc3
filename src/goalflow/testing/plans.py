"""Generated plans of a chosen shape, for scale tests and the benchmark (no planning call).

``layered_plan`` builds ``depth`` layers of equal width; each task reads two outputs of
the layer before (its own column and the next), so columns are tied together and a
layer cannot finish early column by column. Composite tasks hold a small sub-plan and
run as subflows.
"""

from __future__ import annotations

import json

from goalflow.core.plan import Plan
from goalflow.core.task import Task
from goalflow.errors import ConfigError
from goalflow.testing.protocol import ChatRequest

__all__ = ["answer_any_task", "layered_plan"]


def answer_any_task(request: ChatRequest) -> str:
    """The test server's answer to a task of a generated plan: a value for each output."""
    properties = (request.schema or {}).get("properties", {})
    return json.dumps({name: f"value of {name}" for name in properties})


def _leaf(task_id: str, inputs: list[str], output: str) -> Task:
    return Task(
        id=task_id,
        title=f"step {task_id}",
        kind="llm",
        instructions=f"Produce {output} from {', '.join(inputs)}.",
        inputs=inputs,
        outputs=[output],
    )


def _composite(task_id: str, inputs: list[str], output: str, parts: int) -> Task:
    pieces = [f"{task_id}_part{j}" for j in range(parts)]
    subtasks = [
        *(_leaf(f"{task_id}_p{j}", inputs, piece) for j, piece in enumerate(pieces)),
        _leaf(f"{task_id}_join", pieces, output),
    ]
    return _leaf(task_id, inputs, output).model_copy(
        update={"kind": "composite", "title": f"part {task_id}", "subtasks": subtasks}
    )


def layered_plan(tasks: int, depth: int = 1, *, composites: int = 0, parts: int = 1) -> Plan:
    """A valid plan of ``tasks`` leaf tasks in ``depth`` layers, plus ``composites``
    independent composite tasks of ``parts + 1`` leaves each, beside the first layer."""
    if tasks < depth or depth < 1 or tasks % depth or composites < 0 or parts < 1:
        raise ConfigError(
            f"cannot lay out {tasks} tasks in {depth} equal layers with {composites} "
            f"composites of {parts} parts: use a depth that divides the task count"
        )
    width = tasks // depth
    layers: list[list[Task]] = []
    for d in range(depth):
        layer = []
        for i in range(width):
            inputs = (
                ["seed"] if d == 0 else sorted({f"v{d - 1}_{i}", f"v{d - 1}_{(i + 1) % width}"})
            )
            layer.append(_leaf(f"t{d}_{i}", inputs, f"v{d}_{i}"))
        layers.append(layer)
    extra = [_composite(f"c{k}", ["seed"], f"w{k}", parts) for k in range(composites)]
    deliverables = [*(t.outputs[0] for t in layers[-1]), *(c.outputs[0] for c in extra)]
    return Plan(
        goal=f"benchmark: {tasks} tasks in {depth} layers, {composites} composites",
        inputs={"seed": "a seed value"},
        deliverables=deliverables,
        tasks=[task for layer in layers for task in layer] + extra,
    )
