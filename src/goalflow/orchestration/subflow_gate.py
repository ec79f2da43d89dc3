"""How many subflows may be starting at once, by the Prefect server's database.

Creating a subflow is four writes (a placeholder task run, the flow run, two states).
On SQLite more than about four at once draw HTTP 503 "database is locked", and a
hundred fail after the client's retries; PostgreSQL takes hundreds (measured, see
ARCHITECTURE.md). So a goal lets at most ``subflow_starts`` subflows be created (or
be finishing) at a time; their bodies run freely in between, so nested composites
never wait on each other and cannot deadlock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass

__all__ = [
    "POSTGRES_SUBFLOW_STARTS",
    "SQLITE_SUBFLOW_STARTS",
    "SubflowGate",
    "subflow_starts",
]

SQLITE_SUBFLOW_STARTS = 3
POSTGRES_SUBFLOW_STARTS = 64


def subflow_starts(setting: int | None, database_url: str | None = None) -> int:
    """``setting`` when set; else small for SQLite, large for PostgreSQL.

    The database is read from ``PREFECT_API_DATABASE_CONNECTION_URL`` as this process
    sees it, which is the server's own for a local or ephemeral server; for a remote
    server on PostgreSQL, set ``GOALFLOW_SUBFLOW_STARTS`` (e.g. 64).
    """
    if setting is not None:
        return setting
    if database_url is None:
        from prefect.settings import get_current_settings

        secret = get_current_settings().server.database.connection_url
        database_url = secret.get_secret_value() if secret else ""
    if database_url.startswith("postgresql"):
        return POSTGRES_SUBFLOW_STARTS
    return SQLITE_SUBFLOW_STARTS


@dataclass
class _Hold:
    gate: SubflowGate
    held: bool = False


_HOLD: ContextVar[_Hold | None] = ContextVar("goalflow_subflow_hold", default=None)


class SubflowGate:
    """Caps subflows being created or finished at once; see the module docstring.

    The caller wraps the subflow call in ``async with gate.around_subflow():``; the
    subflow's body calls :func:`SubflowGate.body_started` first and awaits
    :func:`SubflowGate.body_finishing` last, so a slot is held only for the writes.
    """

    def __init__(self, limit: int) -> None:
        self._slots = asyncio.Semaphore(limit)

    @asynccontextmanager
    async def around_subflow(self) -> AsyncIterator[None]:
        hold = _Hold(self)
        await self._slots.acquire()
        hold.held = True
        token = _HOLD.set(hold)
        try:
            yield
        finally:
            _HOLD.reset(token)
            if hold.held:
                self._slots.release()

    @staticmethod
    def body_started() -> None:
        """The subflow exists: free its slot while its tasks run."""
        hold = _HOLD.get()
        if hold is not None and hold.held:
            hold.held = False
            hold.gate._slots.release()

    @staticmethod
    async def body_finishing() -> None:
        """The subflow is about to write its final state: take a slot for that."""
        hold = _HOLD.get()
        if hold is not None and not hold.held:
            await hold.gate._slots.acquire()
            hold.held = True
