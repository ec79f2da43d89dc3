"""Prefect entrypoint for reflection (prefect.yaml: ``flows/reflect.py:reflect``).

A stub until the reflection issue fills it in: it only logs which goal run it was asked
to look at, so that the ``reflect`` deployment exists and can be triggered.
"""

from prefect import flow, get_run_logger

__all__ = ["reflect"]


@flow(name="reflect", log_prints=False)
def reflect(goal_run_id: str = "") -> None:
    """Log the goal run to reflect on; the verdicts come with the reflection issue."""
    get_run_logger().info("reflection is not implemented yet (goal run %s)", goal_run_id or "-")
