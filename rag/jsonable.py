"""One way to turn rag's dataclasses into JSON: their fields, in order, each through its hook.

A class takes ``to_dict`` from ``Jsonable``; a field that goes into JSON otherwise than as
itself says so in its metadata, ``field(metadata=json_hook(...))`` (another key, a
conversion, left out while None), and ``json_order`` lists the keys when the JSON orders
them unlike the fields.  The API, the CLI's ``--json`` and the web page read these shapes:
they change only on purpose (``tests/test_jsonable.py`` pins them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, is_dataclass
from typing import Any, ClassVar

__all__ = ["Jsonable", "json_hook", "jsonable", "rounded", "to_dict"]

_META = "rag.json"


@dataclass(frozen=True)
class _Hook:
    key: str | None = None
    convert: Callable[[Any], Any] | None = None
    omit_none: bool = False


_PLAIN = _Hook()


def json_hook(
    *, key: str | None = None, convert: Callable[[Any], Any] | None = None, omit_none: bool = False
) -> dict[str, Any]:
    """A field's metadata (``field(metadata=json_hook(...))``): it goes into JSON under ``key``,
    through ``convert``, or not at all while it is None (``omit_none``)."""
    return {_META: _Hook(key, convert, omit_none)}


def rounded(digits: int) -> Callable[[Any], Any]:
    """A ``convert`` that rounds a number (None stays None), or each value of a dict of numbers."""

    def convert(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: round(v, digits) for k, v in value.items()}
        return None if value is None else round(value, digits)

    return convert


def jsonable(value: Any) -> Any:
    """``value`` in JSON's types: ``to_dict()`` where it has one, lists for lists and tuples."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return value


def to_dict(obj: Any, names: tuple[str, ...] = ()) -> dict[str, Any]:
    """The dataclass ``obj`` as a dict: ``names`` (fields or properties) in that order, else
    every field, each through its ``json_hook``."""
    hooks = {f.name: f.metadata.get(_META, _PLAIN) for f in fields(obj)}
    data: dict[str, Any] = {}
    for name in names or tuple(hooks):
        hook = hooks.get(name, _PLAIN)
        value = getattr(obj, name)
        if value is None and hook.omit_none:
            continue
        data[hook.key or name] = jsonable(hook.convert(value) if hook.convert else value)
    return data


class Jsonable:
    """A dataclass whose ``to_dict()`` is ``to_dict(self, json_order)``."""

    #: The fields and properties the JSON holds, in its order; empty: every field, in order.
    json_order: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self, self.json_order)
