"""Every text the agent layer sends to a model, in one place: one module per kind of call.

The planner (:mod:`goalflow.agent.planner`), executor (:mod:`goalflow.agent.executor`),
coder (:mod:`goalflow.agent.coder`) and the reflector
(:mod:`goalflow.orchestration.reflector`) hold the loops; the wording they send is here:
:mod:`~goalflow.agent.prompts.planning`, :mod:`~goalflow.agent.prompts.tasks`,
:mod:`~goalflow.agent.prompts.programs` and :mod:`~goalflow.agent.prompts.reflection`.
Fixed texts are constants, the rest small functions that render them from their
arguments. A prompt is product: tests tell model calls apart by their response schema,
not by this wording.
"""

__all__: list[str] = []
