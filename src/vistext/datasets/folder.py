"""Folder datasets: images with sidecar ``.txt`` captions (captions), or one sub-folder per class (tags).

Splits are ``all`` plus a deterministic hash-based train/dev/test (80/10/10) on each image's relative path.
"""

from __future__ import annotations

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
from vistext.images import IMAGE_SUFFIXES


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))  # fmt: skip


class FolderCaptions(CaptionDataset):
    """``photo.jpg`` + ``photo.txt`` (one caption per line), anywhere under the folder; others are skipped."""

    def __init__(self, path: str | Path) -> None:
        root = Path(path)
        if not root.is_dir():
            raise DatasetError(root, "folder not found")
        captions: dict[Path, list[str]] = {}
        for image in _image_files(root):
            sidecar = image.with_suffix(".txt")
            if sidecar.is_file():
                lines = [" ".join(line.split()) for line in read_text(sidecar, "caption file").splitlines()]
                if any(lines):
                    captions[image] = [line for line in lines if line]
        if not captions:
            raise DatasetError(root, "no images with a sidecar .txt caption file found")
        self._setup(root.name, root, captions, splits_by_hash(captions, root), False, root)


class FolderTags(TaggedDataset):
    """``<root>/<class>/<image>``: one sub-folder per class, single-label."""

    single_label = True

    def __init__(self, path: str | Path) -> None:
        root = Path(path)
        if not root.is_dir():
            raise DatasetError(root, "folder not found")
        tags: dict[Path, list[str]] = {}
        for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for image in _image_files(class_dir):
                tags[image] = [class_dir.name]
        if not tags:
            raise DatasetError(root, "no class sub-folders with images found")
        self._setup(root.name, root, tags, splits_by_hash(tags, root), False, root)


@CAPTION_FORMATS.register("folder")
def open_folder_captions(path: Path) -> CaptionDataset:
    return FolderCaptions(path)


@TAGGED_FORMATS.register("folder")
def open_folder_tags(path: Path) -> TaggedDataset:
    return FolderTags(path)
