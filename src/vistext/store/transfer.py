"""Copying a collection from one store to another (``vistext migrate``), checked by content digests.

Records travel in batches through the ``Store`` interface, so any backend can be the source or the target, and
because every backend's ``add`` is an upsert by path, an interrupted copy is simply run again. The digest of a
store is the SHA-256 over the sorted digests of its records (path, file state, error, pooled features, logits,
every embedding), so it does not depend on the ids either store gave them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from vistext.errors import StoreError
from vistext.store.base import Store
from vistext.store.records import ImageRecord

BATCH = 256


@dataclass
class TransferReport:
    """What was copied: counts by status, the spaces, and the digest both stores agreed on."""

    images: int = 0
    failed: int = 0
    spaces: list[str] = field(default_factory=list)
    digest: str = ""

    def to_dict(self) -> dict[str, object]:
        return {"images": self.images, "failed": self.failed, "spaces": self.spaces, "digest": self.digest}


def record_digest(record: ImageRecord) -> bytes:
    """A digest of everything a record carries except its id."""
    digest = hashlib.sha256()
    for part in (record.path, record.size, repr(float(record.mtime)), record.sha, record.model, record.status,
                 record.error):  # fmt: skip
        digest.update(str(part).encode("utf-8", "surrogateescape") + b"\0")
    for name, vector in [("pooled", record.pooled), ("logits", record.logits), *sorted(record.embeddings.items())]:
        digest.update(name.encode() + b"\0")
        if vector is not None:
            digest.update(np.ascontiguousarray(vector, dtype="<f4").tobytes())
    return digest.digest()


def store_digest(store: Store) -> tuple[int, str]:
    """(number of records, digest over all of them, in any status)."""
    digests = sorted(record_digest(record) for record in store.records(status=None))
    return len(digests), hashlib.sha256(b"".join(digests)).hexdigest()


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

    with target.writer_lock():
        for record in source.records(status=None):
            record.id = None
            pending.append(record)
            report.images += 1
            report.failed += record.status == "failed"
            if len(pending) >= batch:
                flush()
        if pending:
            flush()
    target.flush()
    (count, digest), (copied, copied_digest) = store_digest(source), store_digest(target)
    if (count, digest) != (copied, copied_digest):
        raise StoreError(
            f"the copy differs from its source: {copied} records (digest {copied_digest[:16]}) against {count} "
            f"({digest[:16]}); a target that already held other photos differs too"
        )
    report.digest = digest
    return report
