"""CSV and JSON-lines datasets: ``image,caption`` (captions) or ``image,tags`` (tags), optional ``split``.

Image paths are relative to the file's folder (absolute paths are kept). Without a ``split`` column every image is
in split ``all`` and also in a deterministic hash-based ``train``/``dev``/``test`` (80/10/10) split.
Tags are ``|``-separated in CSV and a JSON list in JSONL. An image may appear on several rows (one caption each).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

from vistext.datasets.base import (
    CAPTION_FORMATS,
    TAGGED_FORMATS,
    CaptionDataset,
    TaggedDataset,
    read_text,
    splits_by_hash,
)
from vistext.errors import DatasetError

Row = tuple[int, dict[str, object]]


def _csv_rows(path: Path, required: tuple[str, ...]) -> Iterator[Row]:
    reader = csv.reader(io.StringIO(read_text(path, "CSV file"), newline=""))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise DatasetError(path, "empty file") from None
    except csv.Error as exc:
        raise DatasetError(path, f"bad CSV: {exc}", 1) from None
    missing = [c for c in required if c not in header]
    if missing:
        raise DatasetError(path, f"missing column(s) {', '.join(missing)}; header is {','.join(header)}", 1)
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise DatasetError(path, f"{len(row)} columns, expected {len(header)}", reader.line_num)
            yield reader.line_num, dict(zip(header, row, strict=True))
    except csv.Error as exc:
        raise DatasetError(path, f"bad CSV: {exc}", reader.line_num) from None


def _jsonl_rows(path: Path, required: tuple[str, ...]) -> Iterator[Row]:
    for number, line in enumerate(read_text(path, "JSONL file").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(path, f"bad JSON: {exc.msg}", number) from None
        if not isinstance(row, dict):
            raise DatasetError(path, "expected a JSON object per line", number)
        missing = [c for c in required if c not in row]
        if missing:
            raise DatasetError(path, f"missing key(s) {', '.join(missing)}", number)
        yield number, row


def _rows(path: Path, required: tuple[str, ...]) -> tuple[Iterator[Row], bool]:
    if not path.is_file():
        raise DatasetError(path, "file not found")
    is_json = path.suffix.lower() in (".jsonl", ".json", ".ndjson")
    return (_jsonl_rows(path, required) if is_json else _csv_rows(path, required)), is_json


def _image(path: Path, row: dict[str, object], number: int) -> Path:
    value = str(row["image"]).strip()
    if not value:
        raise DatasetError(path, "empty image path", number)
    image = Path(value).expanduser()
    return image if image.is_absolute() else path.parent / image


def _read(path: Path, value_column: str, parse) -> tuple[dict[Path, list[str]], dict[str, list[Path]]]:  # type: ignore[no-untyped-def]
    rows, is_json = _rows(path, ("image", value_column))
    values: dict[Path, list[str]] = {}
    split_of: dict[Path, str] = {}
    for number, row in rows:
        image = _image(path, row, number)
        values.setdefault(image, []).extend(parse(row[value_column], is_json, number))
        split = str(row.get("split") or "").strip()
        if split:
            split_of.setdefault(image, split)
    if split_of:
        splits: dict[str, list[Path]] = {}
        for image in values:
            if image in split_of:
                splits.setdefault(split_of[image], []).append(image)
    else:
        splits = splits_by_hash(values, path.parent)
    return values, splits


class TabularCaptions(CaptionDataset):
    def __init__(self, path: str | Path, check_images: bool = True) -> None:
        path = Path(path)

        def parse(value: object, is_json: bool, number: int) -> list[str]:
            text = " ".join(str(value).split()) if isinstance(value, str) else ""
            if not text:
                raise DatasetError(path, "empty or non-text caption", number)
            return [text]

        captions, splits = _read(path, "caption", parse)
        self._setup(path.stem, path.parent, captions, splits, check_images, path)


class TabularTags(TaggedDataset):
    def __init__(self, path: str | Path, check_images: bool = True) -> None:
        path = Path(path)

        def parse(value: object, is_json: bool, number: int) -> list[str]:
            if is_json:
                if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
                    raise DatasetError(path, "'tags' must be a JSON list of strings", number)
                tags = value
            else:
                tags = str(value).split("|")
            return [t.strip() for t in tags if t.strip()]

        raw, splits = _read(path, "tags", parse)
        tags = {image: list(dict.fromkeys(t)) for image, t in raw.items()}
        self.single_label = bool(tags) and all(len(t) == 1 for t in tags.values())
        self._setup(path.stem, path.parent, tags, splits, check_images, path)


@CAPTION_FORMATS.register("csv")
def open_csv_captions(path: Path, check_images: bool = True) -> CaptionDataset:
    return TabularCaptions(path, check_images=check_images)


@CAPTION_FORMATS.register("jsonl")
def open_jsonl_captions(path: Path, check_images: bool = True) -> CaptionDataset:
    return TabularCaptions(path, check_images=check_images)


@TAGGED_FORMATS.register("csv")
def open_csv_tags(path: Path, check_images: bool = True) -> TaggedDataset:
    return TabularTags(path, check_images=check_images)


@TAGGED_FORMATS.register("jsonl")
def open_jsonl_tags(path: Path, check_images: bool = True) -> TaggedDataset:
    return TabularTags(path, check_images=check_images)
