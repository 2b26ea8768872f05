"""Tags with no training, kept current by ``vistext index``; and tags edited by hand.

After each indexing run, every readable photo without default tags gets them, computed from the classifier
logits the catalogue already holds (``models/default_tags``): no photo is read again, so a catalogue indexed
before default tags existed gains them on its next ``vistext index`` at the cost of a few hundred microseconds
per photo. They are stored under the source ``default`` beside a trained tagger's (``--tagger``, stored under
the tagger's name) and the user's own (source ``user``). The catalogue remembers (meta ``default_tags``) which
vocabulary and calibration made them; a new one re-tags every photo. Tags removed by hand stay removed
(``Store.edit_tags``). Beside the vocabulary's words, ``people`` comes from the person head (``models.presence``)
over the pooled features the catalogue holds, at the vocabulary's threshold; the head is part of what the
catalogue remembers, so a catalogue tagged before it gains the word at its next ``vistext index``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from vistext.errors import UsageError
from vistext.models.default_tags import SOURCE
from vistext.store.records import ImageFilter

if TYPE_CHECKING:
    from vistext.indexing.plan import IndexReport
    from vistext.models.default_tags import DefaultTagVocabulary
    from vistext.models.presence import PresenceModel
    from vistext.service.loaded_models import LoadedModels
    from vistext.store import ImageRecord, Store

STATE_KEY = "default_tags"  # store meta: {"fingerprint": the vocabulary's (and the person head's), "complete": bool}
PEOPLE_TAG = "people"
PAGE = 512
MAX_TAG_LENGTH = 64


@dataclass
class DefaultTagReport:
    """What one pass stored: photos scored now, of them photos given at least one tag."""

    scored: int = 0
    tagged: int = 0
    vocabulary: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"scored": self.scored, "tagged": self.tagged, "vocabulary": self.vocabulary}


def tags_after_pass(store: Store, models: LoadedModels, report: IndexReport) -> None:
    """Give the photos an index pass (or a batch of watched changes) left without tags with no training theirs,
    from the classifier scores the catalogue holds; noted in ``report.default_tags``."""
    if models.encoder_name != "efficientnet-lite0":  # the classifier the default vocabulary reads
        return
    from vistext.models.presence import shipped_presence

    changed = report.added + report.updated > 0
    tags = fill_default_tags(store, models.default_tags(), changed=changed, people=shipped_presence())
    report.default_tags = tags.to_dict()


def fill_default_tags(
    store: Store, vocabulary: DefaultTagVocabulary, *, changed: bool = True, people: PresenceModel | None = None
) -> DefaultTagReport:
    """Give default tags to every ok photo that has none yet (all of them when the catalogue's were made by
    another vocabulary or person head). ``changed=False`` (the indexing run changed no photo) skips the pass when
    the last one finished with these. Photos whose logits were never stored are left as they are; ``people``:
    the person head that adds ``PEOPLE_TAG`` (None: the vocabulary's words only)."""
    fingerprint = vocabulary.fingerprint if people is None else f"{vocabulary.fingerprint}+{people.fingerprint}"
    report = DefaultTagReport(vocabulary=fingerprint)
    state = store.get_meta(STATE_KEY, {}) or {}
    same = isinstance(state, dict) and state.get("fingerprint") == fingerprint
    if same and state.get("complete") and not changed:
        return report
    wanted = store.ids_matching(ImageFilter())
    if same:
        wanted = np.setdiff1d(wanted, store.ids_tagged_by(SOURCE), assume_unique=True)
    store.set_meta(STATE_KEY, {"fingerprint": fingerprint, "complete": False})
    for start in range(0, len(wanted), PAGE):
        page = [r for r in store.records(wanted[start : start + PAGE].tolist()) if _fits(r.logits, vocabulary)]
        if not page:
            continue
        tags = vocabulary.tags(np.stack([np.asarray(r.logits, dtype=np.float32) for r in page]))
        if people is not None:
            _add_people(page, tags, people, vocabulary.threshold)
        store.set_tags(SOURCE, {int(r.id): pairs for r, pairs in zip(page, tags, strict=True) if r.id is not None})
        report.scored += len(page)
        report.tagged += sum(1 for pairs in tags if pairs)
    store.set_meta(STATE_KEY, {"fingerprint": fingerprint, "complete": True})
    return report


def _add_people(
    page: list[ImageRecord], tags: list[list[tuple[str, float]]], head: PresenceModel, threshold: float
) -> None:
    """Add ``PEOPLE_TAG`` to the tags of the photos the person head gives ``threshold`` or more, best first."""
    pooled = {i: record.pooled for i, record in enumerate(page) if record.pooled is not None}
    rows = [i for i, vector in pooled.items() if head.fits(len(vector))]
    if not rows:
        return
    from vistext.models.presence import CHANCE_RANGE

    chances = np.clip(head.probability(np.stack([pooled[i] for i in rows])), *CHANCE_RANGE)  # as search reads them
    for i, chance in zip(rows, chances, strict=True):
        if chance >= threshold:
            tags[i] = sorted([*tags[i], (PEOPLE_TAG, round(float(chance), 4))], key=lambda pair: -pair[1])


def _fits(logits: np.ndarray | None, vocabulary: DefaultTagVocabulary) -> bool:
    # photos encoded by another encoder than the bundled classifier have other logits, or none
    return logits is not None and np.shape(logits) == (vocabulary.n_classes,)


def clean_tags(words: Sequence[str]) -> list[str]:
    """Hand-given tags as stored: trimmed, inner spaces collapsed, repeats (any case) dropped; an empty or
    over-long one is refused."""
    out: list[str] = []
    for word in words:
        tag = " ".join(str(word).split())
        if not tag:
            raise UsageError("a tag is empty")
        if len(tag) > MAX_TAG_LENGTH or any(not ch.isprintable() for ch in tag):
            raise UsageError(f"tag {tag[:MAX_TAG_LENGTH]!r}...: a tag is at most {MAX_TAG_LENGTH} printable characters")
        if tag.lower() not in {t.lower() for t in out}:
            out.append(tag)
    return out


@dataclass
class PhotoTags:
    """One photo's tags after a hand edit (every source; a tag two sources gave shows its higher score)."""

    id: int
    path: str
    tags: list[tuple[str, float]]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "path": self.path,
                "tags": [{"tag": tag, "score": round(score, 6)} for tag, score in self.tags]}  # fmt: skip


def edit_photo_tags(store: Store, record: ImageRecord, add: Sequence[str], remove: Sequence[str]) -> PhotoTags:
    """Add (source ``user``) and remove (every source, remembered) tags of one indexed photo by hand."""
    added, removed = clean_tags(add), clean_tags(remove)
    if not added and not removed:
        raise UsageError("no tags to add or remove")
    both = {t.lower() for t in added} & {t.lower() for t in removed}
    if both:
        raise UsageError(f"tag {sorted(both)[0]!r} is both added and removed")
    if record.id is None:
        raise UsageError(f"{record.path}: not an indexed photo")
    store.edit_tags(record.id, added, removed)
    return PhotoTags(record.id, record.path, store.tags_for([record.id]).get(record.id, []))
