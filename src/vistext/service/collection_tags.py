"""A trained tagger's tags for every photo of a collection, computed from the stored image features (no photo
is read again) and stored in the catalogue, where search, list and export filter by them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from vistext.errors import UsageError
from vistext.models.tagger import select_tags

if TYPE_CHECKING:
    from vistext.models.tagger import TaggerModel
    from vistext.store import ImageRecord, Store

PAGE = 256
DEFAULT_CUT = 0.5  # a tagger without calibrated thresholds keeps the tags it gives at least this probability


@dataclass
class CollectionTagReport:
    """What ``tag_collection`` stored: the tagger's name, photos tagged, and tag -> photos over the collection."""

    tagger: str
    images: int = 0
    tagged: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"tagger": self.tagger, "images": self.images, "tagged": self.tagged, "tags": self.counts}


def tagger_name(directory: str | Path) -> str:
    """What the catalogue calls a tagger: its folder's name (``models/scenes`` -> ``scenes``)."""
    return Path(directory).resolve().name or str(directory)


def check_tagger(model: TaggerModel, directory: str | Path) -> None:
    """A tagger that can run on stored features: a head over the bundled encoder's pooled features."""
    if not model.uses_encoder:
        raise UsageError(f"{directory}: this tagger runs its own network on pixels; the catalogue keeps only the "
                         "encoder's features, so tag photos with `vistext tag DIR --model ...` instead")  # fmt: skip
    if model.needs_grid:
        raise UsageError(f"{directory}: this tagger needs the 7x7 feature grid, which the catalogue does not keep")


def _tags_of(model: TaggerModel, pooled: np.ndarray) -> list[list[tuple[str, float]]]:
    scores = model.scores_from_features(pooled)
    if model.thresholds is not None:
        return select_tags(scores, model.labels, model.thresholds, model.n_tags, threshold=True)
    cut = np.full(model.n_tags, DEFAULT_CUT, np.float32)
    return select_tags(scores, model.labels, cut, model.n_tags, threshold=True)


def tag_collection(
    store: Store, model: TaggerModel, name: str, *, progress: bool = True, only: set[str] | None = None
) -> CollectionTagReport:
    """Store ``model``'s tags (those at or above its calibrated thresholds, with their probabilities) for
    every ok photo (or only those whose path is in ``only``) under tagger ``name``; replaces that tagger's
    earlier tags of them. Photos encoded by another encoder than the tagger's are an error."""
    report = CollectionTagReport(name)
    batch: list[ImageRecord] = []
    total = store.count("ok") if only is None else len(only)
    with tqdm(total=total, disable=not progress, desc="tagging", unit="img", dynamic_ncols=True) as bar:

        def flush() -> None:
            usable = [r for r in batch if r.pooled is not None and r.id is not None]
            if usable:
                tags = _tags_of(model, np.stack([r.pooled for r in usable]))  # type: ignore[misc]
                store.set_tags(name, {int(r.id): pairs for r, pairs in zip(usable, tags, strict=True)})  # type: ignore[arg-type]
                report.tagged += sum(1 for pairs in tags if pairs)
            report.images += len(batch)
            bar.update(len(batch))
            batch.clear()

        for record in store.records():
            if only is not None and record.path not in only:
                continue
            if record.model != model.backbone:
                raise UsageError(f"{record.path}: indexed with {record.model!r} features, but the tagger was trained "
                                 f"on {model.backbone!r}; re-index with that encoder")  # fmt: skip
            batch.append(record)
            if len(batch) >= PAGE:
                flush()
        flush()
    report.counts = store.tag_counts()
    return report
