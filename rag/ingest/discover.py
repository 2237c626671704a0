"""Find the files an ingest should read.

Folders are walked recursively, following symlinks that stay inside the folder being
walked, but never into a folder already seen, so links that loop cannot hang the walk.  A
link whose target lies outside that folder (``secret.txt -> /etc/passwd``) is skipped and
reported, unless ``follow_links``: whoever can write into an ingested folder must not be
able to pull other files into the index (and so onto a server that serves it).  Hidden
files and folders (a leading dot, or the hidden attribute on Windows), files over the
size limit and files of types rag cannot read are skipped and reported; so is anything
found that is not a regular file.  A file named on the command line is read even when
hidden (or a link to anywhere), and a folder named there is walked even when hidden.
Broken symlinks and unreadable folders are errors, reported one line each; a path on the
command line that does not exist is a usage error.

Glob patterns (``--include`` and ``--exclude``) are read as ``rag.globs`` says.  A file
is kept when it matches some include pattern (or none is given) and no exclude pattern.
Files left out by a pattern are not reported: the user asked for that.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

from rag.errors import DocumentError, UsageError
from rag.filetypes import kind_of
from rag.globs import compile_glob

SkipReason = Literal["hidden", "too_large", "unsupported", "not_a_file", "outside"]

_FILE_ATTRIBUTE_HIDDEN = 2  # Windows


class Skip(NamedTuple):
    path: Path
    reason: SkipReason
    message: str

    @property
    def unsupported(self) -> bool:
        """A file of a type rag does not read: counted in the summary, not listed."""
        return self.reason == "unsupported"


@dataclass
class Discovery:
    #: Files to load: absolute (symlinks kept: see ``_Walker._file``), sorted, each once.
    files: list[Path] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    errors: list[DocumentError] = field(default_factory=list)
    #: Folders that were walked (resolved): indexed files under them that no longer
    #: exist can be pruned.
    roots: list[Path] = field(default_factory=list)
    #: Files named directly on the command line (as tracked in ``files``).
    given: list[Path] = field(default_factory=list)

    def count(self, reason: SkipReason) -> int:
        return sum(1 for s in self.skipped if s.reason == reason)


def discover(
    paths: Iterable[str | Path],
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    max_file_bytes: int,
    follow_links: bool = False,
) -> Discovery:
    """Every file under ``paths`` that ingest should read, and what was left out and why.

    ``follow_links`` follows symlinks that lead out of the folder being walked too.
    """
    walker = _Walker([compile_glob(p) for p in include], [compile_glob(p) for p in exclude], max_file_bytes)
    walker.follow_links = follow_links
    arguments = [Path(p) for p in paths]
    for path in arguments:  # check them all before any work: a typo should cost nothing
        if not os.path.lexists(path):
            raise UsageError(f"no such file or folder: {path}")
    for path in arguments:
        walker.argument(path)
    found = walker.found
    found.files.sort()
    found.roots = sorted(set(found.roots))
    found.given = sorted(set(found.given))
    return found


class _Walker:
    def __init__(self, include: list[re.Pattern[str]], exclude: list[re.Pattern[str]], max_bytes: int) -> None:
        self.include, self.exclude, self.max_bytes = include, exclude, max_bytes
        self.follow_links = False
        self.found = Discovery()
        self._seen_files: dict[tuple[int, int], Path] = {}  # (device, inode) -> the path tracked
        self._seen_dirs: set[tuple[int, int]] = set()

    def argument(self, path: Path) -> None:
        info = self._stat(path)
        if info is None:
            return
        if stat.S_ISDIR(info.st_mode):
            root = path.resolve()
            self.found.roots.append(root)
            self._walk(root, info)
        else:
            self._file(Path(os.path.abspath(path)), path.as_posix(), info, given=True)

    def _walk(self, root: Path, info: os.stat_result) -> None:
        if (info.st_dev, info.st_ino) in self._seen_dirs:
            return  # named twice, or inside a folder already walked
        self._seen_dirs.add((info.st_dev, info.st_ino))
        # (folder under the resolved root, symlinks kept; its path relative to root + "/")
        folders = [(root, "")]
        while folders:
            folder, relative = folders.pop()
            try:
                with os.scandir(folder) as listing:
                    entries = list(listing)
            except OSError as exc:
                self.found.errors.append(DocumentError(folder, _reason(exc)))
                continue
            for entry in entries:
                path = folder / entry.name
                name = relative + entry.name
                if self._matches(self.exclude, name):
                    continue
                dotted = entry.name.startswith(".")
                if not dotted and not self.follow_links and entry.is_symlink() and not _inside(path, root):
                    self.found.skipped.append(Skip(path, "outside", "link to outside the folder (--follow-links)"))
                    continue
                found = None if dotted else self._stat(path)
                if dotted or (found and getattr(found, "st_file_attributes", 0) & _FILE_ATTRIBUTE_HIDDEN):
                    kind = "folder" if entry.is_dir() else "file"
                    self.found.skipped.append(Skip(path, "hidden", f"hidden {kind}"))
                elif found is None:
                    continue
                elif stat.S_ISDIR(found.st_mode):
                    key = (found.st_dev, found.st_ino)
                    if key not in self._seen_dirs:  # a symlink loop, or a folder reached twice
                        self._seen_dirs.add(key)
                        folders.append((path, name + "/"))
                else:
                    self._file(path, name, found, given=False)

    def _file(self, path: Path, name: str, info: os.stat_result, *, given: bool) -> None:
        """Consider one file; ``path`` is absolute, with any symlinks in it kept.

        A file is tracked by the path it was found at, not its target's: a link inside an
        ingested folder is pruned when the link is deleted, wherever its target lives.  A
        file reached twice (a link and its target, or named twice) is tracked once, under
        the first path found.
        """
        if self.include and not self._matches(self.include, name):
            return
        if given and self._matches(self.exclude, name):
            return
        if not stat.S_ISREG(info.st_mode):
            self.found.skipped.append(Skip(path, "not_a_file", "not a regular file"))
        elif kind_of(path) is None:
            suffix = path.suffix or "no extension"
            self.found.skipped.append(Skip(path, "unsupported", f"unsupported file type ({suffix})"))
        elif info.st_size > self.max_bytes:
            message = f"{_mb(info.st_size)}, over the {_mb(self.max_bytes)} limit"
            self.found.skipped.append(Skip(path, "too_large", message))
        else:
            tracked = self._seen_files.setdefault((info.st_dev, info.st_ino), path)
            if tracked is path:
                self.found.files.append(path)
            if given:
                self.found.given.append(tracked)

    def _stat(self, path: Path) -> os.stat_result | None:
        """``stat`` following links; None (and an error recorded) when that fails."""
        try:
            return path.stat()
        except OSError as exc:
            self.found.errors.append(DocumentError(path, _reason(exc, path)))
            return None

    @staticmethod
    def _matches(patterns: list[re.Pattern[str]], name: str) -> bool:
        return any(p.fullmatch(name) for p in patterns)


def _inside(path: Path, root: Path) -> bool:
    """True when ``path``, links resolved, is ``root`` (itself resolved) or under it.

    A broken link counts as inside: ``_stat`` reports it as broken.
    """
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return True
    return target == root or target.is_relative_to(root)


def _reason(exc: OSError, path: Path | None = None) -> str:
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    if isinstance(exc, FileNotFoundError) and path is not None and path.is_symlink():
        return "broken symlink"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return (exc.strerror or str(exc)).lower()


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB"
