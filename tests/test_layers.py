"""The package's layer rule (../shared/CONVENTIONS.md): a module imports only from its own layer or below, and no
two modules import each other, directly or round a longer loop.

Every ``vistext`` import in every module is read from the source (top-level, function-level and
``TYPE_CHECKING`` imports alike), so a lazy import cannot smuggle a dependency upwards or round a circle either.
The circle check also reads the benchmark scripts in ``bench/``, which import one another by bare name.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "vistext"
BENCH = ROOT / "bench"

# the first dotted part of a module's name (below vistext) -> its layer
LAYERS = {
    "__init__": 6,  # the public API re-exports lazily from every layer
    "errors": 0, "paths": 0, "registry": 0,
    "images": 1, "file_messages": 1, "photo_meta": 1, "text": 1, "augment": 1, "datasets": 1,
    "encoders": 2, "losses": 2,
    "models": 3, "features": 3,
    "evaluation": 4, "training": 4, "store": 4, "indexing": 4, "analysis": 4,
    "service": 5,
    "cli": 6, "server": 6, "bot": 6, "web": 6,
}  # fmt: skip


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "pretrained" not in p.parts)


def _top(module: str) -> str:
    return module.split(".")[0]


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found += [(node.lineno, n.removeprefix("vistext.")) for n in names if n.startswith("vistext.")]
    return found


def test_every_module_has_a_layer() -> None:
    missing = {_top(_name(p)) for p in _modules()} - set(LAYERS)
    assert not missing, f"add these to LAYERS (and to CONVENTIONS' table): {sorted(missing)}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_runs_upwards(path: Path) -> None:
    own = LAYERS[_top(_name(path))]
    upward = [
        f"line {line}: vistext.{target} (layer {LAYERS.get(_top(target), '?')})"
        for line, target in _imports(path)
        if LAYERS.get(_top(target), 99) > own
    ]
    assert not upward, f"{path.name} is layer {own} but imports " + "; ".join(upward)


def _package_graph() -> dict[str, set[str]]:
    """Module -> the vistext modules it imports; ``from vistext.a import b`` points at ``a.b`` when that is a module."""
    modules = {_name(p): p for p in _modules()}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.level == 0
                and node.module.startswith("vistext")
            ):
                base = node.module.removeprefix("vistext").lstrip(".") or "__init__"
                for alias in node.names:
                    sub = alias.name if base == "__init__" else f"{base}.{alias.name}"
                    targets.add(sub if sub in modules else base)
            elif isinstance(node, ast.Import):
                targets |= {a.name.removeprefix("vistext.") for a in node.names if a.name.startswith("vistext.")}
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def _bench_graph() -> dict[str, set[str]]:
    """Benchmark script -> the other benchmark scripts it imports by bare name."""
    scripts = {p.stem: p for p in BENCH.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in scripts.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                targets |= {a.name.split(".")[0] for a in node.names}
        graph[name] = {t for t in targets if t in scripts and t != name}
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_circle_finder_finds_a_loop() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _circles(graph) == [["a", "b", "c"]]


@pytest.mark.parametrize("graph", [_package_graph, _bench_graph], ids=["src/vistext", "bench"])
def test_no_import_circles(graph: Callable[[], dict[str, set[str]]]) -> None:
    circles = _circles(graph())
    assert not circles, "modules that import each other (make the dependency one-way): " + "; ".join(
        " <-> ".join(c) for c in circles
    )
