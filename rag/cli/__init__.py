"""The ``rag`` command line."""

from __future__ import annotations

from typing import Any

from typer.core import TyperOption

_display_type = TyperOption.display_type_rich


def _flag_without_type(self: TyperOption, ctx: Any) -> str | None:
    # typer 0.29 prints "<bool>" after every flag in --help ("--json <bool>"), as if the flag
    # took a value.  Flags take none, so they show no type; every other option keeps its own.
    return None if self.is_flag else _display_type(self, ctx)


TyperOption.display_type_rich = _flag_without_type  # type: ignore[method-assign]
