"""Flickr8k: ``Flickr8k.token.txt`` (``<image>#<n>\\t<caption>``), ``Flickr_8k.{split}Images.txt``, ``images/``."""

from __future__ import annotations

from pathlib import Path

from vistext.datasets.base import CAPTION_FORMATS, CaptionDataset, read_text
from vistext.errors import DatasetError

TOKEN_FILE = "Flickr8k.token.txt"
SPLIT_FILES = {"train": "Flickr_8k.trainImages.txt", "dev": "Flickr_8k.devImages.txt",
               "test": "Flickr_8k.testImages.txt"}  # fmt: skip


class Flickr8kDataset(CaptionDataset):
    """The Flickr8k folder layout. Split files are optional; images in no split appear only in ``images()``."""

    def __init__(self, path: str | Path, check_images: bool = True) -> None:
        root = Path(path)
        if not root.is_dir():
            raise DatasetError(root, "Flickr8k folder not found")
        images_dir = root / "images" if (root / "images").is_dir() else root
        token_file = root / TOKEN_FILE
        captions: dict[Path, list[str]] = {}
        for number, line in enumerate(read_text(token_file, "caption file").splitlines(), start=1):
            if not line.strip():
                continue
            key, tab, text = line.partition("\t")
            name, hash_, _ = key.partition("#")
            if not tab or not hash_ or not name.strip() or not text.strip():
                raise DatasetError(token_file, "expected '<image>#<n><TAB><caption>'", number)
            captions.setdefault(images_dir / name.strip(), []).append(text.strip())
        splits: dict[str, list[Path]] = {}
        for split, filename in SPLIT_FILES.items():
            split_file = root / filename
            if not split_file.is_file():
                continue
            members = []
            for number, line in enumerate(read_text(split_file, "split file").splitlines(), start=1):
                if not line.strip():
                    continue
                image = images_dir / line.strip()
                if image not in captions:
                    raise DatasetError(split_file, f"image {line.strip()!r} has no captions in {TOKEN_FILE}", number)
                members.append(image)
            splits[split] = members
        self._setup("flickr8k", root, captions, splits, check_images, token_file)


@CAPTION_FORMATS.register("flickr8k")
def open_flickr8k(path: Path, check_images: bool = True) -> CaptionDataset:
    return Flickr8kDataset(path, check_images=check_images)
