"""goalflow: an autonomous goal runner on Prefect.

An LLM plans a goal into tasks that declare what they consume and produce; goalflow
turns them into a graph, runs what is ready in parallel as Prefect runs, and hands
back the deliverables.
"""

__version__ = "0.1.0"
