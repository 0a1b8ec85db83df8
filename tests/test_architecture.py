"""The package's shape (docs/architecture.md, "Code map"): no import cycles, no hidden imports, readable sizes.

The layer order itself (cli -> study | perf -> training -> evaluation | inference -> factory ->
weights | data -> models) is import-linter's contract in pyproject.toml, run by `make lint`.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import grimp
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "inceptionnet"
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph("inceptionnet", cache_dir=None)


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph `edges` (as a list of nodes, first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt, [*path, nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def _module_edges(graph: grimp.ImportGraph) -> dict[str, set[str]]:
    return {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}


def test_cycle_finder_finds_a_cycle_and_accepts_a_tree() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_between_modules() -> None:
    assert _cycle(_module_edges(_graph())) is None


@pytest.mark.parametrize("depth", [2, 3])
def test_no_import_cycle_between_packages(depth: int) -> None:
    """Subpackages (inceptionnet.X, then inceptionnet.X.Y) never import each other both ways, via any chain."""
    edges: dict[str, set[str]] = {}
    for importer, imported in _module_edges(_graph()).items():
        a = ".".join(importer.split(".")[:depth])
        for module in imported:
            b = ".".join(module.split(".")[:depth])
            if a != b and importer != a and module != b:  # a package's __init__ re-exporting its own modules
                edges.setdefault(a, set()).add(b)
    assert _cycle(edges) is None


def _sources() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"))


def _functions(tree: ast.Module) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def test_no_package_import_inside_a_function() -> None:
    """Imports of the package sit at the top of each module, where the layer contract sees them."""
    hidden = []
    for path, tree in _sources():
        for func in _functions(tree):
            for node in ast.walk(func):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                if isinstance(node, ast.ImportFrom):
                    names = [node.module or ""]
                if any(n == "inceptionnet" or n.startswith("inceptionnet.") for n in names):
                    hidden.append(f"{path.relative_to(PACKAGE)}:{node.lineno} in {func.name}()")
    assert not hidden


def test_modules_and_functions_fit_on_a_screen() -> None:
    too_long = []
    for path, tree in _sources():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_MODULE_LINES:
            too_long.append(f"{path.relative_to(PACKAGE)}: {lines} lines")
        for func in _functions(tree):
            length = func.end_lineno - func.lineno + 1
            if length > MAX_FUNCTION_LINES:
                too_long.append(f"{path.relative_to(PACKAGE)}:{func.lineno} {func.name}(): {length} lines")
    assert not too_long


def _code_map() -> set[str]:
    """The modules docs/architecture.md's code map lists, as paths below src/inceptionnet (folders nest by indent)."""
    text = (PACKAGE.parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = text.split("## Code map", 1)[1].split("```", 2)[1]
    listed: set[str] = set()
    folders: list[tuple[int, str]] = []
    for line in block.splitlines():
        entry = re.match(r"^( {0,12})(\w+\.py|\w+/)(?=\s|$)", line)  # descriptions continue further right
        if entry is None:
            continue
        indent, name = len(entry.group(1)), entry.group(2)
        folders = [(i, f) for i, f in folders if i < indent]
        if name.endswith("/"):
            folders.append((indent, name))
        else:
            listed.add("".join(f for _, f in folders) + name)
    return listed


def test_the_code_map_lists_every_module() -> None:
    """Every module has its line; a subpackage's __init__.py may go without (its folder's line says it)."""
    modules = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")}
    listed = _code_map()
    missing = sorted(m for m in modules - listed if not (m.endswith("/__init__.py") and "/" in m))
    assert not missing, f"docs/architecture.md's code map has no line for {missing}"
    assert not listed - modules, f"the code map lists modules that do not exist: {sorted(listed - modules)}"


def test_run_folder_file_names_appear_in_one_module() -> None:
    """A run folder's files are named by weights/runfolder.py alone; everything else asks it."""
    names = ("last.pt", "previous.pt", "best.pt", "metrics.jsonl", "curves.png", "owner.lock")
    home = PACKAGE / "weights" / "runfolder.py"
    assert all(name in home.read_text(encoding="utf-8") for name in names)
    elsewhere = {
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in PACKAGE.rglob("*.py")
        if path != home
        for name in names
        if _in_code(path, name)
    }
    assert not elsewhere, f"run-folder file names outside weights/runfolder.py: {sorted(elsewhere)}"


def _in_code(path: Path, name: str) -> bool:
    """Whether `name` occurs in a string of `path` that is not a docstring."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return any(
        isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and name in node.value
        for node in ast.walk(tree)
    )
