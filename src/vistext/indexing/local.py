"""Incremental folder indexing (``vistext index DIR``): only new or changed files are decoded and encoded.

Unchanged files (same size, mtime and model) are skipped; new or changed files are opened once
(``vistext.images.PhotoFile``) and hashed, and content the store already has features for (a moved or copied
photo) is reused without decoding. What is stored for a photo (hash, size, mtime, features, metadata) is read
from that one open file, never from a second open by name, so a file replaced during the run can never leave
one picture's features under another's hash. Every batch is committed
in one store transaction, so an interrupted run loses at most one batch and a re-run resumes where it stopped.
One file never stops a run: whatever goes wrong with it (not a regular file, not decodable, any exception) is
that file's one-line failure, and library warnings raised while decoding it are reported with its path. A run
holds the store's writer lock, so a second ``index`` into the same catalogue fails at once instead of
repeating the work.

Each new or changed file's metadata (EXIF date, camera, GPS, size, orientation; ``vistext.photo_meta``) is read
from the same open file once it is decoded (or reused), while it is in the page cache; it never fails a photo.
Unchanged files indexed before metadata existed get theirs read (header only, nothing re-encoded) on the next
run. What a run must do (listing, comparing with the store, the report) is ``vistext.indexing.plan``, shared
with the Ray engine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from threading import Event
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from vistext.encoders import ImageEncoder, ImageFeatures
from vistext.errors import ImageDecodeError, ModelError, UsageError
from vistext.features import EncodedImage, extract
from vistext.file_messages import file_messages
from vistext.images import PhotoFile
from vistext.images.attributes import ATTRIBUTE_SPACE
from vistext.indexing.attributes import fill_attributes, with_attributes
from vistext.indexing.plan import Candidate, IndexReport, fill_meta, list_folder, plan_changes, remove_gone
from vistext.photo_meta import PhotoMeta, read_photo_meta
from vistext.store import ImageRecord, Store

log = logging.getLogger(__name__)

Projector = Callable[[ImageFeatures], np.ndarray]
# a space computed from what a record already holds: (source space, (logits, source vectors) -> vectors)
Derivation = tuple[str, Callable[[np.ndarray, np.ndarray], np.ndarray]]
DERIVE_BATCH = 256


@dataclass(frozen=True)
class DerivedProjector:
    """A space computed from another space's vectors of the same photos and their classifier logits (the
    fused space from the joint one: a ``Derivation`` with the source's projector). ``project_batch`` derives
    it from the source vectors it has just computed instead of projecting each batch twice; called on its own,
    it projects the source first."""

    source: str
    project_source: Projector
    derive: Callable[[np.ndarray, np.ndarray], np.ndarray]

    @property
    def needs_grid(self) -> bool:
        return bool(getattr(self.project_source, "needs_grid", False))

    def __call__(self, features: ImageFeatures) -> np.ndarray:
        return self.derive(_logits(features), self.project_source(features))


def _logits(features: ImageFeatures) -> np.ndarray:
    if features.logits is None:
        raise ModelError("a space derived from classifier scores needs the image classifier's logits")
    return features.logits


@dataclass
class _Pending:
    """A new or changed file waiting to be encoded or reused; ``photo`` is its open file once it was opened."""

    path: str
    size: int
    mtime: float
    sha: str
    is_update: bool
    meta: PhotoMeta | None = None
    photo: PhotoFile | None = None

    def settle(self, read_meta: bool) -> None:
        """Take the size, mtime and hash of the bytes the photo was read from (a decode that met a change in
        place read it again), read its metadata from the same open file, and close it."""
        if self.photo is None:
            return
        self.size, self.mtime, self.sha = self.photo.size, self.photo.mtime, self.photo.sha
        self.meta = read_photo_meta(self.photo) if read_meta else None
        self.photo.close()
        self.photo = None


class _Indexer:
    def __init__(
        self,
        store: Store,
        encoder: ImageEncoder,
        projectors: Mapping[str, Projector],
        report: IndexReport,
        bar: tqdm,
    ) -> None:
        self.store = store
        self.encoder = encoder
        self.projectors = dict(projectors)
        self.report = report
        self.bar = bar
        self.pending: dict[str, _Pending] = {}
        self.reused: list[ImageRecord] = []

    def record(self, item: _Pending, **fields: Any) -> ImageRecord:
        return ImageRecord(
            path=item.path, size=item.size, mtime=item.mtime, sha=item.sha, model=self.encoder.name, meta=item.meta,
            **fields,
        )  # fmt: skip

    def count(self, item: _Pending, ok: bool) -> None:
        if not ok:
            self.report.failed += 1
        elif item.is_update:
            self.report.updated += 1
        else:
            self.report.added += 1

    def to_encode(self, candidates: list[Candidate]) -> Iterator[PhotoFile]:
        """Open and hash candidates lazily (as the encoder pulls them); content already in the store is reused.

        Each photo is opened once: the decoder reads the very file that was hashed, so what is stored under a
        hash is always computed from the bytes with that hash, however the file changes meanwhile."""
        for path, size, mtime, is_update in candidates:
            try:
                photo = PhotoFile(path)
            except ImageDecodeError as error:  # vanished, unreadable or no image since the walk
                self.fail(_Pending(path, size, mtime, "", is_update), str(error))
                continue
            item = _Pending(path, photo.size, photo.mtime, photo.sha, is_update, photo=photo)
            known = self.store.features_for_hash(photo.sha, self.encoder.name)
            if known is not None and known.status == "ok" and set(self.projectors) <= set(known.embeddings):
                item.settle(read_meta=True)
                self.reused.append(
                    self.record(
                        item,
                        status="ok",
                        error=None,
                        pooled=known.pooled,
                        logits=known.logits,
                        embeddings=with_attributes(
                            {name: known.embeddings[name] for name in self.projectors},
                            known.embeddings.get(ATTRIBUTE_SPACE),
                        ),
                    )
                )
                self.count(item, ok=True)
                self.report.reused += 1
                if len(self.reused) >= 64:
                    self.flush([])
                continue
            self.pending[path] = item
            yield photo

    def fail(self, item: _Pending, error: str) -> None:
        error = error.removeprefix(f"{item.path}: ")  # the record already names the file
        item.settle(read_meta=False)
        self.reused.append(self.record(item, status="failed", error=error, pooled=None, logits=None))
        self.report.failures.append((item.path, error))
        self.count(item, ok=False)

    def encoded(self, batch: list[EncodedImage]) -> list[ImageRecord]:
        good = [e for e in batch if e.error is None]
        records: list[ImageRecord] = []
        embeddings = project_batch(good, self.projectors)
        for i, e in enumerate(good):
            item = self.pending.pop(e.path)
            item.settle(read_meta=True)
            records.append(
                self.record(
                    item,
                    status="ok",
                    error=None,
                    pooled=e.pooled,
                    logits=e.logits,
                    embeddings=with_attributes({name: rows[i] for name, rows in embeddings.items()}, e.attributes),
                )
            )
            self.count(item, ok=True)
        for e in batch:
            if e.error is not None:
                self.fail(self.pending.pop(e.path), e.error)
        return records

    def close(self) -> None:
        """Close the photos still open (a run that stopped half-way)."""
        for item in self.pending.values():
            item.settle(read_meta=False)

    def flush(self, records: list[ImageRecord]) -> None:
        batch = records + self.reused
        self.reused = []
        if batch:
            self.store.add(batch)  # one transaction: a kill loses at most this batch
            self.bar.update(len(batch))


def index_folder(
    folder: str | Path,
    store: Store,
    encoder: ImageEncoder,
    *,
    projectors: Mapping[str, Projector] | None = None,
    derived: Mapping[str, Derivation] | None = None,
    batch_size: int = 16,
    workers: int = 2,
    progress: bool = True,
    stop: Event | None = None,
    locked: bool = False,
) -> IndexReport:
    """Bring the store up to date with the images under ``folder`` and report what changed.

    ``projectors`` add embedding spaces (e.g. ``"joint:default"``) computed from each batch's ImageFeatures and
    stored with the image, so text search never re-reads images; a projector with ``needs_grid = True`` gets
    the 7x7 feature grid. Files that fail to decode are stored as failed and retried only once they change.
    ``derived`` spaces are first added to stored images that lack them from their stored classifier logits and
    source space (``derive_spaces``): a catalogue indexed before such a space existed upgrades without reading
    a photo. When ``stop`` is set the run ends after the batch being encoded (what was stored is kept).
    ``locked``: the caller already holds ``store.writer_lock()`` (the watcher holds it for as long as it runs).
    """
    started = time.perf_counter()
    root_path = Path(folder).resolve()
    if not root_path.is_dir():
        raise UsageError(f"{folder}: not a folder")
    report = IndexReport()

    def warned(path: str, message: str) -> None:
        report.warnings.append((path, message))
        log.info("%s: %s", path, message)  # shown with --verbose; the JSON report carries them all

    with nullcontext() if locked else store.writer_lock(), file_messages(warned):
        # search asks a derived space, not its source; the colour and light measures are read whole
        store.mark_unsearched({source for source, _ in (derived or {}).values()} | {ATTRIBUTE_SPACE})
        if derived:
            derive_spaces(store, derived)
        _run(root_path, store, encoder, projectors or {}, report, batch_size, workers, progress, stop)
    report.seconds = time.perf_counter() - started
    log.info("indexed %s: %s", root_path, report.summary())
    return report


def _run(
    root_path: Path,
    store: Store,
    encoder: ImageEncoder,
    projectors: Mapping[str, Projector],
    report: IndexReport,
    batch_size: int,
    workers: int,
    progress: bool,
    stop: Event | None,
) -> None:
    plan = plan_changes(str(root_path), list_folder(root_path, report), store, encoder.name, projectors, report)
    with store.bulk_load(len(plan.candidates)):
        finished = index_candidates(
            plan.candidates, store, encoder, projectors, report, batch_size=batch_size, workers=workers,
            progress=progress, stop=stop,
        )  # fmt: skip
    if not finished:
        return  # stopped: what was encoded is stored; the next run finishes the rest
    unchanged = plan.seen - {c.path for c in plan.candidates}
    fill_meta(store, unchanged, report)
    fill_attributes(store, unchanged, encoder, report, workers=workers, progress=progress)
    remove_gone(store, plan, report)


def index_candidates(
    candidates: list[Candidate],
    store: Store,
    encoder: ImageEncoder,
    projectors: Mapping[str, Projector],
    report: IndexReport,
    *,
    batch_size: int = 16,
    workers: int = 2,
    progress: bool = False,
    stop: Event | None = None,
) -> bool:
    """Encode (or reuse by content hash) and store new or changed files, one store transaction per batch.

    The step every indexing pass shares: a folder run after its plan, and the watcher (``indexing.watch``) for
    the files it heard about. Returns False when ``stop`` was set before all were done (the batches stored so
    far are kept)."""
    grid = any(getattr(p, "needs_grid", False) for p in projectors.values())
    # One BLAS thread while indexing: the cores belong to the decode threads and ONNX Runtime, and the batch's
    # small matrix products (projections, scores) gain nothing from a second. OpenBLAS's idle worker
    # busy-waits after each product: measured 3.4 s of a 2-core machine's 17.9 s of CPU for 1,000 photos.
    with threadpool_limits(1, user_api="blas"), tqdm(
        total=len(candidates), disable=not progress or not candidates, desc="indexing", unit="img",
        dynamic_ncols=True, smoothing=0.1,
    ) as bar:  # fmt: skip
        indexer = _Indexer(store, encoder, projectors, report, bar)
        batches = extract(
            indexer.to_encode(candidates), encoder, batch_size=batch_size, workers=workers, grid=grid,
            progress=False,
        )  # fmt: skip
        try:
            for batch in batches:
                indexer.flush(indexer.encoded(batch))
                if stop is not None and stop.is_set():
                    indexer.flush([])
                    return False
            indexer.flush([])
        finally:
            batches.close()  # the decoders stop now, not when the generator is collected
            indexer.close()
    return True


def project_batch(good: list[EncodedImage], projectors: Mapping[str, Projector]) -> dict[str, np.ndarray]:
    """Each projector's vectors for a batch of decoded images (rows follow ``good``); a ``DerivedProjector``
    whose source space is also asked for is derived from that space's vectors, not projected again."""
    if not good or not projectors:
        return {}
    features = ImageFeatures(
        pooled=np.stack([e.pooled for e in good if e.pooled is not None]),  # every decoded image has them
        logits=_stacked([e.logits for e in good]),
        grid=_stacked([e.grid for e in good]),
    )
    shared = {
        name: project
        for name, project in projectors.items()
        if isinstance(project, DerivedProjector) and project.source in projectors
    }
    out = {name: project(features) for name, project in projectors.items() if name not in shared}
    for name, project in shared.items():
        out[name] = project.derive(_logits(features), out[project.source])
    return {name: np.asarray(out[name], dtype=np.float32) for name in projectors}


def derive_spaces(store: Store, derived: Mapping[str, Derivation]) -> int:
    """Add each ``derived`` space to the stored images lacking it that have classifier logits and a vector in
    its source space, computed from those alone (no photo is read). Returns how many vectors were added;
    images without the inputs are left to the next indexing pass, which encodes them."""
    added = 0
    for space, (source, derive) in derived.items():
        missing = store.paths_missing(space)
        if not missing:
            continue
        ids = [
            int(r.id)
            for r in store.records()
            if r.id is not None and r.path in missing and r.logits is not None and source in r.embeddings
        ]
        with store.bulk_load(len(ids)):  # a whole catalogue gaining the space builds its index once, at the end
            for start in range(0, len(ids), DERIVE_BATCH):
                records = [r for r in store.records(ids[start : start + DERIVE_BATCH]) if r.logits is not None]
                if not records:
                    continue
                vectors = derive(
                    np.stack([np.asarray(r.logits) for r in records]), np.stack([r.embeddings[source] for r in records])
                )
                pairs = zip(records, vectors, strict=True)
                store.add([replace(r, pooled=None, logits=None, embeddings={space: v}) for r, v in pairs])
                added += len(records)
        log.info("added space %s to %d indexed images from their stored features", space, added)
    return added


def _stacked(arrays: list[np.ndarray | None]) -> np.ndarray | None:
    """One batch array, or None when the encoder gave none (no logits, no grid)."""
    present = [a for a in arrays if a is not None]
    return np.stack(present) if present and len(present) == len(arrays) else None
