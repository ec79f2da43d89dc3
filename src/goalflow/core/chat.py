"""What the agent layer needs of a model: a structured answer to a conversation.

:class:`goalflow.llm.client.LLM` is the implementation; the planner, executor and
coder are written against :class:`ChatModel`, so they run (and are tested) with any
object that answers this way.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from pydantic import BaseModel

__all__ = ["ChatModel", "Message"]

M = TypeVar("M", bound=BaseModel)
Message = dict[str, str]


class ChatModel(Protocol):
    """A model that answers a conversation with an instance of ``schema``; ``temperature``
    overrides the configured sampling temperature for this call (None: keep it)."""

    async def structured(
        self,
        schema: type[M],
        messages: list[Message],
        *,
        purpose: str,
        max_attempts: int = 3,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> M: ...
