"""What a loop costs before it is caught, with and without reflection.

    .venv/bin/python benchmarks/reflection_loop.py --tries 10

A scripted looping scenario on the project's test server (real HTTP on loopback) and
a temporary Prefect server: facts -> analysis -> report, where the reviewer rejects
every analysis for the same reason and the task may try ``--tries`` times. With
reflection, the third identical failure stops the task and the scripted reflection
replaces it by a sourced analysis; without, the task spends all its tries and the goal
fails. Prices are gpt-4o-mini's, applied to the test server's token counts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from typing import Any

from goalflow.core.plan import Plan
from goalflow.core.task import Task
from goalflow.errors import GoalFailedError
from goalflow.orchestration.goal_flow import achieve_goal
from goalflow.testing import ChatRequest, OpenAITestServer

KEY = "sk-benchmark-0123456789abcdef"


def _task(tid: str, title: str, inputs: list[str], outputs: list[str], **extra: Any) -> Task:
    return Task(
        id=tid,
        title=title,
        kind="llm",
        instructions=f"{title}.",
        inputs=inputs,
        outputs=outputs,
        **extra,
    )


PLAN = Plan(
    goal="Report on green tea",
    inputs={"topic": "green tea"},
    deliverables=["report"],
    tasks=[
        _task("facts", "Gather facts", ["topic"], ["facts"]),
        _task("analysis", "Analyse facts", ["facts"], ["analysis"], acceptance="cites a source"),
        _task("report", "Write report", ["analysis"], ["report"]),
    ],
)
PATCH = {
    "cancel": ["analysis"],
    "add": [
        _task("sourced", "Analyse facts with sources", ["facts"], ["analysis"]).model_dump(
            exclude={"subtasks"}
        )
    ],
}


def _answer(request: ChatRequest) -> str:
    if request.schema_name == "Verdict":
        passed = "Task: Analyse facts\n" not in request.last_user
        return json.dumps({"passed": passed, "reason": "no source is cited"})
    if request.schema_name == "Reflection":
        return json.dumps({"verdict": "revise", "reason": "it loops", "patch": PATCH})
    properties = (request.schema or {}).get("properties", {})
    return json.dumps({name: f"the {name}" for name in properties})


async def one(server: OpenAITestServer, reflection: bool) -> dict[str, Any]:
    server.reset()
    try:
        result = await achieve_goal(PLAN.goal, plan=PLAN, advanced={"reflection": reflection})
    except GoalFailedError as e:
        result = e.result
    looping = [r for r in server.requests if "Analyse facts\n" in r.text]
    usage = result.usage
    return {
        "reflection": reflection,
        "status": result.status,
        "calls": usage.calls,
        "cost_usd": usage.cost_usd,
        "calls_in_the_loop": len(looping),
        "cost_in_the_loop_usd": usage.cost_by_task.get("analysis", 0.0),
    }


async def main(tries: int) -> None:
    os.environ.update(
        GOALFLOW_TASK_ATTEMPTS=str(tries),
        GOALFLOW_PRICES=json.dumps({"test-model": {"input": 0.15, "output": 0.6}}),
        GOALFLOW_SANDBOX="off",
        OPENAI_API_KEY=KEY,
        GOALFLOW_MODEL="test-model",
    )
    with OpenAITestServer(api_key=KEY, default=_answer) as server:
        os.environ["OPENAI_BASE_URL"] = server.base_url
        for reflection in (False, True):
            print(json.dumps(await one(server, reflection)), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tries", type=int, default=10, help="Tries the looping task has.")
    args = parser.parse_args()
    from prefect.testing.utilities import prefect_test_harness

    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    with prefect_test_harness(server_startup_timeout=120):
        asyncio.run(main(args.tries))
