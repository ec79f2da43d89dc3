"""The Prefect side of a goal: the goal flow and the goal run, guard, events,
reflector, approval, task cache, task runners, blocks."""

__all__: list[str] = []
