"""Prefect entrypoint for reflection (prefect.yaml: ``flows/reflect.py:reflect``).

Run by the ``goalflow-reflect-on-stall`` automation with the id of a goal run that
stopped making progress; it asks that run to reflect (see ``goalflow.orchestration.reflector``).
"""

from goalflow.orchestration.reflector import reflect

__all__ = ["reflect"]
