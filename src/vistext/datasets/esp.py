"""The ESP Game layout: ``labels/<image>.desc`` (one tag per line) and ``thumbnails/<image>``.

Splits are ``all`` plus a deterministic hash-based train/dev/test (80/10/10) on the image name.
"""

from __future__ import annotations

from pathlib import Path

from vistext.datasets.base import TAGGED_FORMATS, TaggedDataset, read_text, splits_by_hash
from vistext.errors import DatasetError


class EspGameTags(TaggedDataset):
    def __init__(self, path: str | Path, check_images: bool = True) -> None:
        root = Path(path)
        labels, thumbs = root / "labels", root / "thumbnails"
        if not labels.is_dir():
            raise DatasetError(labels, "ESP Game labels/ folder not found")
        tags: dict[Path, list[str]] = {}
        for desc in sorted(labels.glob("*.desc")):
            words = [" ".join(line.split()).lower() for line in read_text(desc, "label file").splitlines()]
            tags[thumbs / desc.name[: -len(".desc")]] = list(dict.fromkeys(w for w in words if w))
        if not tags:
            raise DatasetError(labels, "no .desc label files found")
        self._setup("esp", root, tags, splits_by_hash(tags, thumbs), check_images, thumbs)


@TAGGED_FORMATS.register("esp")
def open_esp(path: Path, check_images: bool = True) -> TaggedDataset:
    return EspGameTags(path, check_images=check_images)
