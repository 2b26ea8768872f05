"""Duplicates in an indexed collection, in two kinds named as such:

- *copies*: the same photo saved again (the same bytes, or re-encoded, resized, cropped a little, rotated by EXIF,
  metadata changed), told by perceptual hashes (``analysis.picture_hash``; beyond a sure distance the stored
  image features must agree too), cached by content hash in the catalogue, so a second run decodes no photo. One
  copy per group is suggested to keep (``KEEP_RULE``).
- *similar shots*: distinct photos of one scene (bursts, the same view), told by the stored image features at
  cosine ``threshold`` or above. Nothing is suggested to keep: each may be the one a user wants.

A photo that cannot be read now (gone, a FIFO, broken) is skipped with a one-line reason; nothing blocks on it.
"""

from __future__ import annotations

import numpy as np

from vistext.analysis.duplicates import copy_links, cosine_links, linked_groups
from vistext.analysis.picture_hash import COPY_DISTANCE
from vistext.errors import ImageDecodeError, UsageError
from vistext.service.clip_spaces import DUPLICATE_THRESHOLD
from vistext.service.collection import Collection
from vistext.service.copies import Content, cached_hashes, contents_of
from vistext.service.results import DuplicateGroup, DuplicateImage, DuplicatesResult
from vistext.store.dates import record_date
from vistext.store.records import ImageRecord, l2_normalise

# Measured by bench/duplicates.py (efficientnet-lite0 pooled features): at 0.85 bursts and photos of one scene
# group together, while photos that merely share a subject do not; copies are found by hash, not by this.
DEFAULT_THRESHOLD = 0.85
KEEP_RULE = (
    "the copy to keep: the most pixels; then one that still carries its camera's EXIF (re-encoding often strips "
    "it); then the oldest (date taken, then file time: an original predates its copies); then the largest file "
    "(least compressed); then the first indexed"
)


def find_duplicates(
    collection: Collection,
    threshold: float | None = None,
    restrict: np.ndarray | None = None,
    space: str | None = None,
) -> DuplicatesResult:
    """Groups of copies (perceptual hash) and of similar shots (image features at cosine ``threshold``, or
    ``DEFAULT_THRESHOLD`` when None) of ``collection``, among the image ids in ``restrict`` when given.
    ``space``: tell similar shots by the vectors of this stored space instead (a CLIP-family model's; default
    threshold ``clip_spaces.DUPLICATE_THRESHOLD``); photos without a vector there are in no similar-shot group."""
    if threshold is None:
        threshold = DEFAULT_THRESHOLD if space is None else DUPLICATE_THRESHOLD
    threshold = float(threshold)
    if not 0.0 < threshold <= 1.0:
        raise UsageError(f"the similarity threshold must be in (0, 1], got {threshold}")
    store = collection.store()
    contents = contents_of(store.records(None if restrict is None else restrict.tolist(), status="ok"), space)
    hashes, skipped = cached_hashes(store, contents)
    left_out = {file.id for file in skipped}  # a file that cannot be read now is in no group
    for content in contents:
        content.files = [record for record in content.files if record.id not in left_out]
    contents = [content for content in contents if content.files and content.sha in hashes]
    if not contents:
        return DuplicatesResult([], threshold, COPY_DISTANCE, skipped)
    codes = np.asarray([hashes[content.sha] for content in contents], dtype=np.int64)
    matrix = l2_normalise(np.stack([content.vector for content in contents]))
    linked = linked_groups(len(contents), copy_links(codes, matrix))
    in_copies = {member for group in linked for member in group}
    linked += [[k] for k, content in enumerate(contents) if len(content.files) > 1 and k not in in_copies]
    groups: list[DuplicateGroup] = []
    representative = list(range(len(contents)))  # a copy group stands for its kept copy among similar shots
    shown_file = {k: content.files[0] for k, content in enumerate(contents)}
    for members in linked:
        group, keep = _copy_group([contents[k] for k in members], matrix[members])
        groups.append(group)
        for k in members:
            representative[k] = members[keep]
        shown_file[members[keep]] = next(r for r in contents[members[keep]].files if r.id == group.keep)
    shown = sorted(set(representative))
    shots = matrix if space is None else _shots(contents)
    candidates = shots if len(shown) == len(contents) else shots[shown]
    for members in linked_groups(len(shown), cosine_links(candidates, threshold)):
        rows = [shown[m] for m in members]
        groups.append(_similar_group([shown_file[k] for k in rows], shots[rows]))
    return DuplicatesResult(groups, threshold, COPY_DISTANCE, skipped)


def _shots(contents: list[Content]) -> np.ndarray:
    """The contents' unit vectors in the similar-shot space (zeros for one without: it links to nothing)."""
    dim = next((len(c.shot) for c in contents if c.shot is not None), 1)
    return l2_normalise(np.stack([np.zeros(dim, np.float32) if c.shot is None else c.shot for c in contents]))


def _copy_group(contents: list[Content], matrix: np.ndarray) -> tuple[DuplicateGroup, int]:
    """One group of copies, every file of every member content, the one to keep (``KEEP_RULE``) first; the
    rest by their feature similarity to it. Also the position of the kept file's content in ``contents``."""
    files = [(k, record) for k, content in enumerate(contents) for record in content.files]
    keep_k, keep = max(files, key=lambda item: _keep_key(item[1]))
    scores = matrix @ matrix[keep_k]
    ordered = sorted(files, key=lambda item: (item[1] is not keep, -float(scores[item[0]]), item[1].id))
    images = [
        DuplicateImage(
            int(record.id or 0),
            record.path,
            1.0 if k == keep_k else min(float(scores[k]), 1.0),
            "keep" if record is keep else ("exact" if k == keep_k else "copy"),
        )
        for k, record in ordered
    ]
    return DuplicateGroup("copies", images, keep=int(keep.id or 0)), keep_k


def _similar_group(files: list[ImageRecord], matrix: np.ndarray) -> DuplicateGroup:
    """One group of similar shots, one file per content (copies stand in by their kept file), in the order they
    were taken; scores are feature similarities to the first."""
    order = sorted(range(len(files)), key=lambda k: _taken(files[k]))
    scores = matrix @ matrix[order[0]]
    images = [DuplicateImage(int(files[k].id or 0), files[k].path, min(float(scores[k]), 1.0)) for k in order]
    return DuplicateGroup("similar", images)


def _taken(record: ImageRecord) -> tuple[float, int]:
    return record_date(record), int(record.id or 0)


def _keep_key(record: ImageRecord) -> tuple[int, bool, float, float, int, int]:
    """Larger is kept first: pixels, camera EXIF, older (taken, then file time), file size, then first indexed
    (``KEEP_RULE``)."""
    meta = record.meta
    pixels = (meta.width or 0) * (meta.height or 0) if meta is not None else 0
    camera = meta is not None and bool(meta.camera_make or meta.camera_model)
    taken = meta.taken_at if meta is not None and meta.taken_at is not None else float("inf")
    return pixels or _header_pixels(record.path), camera, -taken, -record.mtime, int(record.size), -(record.id or 0)


def _header_pixels(path: str) -> int:
    """Width x height from the file's header (no pixel decoded; a FIFO is refused unread), 0 when unreadable."""
    import warnings

    from PIL import Image

    from vistext.images import open_regular

    try:
        with open_regular(path) as handle, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a huge or oddly tagged header is still just a size here
            with Image.open(handle) as picture:
                return int(picture.width) * int(picture.height)
    except (ImageDecodeError, OSError, ValueError, Image.DecompressionBombError):
        return 0
