"""The package's import structure: no cycles, one home per name, private names stay private.

``lint-imports`` checks the declared layers (pyproject.toml, ``[tool.importlinter]``); these tests
run in the default suite so that a cycle, a re-export or a private import fails it too.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "babyaipp"
#: Where callers live: each must import a name from the module that defines it.
CALLER_DIRS = ("babyaipp", "tests", "examples", "benchmarks")
#: A function-local import of the package's own modules must say which dependency it keeps lazy.
LAZY_NOTE = "only when"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _top_level_statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Module-level statements, looking inside ``if``/``try`` blocks (not functions or classes)."""
    for node in body:
        yield node
        if isinstance(node, ast.If | ast.Try):
            blocks = [
                node.body,
                node.orelse,
                *(h.body for h in getattr(node, "handlers", ())),
                getattr(node, "finalbody", []),
            ]
            for block in blocks:
                yield from _top_level_statements(block)


def _owned_and_imported(module: str) -> tuple[set[str], set[str]]:
    """Names ``module`` defines itself, and names it binds by importing them from elsewhere."""
    owned: set[str] = set()
    imported: set[str] = set()
    for node in _top_level_statements(_tree(MODULES[module]).body):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            owned.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            owned.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, ast.ImportFrom | ast.Import):
            imported.update((a.asname or a.name).split(".")[0] for a in node.names)
    return owned, imported


def _is_module(name: str) -> bool:
    return name in MODULES


def _babyaipp_imports(tree: ast.AST) -> Iterator[tuple[ast.ImportFrom, str, str]]:
    """``(node, module, name)`` for every ``from babyaipp... import name`` in ``tree``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("babyaipp"):
            for alias in node.names:
                yield node, node.module, alias.name


def _caller_files() -> Iterator[Path]:
    for folder in CALLER_DIRS:
        yield from sorted((ROOT / folder).rglob("*.py"))


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(ROOT)}:{node.lineno}"


# ----------------------------------------------------------------------------- cycles
def _cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each a cycle or several."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(root: str) -> None:  # iterative, so deep graphs do not hit the recursion limit
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            module, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                    break
                if child in on_stack:
                    low[module] = min(low[module], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[module])
                if low[module] == index[module]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == module:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def _import_lines(graph, cycle: list[str]) -> list[str]:
    members = set(cycle)
    lines = []
    for importer in cycle:
        for imported in sorted(graph.find_modules_directly_imported_by(importer) & members):
            for detail in graph.get_import_details(importer=importer, imported=imported):
                lines.append(f"{importer}:{detail['line_number']}: {detail['line_contents']}")
    return lines


def test_the_import_graph_has_no_cycle():
    """grimp's graph counts function-local imports too, so a cycle cannot hide inside a function."""
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("babyaipp", cache_dir=None)
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(line for c in cycles for line in _import_lines(graph, c))


def test_the_cycle_check_finds_a_cycle():
    """The check above, on a graph with a cycle added (so it cannot pass by finding nothing)."""
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("babyaipp", cache_dir=None)
    graph.add_import(
        importer="babyaipp.errors",
        imported="babyaipp.agents.training",
        line_number=1,
        line_contents="from babyaipp.agents import training",
    )
    cycles = _cycles(graph)
    assert any({"babyaipp.errors", "babyaipp.agents.training"} <= set(c) for c in cycles)


# ----------------------------------------------------------------------------- one home per name
def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_module_imports_a_private_name_of_another():
    """Nothing imports another module's ``_private`` name; within the package, no module reaches
    into another's either (tests may still monkeypatch one through its module)."""
    offences = []
    for path in _caller_files():
        tree = _tree(path)
        for node, module, name in _babyaipp_imports(tree):
            if _private(name) and not _is_module(f"{module}.{name}"):
                offences.append(f"{_where(path, node)}: from {module} import {name}")
        if not path.is_relative_to(PACKAGE):
            continue
        modules = {
            (a.asname or a.name)
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and n.level == 0 and (n.module or "").startswith("babyaipp")
            for a in n.names
            if _is_module(f"{n.module}.{a.name}")
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in modules
                and _private(node.attr)
            ):
                offences.append(f"{_where(path, node)}: {node.value.id}.{node.attr}")
    assert not offences, "private names used outside their module:\n" + "\n".join(offences)


def test_every_name_is_imported_from_its_home():
    """No module re-exports a name it imports (package ``__init__`` files, the one import point of
    their package, excepted), so each caller imports each name from where it is defined."""
    homes = {module: _owned_and_imported(module) for module in MODULES}
    offences = []
    for path in _caller_files():
        for node, module, name in _babyaipp_imports(_tree(path)):
            if module not in MODULES or MODULES[module].name == "__init__.py" or _is_module(f"{module}.{name}"):
                continue
            owned, _ = homes[module]
            if name not in owned:
                offences.append(f"{_where(path, node)}: from {module} import {name} ({module} does not define it)")
    assert not offences, "names imported from a module that only re-exports them:\n" + "\n".join(offences)


def test_all_lists_only_names_the_module_defines():
    offences = []
    for module, path in MODULES.items():
        if path.name == "__init__.py":
            continue
        owned, _ = _owned_and_imported(module)
        for node in _top_level_statements(_tree(path).body):
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
                listed = [e.value for e in getattr(node.value, "elts", ()) if isinstance(e, ast.Constant)]
                offences += [f"{module}.__all__: {name}" for name in listed if name not in owned]
    assert not offences, "__all__ names a module does not define:\n" + "\n".join(offences)


def test_documented_imports_name_each_home():
    """Code in the docs and README imports names from their home modules too."""
    homes = {module: _owned_and_imported(module)[0] for module in MODULES}
    pattern = re.compile(r"^\s*(?:>>> )?from (babyaipp[\w.]*) import \(?([\w, ]+)", re.MULTILINE)
    offences = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        if not path.exists():
            continue
        for match in pattern.finditer(path.read_text()):
            module = match.group(1)
            for name in filter(None, (n.strip() for n in match.group(2).split(","))):
                if module not in MODULES or MODULES[module].name == "__init__.py" or _is_module(f"{module}.{name}"):
                    continue
                if name not in homes[module]:
                    offences.append(f"{path.relative_to(ROOT)}: from {module} import {name}")
    assert not offences, "docs import names from a module that does not define them:\n" + "\n".join(offences)


# ----------------------------------------------------------------------------- local imports
def _local_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    def walk(node: ast.AST, inside: bool) -> Iterator[ast.Import | ast.ImportFrom]:
        for child in ast.iter_child_nodes(node):
            if inside and isinstance(child, ast.Import | ast.ImportFrom):
                yield child
            yield from walk(child, inside or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda))

    yield from walk(tree, False)


def _imports_babyaipp(node: ast.Import | ast.ImportFrom) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.level > 0 or (node.module or "").startswith("babyaipp")
    return any(a.name.startswith("babyaipp") for a in node.names)


def test_function_local_imports_of_the_package_say_what_they_keep_lazy():
    """A function-local import of babyaipp's own modules is only there to keep a heavy dependency
    (torch, SB3, Ray, matplotlib, Minari) from loading with the command line; a comment on the
    import block says so (``... only when ...``)."""
    offences = []
    for path in MODULES.values():
        lines = path.read_text().splitlines()
        for node in _local_imports(_tree(path)):
            if not _imports_babyaipp(node):
                continue
            block, i = [], node.lineno - 1
            while i >= 0 and lines[i].strip().startswith(("from ", "import ", "#")):
                block.append(lines[i])
                i -= 1
            if not any(LAZY_NOTE in line.partition("#")[2] for line in block):
                offences.append(f"{_where(path, node)}: {lines[node.lineno - 1].strip()}")
    assert not offences, "function-local imports of babyaipp modules with no reason given:\n" + "\n".join(offences)
