"""A CLIP-family model's space added to an indexed collection (``vistext index DIR --model SPEC``).

The ordinary pass (``index_folder`` or Ray) has brought the catalogue up to date; this pass gives every ok photo
under the folder that lacks a vector in the model's space one: content the catalogue already has a vector for
(a copy, a moved photo) reuses it, and the rest are opened once (``PhotoFile``), decoded in threads and encoded
in batches by the model's image tower, each batch committed in one transaction. Only the new space is written
(the photo's features, other spaces, tags and metadata are kept), so one catalogue holds the bundled spaces and
any number of CLIP spaces side by side. A photo whose content changed since the ordinary pass is left for the
next run, which re-encodes it whole.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from vistext.errors import ImageDecodeError
from vistext.features import extract
from vistext.images import PhotoFile
from vistext.models.clip import ClipImageEncoder, ClipModel
from vistext.store import ImageRecord, Store

log = logging.getLogger(__name__)


def lacking_space(store: Store, space: str, root: str | None = None) -> list[ImageRecord]:
    """The ok records (under ``root``, when given) without a vector in ``space``, by path."""
    missing = store.paths_missing(space)
    prefix = None if root is None else root.rstrip(os.sep) + os.sep
    if prefix is not None:
        missing = {path for path in missing if path.startswith(prefix)}
    wanted = [state for path, state in store.file_states(prefix).items() if path in missing and state.status == "ok"]
    records = [store.get(state.path) for state in sorted(wanted, key=lambda state: state.path)]
    return [record for record in records if record is not None]


def add_model_space(
    store: Store,
    model: ClipModel,
    root: str | Path | None = None,
    *,
    batch_size: int = 16,
    workers: int = 2,
    progress: bool = True,
) -> int:
    """Give every ok photo under ``root`` lacking ``model.space`` its vector; returns how many were added."""
    space = model.space
    with store.writer_lock():
        store.record_space_model(space, model.describe())
        todo = lacking_space(store, space, None if root is None else str(Path(root).resolve()))
        added = reuse_copies(store, space, todo)
        by_path = {record.path: record for record in todo if space not in record.embeddings}
        if not by_path:
            return added
        encoder = ClipImageEncoder(model)
        opened: dict[str, PhotoFile] = {}
        with tqdm(total=len(by_path), disable=not progress, desc=f"indexing {model.name}", unit="img") as bar:
            try:
                added += _encode_all(store, space, by_path, opened, encoder, batch_size, workers, bar)
            finally:
                for photo in opened.values():
                    photo.close()
    log.info("added %d photos to space %s", added, space)
    return added


def _encode_all(
    store: Store,
    space: str,
    by_path: dict[str, ImageRecord],
    opened: dict[str, PhotoFile],
    encoder: ClipImageEncoder,
    batch_size: int,
    workers: int,
    bar: tqdm,
) -> int:
    added = 0
    photos = _photos(by_path, opened)
    for batch in extract(photos, encoder, batch_size=batch_size, workers=workers, progress=False):
        done = [
            replace(by_path[e.path], pooled=None, logits=None, meta=None, embeddings={space: e.pooled})
            for e in batch
            if e.error is None and e.pooled is not None
        ]
        for e in batch:
            if e.error is not None:
                log.info("%s: not added to %s (%s)", e.path, space, e.error)
            opened.pop(e.path).close()
        if done:
            store.add(done)
            added += len(done)
        bar.update(len(batch))
    return added


def reuse_copies(store: Store, space: str, todo: list[ImageRecord]) -> int:
    """Photos whose content already has a vector in ``space`` (under another path) take it; returns how many."""
    reused = []
    for record in todo:
        known = store.features_for_hash(record.sha, record.model)
        vector = None if known is None else known.embeddings.get(space)
        if vector is not None:
            record.embeddings[space] = vector
            reused.append(replace(record, pooled=None, logits=None, meta=None, embeddings={space: vector}))
    if reused:
        store.add(reused)
    return len(reused)


def _photos(by_path: dict[str, ImageRecord], opened: dict[str, PhotoFile]) -> Iterator[PhotoFile]:
    """Each photo opened once; one whose content changed since it was indexed is skipped (the next run)."""
    for path, record in by_path.items():
        try:
            photo = PhotoFile(path)
        except ImageDecodeError as error:
            log.info("%s: not added (%s)", path, error.reason)
            continue
        if photo.sha != record.sha:
            photo.close()
            log.info("%s: changed since it was indexed; its vector is added by the next run", path)
            continue
        opened[path] = photo
        yield photo
