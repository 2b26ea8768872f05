"""Tags derived from captions: the content words most of an image's captions agree on."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from vistext.datasets.base import CaptionDataset, TaggedDataset
from vistext.paths import atomic_path
from vistext.text import content_words


class CaptionTags(TaggedDataset):
    """A tagged view of a caption dataset (multi-label). Images keep their splits; some may have no tags."""

    single_label = False

    def __init__(self, source: CaptionDataset, tags: dict[Path, list[str]], top_n: int, min_captions: int) -> None:
        self.source, self.top_n, self.min_captions = source, top_n, min_captions
        splits = {split: source.images(split) for split in source.splits()}
        self._setup(f"{source.name}-tags", source.root, tags, splits, False, source.root)

    def write_csv(self, path: str | Path) -> Path:
        """Write ``image,tags,split`` (tags ``|``-joined) readable by ``open_tagged_dataset("csv:PATH")``.

        Image paths are relative to the CSV's folder when the image lies under it, absolute otherwise.
        An image in several splits (e.g. ``all`` and ``train``) is written once, with its most specific split.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        folder = path.parent.absolute()
        split_of: dict[Path, str] = {}
        for split in self.splits():
            for image in self.images(split):
                split_of[image] = split  # later (more specific) splits win over "all"
        with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["image", "tags", "split"])
            for image in self.images():
                absolute = image.absolute()  # not resolve(): paths stay as the dataset names them (symlinks kept)
                shown = absolute.relative_to(folder) if absolute.is_relative_to(folder) else absolute
                writer.writerow([shown.as_posix(), "|".join(self._tags[image]), split_of.get(image, "")])
        return path


def tags_from_captions(
    dataset: CaptionDataset, top_n: int = 300, min_captions: int = 2, progress: bool = False
) -> CaptionTags:
    """Per image, the content words found in >= ``min_captions`` of its captions, limited to the ``top_n`` tags
    most frequent (in images) over the train split (all images when there is none)."""
    candidates: dict[Path, list[str]] = {}
    by_image = dataset.captions_by_image()
    for image, texts in tqdm(by_image.items(), desc="caption tags", disable=not progress, unit="img"):
        counts = Counter(word for text in texts for word in set(content_words(text)))
        agreed = [w for w, c in counts.items() if c >= min_captions]
        candidates[image] = sorted(agreed, key=lambda w: (-counts[w], w))
    train = dataset.train_split()
    fit_images = dataset.images(train) if train else list(candidates)
    frequency = Counter(w for image in fit_images for w in candidates[image])
    keep = set(sorted(frequency, key=lambda w: (-frequency[w], w))[:top_n])
    tags = {image: [w for w in words if w in keep] for image, words in candidates.items()}
    return CaptionTags(dataset, tags, top_n, min_captions)
