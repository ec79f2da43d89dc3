"""Prefect entrypoint for a goal run (prefect.yaml: ``flows/goal.py:achieve_goal``)."""

from goalflow.orchestration.goal_flow import achieve_goal

__all__ = ["achieve_goal"]
