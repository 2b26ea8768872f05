"""MS-COCO captions: ``annotations/captions_<split>.json`` with images in ``<split>/`` (or ``images/<split>/``).

Both the 2014 and 2017 layouts work; split names are taken from the file names (``train2014``, ``val2017``...).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from vistext.datasets.base import CAPTION_FORMATS, CaptionDataset, read_text
from vistext.errors import DatasetError

_ANNOTATION = re.compile(r"^captions_(\w+)\.json$")


def _read_annotations(path: Path, images_dir: Path) -> dict[Path, list[str]]:
    try:
        data = json.loads(read_text(path, "annotation file"))
    except json.JSONDecodeError as exc:
        raise DatasetError(path, f"bad JSON: {exc.msg}", exc.lineno) from None
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise DatasetError(path, "expected a COCO captions file with 'images' and 'annotations'")
    try:
        files = {item["id"]: images_dir / item["file_name"] for item in data["images"]}
        captions: dict[Path, list[str]] = {image: [] for image in files.values()}
        for ann in data["annotations"]:
            if ann["image_id"] not in files:
                raise DatasetError(path, f"annotation {ann.get('id')} refers to unknown image id {ann['image_id']}")
            captions[files[ann["image_id"]]].append(" ".join(str(ann["caption"]).split()))
    except (KeyError, TypeError) as exc:
        raise DatasetError(path, f"malformed COCO entry (missing {exc})") from None
    return {image: texts for image, texts in captions.items() if texts}


class CocoDataset(CaptionDataset):
    def __init__(self, path: str | Path, check_images: bool = True) -> None:
        root = Path(path)
        ann_dir = root / "annotations"
        found = [p for p in sorted(ann_dir.glob("captions_*.json")) if _ANNOTATION.match(p.name)]
        if not found:
            raise DatasetError(ann_dir, "no annotations/captions_<split>.json files found")
        captions: dict[Path, list[str]] = {}
        splits: dict[str, list[Path]] = {}
        # train before val, whatever the year
        for ann in sorted(found, key=lambda p: (not p.name.startswith("captions_train"), p.name)):
            split = _ANNOTATION.match(ann.name).group(1)  # type: ignore[union-attr]
            images_dir = root / split if (root / split).is_dir() else root / "images" / split
            if not images_dir.is_dir() and check_images:
                raise DatasetError(root, f"image folder for split {split!r} not found ({split}/ or images/{split}/)")
            part = _read_annotations(ann, images_dir)
            captions.update(part)
            splits[split] = list(part)
        self._setup("coco", root, captions, splits, check_images, root)


@CAPTION_FORMATS.register("coco")
def open_coco(path: Path, check_images: bool = True) -> CaptionDataset:
    return CocoDataset(path, check_images=check_images)
