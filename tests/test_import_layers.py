"""The package's import graph: no cycles (TYPE_CHECKING imports included), layers kept.

Every ``import`` / ``from ... import`` anywhere in a module counts, and importing
``a.b.c`` also runs the packages ``a.b`` and ``a``, which count as imported too.
The tests' own imports are read too: no test module imports another one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mm_pipeline

ROOT = Path(mm_pipeline.__file__).parent
TESTS = Path(__file__).parent
#: The router: the public ranking functions and the modules they alone use.
ROUTER = ("_rank", "_options", "_budget", "_hybrid", "_assemble", "_rank_output", "_pairs")
#: Modules beneath both routes: they import no route, router or client module.
TRANSPORT = (
    "_answer_cache",
    "_connect",
    "_exceptions",
    "_http_errors",
    "_ratelimit",
    "_redact",
    "_request_stats",
    "_retry",
    "_session",
    "_settings",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that *path* imports (and the packages that import runs)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            parts = target.split(".")
            for end in range(1, len(parts) + 1):
                prefix = ".".join(parts[:end])
                if prefix in modules and prefix != name and not name.startswith(prefix + "."):
                    found.add(prefix)
    return found


def graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in ROOT.rglob("*.py")}
    modules = set(paths)
    return {name: imports_of(path, modules) for name, path in paths.items()}


def cycles(edges: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(edges.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_in_the_package() -> None:
    """No module imports, directly or not, a module that imports it."""
    assert cycles(graph()) == []


def test_the_rounds_algorithm_imports_nothing_of_the_package() -> None:
    """_online/_rounds.py is the algorithm alone: no _plan, no _normalize, nothing else."""
    assert graph()["mm_pipeline._online._rounds"] <= {"mm_pipeline", "mm_pipeline._online"}


def test_the_online_route_sits_below_the_router() -> None:
    """Dependencies point one way: no _online module imports the router (_rank and its parts)."""
    edges = graph()
    online = [name for name in edges if name.startswith("mm_pipeline._online")]
    assert online
    assert not any(_upward(edges[name], ROUTER) for name in online)


def test_a_planted_cycle_is_found() -> None:
    """The cycle finder itself finds a cycle through three modules."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset("abc")]


def test_client_modules_stay_small() -> None:
    """No module of the client side (all but the sandbox) is over ~500 lines."""
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text().splitlines())
        for path in ROOT.rglob("*.py")
        if path.relative_to(ROOT).parts[0] != "sandbox"
    }
    assert len(sizes) > 50
    over = {name: lines for name, lines in sizes.items() if lines > 500}
    assert not over, over


def _upward(imported: set[str], layers: tuple[str, ...]) -> set[str]:
    return {
        target
        for target in imported
        for layer in layers
        if target == f"mm_pipeline.{layer}" or target.startswith(f"mm_pipeline.{layer}.")
    }


def test_the_transport_imports_no_route() -> None:
    """The session and transport modules never import a route, the router or the client."""
    edges = graph()
    assert "mm_pipeline._session" in edges["mm_pipeline._connect"]
    for module in TRANSPORT:
        above = ("_batch", "_client", "_online", *ROUTER)
        assert not _upward(edges[f"mm_pipeline.{module}"], above), module


def test_the_batch_route_sits_below_the_router() -> None:
    """No module of _batch imports the router, the client or the online route (one way)."""
    edges = graph()
    assert "mm_pipeline._batch._client" in edges["mm_pipeline._client"]
    batch = [name for name in edges if name.startswith("mm_pipeline._batch.")]
    assert len(batch) >= 7
    for name in batch:
        assert not _upward(edges[name], ("_client", "_online", *ROUTER)), name


def test_no_test_module_imports_another() -> None:
    """Tests share helpers through conftest fixtures and tests/_support, never a test_*.py."""
    found = []
    for path in TESTS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or "", *(alias.name for alias in node.names)]
            found += [
                f"{path.relative_to(TESTS)}: {name}"
                for name in names
                if any(part.startswith("test_") for part in name.split("."))
            ]
    assert found == []
