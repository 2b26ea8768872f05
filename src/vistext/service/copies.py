"""Copies among photos by their perceptual hashes (``analysis.picture_hash``), cached by content hash in the
catalogue so that each photo is decoded for them once: the hashes of a collection's contents (what
``find_duplicates`` groups), and which photos on one page of results are copies of each other (what the web
page folds into one tile). Copies are told as ``analysis.duplicates.copy_links`` tells them."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from vistext.analysis.duplicates import copy_links, linked_groups
from vistext.analysis.picture_hash import hash_photo
from vistext.errors import ImageDecodeError
from vistext.service.results import SkippedFile
from vistext.store.base import Store
from vistext.store.records import ImageRecord, l2_normalise

log = logging.getLogger(__name__)

_HASH_WORKERS = 4  # decoding a reduced JPEG releases the GIL


@dataclass
class Content:
    """One distinct content (content hash) of the collection and the indexed files holding it."""

    sha: str
    files: list[ImageRecord]
    vector: np.ndarray
    shot: np.ndarray | None = None  # its vector in the space similar shots are told in, when not the features


def contents_of(records: Iterable[ImageRecord], space: str | None = None) -> list[Content]:
    """The distinct contents among ``records`` (ok and with features), in order of their first image id; with
    ``space``, each with its vector there (``shot``) when it has one."""
    by_sha: dict[str, Content] = {}
    for record in records:
        if record.id is None or record.pooled is None:
            continue
        shot = None if space is None else record.embeddings.get(space)
        content = by_sha.setdefault(record.sha, Content(record.sha, [], record.pooled, shot))
        record.pooled, record.logits, record.embeddings = None, None, {}  # one vector per content is enough
        content.files.append(record)
    for content in by_sha.values():
        content.files.sort(key=lambda record: record.id or 0)
    return sorted(by_sha.values(), key=lambda content: content.files[0].id or 0)


def cached_hashes(store: Store, contents: list[Content]) -> tuple[dict[str, tuple[int, int]], list[SkippedFile]]:
    """Content hash -> (dct, diff) hashes from the cache, the missing ones computed and cached; the files that
    could not be read now (a content none of whose files can be read has no hashes)."""
    cached = store.picture_hashes([content.sha for content in contents])
    missing = [content for content in contents if content.sha not in cached]
    skipped: list[SkippedFile] = []
    if missing:
        with ThreadPoolExecutor(max_workers=min(_HASH_WORKERS, len(missing))) as pool:
            computed = list(pool.map(_hash_content, missing))
        fresh = {}
        for content, (codes, failures) in zip(missing, computed, strict=True):
            skipped += failures
            if codes is not None:
                fresh[content.sha] = codes
        store.set_picture_hashes(fresh)
        cached = {**cached, **fresh}
    return cached, skipped


def _hash_content(content: Content) -> tuple[tuple[int, int] | None, list[SkippedFile]]:
    """The hashes of the first file of ``content`` that can be read now and is still what was indexed (same
    size and modification time before and after decoding, so a hash is never cached under another content)."""
    failures = []
    for record in content.files:
        try:
            before = _stamp(record.path)
            picture = hash_photo(record.path)
            if before != (record.size, record.mtime) or _stamp(record.path) != before:
                raise ImageDecodeError(record.path, "changed since it was indexed (run `vistext index` again)")
            return (picture.dct, picture.diff), []
        except ImageDecodeError as error:
            log.info("duplicates: skipping %s", error)
            failures.append(SkippedFile(record.id or 0, record.path, error.reason))
    return None, failures


def _stamp(path: str) -> tuple[int, float]:
    try:
        status = os.stat(path)
    except OSError as error:
        raise ImageDecodeError(path, f"cannot read file ({error.strerror or error})") from None
    return int(status.st_size), float(status.st_mtime)


def copies_among(store: Store, ids: Sequence[int]) -> dict[int, int]:
    """Which of ``ids`` (a page of photos, in the order shown) are copies of one shown before them: id -> the
    first of its copies in ``ids``. The same bytes are copies; other copies are told as ``find_duplicates``
    tells them, from cached perceptual hashes: those missing are computed for these photos only (a reduced
    decode each, once: they are cached) when the catalogue is writable, else those photos fold by bytes only."""
    shown = {int(i): n for n, i in enumerate(ids)}
    contents = contents_of(store.records(list(shown)))
    if store.readonly:
        hashes = store.picture_hashes([content.sha for content in contents])
    else:
        hashes = cached_hashes(store, contents)[0]
    hashed = [content for content in contents if content.sha in hashes]
    groups = [[content.files for content in contents if len(content.files) > 1]]
    if len(hashed) > 1:
        codes = np.asarray([hashes[content.sha] for content in hashed], dtype=np.int64)
        matrix = l2_normalise(np.stack([content.vector for content in hashed]))
        linked = linked_groups(len(hashed), copy_links(codes, matrix))
        groups.append([[file for k in members for file in hashed[k].files] for members in linked])
    first_of: dict[int, int] = {}
    for files in (files for kind in groups for files in kind):
        members = sorted((shown[int(r.id or 0)], int(r.id or 0)) for r in files)
        for _, image_id in members[1:]:
            first_of[image_id] = members[0][1]
    return first_of
