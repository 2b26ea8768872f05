"""Which scorer should `vistext match` use? The two-choice test through the service, for every method.

    .venv/bin/python bench/matching.py                 # Flickr8k test (caption tags) and opendomain-classes test half
    .venv/bin/python bench/matching.py --limit 200     # a quicker look

For each photo, its own tag set against another photo's (seeded, the pairs of ``evaluation.matching``), scored by
``Service.match(photo, [own, other], model=M)`` exactly as the CLI and HTTP API do, for M in: the shipped match
classifier (``matcher``, the default), the open-domain fused space (``fused``) and the joint model (``joint``).
A method is right when the photo's own set scores higher (a tie counts half). Data sets:

- Flickr8k test: the 1,000 test photos with their tags from captions (the 300 most frequent caption words, as
  ``bench/tagging.py`` and the matcher's training use), the data the match classifier was trained for;
- opendomain-classes test half (516 everyday photos of 26 Caltech-101 classes): the tag set is the class label
  ("stop sign"), against another class's label: photos and words the classifier never trained on.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from vistext import Service
from vistext.datasets import TaggedImage, open_caption_dataset, open_tagged_dataset, tags_from_captions
from vistext.evaluation.matching import two_choice_accuracy, two_choice_pairs

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
METHODS = ("matcher", "fused", "joint")


def flickr8k_test(root: Path) -> list[TaggedImage]:
    tags = tags_from_captions(open_caption_dataset(f"flickr8k:{root}"), top_n=300)
    return [item for item in tags.items("test") if item.tags]


def opendomain_test(root: Path) -> list[TaggedImage]:
    dataset = open_tagged_dataset(f"classes:{root}")
    return [TaggedImage(item.image, item.tags[0].split()) for item in dataset.items("test")]


def accuracy(service: Service, items: list[TaggedImage], method: str, limit: int | None) -> tuple[float, int, float]:
    pairs = two_choice_pairs(items)[:limit]
    own, other = [], []
    started = time.perf_counter()
    for i, j in pairs:
        result = service.match(items[i].image, [items[i].tags, items[j].tags], model=method)
        own.append(result.candidates[0].score)
        other.append(result.candidates[1].score)
    seconds = time.perf_counter() - started
    return two_choice_accuracy(np.array(own), np.array(other)), len(pairs), 1000 * seconds / max(len(pairs), 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flickr8k", type=Path, default=DATASETS / "flickr8k")
    parser.add_argument("--classes", type=Path, default=DATASETS / "opendomain-classes")
    parser.add_argument("--limit", type=int, default=None, help="at most this many pairs per data set")
    args = parser.parse_args(argv)
    sets = {"Flickr8k test (caption tags)": flickr8k_test(args.flickr8k),
            "opendomain-classes test half (class labels)": opendomain_test(args.classes)}  # fmt: skip
    print("two-choice accuracy through Service.match (own tag set vs another photo's); ms per call")
    print("| data | " + " | ".join(METHODS) + " | pairs |")
    print("| --- | " + " | ".join("---" for _ in METHODS) + " | --- |")
    with Service(progress=False) as service:
        for name, items in sets.items():
            cells, n = [], 0
            for method in METHODS:
                value, n, ms = accuracy(service, items, method, args.limit)
                cells.append(f"{value:.3f} ({ms:.0f} ms)")
            print(f"| {name} | " + " | ".join(cells) + f" | {n} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
