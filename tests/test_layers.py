"""The package's layer rule (../shared/CONVENTIONS.md): a module imports only from its own layer or below.

Every ``vistext`` import in every module is read from the source (top-level, function-level and
``TYPE_CHECKING`` imports alike), so a lazy import cannot smuggle a dependency upwards either.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "vistext"

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
