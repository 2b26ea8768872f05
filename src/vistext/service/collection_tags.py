"""A trained tagger's tags for every photo of a collection, computed from the stored image features (no photo
is read again) and stored in the catalogue, where search, list and export filter by them.

A pass over the whole collection records its progress in the catalogue (meta ``collection_tagging``: per
tagger, the last photo id whose tags are stored, counts, and a fingerprint of the tagger) after every page it
commits. A pass that was killed is therefore known to be incomplete (``unfinished_tagging``, shown by
``info``), and the next pass with the same tagger resumes after the last committed page.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from vistext.errors import UsageError
from vistext.models.default_tags import SOURCE as DEFAULT_SOURCE
from vistext.models.tagger import select_tags
from vistext.store.records import USER_TAGGER

if TYPE_CHECKING:
    from vistext.models.tagger import TaggerModel
    from vistext.store import ImageRecord, Store

PAGE = 256
PROGRESS_KEY = "collection_tagging"  # store meta: tagger name -> progress of its last pass over the collection
DEFAULT_CUT = 0.5  # a tagger without calibrated thresholds keeps the tags it gives at least this probability


@dataclass
class CollectionTagReport:
    """What ``tag_collection`` stored: the tagger's name, photos tagged, and tag -> photos over the collection."""

    tagger: str
    images: int = 0
    tagged: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    resumed: int = 0  # photos an earlier, interrupted pass had already tagged (this pass went on after them)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tagger": self.tagger, "images": self.images, "tagged": self.tagged, "tags": self.counts,
            "resumed": self.resumed,
        }  # fmt: skip


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


def unfinished_tagging(store: Store) -> dict[str, dict[str, int]]:
    """Taggers whose last pass over the collection stopped before the end: name -> ``{"images": tagged so
    far, "total": photos then}``. A re-run of ``tag --collection`` with that tagger finishes it."""
    progress = store.get_meta(PROGRESS_KEY, {}) or {}
    return {
        name: {"images": int(state.get("images", 0)), "total": int(state.get("total", 0))}
        for name, state in sorted(progress.items())
        if isinstance(state, dict) and not state.get("complete", False)
    }


def _fingerprint(model: TaggerModel) -> str:
    """Which tagger made the tags: its labels, head and weights (a retrained tagger starts a pass afresh)."""
    digest = hashlib.blake2b(digest_size=12)
    digest.update("\n".join([*model.labels, repr(sorted(model.head.items()))]).encode())
    for name in sorted(model.weights):
        digest.update(name.encode() + np.ascontiguousarray(model.weights[name]).tobytes())
    if model.thresholds is not None:
        digest.update(np.ascontiguousarray(model.thresholds).tobytes())
    return digest.hexdigest()


def _save_progress(store: Store, name: str, state: dict[str, Any]) -> None:
    progress = dict(store.get_meta(PROGRESS_KEY, {}) or {})  # read again: another tagger's pass may have written
    progress[name] = state
    store.set_meta(PROGRESS_KEY, progress)


def _resume_point(store: Store, name: str, fingerprint: str) -> dict[str, Any] | None:
    state = (store.get_meta(PROGRESS_KEY, {}) or {}).get(name)
    if isinstance(state, dict) and not state.get("complete", True) and state.get("model") == fingerprint:
        return state
    return None


def tag_collection(
    store: Store, model: TaggerModel, name: str, *, progress: bool = True, only: set[str] | None = None
) -> CollectionTagReport:
    """Store ``model``'s tags (those at or above its calibrated thresholds, with their probabilities) for
    every ok photo (or only those whose path is in ``only``) under tagger ``name``; replaces that tagger's
    earlier tags of them. Photos encoded by another encoder than the tagger's are an error.

    A pass over every photo records its progress after each committed page and, when an earlier pass with
    the same tagger was interrupted, resumes after the last photo it committed (``report.resumed``)."""
    if name in (DEFAULT_SOURCE, USER_TAGGER):
        raise UsageError(f"{name!r} is the source of the {'default' if name == DEFAULT_SOURCE else 'hand-added'} "
                         "tags; give the tagger's folder another name")  # fmt: skip
    report = CollectionTagReport(name)
    batch: list[ImageRecord] = []
    whole = only is None
    fingerprint = _fingerprint(model)
    state = _resume_point(store, name, fingerprint) if whole else None
    after = int(state["through_id"]) if state else -1
    if state:
        report.images = report.resumed = int(state["images"])
        report.tagged = int(state["tagged"])
    total = store.count("ok") if only is None else len(only)
    progress_state = {"model": fingerprint, "complete": False, "total": total, "through_id": after}
    if whole:
        _save_progress(store, name, {**progress_state, "images": report.images, "tagged": report.tagged})
    with tqdm(total=total, initial=report.images, disable=not progress, desc="tagging", unit="img",
              dynamic_ncols=True) as bar:  # fmt: skip

        def flush() -> None:
            usable = [r for r in batch if r.pooled is not None and r.id is not None]
            if usable:
                tags = _tags_of(model, np.stack([r.pooled for r in usable]))  # type: ignore[misc]
                store.set_tags(name, {int(r.id): pairs for r, pairs in zip(usable, tags, strict=True)})  # type: ignore[arg-type]
                report.tagged += sum(1 for pairs in tags if pairs)
            report.images += len(batch)
            bar.update(len(batch))
            if whole and batch:
                progress_state["through_id"] = max(int(r.id or after) for r in batch)
                _save_progress(store, name, {**progress_state, "images": report.images, "tagged": report.tagged})
            batch.clear()

        for record in store.records():
            if (only is not None and record.path not in only) or (record.id is not None and record.id <= after):
                continue
            if record.model != model.backbone:
                raise UsageError(f"{record.path}: indexed with {record.model!r} features, but the tagger was trained "
                                 f"on {model.backbone!r}; re-index with that encoder")  # fmt: skip
            batch.append(record)
            if len(batch) >= PAGE:
                flush()
        flush()
    if whole:
        _save_progress(store, name, {**progress_state, "complete": True, "images": report.images,
                                     "tagged": report.tagged})  # fmt: skip
    report.counts = store.tag_counts()
    return report
