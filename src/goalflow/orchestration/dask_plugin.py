"""The Dask worker plugin that hands a goal's broker token to its workers.

The token travels over the cluster's own connection to each worker (TLS on the local
cluster goalflow starts), never in a task's parameters; a worker that joins later gets
it too. Imported only when the goal runs on Dask.
"""

from __future__ import annotations

from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from goalflow.llm.broker import keep_token

__all__ = ["BrokerToken"]


class BrokerToken(WorkerPlugin):
    """Keeps the goal's broker token in each worker process."""

    def __init__(self, key: str, token: str) -> None:
        self.key = key
        self.token = token

    def setup(self, worker: Any) -> None:
        keep_token(self.key, self.token)
