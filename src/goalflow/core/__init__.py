"""The core: plans, their rules, the graph scheduler, budget, pacing, stuck detection,
revision, reports. Standard library and pydantic only: no prefect, openai or docker."""

__all__: list[str] = []
