"""Open any saved model as the kind its card declares: the one module that knows every kind's loader.

The dependency runs one way: ``card`` holds the card format and the weight lookup and knows no model class; each
kind (``joint``, ``tagger``, ``matcher``, ``concepts``) reads and writes its card through ``card``; this module,
above them all, dispatches on the card. Each loader is imported on use, so a tagger or a concept space loads
without PyTorch (a ``joint`` or ``matcher`` model as saved for training needs the ``[train]`` extra; the runtime
opens those through ``joint_onnx`` and ``matcher_numpy``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from vistext.errors import require_extra
from vistext.models.card import model_kind, read_card, resolve_model_dir


def _joint(directory: Path) -> Any:
    require_extra("train", "a joint model as trained (the runtime opens it with vistext.models.joint_onnx)")
    from vistext.models.joint import load_joint_model

    return load_joint_model(directory)


def _tagger(directory: Path) -> Any:
    from vistext.models.tagger import load_tagger

    return load_tagger(directory)


def _matcher(directory: Path) -> Any:
    require_extra("train", "a match model as trained (the runtime scores it with vistext.models.matcher_numpy)")
    from vistext.models.matcher import load_matcher

    return load_matcher(directory)


def _concepts(directory: Path) -> Any:
    from vistext.models.concepts import load_concept_space

    return load_concept_space(directory)


def _default_tags(directory: Path) -> Any:
    from vistext.models.default_tags import load_default_tags

    return load_default_tags(directory)


def _presence(directory: Path) -> Any:
    from vistext.models.presence import load_presence

    return load_presence(directory)


LOADERS: dict[str, Callable[[Path], Any]] = {"joint": _joint, "tagger": _tagger, "matcher": _matcher,
                                             "concepts": _concepts, "default-tags": _default_tags,
                                             "presence": _presence}  # fmt: skip


def load_model(name_or_path: str | Path | None = None, kind: str | None = None) -> Any:
    """Load a saved model by directory or name (see ``vistext.models.card.resolve_model_dir``) as the kind its
    card declares: a ``JointModel``, ``TaggerModel``, ``MatchModel`` or ``ConceptSpace``. With ``kind`` the card
    must declare that kind; without a name, ``kind``'s shipped default is loaded (the joint model when neither is
    given)."""
    if name_or_path is None and kind is None:
        kind = "joint"
    directory = resolve_model_dir(name_or_path, kind)
    read_card(directory, kind)  # checks the format and version first: a one-line error, never a half load
    found = kind or model_kind(directory)
    return LOADERS[found](directory)
