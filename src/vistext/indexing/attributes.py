"""A photo's colour and light measures (``images.attributes``) in the catalogue, as the embedding space
``ATTRIBUTE_SPACE``.

New and changed photos get them from the pixels decoded for the encoder (``features.EncodedImage.attributes``),
at well under a millisecond each. Photos indexed before the measures existed get them on the next ``vistext index``
(``fill_attributes``), as their metadata does: the stored features cannot give colours back, so each such photo is
decoded once more at the encoder's size (no encoding), and only while its content is still what was indexed.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
from tqdm import tqdm

from vistext.encoders import ImageEncoder
from vistext.errors import ImageDecodeError
from vistext.images import PhotoFile, open_image
from vistext.images.attributes import ATTRIBUTE_SPACE, pixel_measures
from vistext.indexing.plan import IndexReport
from vistext.store import ImageRecord, Store

log = logging.getLogger(__name__)
FILL_PAGE = 64


def with_attributes(embeddings: dict[str, np.ndarray], measures: np.ndarray | None) -> dict[str, np.ndarray]:
    """A record's ``embeddings`` plus its attribute measures, when there are any."""
    return embeddings if measures is None else {**embeddings, ATTRIBUTE_SPACE: measures}


def _measure(record: ImageRecord, encoder: ImageEncoder) -> np.ndarray | None:
    """The measures of the file behind ``record``, or None when it no longer holds the content indexed."""
    try:
        with PhotoFile(record.path) as photo:
            if photo.sha != record.sha:
                return None  # changed since the plan: the next run re-indexes it, measures included
            return pixel_measures(encoder.pixels(open_image(photo, min_side=encoder.preprocessing.size)))
    except ImageDecodeError as error:
        log.info("no colour measures for %s: %s", record.path, error.reason)
        return None


def fill_attributes(
    store: Store, unchanged: set[str], encoder: ImageEncoder, report: IndexReport, *, workers: int = 2,
    progress: bool = False,
) -> None:  # fmt: skip
    """Measure the unchanged ok photos that have no attribute measures stored (a catalogue from before them)."""
    lacking = store.paths_missing(ATTRIBUTE_SPACE) & unchanged
    if not lacking:
        return
    ids = [int(r.id) for r in store.records() if r.id is not None and r.path in lacking]
    with (
        ThreadPoolExecutor(max(1, workers), thread_name_prefix="vistext-measure") as pool,
        tqdm(total=len(ids), disable=not progress, desc="colours", unit="img", dynamic_ncols=True) as bar,
    ):
        for start in range(0, len(ids), FILL_PAGE):
            records = list(store.records(ids[start : start + FILL_PAGE]))
            measured = list(pool.map(lambda record: _measure(record, encoder), records))
            filled = [
                replace(r, pooled=None, logits=None, embeddings={ATTRIBUTE_SPACE: m})
                for r, m in zip(records, measured, strict=True)
                if m is not None
            ]
            if filled:
                store.add(filled)
                report.attributes_filled += len(filled)
            bar.update(len(records))
    log.info("measured colour and light of %d photos indexed before the measures", report.attributes_filled)
