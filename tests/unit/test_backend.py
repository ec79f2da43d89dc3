"""The subflow gate: few subflows created at once, bodies free, nesting never deadlocks."""

from __future__ import annotations

import asyncio

import pytest

from goalflow.orchestration.subflow_gate import (
    POSTGRES_SUBFLOW_STARTS,
    SQLITE_SUBFLOW_STARTS,
    SubflowGate,
    subflow_starts,
)
from goalflow.testing.virtual_time import run_virtual


def test_subflow_starts_follow_the_database_unless_set() -> None:
    assert subflow_starts(None, "sqlite+aiosqlite:///prefect.db") == SQLITE_SUBFLOW_STARTS
    assert subflow_starts(None, "postgresql+asyncpg://p@h/db") == POSTGRES_SUBFLOW_STARTS
    assert subflow_starts(7, "sqlite+aiosqlite:///prefect.db") == 7


@pytest.mark.parametrize("limit", [1, 3])
def test_writes_stay_under_the_limit_and_nested_subflows_finish(limit: int) -> None:
    gate = SubflowGate(limit)
    writing, most, finished = 0, 0, 0

    async def write() -> None:  # what Prefect does when a subflow starts or ends
        nonlocal writing, most
        writing += 1
        most = max(most, writing)
        await asyncio.sleep(0.3)
        writing -= 1

    async def subflow(depth: int) -> None:
        nonlocal finished
        async with gate.around_subflow():
            await write()
            gate.body_started()
            if depth:
                await asyncio.gather(*(subflow(depth - 1) for _ in range(3)))
            await asyncio.sleep(1.0)
            await gate.body_finishing()
            await write()
        finished += 1

    async def main() -> None:
        await asyncio.wait_for(asyncio.gather(*(subflow(3) for _ in range(4))), timeout=3600)

    run_virtual(main())

    assert finished == 4 * (1 + 3 + 9 + 27)
    assert most == limit
