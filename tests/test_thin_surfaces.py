"""The surfaces (cli/, server/, bot) are thin: they reach the catalogue and the models only through the service
facade's public methods (../shared/CONVENTIONS.md, layer 6). Read from the source with ``ast``, so a lazy
import or a private attribute cannot slip past."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from vistext.service import Service

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "vistext"
SURFACES = sorted([*(PACKAGE / "cli").rglob("*.py"), *(PACKAGE / "server").rglob("*.py"), PACKAGE / "bot.py"])
# what a surface may import from vistext: the service, its own layer, and plain helpers that hold no catalogue or
# model (errors, paths, image file names, dataset readers); ``training`` is the workshop `vistext train` drives
ALLOWED = ("errors", "paths", "images", "datasets", "service", "cli", "server", "bot", "web", "training", "__init__")
# the service's public surface, less the one door kept for tests and tools
PUBLIC = {name for name in dir(Service) if not name.startswith("_")} - {"store"}


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, node.module)]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return [(line, name.removeprefix("vistext.")) for line, name in found if name.startswith("vistext.")]


def _is_service(node: ast.expr) -> bool:
    """``service``, ``self.service``, ``context.service``...: an expression naming the service facade."""
    return (isinstance(node, ast.Name) and node.id == "service") or (
        isinstance(node, ast.Attribute) and node.attr == "service"
    )


@pytest.mark.parametrize("path", SURFACES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_surface_reaches_no_store_or_model_around_the_service(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    around = [
        f"line {line}: imports vistext.{name}"
        for line, name in _imports(tree)
        if name.split(".")[0] not in ALLOWED
        or (name.startswith("service.") and name.split(".")[1] in {"collection", "loaded_models", "core"})
    ]
    around += [
        f"line {node.lineno}: service.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and _is_service(node.value) and node.attr not in PUBLIC
    ]
    assert not around, f"{path.name} goes around the service facade: " + "; ".join(around)


def test_the_check_sees_a_reach_around() -> None:
    tree = ast.parse("def f(context):\n    context.service.store().version()\n    import vistext.store\n")
    attributes = [n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and _is_service(n.value)]
    assert attributes == ["store"] and "store" not in PUBLIC
    assert _imports(tree) == [(3, "store")]
