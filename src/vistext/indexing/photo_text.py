"""The OCR step of indexing (``vistext index --ocr``): the text in every indexed photo whose content was never
read, stored by content hash (``vistext.store.photo_text``), so a copy, a moved photo or a second run reads
nothing again and a changed photo (a new content hash) is read anew. It runs after the photos are indexed,
whatever engine indexed them, and reads each photo once more (decoded at a size text stays legible in).

A photo the OCR engine fails on is a one-line warning; the photo stays indexed and searchable by its picture,
and its text is tried again on the next run. Texts are committed in batches, so an interrupted step resumes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from vistext.errors import ImageDecodeError
from vistext.images import open_image
from vistext.models.ocr import TextReader
from vistext.store import Store

log = logging.getLogger(__name__)

BATCH = 16  # photos whose text is committed together
OCR_MIN_SIDE = 1024  # decode large JPEGs at no less than this shorter side: small print stays legible


@dataclass
class TextReport:
    """What one OCR step did: photos read, those holding text, failures (path, reason) and the time taken."""

    engine: str
    read: int = 0
    with_text: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine, "read": self.read, "with_text": self.with_text,
            "failed": [{"path": path, "error": error} for path, error in self.failures],
            "seconds": round(self.seconds, 3),
        }  # fmt: skip


def read_texts(store: Store, reader: TextReader, *, progress: bool = True) -> TextReport:
    """Read and store the text of every ok photo in ``store`` whose content was never read."""
    started = time.perf_counter()
    report = TextReport(reader.name)
    todo = store.photo_texts_to_read()
    if todo:
        reader.load()  # a missing extra fails before the first photo (and nothing to read loads nothing)
    batch: dict[str, list[tuple[str, float]]] = {}
    with tqdm(total=len(todo), disable=not progress, desc="reading text", unit="img", dynamic_ncols=True) as bar:
        for sha, path in todo.items():
            try:
                lines = reader.read(open_image(path, min_side=OCR_MIN_SIDE))
            except ImageDecodeError as error:
                _failed(report, path, error.reason)
            except Exception as error:  # noqa: BLE001 - the engine's own failure is this photo's, not the run's
                _failed(report, path, f"OCR failed: {type(error).__name__}: {error}")
            else:
                batch[sha] = lines
                report.read += 1
                report.with_text += bool(lines)
            bar.update(1)
            if len(batch) >= BATCH:
                store.set_photo_texts(batch)
                batch = {}
        if batch:
            store.set_photo_texts(batch)
    report.seconds = time.perf_counter() - started
    log.info("read the text of %d photos (%d hold text) in %.1fs", report.read, report.with_text, report.seconds)
    return report


def _failed(report: TextReport, path: str, reason: str) -> None:
    reason = " ".join(reason.split())  # one line, whatever the engine said
    report.failures.append((path, reason))
    log.warning("%s: text not read (tried again next run): %s", path, reason)
