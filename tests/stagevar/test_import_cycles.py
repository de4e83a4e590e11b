"""The import graph of the ``stagevar`` package, read from the source (``ast``): no cycle among its modules, even
counting imports inside functions, and in ``stagevar.models`` every import sits at the top of its module.

An import inside a function hides a cycle until that function runs. The one exception in the models is the optional
``hf`` extra (``transformers``), imported where it is needed so that the package imports without it."""

from __future__ import annotations

import ast
from pathlib import Path

import stagevar

ROOT = Path(stagevar.__file__).resolve().parent  # python/stagevar
OPTIONAL = {"transformers", "safetensors"}  # the "hf" extra of pyproject.toml


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: set[str]) -> list[str]:
    """The package modules an import statement of ``module`` loads (a name imported from a package that is one of
    its submodules counts as that submodule)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in known]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    found = [f"{source}.{a.name}" for a in node.names if f"{source}.{a.name}" in known]
    if source in known and len(found) < len(node.names):
        found.append(source)
    return found


def import_graph(top_level_only: bool) -> dict[str, set[str]]:
    """``module -> modules it imports`` over every module of ``stagevar`` (only module-level statements when
    ``top_level_only``; ``if TYPE_CHECKING:`` blocks never count, as they never run)."""
    modules = _modules()
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        nodes = _top_level_imports(tree) if top_level_only else _all_imports(tree)
        graph[name] = {t for node in nodes for t in _targets(node, name, is_package, known) if t != name}
    return graph


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _all_imports(tree: ast.AST) -> list[ast.AST]:
    out, stack = [], [tree]
    while stack:
        node = stack.pop()
        if _is_type_checking(node):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return out


def _top_level_imports(tree: ast.Module) -> list[ast.AST]:
    out, stack = [], list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or _is_type_checking(node):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            stack.extend(ast.iter_child_nodes(node))
    return out


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a closed path of module names) per strongly connected component with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_closed_path(graph, set(c)) for c in components]


def _closed_path(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    start = min(component)
    parent, queue = {start: None}, [start]
    while queue:  # breadth first, back to start: the shortest cycle through it
        v = queue.pop(0)
        for w in sorted(graph[v] & component):
            if w == start:
                path = [v]
                while parent[path[-1]] is not None:
                    path.append(parent[path[-1]])
                return [start, *reversed(path[:-1]), start] if len(path) > 1 else [start, v, start]
            if w not in parent:
                parent[w] = v
                queue.append(w)
    return sorted(component)


def test_finder_reports_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_relative_imports_resolve_to_modules():
    graph = import_graph(top_level_only=True)
    assert "stagevar.models.session" in graph["stagevar.models.common"]
    assert "stagevar.models.star.config" in graph["stagevar.models.star.session"]


def _describe(cycles: list[list[str]]) -> str:
    return "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_import_cycle_at_import_time():
    cycles = find_cycles(import_graph(top_level_only=True))
    assert not cycles, _describe(cycles)


def test_no_import_cycle_even_through_imports_inside_functions():
    cycles = find_cycles(import_graph(top_level_only=False))
    assert not cycles, _describe(cycles)


def test_models_import_at_the_top():
    inside = []
    for name, path in _modules().items():
        if not name.startswith("stagevar.models"):
            continue
        tree = ast.parse(path.read_text(), str(path))
        top = {id(n) for n in _top_level_imports(tree)}
        for node in _all_imports(tree):
            if id(node) in top:
                continue
            roots = {a.name.split(".")[0] for a in node.names} if isinstance(node, ast.Import) else set()
            if isinstance(node, ast.ImportFrom):
                roots = {"." if node.level else (node.module or "").split(".")[0]}
            if not roots <= OPTIONAL:
                inside.append(f"{name}:{node.lineno}")
    assert not inside, f"imports inside functions or classes: {inside}"


if __name__ == "__main__":  # every cycle, imports inside functions included
    for cycle in find_cycles(import_graph(top_level_only=False)):
        print(" -> ".join(cycle))
