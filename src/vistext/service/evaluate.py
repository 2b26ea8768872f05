"""``vistext eval``: a saved model (joint, tagger or match classifier) measured on a dataset split, by the
evaluator of its kind (each returns metrics and a primary metric; see ``vistext.evaluation``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def evaluate_model(model: str | Path | None, data: str, split: str | None, *, progress: bool) -> dict[str, Any]:
    """The metrics of ``model`` (a folder or registered name; None: the shipped joint model) on ``data``."""
    from vistext.models.card import model_kind, resolve_model_dir
    from vistext.models.loading import load_model

    directory = resolve_model_dir(model, "joint" if model is None else None)
    kind, loaded = model_kind(directory), load_model(directory)
    if kind == "joint":
        from vistext.evaluation import retrieval as evaluation
    elif kind == "tagger":
        from vistext.evaluation import tagging as evaluation  # type: ignore[no-redef]
    else:
        from vistext.evaluation import matching as evaluation  # type: ignore[no-redef]
    chosen = split or ("test" if kind == "joint" else None)
    return dict(evaluation.evaluate(loaded, data, split=chosen, progress=progress).metrics)  # type: ignore[arg-type]
