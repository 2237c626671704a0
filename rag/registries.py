"""Named tables behind rag's extension points (embedders, answerers, retrieval stages), and
the one way to add to them: ``add`` returns a ``Registration`` that puts the table back."""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["Registration", "add"]

T = TypeVar("T")
_MISSING = object()


class Registration(Generic[T]):
    """What a ``register`` returns: ``undo()``, or leaving its ``with`` block, restores the
    name to what it held before (or removes it).  Undoing twice does nothing more."""

    def __init__(self, table: dict[str, T], name: str, value: T) -> None:
        self.name = name
        self._table = table
        self._previous: object = table.get(name, _MISSING)
        self._done = False
        table[name] = value

    def undo(self) -> None:
        if self._done:
            return
        self._done = True
        if self._previous is _MISSING:
            self._table.pop(self.name, None)
        else:
            self._table[self.name] = self._previous  # type: ignore[assignment]

    def __enter__(self) -> Registration[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.undo()


def add(table: dict[str, T], name: str, value: T) -> Registration[T]:
    """Put ``value`` in ``table`` under ``name`` until the registration is undone."""
    return Registration(table, name, value)
