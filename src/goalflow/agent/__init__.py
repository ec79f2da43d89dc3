"""The agent: planner, executor and coder, written against the LLM protocol
(:class:`goalflow.core.chat.ChatModel`), not the concrete client, and the wording of every
prompt they and the reflector send (:mod:`goalflow.agent.prompts`). Imports only the core."""

__all__: list[str] = []
