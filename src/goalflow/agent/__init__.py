"""The agent: planner, executor and coder, written against the LLM protocol
(:class:`goalflow.core.chat.ChatModel`), not the concrete client. Imports only the core."""

__all__: list[str] = []
