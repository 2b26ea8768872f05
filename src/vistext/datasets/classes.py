"""Folder-per-class datasets for zero-shot evaluation: ``<root>/<class>/<image>``, plus an optional
``classes.csv`` (``folder,label,...``) giving each folder a natural-language label (``stop_sign`` -> ``stop sign``).

Splits are ``all`` and two stratified halves, ``dev`` and ``test``: each class's images are shuffled with a fixed
seed and cut in two (dev gets the extra image of an odd class), so every class appears in both halves and the
same seed gives the same split on every machine. Choose hyperparameters on ``dev``, report ``test``.
"""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path

from vistext.datasets.base import ALL, TAGGED_FORMATS, TaggedDataset, read_text
from vistext.errors import DatasetError
from vistext.images import IMAGE_SUFFIXES

LABELS_FILE = "classes.csv"
HALVES = ("dev", "test")


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.name.startswith("."))  # fmt: skip


def read_class_labels(root: Path) -> dict[str, str]:
    """Folder name -> label from ``root/classes.csv`` (empty when the file is absent)."""
    file = root / LABELS_FILE
    if not file.is_file():
        return {}
    rows = list(csv.DictReader(io.StringIO(read_text(file, LABELS_FILE))))
    if rows and not {"folder", "label"} <= set(rows[0]):
        raise DatasetError(file, "expected the columns folder,label")
    return {row["folder"].strip(): row["label"].strip() for row in rows if row["folder"] and row["label"]}


def stratified_halves(by_class: dict[str, list[Path]], seed: int) -> dict[str, list[Path]]:
    """``dev`` and ``test``: each class's images shuffled with ``seed`` and halved (dev takes the odd one)."""
    rng = random.Random(seed)
    out: dict[str, list[Path]] = {half: [] for half in HALVES}
    for name in sorted(by_class):
        images = sorted(by_class[name])
        rng.shuffle(images)
        cut = (len(images) + 1) // 2
        out["dev"] += images[:cut]
        out["test"] += images[cut:]
    return {half: sorted(images) for half, images in out.items()}


class ClassFolder(TaggedDataset):
    """One sub-folder per class, single-label; the tag of an image is its class's label."""

    single_label = True

    def __init__(self, path: str | Path, seed: int = 0) -> None:
        root = Path(path)
        if not root.is_dir():
            raise DatasetError(root, "folder not found")
        labels = read_class_labels(root)
        by_class: dict[str, list[Path]] = {}
        for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            images = _image_files(class_dir)
            if images:
                by_class[labels.get(class_dir.name, class_dir.name.replace("_", " "))] = images
        if not by_class:
            raise DatasetError(root, "no class sub-folders with images found")
        tags = {image: [label] for label, images in by_class.items() for image in images}
        splits = {ALL: sorted(tags), **stratified_halves(by_class, seed)}
        self._setup(root.name, root, dict(sorted(tags.items())), splits, False, root)
        self.seed = seed

    @property
    def class_names(self) -> list[str]:
        """The class labels, sorted: column order of every score matrix built from this dataset."""
        return sorted({tags[0] for tags in self._tags.values()})

    def targets(self, split: str | None = None) -> list[int]:
        """Class index (into ``class_names``) of each image of ``split``, in ``images(split)`` order."""
        index = {name: i for i, name in enumerate(self.class_names)}
        return [index[self._tags[image][0]] for image in self.images(split)]


@TAGGED_FORMATS.register("classes")
def open_class_folder(path: Path, seed: int = 0) -> TaggedDataset:
    return ClassFolder(path, seed=seed)
