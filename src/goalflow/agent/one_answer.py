"""Whether a plan hands back apart what its goal wants as one answer (see
:class:`ApartCheck`); the planner (:mod:`goalflow.agent.planner`) asks it of each valid plan."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from pydantic import BaseModel, Field

from goalflow.agent.prompts.planning import ONE_ANSWER_SYSTEM, apart_feedback, one_answer_request
from goalflow.core.chat import ChatModel, Message
from goalflow.core.plan import PlanDraft
from goalflow.core.rules import names_listed
from goalflow.core.task import TaskSpec
from goalflow.errors import StructuredOutputError

__all__ = ["ONE_ANSWER_MAX_TOKENS", "ApartCheck", "OneAnswer"]

logger = logging.getLogger("goalflow.planner")


class OneAnswer(BaseModel):
    """Whether a goal wants one answer made from the results a plan hands back apart."""

    one_answer: bool = Field(
        description="true when the goal asks for one answer made from the results; false "
        "when it asks for the results themselves, each on its own"
    )


ONE_ANSWER_MAX_TOKENS = 64
"""A verdict is one flag: its call reserves this much answer, not a plan's."""


class ApartCheck:
    """Whether a plan hands back apart what its goal wants as one answer.

    Small models deliver the parts (two capitals, two counts) where the goal asks for
    what is made of them (the capitals joined, the counts' product). A valid plan with
    several deliverables is therefore questioned once: the model is asked whether the
    goal wants one answer made from them (:class:`OneAnswer`). If it does, a task that
    makes every part and nothing else makes them as one output (settled: hours, minutes
    and seconds as one H:MM:SS); a plan with one task that makes some of the
    deliverables from all the others delivers only that task's outputs (settled); any
    other plan goes back with the rule it breaks, once: a model that cannot combine the
    parts keeps its plan (logged), which at least delivers them, rather than lose it to
    the one-step fallback. A verdict that cannot be had leaves the plan as it is.
    """

    def __init__(self, llm: ChatModel, goal: str) -> None:
        self._llm = llm
        self._goal = goal
        self._verdict: bool | None = None
        self._sent_back = False

    async def problems(self, draft: PlanDraft, on_step: Callable[[str], None]) -> list[str]:
        if len(draft.deliverables) < 2 or not await self._one_answer(draft.deliverables):
            return []
        wanted = set(draft.deliverables)
        makers = [task for task in draft.tasks if set(task.outputs) & wanted]
        if len(makers) == 1 and set(makers[0].outputs) == wanted:
            return self._one_output(draft, makers[0], on_step)
        finals = [  # makes some deliverables from all the others
            task
            for task in draft.tasks
            if set(task.outputs) & wanted
            and wanted - set(task.outputs)
            and wanted - set(task.outputs) <= set(task.inputs)
        ]
        if len(finals) != 1 and not self._sent_back:
            self._sent_back = True
            return [apart_feedback(draft.deliverables)]
        if len(finals) != 1:
            on_step(
                f"kept: the plan delivers {names_listed(draft.deliverables)} apart, though "
                "the goal asks for one answer: the model did not combine them when asked"
            )
            return []
        made = [name for name in draft.deliverables if name in finals[0].outputs]
        on_step(
            f"settled: the goal asks for one answer: {names_listed(made)} of "
            f"'{finals[0].id}' delivered, not the parts it is made from"
        )
        draft.deliverables = made
        return []

    @staticmethod
    def _one_output(draft: PlanDraft, task: TaskSpec, on_step: Callable[[str], None]) -> list[str]:
        """One task makes every part and nothing else: it makes them as one output."""
        parts = list(draft.deliverables)
        taken = {item.name for item in draft.inputs} | {n for t in draft.tasks for n in t.inputs}
        name = "_".join(parts)
        if len(name) > 60 or name in taken:
            name = "answer" if "answer" not in taken else f"{task.id}_answer"
        form = f", in the form {task.format}" if task.format else ""
        task.instructions += f"\nHand back {', '.join(parts)} together as one value{form}."
        task.outputs = [name]
        draft.deliverables = [name]
        on_step(
            f"settled: the goal asks for one answer: {names_listed(parts)} of '{task.id}' are "
            f"one output '{name}'"
        )
        return []

    async def _one_answer(self, deliverables: Sequence[str]) -> bool:
        if self._verdict is None:
            messages: list[Message] = [
                {"role": "system", "content": ONE_ANSWER_SYSTEM},
                {"role": "user", "content": one_answer_request(self._goal, deliverables)},
            ]
            try:
                verdict = await self._llm.structured(
                    OneAnswer,
                    messages,
                    purpose="check deliverables",
                    max_tokens=ONE_ANSWER_MAX_TOKENS,
                )
            except StructuredOutputError as e:
                logger.warning("no verdict on the plan's %d deliverables: %s", len(deliverables), e)
                return False
            self._verdict = verdict.one_answer
        return self._verdict
