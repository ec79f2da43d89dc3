"""One rate limit shared by every process and machine that uses the same API key.

The in-process :class:`~goalflow.core.pacing.Pacer` is exact but sees only its own calls.
When several goals run at once in different processes (workers, served deployments,
CLI runs) against one key, they also take a slot of a Prefect global concurrency limit
with slot decay before each call, so together they stay under the key's limit.

When to use which: one process (a CLI run, one worker running one goal at a time) ->
the pacer alone, set ``requests_per_minute`` on the LLMProvider block. Several
processes or machines on one key -> also name a ``shared_limit`` on the block and run
``goalflow setup``, which creates it (strict names: a misspelled or missing limit is an
error, not a silent no-limit). The shared limit costs ~50-60 ms per call and paces
coarsely (waiting clients poll the server, 423 + Retry-After), so the pacer stays on
for precision; give each process's pacer its share of the key's limit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from goalflow.errors import ConfigError

__all__ = ["ensure_global_limit", "shared_gate", "shared_limit_shape"]


def shared_limit_shape(requests_per_minute: int) -> tuple[int, float]:
    """The slots and slot decay per second that admit at most R calls in any minute.

    A limit of B slots decaying at r per second is a token bucket: in any 60 s it
    admits at most B + 60 r. B is one second's worth (so calls spread out instead of
    bursting) and r makes up the rest of R.
    """
    if requests_per_minute < 2:
        raise ConfigError(
            f"a shared rate limit needs at least 2 requests per minute, got "
            f"{requests_per_minute}: raise requests_per_minute or drop shared_limit"
        )
    slots = max(1, requests_per_minute // 60)
    return slots, (requests_per_minute - slots) / 60.0


async def ensure_global_limit(name: str, requests_per_minute: int) -> str:
    """Create the named global concurrency limit, or resize it; say which was done.

    Idempotent: ``goalflow setup`` calls it for the LLMProvider block's ``shared_limit``.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import (
        GlobalConcurrencyLimitCreate,
        GlobalConcurrencyLimitUpdate,
    )
    from prefect.exceptions import ObjectNotFound

    slots, decay = shared_limit_shape(requests_per_minute)
    async with get_client() as client:
        try:
            await client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            await client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(
                    name=name, limit=slots, slot_decay_per_second=decay, active=True
                )
            )
            return f"created global concurrency limit {name!r}: {requests_per_minute}/min"
        await client.update_global_concurrency_limit(
            name,
            GlobalConcurrencyLimitUpdate(limit=slots, slot_decay_per_second=decay, active=True),
        )
    return f"sized global concurrency limit {name!r}: {requests_per_minute}/min"


def shared_gate(name: str) -> Callable[[], Awaitable[None]]:
    """A wait for one slot of the named limit, for :class:`~goalflow.core.pacing.Pacer`."""

    async def take_slot() -> None:
        from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError, rate_limit

        try:
            await rate_limit(name, occupy=1, strict=True)
        except ConcurrencySlotAcquisitionError as e:
            raise ConfigError(
                f"the shared rate limit {name!r} does not exist on the Prefect server: run "
                "`goalflow setup`, or unset shared_limit on the LLMProvider block"
            ) from e

    return take_slot
