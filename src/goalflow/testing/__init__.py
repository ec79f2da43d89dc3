"""Test doubles that are real collaborators, for goalflow's tests and benchmarks.

``OpenAITestServer`` is an OpenAI-compatible HTTP server on loopback whose answers,
latency, rate limits and failures are scripted by the test that runs it.
"""

from goalflow.testing.protocol import ChatRequest, Match, Reply, ReplySource
from goalflow.testing.script import ServerStats
from goalflow.testing.server import OpenAITestServer

__all__ = [
    "ChatRequest",
    "Match",
    "OpenAITestServer",
    "Reply",
    "ReplySource",
    "ServerStats",
]
