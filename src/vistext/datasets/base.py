"""The two dataset interfaces (captioned images, tagged images), their registries and shared helpers."""

from __future__ import annotations

import hashlib
from abc import ABC
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from vistext.errors import DatasetError
from vistext.registry import Registry

ALL = "all"
HASH_SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class Caption:
    image: Path
    text: str


@dataclass(frozen=True)
class TaggedImage:
    image: Path
    tags: list[str] = field(default_factory=list)


def hash_split(key: str) -> str:
    """A stable 80/10/10 train/dev/test assignment from a name (same name, same split, on every machine)."""
    bucket = int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:4], "big") % 10
    return "train" if bucket < 8 else "dev" if bucket == 8 else "test"


def splits_by_hash(images: Iterable[Path], root: Path) -> dict[str, list[Path]]:
    """``all`` plus a deterministic train/dev/test split keyed on each image's path relative to ``root``."""
    images = list(images)
    out: dict[str, list[Path]] = {ALL: images, **{s: [] for s in HASH_SPLITS}}
    for image in images:
        try:
            key = image.relative_to(root).as_posix()
        except ValueError:
            key = image.as_posix()
        out[hash_split(key)].append(image)
    return out


def check_images_exist(images: Iterable[Path], source: str | Path) -> None:
    """DatasetError naming how many referenced images are missing and the first one."""
    missing = [p for p in images if not p.is_file()]
    if missing:
        raise DatasetError(
            source, f"{len(missing)} referenced image file(s) missing, first: {missing[0]} (check_images=False skips)"
        )


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of a dataset file, or a DatasetError saying why not."""
    if not path.is_file():
        raise DatasetError(path, f"{what} not found")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(path, f"not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise DatasetError(path, f"cannot read {what} ({exc.strerror})") from None


class _Splits:
    """Shared split bookkeeping: an ordered map split name -> images, plus all images in order."""

    name: str
    root: Path
    _splits: dict[str, list[Path]]
    _images: list[Path]

    def splits(self) -> list[str]:
        """Split names in the dataset's own order (e.g. train, dev, test)."""
        return list(self._splits)

    def images(self, split: str | None = None) -> list[Path]:
        """Image paths of ``split`` (None: every image, including any in no split)."""
        if split is None:
            return list(self._images)
        if split not in self._splits:
            raise DatasetError(self.root, f"no split {split!r} in {self.name}; splits: {', '.join(self._splits)}")
        return list(self._splits[split])

    def train_split(self) -> str | None:
        """The split used for fitting: ``train`` or the first split named ``train...`` (None if there is none)."""
        return next((s for s in self._splits if s.startswith("train")), None)


class CaptionDataset(_Splits, ABC):
    """Images with free-text captions. Subclasses fill ``_captions`` (image -> texts) and ``_splits``."""

    _captions: dict[Path, list[str]]

    def _setup(self, name: str, root: Path, captions: dict[Path, list[str]], splits: dict[str, list[Path]],
               check_images: bool, source: str | Path) -> None:  # fmt: skip
        self.name, self.root = name, root
        self._captions, self._splits, self._images = captions, splits, list(captions)
        if check_images:
            check_images_exist(self._images, source)

    def captions(self, split: str | None = None) -> list[Caption]:
        """Every (image, caption) pair of ``split`` (None: all), images in dataset order."""
        return [Caption(image, text) for image in self.images(split) for text in self._captions[image]]

    def captions_by_image(self, split: str | None = None) -> dict[Path, list[str]]:
        return {image: list(self._captions[image]) for image in self.images(split)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {len(self._images)} images, splits={self.splits()})"


class TaggedDataset(_Splits, ABC):
    """Images with zero or more tags each (exactly one when ``single_label``)."""

    single_label: bool = False
    _tags: dict[Path, list[str]]

    def _setup(self, name: str, root: Path, tags: dict[Path, list[str]], splits: dict[str, list[Path]],
               check_images: bool, source: str | Path) -> None:  # fmt: skip
        self.name, self.root = name, root
        self._tags, self._splits, self._images = tags, splits, list(tags)
        if check_images:
            check_images_exist(self._images, source)

    def items(self, split: str | None = None) -> list[TaggedImage]:
        return [TaggedImage(image, list(self._tags[image])) for image in self.images(split)]

    def vocabulary(self) -> list[str]:
        """Every tag, most frequent first (number of images), ties by name."""
        counts = Counter(t for tags in self._tags.values() for t in tags)
        return sorted(counts, key=lambda t: (-counts[t], t))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {len(self._images)} images, splits={self.splits()})"


CAPTION_FORMATS: Registry[CaptionDataset] = Registry("caption dataset format")
TAGGED_FORMATS: Registry[TaggedDataset] = Registry("tagged dataset format")
