"""The package's floors and module map, as README's "How it works" lists them, hold for the code.

A unit is a top-level module (``rag/engine.py``) or package (``rag/store/``).  Every
``import`` counts: at the top of a module, inside a function, under ``TYPE_CHECKING``.
A unit may import its own floor and those below; two units never import each other.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import pytest

from rag.filetypes import FILE_TYPES
from rag.ingest.loaders import reader

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "rag"
README = (ROOT / "README.md").read_text(encoding="utf-8")
# ``from rag import __version__`` reads the package's version, set before it imports anything.
FACE_NAMES = {"__version__"}

Imports = dict[str, dict[str, str]]  # unit -> the units it imports -> one import that does, for messages


def readme_floors(readme: str) -> list[set[str]]:
    """README's floors, bottom first: the numbered list after "Floors, bottom to top"."""
    start = readme.index("Floors, bottom to top")
    floors = []
    for line in readme[start:].splitlines()[1:]:
        item = re.match(r"\d+\. (.*?):", line)
        if item:
            floors.append(set(re.findall(r"`([\w.]+)`", item.group(1))))
        elif floors and not line.startswith("   "):  # the list ended
            break
    return floors


def units(package: Path) -> set[str]:
    """Top-level modules and packages (a folder without ``__init__.py``, like ``data/``, holds scripts)."""
    modules = {p.stem for p in package.glob("*.py") if p.stem != "__init__"}
    return modules | {p.name for p in package.iterdir() if (p / "__init__.py").is_file()}


def _module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_statements(package: Path) -> Iterator[tuple[str, str, int, bool]]:
    """(module, what it imports, line, whether under ``TYPE_CHECKING``) for every import of a
    ``rag`` name anywhere in the package's modules: ``from rag import x`` gives ``rag.x``."""
    for path in sorted(package.rglob("*.py")):
        if path.parent != package and not (path.parent / "__init__.py").is_file():
            continue  # scripts (rag/data), not part of the package
        module = _module_name(path, package)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for inner in ast.walk(node)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's package, up ``level - 1``
                    parts = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                    parts = parts[: len(parts) - node.level + 1]
                    base = ".".join([*parts, *([base] if base else [])])
                targets = [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                if target.split(".")[0] == "rag":
                    yield module, target, node.lineno, id(node) in typing_only


def imports(package: Path) -> Imports:
    """Which units each unit imports, counting every import statement in its source."""
    found: Imports = defaultdict(dict)
    known = units(package)
    for module, target, line, _ in import_statements(package):
        if "." not in module:
            continue  # rag/__init__.py: the public face re-exports from every floor
        unit, name = module.split(".")[1], target.split(".")[1]
        if name in FACE_NAMES:
            continue
        found[unit].setdefault(name if name in known else "rag", f"{module} imports {target} (line {line})")
    return found


def module_circles(package: Path) -> list[list[str]]:
    """Modules that import each other, round a circle of any length: what Python runs when
    they are imported (imports inside functions count, those under ``TYPE_CHECKING`` not)."""
    modules = {_module_name(p, package) for p in package.rglob("*.py")}
    edges: dict[str, set[str]] = defaultdict(set)
    for module, target, _, typing_only in import_statements(package):
        while target not in modules:  # ``rag.results.Hit`` is the module ``rag.results``
            target = target.rpartition(".")[0]
        if not typing_only and target != module:
            edges[module].add(target)
    reach = {m: _reachable(edges, m) for m in modules}
    circles = {tuple(sorted(m for m in reach[start] if start in reach[m])) for start in modules}
    return sorted(list(c) for c in circles if len(c) > 1)


def floor_errors(floors: list[set[str]], found: Imports, known: set[str]) -> list[str]:
    """Every way the imports break the floors: a unit missing from them, an import upward, a circle."""
    level = {name: n for n, floor in enumerate(floors) for name in floor}
    errors = [f"rag/{u} is on no floor: add it to README's list" for u in sorted(known - set(level))]
    errors += [f"README's floors name {u}, which is not in rag/" for u in sorted(set(level) - known)]
    for unit, targets in sorted(found.items()):
        for other, where in sorted(targets.items()):
            if other == unit:
                continue
            if other == "rag":
                errors.append(f"{where}: the package's face, which imports every floor")
            elif unit in level and other in level and level[other] > level[unit]:
                errors.append(f"{where}: {other} is on a floor above {unit}")
    # Circles: an import whose target leads back (floors allow imports within one floor).
    for unit, targets in sorted(found.items()):
        for other, where in sorted(targets.items()):
            if other != unit and unit in _reachable(found, other):
                errors.append(f"{where}: and {other} leads back to {unit}, a circle")
    return errors


def _reachable(found: Mapping[str, Iterable[str]], start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for other in found.get(todo.pop(), {}):
            if other not in seen:
                seen.add(other)
                todo.append(other)
    return seen


def test_the_readme_lists_the_floors() -> None:
    floors = readme_floors((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(floors) >= 8 and all(floors)
    assert floors[0] >= {"errors", "settings", "results", "filetypes"}
    assert floors[-1] >= {"cli"}


def test_every_import_stays_on_its_floor_or_below() -> None:
    floors = readme_floors((ROOT / "README.md").read_text(encoding="utf-8"))
    assert floor_errors(floors, imports(PACKAGE), units(PACKAGE)) == []


def test_no_modules_import_each_other() -> None:
    assert module_circles(PACKAGE) == []


def test_the_store_holds_persistence_only() -> None:
    found = imports(PACKAGE)
    assert not set(found["store"]) & {"engine", "home", "answer", "chat", "moderation", "serve", "cli"}
    # importing the results imports no parser
    assert set(found["results"]) <= {"filetypes", "jsonable", "text", "usage"}


def test_every_file_type_names_a_reader_the_loaders_have() -> None:
    """The table at the bottom names its readers as text: each name must lead to one."""
    assert all(callable(reader(t.reader)) for t in FILE_TYPES.values())


# --- the checker catches what it should (on small packages it builds itself) --------------


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    package = tmp_path / "rag"
    for name, text in {"__init__.py": "", **files}.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    return package


FLOORS = "Floors, bottom to top:\n\n1. `results`: values\n2. `store`: persistence\n3. `engine`: one index\n"


@pytest.mark.parametrize(
    "source",
    [
        "from rag.engine import Engine\n",
        "import rag.engine\n",
        "from rag import engine\n",
        "from .. import engine\n",
        "def index():\n    from rag.engine import Engine\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from rag.engine import Engine\n",
        "from rag import Engine\n",
    ],
)
def test_an_import_from_a_floor_above_fails(tmp_path: Path, source: str) -> None:
    package = _package(
        tmp_path,
        {"results.py": "", "engine.py": "from rag.results import Hit\n", "store/__init__.py": "",
         "store/index.py": source},
    )  # fmt: skip
    errors = floor_errors(readme_floors(FLOORS), imports(package), units(package))
    assert len(errors) == 1 and "rag.store.index imports rag" in errors[0], errors


def test_a_circle_within_a_floor_fails_and_a_missing_unit_is_named(tmp_path: Path) -> None:
    package = _package(
        tmp_path,
        {"results.py": "from rag import usage\n", "usage.py": "from rag.results import Hit\n", "store.py": "",
         "engine.py": "from rag.results import Hit\nfrom rag.store import Index\n", "watch.py": ""},
    )  # fmt: skip
    floors = readme_floors(FLOORS.replace("`results`", "`results` `usage`"))
    errors = floor_errors(floors, imports(package), units(package))
    assert [e for e in errors if "circle" in e] == [
        "rag.results imports rag.usage (line 1): and usage leads back to results, a circle",
        "rag.usage imports rag.results.Hit (line 1): and results leads back to usage, a circle",
    ]
    assert "rag/watch is on no floor: add it to README's list" in errors
    assert not any("engine" in e for e in errors)


def test_a_circle_of_modules_fails_unless_one_side_is_for_type_checking(tmp_path: Path) -> None:
    package = _package(
        tmp_path,
        {"results.py": "def location():\n    from rag.ingest.loaders import file_type\n",
         "ingest/__init__.py": "", "ingest/loaders/__init__.py": "from rag.ingest.loaders.layout import ROWS\n",
         "ingest/loaders/layout.py": "from rag.results import location\n",
         "engine.py": "from rag.home import Store\n",
         "home.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from rag.engine import Engine\n"},
    )  # fmt: skip
    assert module_circles(package) == [["rag.ingest.loaders", "rag.ingest.loaders.layout", "rag.results"]]


def readme_map(readme: str) -> dict[str, tuple[str, set[str]]]:
    """README's module map: each package (``ingest/loaders``, or ``*`` for the top-level
    modules) with its one-line description and the modules listed under it."""
    start = readme.index("```\nrag/\n") + len("```\nrag/\n")
    block = readme[start : readme.index("```", start)]
    found: dict[str, tuple[str, set[str]]] = {}
    current = None
    for line in block.splitlines():
        head = re.match(r"  (\S+)/ +(.+)$|  (\*)\.py +(.+)$", line)
        if head:
            current = head.group(1) or head.group(3)
            found[current] = (head.group(2) or head.group(4), set())
        elif current is not None:
            found[current][1].update(re.findall(r"\b(\w+)\.py\b", line))
    return found


def packages(package: Path) -> dict[str, set[str]]:
    """Every package under ``rag`` (``*`` for ``rag`` itself) and its modules, without ``__init__``."""
    tree = {}
    for init in package.rglob("__init__.py"):
        folder = init.parent
        name = "*" if folder == package else folder.relative_to(package).as_posix()
        tree[name] = {p.stem for p in folder.glob("*.py")} - {"__init__", "__main__"}
    return tree


def first_line(docstring: str | None) -> str:
    return (docstring or "").strip().splitlines()[0].replace("``", "") if docstring else ""


def test_the_readme_map_lists_every_module_in_its_package_and_no_other() -> None:
    listed, tree = readme_map(README), packages(PACKAGE)
    assert set(listed) == set(tree), "packages in the README's map and in rag/ differ"
    for name, modules in tree.items():
        assert listed[name][1] == modules, (
            f"{name}/: missing {modules - listed[name][1]}, gone {listed[name][1] - modules}"
        )


def test_each_package_is_described_in_the_readme_by_its_own_docstring() -> None:
    listed = readme_map(README)
    for name in packages(PACKAGE):
        if name == "*":
            continue
        init = PACKAGE / name / "__init__.py"
        docstring = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert first_line(docstring), f"rag/{name}/__init__.py has no docstring to describe it"
        assert listed[name][0] == first_line(docstring), f"rag/{name}/: README says otherwise than its docstring"


def test_the_map_reader_sees_a_module_left_out_and_one_that_is_gone() -> None:
    block = "```\nrag/\n  a/  The a package.\n      one.py  two.py (note)\n  *.py  Single modules.\n      top.py\n```\n"
    assert readme_map(block) == {"a": ("The a package.", {"one", "two"}), "*": ("Single modules.", {"top"})}
    assert readme_map(block.replace("two.py (note)", ""))["a"][1] != {"one", "two"}
