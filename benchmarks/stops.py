"""How fast a goal run stops once a budget is spent: the in-run guard vs the automation.

    .venv/bin/python benchmarks/stops.py --runs 5

Runs the CI path (``goalflow.testing.DeploymentStack``: `prefect server start`,
`goalflow setup`, deployments, a process worker), with the project's test server as the
model answering slow tasks after 60 s, so nothing but a budget ends such a run. Per run,
the delay is measured on the server's clock, from the budget running out to the run's end:

  time guard        max_seconds=3: end - (start + 3 s)
  time automation   the same with the in-run guard off (GOALFLOW_TIME_GUARD=false): the
                    proactive backstop (within=10 s) cancels it: end - (start + 10 s)
  money guard       max_usd=0.0006 on a chain of quick calls:
                    end - the run's goalflow.budget.exceeded event (sent once its
                    running tasks have ended: nothing else runs in a chain)
  money automation  a run that goes on after goalflow.budget.exceeded was sent for it:
                    end - (event + the automation's 10 s grace for the run to stop itself)

Prints the medians and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

from goalflow.testing import ChatRequest, OpenAITestServer, Reply
from goalflow.testing.deployment_stack import DeploymentStack, model_env, run_seconds

ROOT = Path(__file__).resolve().parents[1]
BACKSTOP = 10
GRACE = 10  # src/goalflow/deploy/automations/budget-exceeded.yaml: within
KEY = "sk-bench-stops"


def _task(title: str, inputs: list[str], output: str) -> dict[str, object]:
    return {"id": output, "title": title, "kind": "llm", "instructions": f"{title}.",
            "inputs": inputs, "outputs": [output]}  # fmt: skip


def _plan(tasks: list[dict[str, object]]) -> dict[str, object]:
    return {"goal": "Stop me", "inputs": {}, "deliverables": [tasks[-1]["id"]], "tasks": tasks}


# Saved plans (no planning call): a chain of quick answers that outruns a small money
# budget, and one task whose answer takes 60 s, which only a time budget can cut short.
CHAIN = _plan([_task(f"Step {i}", [f"s{i - 1}"] if i else [], f"s{i}") for i in range(12)])
SLOW = _plan([_task("Slow step", [], "slow")])


def answer(request: ChatRequest) -> str | Reply:
    properties = (request.schema or {}).get("properties", {})
    content = json.dumps({name: "x" for name in properties})
    return Reply(content, delay=60) if "Your task: Slow" in request.last_user else content


def _exceeded_at(stack: DeploymentStack, flow_run_id: str) -> datetime:
    """When the run emitted goalflow.budget.exceeded (default window: the last day)."""
    event_filter = {
        "event": {"name": ["goalflow.budget.exceeded"]},
        "resource": {"id": [f"goalflow.goal.{flow_run_id}"]},
    }
    for _ in range(30):  # the server stores events in batches, a little after they arrive
        found = stack.post("/events/filter", {"filter": event_filter, "limit": 1})["events"]
        if found:
            return datetime.fromisoformat(found[0]["occurred"])
        time.sleep(1)
    message = stack.flow_run(flow_run_id)["state"]["message"]
    raise RuntimeError(f"run {flow_run_id} emitted no goalflow.budget.exceeded: {message}")


def _emit_exceeded(stack: DeploymentStack, flow_run_id: str) -> None:
    related = [{"prefect.resource.id": f"prefect.flow-run.{flow_run_id}",
                "prefect.resource.role": "flow-run"}]  # fmt: skip
    stack.run(
        "prefect", "event", "emit", "goalflow.budget.exceeded",
        "--resource-id", f"goalflow.goal.{flow_run_id}", "--related", json.dumps(related),
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="runs of each kind")
    args = parser.parse_args()
    delays: dict[str, list[float]] = {
        "time guard": [],
        "time automation": [],
        "money guard": [],
        "money automation": [],
    }
    folder = Path(tempfile.mkdtemp(prefix="goalflow-stops-"))
    (chain := folder / "chain.json").write_text(json.dumps(CHAIN))
    (slow := folder / "slow.json").write_text(json.dumps(SLOW))
    with OpenAITestServer(api_key=KEY, default=answer) as llm:
        # Each run repeats the same plan: none may reuse another's results.
        worker_env = model_env(llm.base_url, KEY) | {"GOALFLOW_TASK_CACHE": "false"}
        with DeploymentStack(
            ROOT, worker_env, setup_options=("--time-backstop", str(BACKSTOP))
        ) as stack:
            for _ in range(args.runs):
                _, run_id = stack.deployment_run(goal=SLOW["goal"], plan_file=slow, max_seconds=3)
                delays["time guard"].append(run_seconds(stack.flow_run(run_id)) - 3)

                _, run_id = stack.deployment_run(
                    job_env={"GOALFLOW_TIME_GUARD": "false"},
                    goal=SLOW["goal"],
                    plan_file=slow,
                    max_seconds=3,
                )
                delays["time automation"].append(run_seconds(stack.flow_run(run_id)) - BACKSTOP)

                _, run_id = stack.deployment_run(
                    goal=CHAIN["goal"], plan_file=chain, max_usd=0.0006
                )
                end = datetime.fromisoformat(stack.flow_run(run_id)["end_time"])
                delays["money guard"].append((end - _exceeded_at(stack, run_id)).total_seconds())
            # A run that goes on after its money ran out (the event is sent for it): only
            # the money backstop may stop it, so the time backstop moves out of the way.
            stack.run("goalflow", "setup", "--time-backstop", "600")
            for _ in range(args.runs):
                _, run_id = stack.deployment_run(watch=False, goal=SLOW["goal"], plan_file=slow)
                stack.wait_for_state(run_id, {"RUNNING"})
                _emit_exceeded(stack, run_id)
                run = stack.wait_for_state(run_id, {"CANCELLED", "FAILED", "COMPLETED"})
                end = datetime.fromisoformat(run["end_time"])
                delays["money automation"].append(
                    (end - _exceeded_at(stack, run_id)).total_seconds() - GRACE
                )
    print(f"{'stopped by':<16} {'median':>8} {'max':>8}  (seconds from budget spent to run end)")
    for name, values in delays.items():
        print(f"{name:<16} {statistics.median(values):8.2f} {max(values):8.2f}")
    print(json.dumps({name: [round(v, 3) for v in values] for name, values in delays.items()}))


if __name__ == "__main__":
    main()
