"""Copying a collection from one store to another (``vistext migrate``), checked by content digests.

Records travel in batches through the ``Store`` interface, so any backend can be the source or the target, and
because every backend's ``add`` is an upsert by path, an interrupted copy is simply run again. The digest of a
store is the SHA-256 over the sorted digests of its records (path, file state, error, pooled features, logits,
every embedding, photo metadata, collection tags), so it does not depend on the ids either store gave them.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from vistext.errors import StoreError
from vistext.store.base import Store
from vistext.store.records import ImageRecord

BATCH = 256
MIGRATED_TAGGER = "migrated"


@dataclass
class TransferReport:
    """What was copied: counts by status, the spaces, and the digest both stores agreed on."""

    images: int = 0
    failed: int = 0
    tagged: int = 0
    texts: int = 0  # contents whose text (index --ocr) was copied
    spaces: list[str] = field(default_factory=list)
    digest: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "images": self.images,
            "failed": self.failed,
            "tagged": self.tagged,
            "texts": self.texts,
            "spaces": self.spaces,
            "digest": self.digest,
        }


def record_digest(record: ImageRecord, tags: Sequence[tuple[str, float]] = ()) -> bytes:
    """A digest of everything a record carries except its id, plus its collection tags."""
    digest = hashlib.sha256()
    digest.update(repr(record.meta).encode() + b"\0" + repr(sorted(tags)).encode() + b"\0")
    for part in (record.path, record.size, repr(float(record.mtime)), record.sha, record.model, record.status,
                 record.error):  # fmt: skip
        digest.update(str(part).encode("utf-8", "surrogateescape") + b"\0")
    for name, vector in [("pooled", record.pooled), ("logits", record.logits), *sorted(record.embeddings.items())]:
        digest.update(name.encode() + b"\0")
        if vector is not None:
            digest.update(np.ascontiguousarray(vector, dtype="<f4").tobytes())
    return digest.digest()


def store_digest(store: Store) -> tuple[int, str]:
    """(number of records, digest over all of them, in any status, with their metadata and tags)."""
    digests: list[bytes] = []
    for page in _pages(store.records(status=None), BATCH):
        tags = store.tags_for([record.id for record in page if record.id is not None])
        digests += [record_digest(record, tags.get(record.id or 0, ())) for record in page]
    digests.sort()
    return len(digests), hashlib.sha256(b"".join(digests)).hexdigest()


def _pages(records: Iterable[ImageRecord], size: int) -> Iterator[list[ImageRecord]]:
    page: list[ImageRecord] = []
    for record in records:
        page.append(record)
        if len(page) >= size:
            yield page
            page = []
    if page:
        yield page


def copy_tags(source: Store, target: Store) -> int:
    """Copy every photo's collection tags (as tagger ``"migrated"``: ``tags_for`` gives each tag's best score
    over all taggers, which is what the target then holds too). Returns how many photos had tags."""
    if not source.tag_counts():
        return 0
    target_ids = {record.path: record.id for record in target.records()}
    copied = 0
    for page in _pages(source.records(), BATCH):
        tags = source.tags_for([record.id for record in page if record.id is not None])
        moved = {
            int(target_ids[record.path]): tags[record.id]  # type: ignore[arg-type]
            for record in page
            if record.id in tags and target_ids.get(record.path) is not None
        }
        if moved:
            target.set_tags(MIGRATED_TAGGER, moved)
            copied += len(moved)
    return copied


def copy_texts(source: Store, target: Store) -> int:
    """Copy the text read from each photo's content (``index --ocr``). Returns how many contents had it read."""
    copied = 0
    for page in _pages(source.records(), BATCH):
        lines = source.photo_text_lines({record.sha for record in page})
        if lines:
            target.set_photo_texts(lines)
            copied += len(lines)
    return copied


def copy_store(
    source: Store, target: Store, *, batch: int = BATCH, progress: Callable[[int], None] | None = None
) -> TransferReport:
    """Copy every record of ``source`` into ``target`` and check that both now hold the same collection."""
    report = TransferReport(spaces=source.spaces())
    pending: list[ImageRecord] = []

    def flush() -> None:
        target.add(pending)
        if progress is not None:
            progress(len(pending))
        pending.clear()

    with target.writer_lock(), target.bulk_load(source.count()):
        for original in source.records(status=None):
            record = dataclasses.replace(original, id=None)
            pending.append(record)
            report.images += 1
            report.failed += record.status == "failed"
            if len(pending) >= batch:
                flush()
        if pending:
            flush()
        report.tagged = copy_tags(source, target)
        report.texts = copy_texts(source, target)
    target.flush()
    (count, digest), (copied, copied_digest) = store_digest(source), store_digest(target)
    if (count, digest) != (copied, copied_digest):
        raise StoreError(
            f"the copy differs from its source: {copied} records (digest {copied_digest[:16]}) against {count} "
            f"({digest[:16]}); a target that already held other photos differs too"
        )
    report.digest = digest
    return report
