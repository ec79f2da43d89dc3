"""What more than one test module needs: plans, scripted answers, a model double, waits.

Tests tell model calls apart by the response schema's name (PlanDraft, SubPlanDraft,
TaskAnswer, Program, Verdict, Reflection), never by prompt wording. The one exception,
finding the calls of one task by its title, reads the prompts in :func:`task_title`
only, so a prompt edit changes one place.

Importing this module loads no prefect, openai or docker, so unit tests can use it;
the helpers that talk to a Prefect server import prefect when they are called.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

from pydantic import BaseModel, ValidationError

from goalflow.core.chat import Message
from goalflow.core.plan import Plan
from goalflow.core.report import GoalResult
from goalflow.core.task import TaskKind, TaskSpec
from goalflow.errors import StructuredOutputError
from goalflow.testing import ChatRequest, OpenAITestServer, Reply

__all__ = [
    "DIAMOND",
    "NUMBERS",
    "NUMBERS_PLAN",
    "SUMS",
    "TEST_KEY",
    "Answer",
    "ChatCall",
    "ScriptedChat",
    "asked_tasks",
    "asks_for",
    "children",
    "echo_answer",
    "is_plan",
    "spec",
    "task",
    "task_requests",
    "task_title",
    "wait_for",
    "wait_for_run",
]

TEST_KEY = "sk-test-0123456789abcdefghijklmnop"

M = TypeVar("M", bound=BaseModel)


# --- Plans, as the model writes them ------------------------------------------------


def task(
    tid: str, title: str, inputs: list[str], outputs: list[str], **extra: Any
) -> dict[str, Any]:
    """An 'llm' task as the model writes it in a plan (JSON), ``extra`` fields on top."""
    return {
        "id": tid,
        "title": title,
        "kind": "llm",
        "instructions": f"Do {title}.",
        "inputs": inputs,
        "outputs": outputs,
        **extra,
    }


DIAMOND: dict[str, Any] = {
    "inputs": [{"name": "topic", "value": "green tea"}],
    "deliverables": ["report"],
    "tasks": [
        task("facts", "Gather facts", ["topic"], ["facts"]),
        task("pros", "List pros", ["facts"], ["pros"]),
        task("cons", "List cons", ["facts"], ["cons"]),
        task("report", "Write report", ["pros", "cons"], ["report"]),
    ],
}
"""A plan whose two middle tasks can run at once, each reading the first one's output."""

NUMBERS = "4 8 15 16 23 42"
NUMBERS_PLAN: dict[str, Any] = {
    "inputs": [],
    "deliverables": ["total"],
    "tasks": [
        task("list", "List numbers", [], ["numbers"]),
        {
            **task("sum", "Sum numbers", ["numbers"], ["total"]),
            "kind": "code",
            "acceptance": "the total is one integer",
        },
    ],
}
"""An 'llm' task lists numbers (script it to answer ``NUMBERS``), a 'code' task adds them."""

SUMS = (
    "nums = [int(x) for x in open('numbers').read().split()]\n"
    "open('total', 'w').write(str(sum(nums)))\n"
)
"""The program that does NUMBERS_PLAN's code task."""


def spec(
    task_id: str,
    inputs: Sequence[str] = (),
    outputs: Sequence[str] | None = None,
    *,
    kind: TaskKind = "llm",
    value: float = 1.0,
    effort: float = 1.0,
) -> TaskSpec:
    """A ``TaskSpec`` titled 'do <id>' that makes '<id>_out' unless ``outputs`` are given."""
    return TaskSpec(
        id=task_id,
        title=f"do {task_id}",
        kind=kind,
        instructions=f"Do {task_id}.",
        inputs=list(inputs),
        outputs=[f"{task_id}_out"] if outputs is None else list(outputs),
        value=value,
        effort=effort,
    )


# --- Requests to the test server ----------------------------------------------------


def is_plan(request: ChatRequest) -> bool:
    """Whether ``request`` asks for the goal's plan."""
    return request.schema_name == "PlanDraft"


# Where each call about one task names it: the task brief of an answer or a program
# (goalflow.agent.executor.task_brief), the review's prompt (goalflow.agent.executor.review).
_TITLE_MARKERS = {"TaskAnswer": "Your task: ", "Program": "Your task: ", "Verdict": "Task: "}


def task_title(request: ChatRequest) -> str | None:
    """The title of the task ``request`` answers, writes a program for or reviews (its
    retries and re-asks included); None for a call about no one task."""
    marker = _TITLE_MARKERS.get(request.schema_name or "")
    first_user = next((m.get("content") for m in request.messages if m.get("role") == "user"), None)
    if marker is None or not isinstance(first_user, str) or marker not in first_user:
        return None
    return first_user.split(marker, 1)[1].split("\n", 1)[0]


def task_requests(server: OpenAITestServer, title: str) -> list[ChatRequest]:
    """Every call about the task titled ``title``, in the order the server received them."""
    return [r for r in server.requests if task_title(r) == title]


def asked_tasks(server: OpenAITestServer) -> list[str]:
    """The titles of the tasks the model was asked to answer, in order."""
    return [
        title
        for r in server.requests
        if r.schema_name == "TaskAnswer" and (title := task_title(r)) is not None
    ]


def asks_for(schema_name: str, title: str | None = None) -> Callable[[ChatRequest], bool]:
    """A match for ``OpenAITestServer.script``: the calls answering ``schema_name``, only
    those about the task titled ``title`` when one is given."""

    def matches(request: ChatRequest) -> bool:
        return request.schema_name == schema_name and (
            title is None or task_title(request) == title
        )

    return matches


def echo_answer(request: ChatRequest) -> str | Reply:
    """A task answer naming each output and the task, so tests can trace values.

    A re-ask (a retry after a review, a fix after an invalid answer) names the re-ask's
    first line instead, so a retry answers differently, as a model would after feedback:
    three identical answers would make three identical reviews, a repeated_call to stuck
    detection, which tests/flows/test_reflection.py does not expect.
    """
    properties = (request.schema or {}).get("properties", {})
    if request.schema_name == "Verdict":
        return json.dumps({"passed": True, "reason": "fine"})
    if request.schema_name == "Reflection":
        return json.dumps({"verdict": "on_track", "reason": "the plan still leads to the goal"})
    if request.schema_name == "OneAnswer":  # the scripted plans' deliverables are the answer
        return json.dumps({"one_answer": False})
    asks = [m for m in request.messages if m.get("role") == "user"]
    title = task_title(request) if len(asks) == 1 else None
    named = title or request.last_user.split("\n", 1)[0]
    return json.dumps({name: f"<{name} from {named}>" for name in properties})


# --- A model double for the agent layer ---------------------------------------------

Answer = Mapping[str, Any] | BaseException | Callable[[list[Message]], Mapping[str, Any]]


@dataclass(frozen=True)
class ChatCall:
    """One call a ``ScriptedChat`` answered, with the conversation as it was then."""

    schema: type[BaseModel]
    messages: list[Message]
    purpose: str
    max_tokens: int | None
    temperature: float | None = None

    @property
    def schema_name(self) -> str:
        return self.schema.__name__

    @property
    def last_user(self) -> str:
        return next((m["content"] for m in reversed(self.messages) if m["role"] == "user"), "")


class ScriptedChat:
    """A ``goalflow.core.chat.ChatModel`` whose answers are scripted by response schema.

    ``answers`` maps a schema's name to the answers of its calls, in order: a mapping
    (validated into the schema), a function of the conversation that returns one, or an
    exception to raise. An answer the schema refuses raises ``StructuredOutputError``, as
    the real client does once its re-asks are spent; a call with no answer left fails the
    test. Every call is kept in ``calls``.
    """

    def __init__(self, answers: Mapping[str, Sequence[Answer]]) -> None:
        self._answers = {name: deque(items) for name, items in answers.items()}
        self.calls: list[ChatCall] = []

    async def structured(
        self,
        schema: type[M],
        messages: list[Message],
        *,
        purpose: str,
        max_attempts: int = 3,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> M:
        name = schema.__name__
        # A copy: callers extend the same list for their next call.
        self.calls.append(ChatCall(schema, list(messages), purpose, max_tokens, temperature))
        left = self._answers.get(name)
        if not left:
            raise AssertionError(
                f"no answer scripted for call {len(self.calls)}: {name} ({purpose})"
            )
        answer = left.popleft()
        if isinstance(answer, BaseException):
            raise answer
        data = answer(list(messages)) if callable(answer) else answer
        try:
            return schema.model_validate(data)
        except ValidationError as e:
            raise StructuredOutputError(
                f"the model never gave a valid {name} for {purpose!r}: {e}",
                schema_name=name,
                n_attempts=max_attempts,
                last_completion=json.dumps(data),
            ) from e

    def calls_for(self, schema_name: str) -> list[ChatCall]:
        """The calls that asked for ``schema_name``, in order."""
        return [call for call in self.calls if call.schema_name == schema_name]


# --- Waiting on a Prefect server ----------------------------------------------------


async def wait_for(condition: Callable[[], bool]) -> None:
    """Until ``condition()`` holds; fails the test after 30 s."""
    for _ in range(300):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("timed out")


async def wait_for_run(name: str) -> UUID:
    """The id of the first flow run named ``name``, once the server has it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    async with get_client() as client:
        for _ in range(300):
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])),
                limit=1,
                sort=FlowRunSort.EXPECTED_START_TIME_ASC,
            )
            if runs:
                return runs[0].id
            await asyncio.sleep(0.1)
    raise AssertionError(f"no flow run named {name!r}")


async def children(flow_run_id: UUID) -> dict[str, Any]:
    """Task runs, subflow runs and artifacts of one flow run, by name/key."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterParentFlowRunId,
    )
    from prefect.client.schemas.sorting import FlowRunSort, TaskRunSort

    async with get_client() as client:
        runs = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        task_runs = await client.read_task_runs(
            flow_run_filter=runs, limit=200, sort=TaskRunSort.EXPECTED_START_TIME_ASC
        )
        subflows = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])
            ),
            limit=200,
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
        )
        # The typed read_artifacts() joins task runs whenever a task-run filter is sent
        # (and 3.9.1's server refuses it when absent), hiding flow-level artifacts.
        response = await client.request(
            "POST",
            "/artifacts/filter",
            json={"artifacts": {"flow_run_id": {"any_": [str(flow_run_id)]}}, "limit": 200},
        )
    return {
        "task_runs": {t.name: t for t in task_runs},
        "subflows": {f.name: f for f in subflows},
        "artifacts": {a["key"] or a["description"]: a["data"] for a in response.json()},
    }


async def run_plan(plan: Plan, **parameters: Any) -> GoalResult:
    """``achieve_goal`` on a saved plan, toward the goal it was made for."""
    from goalflow.orchestration.goal_flow import achieve_goal

    return await achieve_goal(plan.goal, plan=plan, **parameters)
