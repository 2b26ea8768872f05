"""vistext: understand images through words.

The public API for scripts and notebooks (no CLI needed)::

    import vistext

    service = vistext.Service("photos/.vistext/catalogue.sqlite")  # index, search, tag, caption, match...
    model = vistext.load_model("joint-default")  # a JointModel, TaggerModel or MatchModel, as its card says
    store = vistext.open_store("sqlite:///photos/.vistext/catalogue.sqlite")  # the catalogue itself

- ``Service``: every operation over one collection, with lazily loaded models (``vistext.service``).
- ``load_model(name_or_path=None, kind=None)``: a saved model directory, or a name looked up in
  ``$VISTEXT_HOME/models/`` and then among the models shipped with vistext (``vistext.models.loading``).
- ``open_store(uri)``: the catalogue + vector store at a path or URI (``vistext.store``).

They are imported on first use, so ``import vistext`` stays cheap (no PyTorch, no ONNX Runtime).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vistext.models.loading import load_model
    from vistext.service import Service
    from vistext.store import open_store

__version__ = "0.1.0"
__all__ = ["Service", "__version__", "load_model", "open_store"]

_LAZY = {"Service": "vistext.service", "load_model": "vistext.models.loading", "open_store": "vistext.store"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vistext' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
