"""``--model SPEC``: the CLIP-family models a service is asked for, and which catalogue space each one answers.

A model is loaded once per service (``prepare_clip_model`` turns the spec into a runtime folder, exporting other
formats once). At query time a spec may also be a name the catalogue recorded (the model's name, its key or its
space: ``Store.space_models``, the one record of which model made each space), which then means the folder it
was indexed from. A model whose space the catalogue lacks is refused with what to do: the CLIP spaces the
catalogue does have (and the ``--model`` that searches each), or how to index this one. Queries in a CLIP space
use that model's own text tower only: another model's text vectors would compare with nothing meaningful.

Scores in a CLIP space are the plain cosines of the model's embeddings, shown as they are: not probabilities
and not calibrated; comparable within one model (a better match scores higher), not across models.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vistext.errors import StoreError, UsageError
from vistext.models.clip import CLIP_SPACE_PREFIX, ClipModel
from vistext.paths import vistext_home

if TYPE_CHECKING:
    from vistext.service.location import CatalogueLocation
    from vistext.store import Store

# a subset of CLIP's ImageNet prompt templates (Radford et al. 2021, notebook "Prompt_Engineering_for_ImageNet"):
# a word's text vector is the normalised mean of its prompts' vectors
PROMPTS = (
    "a photo of a {}.",
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a photo of the large {}.",
    "a photo of the small {}.",
    "a close-up photo of a {}.",
    "a bright photo of a {}.",
    "a cropped photo of a {}.",
    "a good photo of a {}.",
    "a photo of one {}.",
    "a low resolution photo of a {}.",
    "art of the {}.",
)
# Immich's default for duplicate detection: CLIP embeddings within cosine distance 0.01
DUPLICATE_THRESHOLD = 0.99


class UnknownModelError(UsageError):
    """A model name no space of the catalogue was made by (a server's 404)."""


def is_clip_space(space: str) -> bool:
    return space.startswith(CLIP_SPACE_PREFIX)


class ClipModels:
    """The CLIP models asked for by ``--model``, each loaded once (by the folder its spec resolves to)."""

    def __init__(self) -> None:
        self._models: dict[str, ClipModel] = {}
        self._lock = threading.Lock()

    def load(self, spec: str | Path) -> ClipModel:
        """The model ``spec`` names (a folder in any supported format, or a name under ``$VISTEXT_HOME/models``)."""
        from vistext.service.clip_models import prepare_clip_model

        with self._lock:
            if str(spec) not in self._models:
                folder = prepare_clip_model(str(spec), vistext_home())
                self._models[str(spec)] = ClipModel(folder)
            return self._models[str(spec)]

    def resolve(self, spec: str | Path, store: Store | None) -> ClipModel:
        """The model ``spec`` names: a model ``store`` recorded (by name, key or space: the folder it was indexed
        from), else any model folder or name ``load`` finds."""
        recorded = {} if store is None else store.space_models()
        for space, about in recorded.items():
            if is_clip_space(space) and str(spec) in (about.get("name"), about.get("key"), space):
                if about.get("source"):
                    return self.load(str(about["source"]))
        return self.load(spec)

    def for_catalogue(self, spec: str | Path, store: Store, where: object) -> ClipModel:
        """The model ``spec`` names, checked to have a space in ``store`` (at ``where``, for messages)."""
        recorded = {space: about for space, about in store.space_models().items() if is_clip_space(space)}
        model = self.resolve(spec, store)
        if model.space not in store.spaces():
            raise StoreError(missing_space(where, model, spec, recorded))
        return model


def missing_space(where: object, model: ClipModel, spec: str | Path, recorded: dict[str, dict]) -> str:
    """One line: the catalogue has no space for ``model``; which CLIP spaces it has, and how to index this one."""
    index = f"index it with `vistext index DIR --model {spec}`"
    if not recorded:
        return f"{where}: no photos indexed with model {model.name} ({model.key}); {index}"
    others = ", ".join(
        f"{about.get('name')} ({about.get('key')}; --model {about.get('name')})" for about in recorded.values()
    )
    return (
        f"{where}: no photos indexed with model {model.name} ({model.key}), and another model's text vectors cannot "
        f"search a CLIP space; its CLIP spaces were made by {others}; or {index}"
    )


def word_vectors(model: ClipModel, words: Sequence[str], prompts: Sequence[str] = PROMPTS) -> np.ndarray:
    """(len(words), dim): each word's prompt ensemble (the normalised mean of its ``prompts``' vectors)."""
    texts = [prompt.format(word) for word in words for prompt in prompts]
    vectors = model.encode_texts(texts).reshape(len(words), len(prompts), -1).mean(axis=1)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def names_trained_model(spec: str | Path) -> bool:
    """Whether ``spec`` names one of vistext's own trained models (a model card with a ``format``), not a CLIP
    model: ``tag --model`` and ``match --model`` take either."""
    import json

    from vistext.errors import ModelError
    from vistext.models.card import CARD_FILE, resolve_model_dir

    try:
        card = json.loads((resolve_model_dir(spec) / CARD_FILE).read_text(encoding="utf-8"))
    except (ModelError, OSError, ValueError):
        return False
    return isinstance(card, dict) and "format" in card


def looks_like_clip(spec: str | Path) -> bool:
    """Whether ``spec`` is a folder holding a CLIP-family model in one of the formats ``--model`` takes (a cheap
    look at its files: nothing is loaded)."""
    from vistext.models.clip_sources import folder_format

    return folder_format(Path(spec)) is not None


def rank_words(images: np.ndarray, vectors: np.ndarray, words: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
    """Each image's ``k`` best words with their cosines to the image; ``vectors``: the words' ``word_vectors``
    (each word as its prompt ensemble)."""
    cosines = images @ vectors.T
    return [[(words[i], float(row[i])) for i in np.argsort(-row, kind="stable")[:k]] for row in cosines]


def recorded_models(store: Store) -> list[dict[str, Any]]:
    """The CLIP-family models ``store`` has spaces for, as recorded (name, key, dim, source) with their space."""
    spaces = set(store.spaces())
    return [{**about, "space": space} for space, about in store.space_models().items() if space in spaces]


def check_recorded(store: Store | None, name: str) -> str:
    """``name`` when it names a model ``store`` has a space for (its name, key or space), else a ``UsageError``
    listing them: what a client may ask for (a server never loads a client's path)."""
    models = [] if store is None else recorded_models(store)
    if any(name in (about.get("name"), about.get("key"), about["space"]) for about in models):
        return name
    known = ", ".join(str(about.get("name")) for about in models) or "none: only the bundled models"
    raise UnknownModelError(f"unknown model {name!r} (this catalogue's models: {known})")


def add_space(
    store: Store, where: CatalogueLocation, model: ClipModel, folder: str | Path, engine: str,
    cluster: tuple[str | None, float | None], progress: bool,
) -> int:  # fmt: skip
    """Give the photos at ``folder`` lacking ``model``'s space their vectors, on this machine or on Ray
    (``cluster``: the Ray address and no-progress deadline, None for the defaults)."""
    if engine == "ray":  # the model travels as its folder: every node must read it under the same path
        from vistext.indexing.ray_model_space import add_space_with_ray

        address, deadline = cluster
        return add_space_with_ray(str(folder), store, where.for_workers(), model, address=address, deadline=deadline)
    from vistext.indexing.model_space import add_model_space

    return add_model_space(store, model, folder, progress=progress)
