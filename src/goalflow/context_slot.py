"""A context variable that survives being pickled, for flow code shipped to workers.

Prefect serialises the flow run's context, flow object included, with every task it
submits to Dask or Ray; cloudpickle copies the flow's function by value, and with it
every module global the function names. A ``contextvars.ContextVar`` cannot be pickled,
so a flow that names one could not submit to a cluster. A :class:`ContextSlot` pickles
as its name and unpickles as the slot of that name in the receiving process.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import Any, Generic, TypeVar

__all__ = ["ContextSlot"]

T = TypeVar("T")
_SLOTS: dict[str, ContextSlot[Any]] = {}


class ContextSlot(Generic[T]):
    """``get``/``set``/``reset`` of a ``ContextVar``, one per name in a process."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._var: ContextVar[T] = ContextVar(name)
        _SLOTS.setdefault(name, self)

    def get(self) -> T:
        return self._var.get()

    def set(self, value: T) -> Token[T]:
        return self._var.set(value)

    def reset(self, token: Token[T]) -> None:
        self._var.reset(token)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_slot_named, (self.name,))


def _slot_named(name: str) -> ContextSlot[Any]:
    return _SLOTS.get(name) or ContextSlot(name)
