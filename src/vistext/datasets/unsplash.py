"""Unsplash-Lite-style keyword tables.

Layout::

    DIR/keywords.tsv000        photo_id, keyword, ai_service_1_confidence (or confidence)[, suggested_by_user]
    DIR/images/<photo_id>.jpg  the photos (any of .jpg/.jpeg/.png/.webp)

The spec names the table or its folder: ``unsplash:DIR?min_confidence=30``. A keyword is kept when its
confidence is >= ``min_confidence``; keywords without a confidence (user-suggested ones) are kept when
``suggested_by_user`` is true or ``min_confidence`` is 0. ``skip_missing=true`` drops photos not downloaded.
Splits are ``all`` plus a deterministic hash-based train/dev/test (80/10/10) on the photo id.
"""

from __future__ import annotations

import csv
from pathlib import Path

from vistext.datasets.base import TAGGED_FORMATS, TaggedDataset, check_images_exist, splits_by_hash
from vistext.errors import DatasetError

_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
_TRUE = {"t", "true", "1", "yes"}


def _find_table(path: Path) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        for pattern in ("keywords.tsv*", "keywords.csv*", "*.tsv*", "*.csv"):
            found = sorted(path.glob(pattern))
            if found:
                return found[0]
    raise DatasetError(path, "no Unsplash keywords table (keywords.tsv000 / .csv) found")


def _image_for(images_dir: Path, photo_id: str) -> Path:
    for suffix in _SUFFIXES:
        candidate = images_dir / f"{photo_id}{suffix}"
        if candidate.is_file():
            return candidate
    return images_dir / f"{photo_id}.jpg"


class UnsplashTags(TaggedDataset):
    def __init__(self, path: str | Path, min_confidence: float = 0.0, check_images: bool = True,
                 skip_missing: bool = False) -> None:  # fmt: skip
        table = _find_table(Path(path))
        images_dir = table.parent / "images"
        delimiter = "," if ".csv" in table.name.lower() else "\t"
        keywords: dict[str, list[str]] = {}
        try:
            handle = table.open(encoding="utf-8-sig", newline="")
        except OSError as exc:
            raise DatasetError(table, f"cannot read ({exc.strerror})") from None
        with handle:
            reader = csv.reader(handle, delimiter=delimiter)
            header = [h.strip().lower() for h in next(reader, [])]
            conf_col = next((c for c in ("ai_service_1_confidence", "confidence") if c in header), None)
            if "photo_id" not in header or "keyword" not in header or conf_col is None:
                raise DatasetError(table, "expected columns photo_id, keyword, ai_service_1_confidence|confidence", 1)
            col = {name: header.index(name) for name in header}
            try:
                for row in reader:
                    if not row:
                        continue
                    if len(row) != len(header):
                        raise DatasetError(table, f"{len(row)} columns, expected {len(header)}", reader.line_num)
                    photo, keyword = row[col["photo_id"]].strip(), " ".join(row[col["keyword"]].split()).lower()
                    if not photo or not keyword:
                        continue
                    kept = keywords.setdefault(photo, [])  # a photo with no keyword left stays, untagged
                    if self._keep(row, col, conf_col, min_confidence, table, reader.line_num) and keyword not in kept:
                        kept.append(keyword)
            except csv.Error as exc:
                raise DatasetError(table, f"bad table row: {exc}", reader.line_num) from None
        tags = {_image_for(images_dir, photo): kws for photo, kws in keywords.items()}
        if skip_missing:
            tags = {image: kws for image, kws in tags.items() if image.is_file()}
        if check_images:
            check_images_exist(tags, table)
        self._setup("unsplash", table.parent, tags, splits_by_hash(tags, images_dir), False, table)

    @staticmethod
    def _keep(row: list[str], col: dict[str, int], conf_col: str, min_confidence: float, table: Path,
              line: int) -> bool:  # fmt: skip
        raw = row[col[conf_col]].strip()
        if not raw:
            suggested = "suggested_by_user" in col and row[col["suggested_by_user"]].strip().lower() in _TRUE
            return suggested or min_confidence <= 0
        try:
            return float(raw) >= min_confidence
        except ValueError:
            raise DatasetError(table, f"confidence {raw!r} is not a number", line) from None


@TAGGED_FORMATS.register("unsplash")
def open_unsplash(path: Path, min_confidence: float = 0.0, check_images: bool = True,
                  skip_missing: bool = False) -> TaggedDataset:  # fmt: skip
    return UnsplashTags(path, min_confidence=float(min_confidence), check_images=check_images,
                        skip_missing=skip_missing)  # fmt: skip
