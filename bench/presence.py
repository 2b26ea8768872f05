"""The person head (``models.presence``): fitted on dev data, checked on test halves and on held-out photos.

    .venv/bin/python bench/presence.py                                  # figures of the shipped head
    .venv/bin/python bench/presence.py --write                          # refit (C chosen on Flickr8k dev), save
    .venv/bin/python bench/presence.py --coco /data/coco128_yolo        # and on COCO128 (held out)

Training data: Flickr8k train photos labelled from their captions (``training.presence.person_label``: two or
more captions name a person -> yes, none -> no) and the people-free classes of opendomain-classes' dev half
(``PEOPLE_FREE``: object shots, chosen by looking at the dev photos) as more "no" photos from outside Flickr8k.
The regularisation C is chosen on Flickr8k dev (AUC). Test: Flickr8k test (labels as above), the same classes of
opendomain-classes' test half (the share scored >= 0.5 is the false-positive rate) and, with ``--coco``, COCO128
(github.com/lightly-ai/coco128_yolo: a person box = yes), which chose nothing. Prints AUC, precision and recall
at 0.5, precision at 0.8, the reliability table (score bin -> share with people) and the expected calibration
error. Features are cached under VISTEXT_HOME (the first run encodes ~8,000 photos: a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from vistext.datasets.classes import ClassFolder
from vistext.datasets.flickr8k import Flickr8kDataset
from vistext.encoders import create_image_encoder
from vistext.evaluation.calibration import expected_calibration_error, reliability
from vistext.features import encode_files
from vistext.models.card import shipped_dir
from vistext.models.presence import PresenceModel, load_presence, save_presence
from vistext.training.presence import fit_presence, person_label

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
PEOPLE_FREE = (
    "airplane motorbike chair cup lamp laptop watch pizza stop_sign scissors piano ceiling_fan sunflower elephant "
    "dog butterfly helicopter ferry strawberry"
).split()
C_GRID = (0.003, 0.01, 0.03, 0.1)


def flickr(encoder, split: str) -> tuple[np.ndarray, np.ndarray]:
    data = Flickr8kDataset(SHARED / "flickr8k", check_images=False)
    captions = data.captions_by_image(split)
    paths = list(captions)
    labels = np.array([person_label(captions[p]) for p in paths])
    return np.asarray(encode_files(paths, encoder, progress=False).pooled), labels


def people_free(encoder, split: str) -> np.ndarray:
    data = ClassFolder(SHARED / "opendomain-classes", seed=0)
    paths = [p for p in data.images(split) if p.parent.name in PEOPLE_FREE]
    return np.asarray(encode_files(paths, encoder, progress=False).pooled)


def coco(encoder, root: Path) -> tuple[np.ndarray, np.ndarray]:
    photos = sorted((root / "images").glob("*/*.jpg"))
    labels = []
    for photo in photos:
        boxes = root / "object_detection" / "labels" / photo.parent.name / (photo.stem + ".txt")
        lines = boxes.read_text().splitlines() if boxes.is_file() else []
        labels.append(int(any(line.split()[:1] == ["0"] for line in lines)))  # COCO class 0: person
    return np.asarray(encode_files(photos, encoder, progress=False).pooled), np.array(labels)


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve: the chance a random photo with people outscores one without."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    positive = labels == 1
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / max(1, n_pos * n_neg))


def report(name: str, model: PresenceModel, pooled: np.ndarray, labels: np.ndarray) -> None:
    kept = labels >= 0
    p, y = model.probability(pooled[kept]), labels[kept]
    high, top = p >= 0.5, p >= 0.8
    print(f"{name:34s} {len(y):5d} photos ({int(y.sum())} with people): AUC {auc(p, y):.3f}; "
          f">= 0.5: precision {y[high].mean() if high.any() else float('nan'):.3f}, recall {high[y == 1].mean():.3f}; "
          f">= 0.8: precision {y[top].mean() if top.any() else float('nan'):.3f}; "
          f"ECE {expected_calibration_error(p, y):.3f}")  # fmt: skip
    cells = [f"{b.precision:.2f} ({b.count})" if b.count else "- (0)" for b in reliability(p, y)]
    print("    reliability (score bins of 0.1 -> share with people):", " | ".join(cells))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="refit and save the shipped head")
    parser.add_argument("--coco", type=Path, help="a checkout of github.com/lightly-ai/coco128_yolo (held out)")
    args = parser.parse_args()
    encoder = create_image_encoder("efficientnet-lite0")
    train_x, train_y = flickr(encoder, "train")
    dev_x, dev_y = flickr(encoder, "dev")
    extra = people_free(encoder, "dev")
    if args.write:
        kept = dev_y >= 0
        scores = {}
        for c in C_GRID:
            model = fit_presence(train_x, train_y, extra, c=c)
            scores[c] = auc(model.probability(dev_x[kept]), dev_y[kept])
            print(f"C {c}: Flickr8k dev AUC {scores[c]:.4f}")
        c = max(C_GRID, key=lambda value: (round(scores[value], 3), -value))
        card = {"chosen_on": "Flickr8k dev (AUC)", "trained_on": "Flickr8k train captions + opendomain-classes dev "
                f"half, people-free classes ({len(extra)} photos)", "people_free_classes": PEOPLE_FREE}  # fmt: skip
        model = fit_presence(train_x, train_y, extra, c=c, card=card)
        print(f"saved {save_presence(shipped_dir('presence-person'), model)} (C {c})")
    model = load_presence(None)
    report("Flickr8k dev", model, dev_x, dev_y)
    report("Flickr8k test", model, *flickr(encoder, "test"))
    free = people_free(encoder, "test")
    p = model.probability(free)
    name = "opendomain test, people-free classes"
    print(f"{name:34s} {len(free):5d} photos: share >= 0.5 {(p >= 0.5).mean():.3f}, >= 0.8 {(p >= 0.8).mean():.3f}"
          " (false positives, but for the few of them that do show someone)")  # fmt: skip
    if args.coco is not None:
        report("COCO128 (held out)", model, *coco(encoder, args.coco))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
