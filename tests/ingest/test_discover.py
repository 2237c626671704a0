"""Discovery on real folder trees built in tmp_path: globs, hidden files, limits, links."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rag.errors import UsageError
from rag.globs import compile_glob
from rag.ingest.discover import discover

MB = 1024 * 1024


def touch(root: Path, *names: str, size: int = 10) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * size)


def rel(root: Path, paths: list[Path]) -> list[str]:
    return [p.relative_to(root.resolve()).as_posix() for p in paths]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    touch(
        tmp_path,
        "a.md",
        "b.TXT",
        "c.pdf",
        "d.htm",
        "e.html",
        "f.markdown",
        "image.bmp",
        "notes/x.md",
        "notes/deep/y.txt",
        "drafts/z.md",
        "notes/drafts/w.md",
        ".hidden.md",
        ".git/config.txt",
        "Makefile",
    )
    return tmp_path


def test_walks_folders_and_reports_what_it_skips(tree: Path) -> None:
    found = discover([tree], max_file_bytes=MB)
    assert rel(tree, found.files) == [
        "a.md", "b.TXT", "c.pdf", "d.htm", "drafts/z.md", "e.html", "f.markdown",
        "notes/deep/y.txt", "notes/drafts/w.md", "notes/x.md",
    ]  # fmt: skip
    assert found.roots == [tree.resolve()]
    assert found.given == []
    assert found.errors == []
    hidden = sorted(s.path.name for s in found.skipped if s.reason == "hidden")
    assert hidden == [".git", ".hidden.md"]
    assert {s.message for s in found.skipped if s.reason == "hidden"} == {"hidden file", "hidden folder"}
    assert found.count("unsupported") == 2  # image.bmp, Makefile
    assert all(s.unsupported for s in found.skipped if s.reason == "unsupported")
    assert all(p.is_absolute() for p in found.files)


def test_large_files_are_skipped_with_their_size(tmp_path: Path) -> None:
    touch(tmp_path, "small.txt", size=100)
    touch(tmp_path, "big.txt", size=3 * MB)
    found = discover([tmp_path], max_file_bytes=2 * MB)
    assert rel(tmp_path, found.files) == ["small.txt"]
    (skip,) = found.skipped
    assert (skip.path.name, skip.reason, skip.message) == (
        "big.txt",
        "too_large",
        "3.0 MB, over the 2.0 MB limit",
    )


@pytest.mark.parametrize(
    ("include", "exclude", "expected"),
    [
        (["*.md"], [], ["a.md", "drafts/z.md", "notes/drafts/w.md", "notes/x.md"]),
        (["*.MD"], [], ["a.md", "drafts/z.md", "notes/drafts/w.md", "notes/x.md"]),
        (["*.md"], ["drafts/**"], ["a.md", "notes/x.md"]),
        (["*.md"], ["drafts"], ["a.md", "notes/x.md"]),
        (["*.md"], ["/drafts/**"], ["a.md", "notes/drafts/w.md", "notes/x.md"]),
        (["notes/**"], [], ["notes/deep/y.txt", "notes/drafts/w.md", "notes/x.md"]),
        (["notes"], ["*.md"], ["notes/deep/y.txt"]),
        (["**/deep/*.txt"], [], ["notes/deep/y.txt"]),
        (["[ab].*"], [], ["a.md", "b.TXT"]),
        (["?.htm*"], ["[!d]*"], ["d.htm"]),
        ([], ["*.md", "*.markdown", "notes"], ["b.TXT", "c.pdf", "d.htm", "e.html"]),
    ],
)
def test_include_and_exclude_globs(tree: Path, include: list[str], exclude: list[str], expected: list[str]) -> None:
    found = discover([tree], include=include, exclude=exclude, max_file_bytes=MB)
    assert rel(tree, found.files) == expected


def test_glob_semantics() -> None:
    assert compile_glob("*.md").fullmatch("a/b/c.md")
    assert not compile_glob("*.md").fullmatch("a/b/c.mdx")
    assert compile_glob("a/**/z.md").fullmatch("a/z.md")
    assert compile_glob("a/**/z.md").fullmatch("a/b/c/z.md")
    assert not compile_glob("/a/*.md").fullmatch("x/a/b.md")
    assert compile_glob("build").fullmatch("x/build/out.txt")
    assert not compile_glob("build").fullmatch("x/builder/out.txt")


def test_file_named_twice_or_via_symlink_appears_once(tmp_path: Path) -> None:
    touch(tmp_path, "docs/a.md", "docs/sub/b.md")
    (tmp_path / "link.md").symlink_to(tmp_path / "docs" / "a.md")
    (tmp_path / "docs" / "sub_link").symlink_to(tmp_path / "docs" / "sub")
    found = discover(
        [tmp_path / "docs", tmp_path / "docs" / "a.md", tmp_path / "link.md", tmp_path / "docs" / "sub"],
        max_file_bytes=MB,
    )
    assert rel(tmp_path, found.files) == ["docs/a.md", "docs/sub/b.md"]
    assert rel(tmp_path, found.given) == ["docs/a.md"]
    assert rel(tmp_path, found.roots) == ["docs", "docs/sub"]


def test_links_to_files_and_folders_outside_are_tracked_by_the_link(tmp_path: Path) -> None:
    touch(tmp_path, "docs/a.md", "outside/b.md", "outside/dir/c.md")
    (tmp_path / "docs" / "b-link.md").symlink_to(tmp_path / "outside" / "b.md")
    (tmp_path / "docs" / "dir-link").symlink_to(tmp_path / "outside" / "dir")
    (tmp_path / "given.md").symlink_to(tmp_path / "outside" / "b.md")
    found = discover([tmp_path / "given.md", tmp_path / "docs"], max_file_bytes=MB, follow_links=True)
    # given.md is named first, so the file the other link also reaches is tracked by it.
    assert rel(tmp_path, found.files) == ["docs/a.md", "docs/dir-link/c.md", "given.md"]
    assert rel(tmp_path, found.given) == ["given.md"]


def test_links_out_of_the_folder_are_skipped_unless_followed(tmp_path: Path) -> None:
    touch(tmp_path, "docs/a.md", "docs/.kept/in.md", "docs/sub/b.md", "outside/secret.md", "outside/dir/c.md")
    (tmp_path / "docs" / "passwd.md").symlink_to(tmp_path / "outside" / "secret.md")
    (tmp_path / "docs" / "dir-link").symlink_to(tmp_path / "outside" / "dir")
    (tmp_path / "docs" / "sub" / "up.md").symlink_to(Path("..") / ".." / "outside" / "secret.md")
    (tmp_path / "docs" / "inside.md").symlink_to(Path(".kept") / "in.md")  # stays in: followed
    (tmp_path / "given.md").symlink_to(tmp_path / "outside" / "secret.md")  # named: the user asked
    found = discover([tmp_path / "docs", tmp_path / "given.md"], max_file_bytes=MB)
    assert rel(tmp_path, found.files) == ["docs/a.md", "docs/inside.md", "docs/sub/b.md", "given.md"]
    skipped = sorted((rel(tmp_path, [s.path])[0], s.reason, s.message) for s in found.skipped if s.reason != "hidden")
    message = "link to outside the folder (--follow-links)"
    assert skipped == [
        ("docs/dir-link", "outside", message),
        ("docs/passwd.md", "outside", message),
        ("docs/sub/up.md", "outside", message),
    ]
    assert found.errors == []
    followed = discover([tmp_path / "docs"], max_file_bytes=MB, follow_links=True)
    assert rel(tmp_path, followed.files) == [
        "docs/a.md",
        "docs/dir-link/c.md",
        "docs/inside.md",
        "docs/passwd.md",
        "docs/sub/b.md",
    ]
    assert [s.reason for s in followed.skipped] == ["hidden"]


def test_symlink_loops_do_not_hang(tmp_path: Path) -> None:
    touch(tmp_path, "a/b/file.md")
    (tmp_path / "a" / "b" / "up").symlink_to(tmp_path / "a")  # a/b/up -> a
    (tmp_path / "a" / "self").symlink_to(tmp_path / "a" / "self")  # points at itself
    found = discover([tmp_path / "a"], max_file_bytes=MB)
    assert rel(tmp_path, found.files) == ["a/b/file.md"]
    assert [(Path(e.path).name, e.reason) for e in found.errors] == [("self", "symlink loop")]


def test_broken_symlink_is_an_error_and_the_rest_is_found(tmp_path: Path) -> None:
    touch(tmp_path, "ok.md")
    (tmp_path / "gone.md").symlink_to(tmp_path / "nowhere.md")
    found = discover([tmp_path], max_file_bytes=MB)
    assert rel(tmp_path, found.files) == ["ok.md"]
    assert [(Path(e.path).name, e.reason) for e in found.errors] == [("gone.md", "broken symlink")]
    assert str(found.errors[0]).count("\n") == 0


def test_broken_symlink_given_directly_is_an_error_not_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "gone.md").symlink_to(tmp_path / "nowhere.md")
    found = discover([tmp_path / "gone.md"], max_file_bytes=MB)
    assert [e.reason for e in found.errors] == ["broken symlink"]


def test_missing_argument_is_a_usage_error(tmp_path: Path) -> None:
    touch(tmp_path, "ok.md")
    with pytest.raises(UsageError, match=r"no such file or folder: .*typo"):
        discover([tmp_path / "ok.md", tmp_path / "typo"], max_file_bytes=MB)


def test_hidden_file_or_folder_named_explicitly_is_read(tmp_path: Path) -> None:
    touch(tmp_path, ".notes/a.md", ".secret.md")
    found = discover([tmp_path / ".notes", tmp_path / ".secret.md"], max_file_bytes=MB)
    assert rel(tmp_path, found.files) == [".notes/a.md", ".secret.md"]
    assert found.skipped == []


def test_explicit_files_still_obey_type_size_and_globs(tmp_path: Path) -> None:
    touch(tmp_path, "a.pages", "b.md", "c.md")
    touch(tmp_path, "big.md", size=2 * MB)
    paths = [tmp_path / n for n in ("a.pages", "b.md", "c.md", "big.md")]
    found = discover(paths, exclude=["c.*"], max_file_bytes=MB)
    assert rel(tmp_path, found.files) == ["b.md"]
    assert sorted((s.path.name, s.reason) for s in found.skipped) == [
        ("a.pages", "unsupported"),
        ("big.md", "too_large"),
    ]


def test_special_files_are_not_read(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.txt")  # reading it would block forever
    found = discover([tmp_path], max_file_bytes=MB)
    assert found.files == []
    assert [(s.path.name, s.reason) for s in found.skipped] == [("pipe.txt", "not_a_file")]


@pytest.mark.skipif(os.name != "posix", reason="file modes")
def test_unreadable_folder_is_an_error(tmp_path: Path) -> None:
    touch(tmp_path, "ok.md", "locked/a.md")
    (tmp_path / "locked").chmod(0)
    code = (
        "from rag.ingest.discover import discover\n"
        f"found = discover([{str(tmp_path)!r}], max_file_bytes=1000)\n"
        "print([p.name for p in found.files], [(e.path.rsplit('/', 1)[1], e.reason) for e in found.errors])\n"
    )
    command = [sys.executable, "-c", code]
    if os.geteuid() == 0:  # root reads anything unless it drops CAP_DAC_OVERRIDE
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: mode 000 does not block listing")
        drop = "-dac_override,-dac_read_search"
        command = ["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}", *command]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=True)
    finally:
        (tmp_path / "locked").chmod(0o700)
    assert result.stdout.strip() == "['ok.md'] [('locked', 'permission denied')]"
