"""Glob patterns, as ``--include``, ``--exclude`` and search filters read them.

A pattern is matched case-insensitively against a path relative to the folder being
walked (for a file named on the command line: the path as given), like ``.gitignore``:

- ``*`` and ``?`` match within one path component, ``**`` across components, and
  ``[abc]``/``[!abc]`` one character from (not from) a set;
- a pattern matches at any depth unless it starts with ``/``: ``*.md`` matches
  ``notes/a.md``, ``drafts/**`` matches ``2024/drafts/b.md``, ``/drafts/**`` only the
  ``drafts`` folder at the top;
- a pattern that matches a folder matches everything in it: ``--exclude drafts``.
"""

from __future__ import annotations

import re

__all__ = ["compile_glob"]


def compile_glob(pattern: str) -> re.Pattern[str]:
    """A regular expression for one ``--include``/``--exclude`` pattern (see the module doc)."""
    anchored = pattern.startswith("/")
    body = pattern.strip("/")
    out: list[str] = []
    i = 0
    while i < len(body):
        if body.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif body.startswith("**", i):
            out.append(".*")
            i += 2
        elif body[i] == "*":
            out.append("[^/]*")
            i += 1
        elif body[i] == "?":
            out.append("[^/]")
            i += 1
        elif body[i] == "[" and (close := body.find("]", i + 2)) > 0:
            negate = body[i + 1] in "!^"
            members = body[i + 1 + negate : close].replace("\\", "\\\\")
            out.append(f"[{'^' if negate else ''}{members}]")
            i = close + 1
        else:
            out.append(re.escape(body[i]))
            i += 1
    prefix = "" if anchored else "(?:.*/)?"
    return re.compile(f"{prefix}{''.join(out)}(?:/.*)?", re.IGNORECASE | re.DOTALL)
