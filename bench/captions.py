"""How good are captions without a dataset? Composed captions against the old caption-bank path, on Flickr8k test.

For each Flickr8k test photo, the best caption of ``Service.caption`` is compared with the photo's 5 reference
captions (never part of either path: the bank is the train split's captions, the joint model was trained on the
train split too):

- content-word precision: the share of the caption's content words (lower-case, singular, no stop words) that a
  reference caption uses, exact words only ("puppy" against "dog" counts wrong), the mean over photos;
- content words: how many a caption says (a caption can be precise by saying little);
- dog: of the photos that 3+ references call a dog, the share whose caption says dog; of the photos no reference
  calls a dog, the share whose caption says dog anyway (false);
- person: the same for person words (man, woman, boy, girl, child, person, people, ...);
- probably: the share of composed captions hedged with "probably";
- ms/photo: wall-clock per caption after the models are loaded (the bank's one-off embedding excluded);
- class named (opendomain-classes, everyday objects Flickr8k hardly shows: 4 photos of each of 26 classes): the
  share of photos whose caption says a word of the class's label ("stop sign": stop or sign; exact words, so
  "motorcycle" for the class motorbike counts wrong).

    .venv/bin/python bench/captions.py              # 100 test photos, 104 opendomain photos (~4 min)
    .venv/bin/python bench/captions.py --quick      # 40 photos
    .venv/bin/python bench/captions.py --no-bank    # composed captions only (the bank costs ~3 min once)

Times are on a machine shared with other jobs: compare rows of one run.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from vistext import Service
from vistext.models.captioner import HEDGE
from vistext.text import content_words

ROOT = Path(__file__).resolve().parents[1]
PERSON_WORDS = {"man", "woman", "boy", "girl", "child", "kid", "person", "people", "men", "women", "children", "baby"}


def read_flickr8k(root: Path) -> tuple[dict[str, list[str]], list[str], list[str]]:
    """(captions by image name, test image names, train image names)."""
    by_image: dict[str, list[str]] = {}
    for line in (root / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines():
        name, _, text = line.partition("\t")
        by_image.setdefault(name.split("#")[0], []).append(text.strip())
    test = (root / "Flickr_8k.testImages.txt").read_text().split()
    train = (root / "Flickr_8k.trainImages.txt").read_text().split()
    return by_image, test, train


def score_caption(caption: str, references: list[str]) -> dict[str, float]:
    words = set(content_words(caption.removeprefix(HEDGE)))
    reference_words = [set(content_words(text)) for text in references]
    named = set().union(*reference_words)
    dogs = sum("dog" in ref for ref in reference_words)
    people = sum(bool(ref & PERSON_WORDS) for ref in reference_words)
    return {
        "precision": len(words & named) / len(words) if words else 0.0,
        "words": float(len(words)),
        "dog_photo": float(dogs >= 3),
        "no_dog_photo": float(dogs == 0),
        "says_dog": float("dog" in words),
        "person_photo": float(people >= 3),
        "no_person_photo": float(people == 0),
        "says_person": float(bool(words & PERSON_WORDS)),
        "hedged": float(caption.startswith(HEDGE)),
    }


def summarise(rows: list[dict[str, float]], seconds: float) -> dict[str, float]:
    table = {key: np.array([row[key] for row in rows]) for key in rows[0]}

    def share(says: str, where: str) -> float:
        mask = table[where] > 0
        return float(table[says][mask].mean()) if mask.any() else float("nan")

    return {
        "precision": float(table["precision"].mean()),
        "words": float(table["words"].mean()),
        "dog recall": share("says_dog", "dog_photo"),
        "dog false": share("says_dog", "no_dog_photo"),
        "person recall": share("says_person", "person_photo"),
        "person false": share("says_person", "no_person_photo"),
        "probably": float(table["hedged"].mean()),
        "ms/photo": 1000 * seconds / len(rows),
    }


def run(service: Service, images: Path, names: list[str], refs: dict[str, list[str]], bank: str | None) -> dict:
    service.caption(images / names[0], bank, k=1)  # loads the models (and embeds the bank once)
    rows, started = [], time.perf_counter()
    examples = []
    for name in names:
        [best] = service.caption(images / name, bank, k=1).captions
        rows.append(score_caption(best.text, refs[name]))
        if len(examples) < 6:
            examples.append(f"    {best.score:.2f} {best.text!r}  (ref: {refs[name][0]!r})")
    print("\n".join(examples))
    return summarise(rows, time.perf_counter() - started)


def run_classes(service: Service, root: Path, per_class: int, bank: str | None) -> float:
    """The share of opendomain-classes photos whose best caption says a word of their class label."""
    named = []
    for row in csv.DictReader((root / "classes.csv").open(encoding="utf-8")):
        label = set(content_words(row["label"]))
        for photo in sorted((root / row["folder"]).glob("*.jpg"))[:per_class]:
            [best] = service.caption(photo, bank, k=1).captions
            named.append(bool(label & set(content_words(best.text.removeprefix(HEDGE)))))
    return float(np.mean(named))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flickr8k", type=Path, default=ROOT.parent / "shared" / "datasets" / "flickr8k")
    parser.add_argument("--classes", type=Path, default=ROOT.parent / "shared" / "datasets" / "opendomain-classes")
    parser.add_argument("-n", type=int, default=100, help="test photos (default 100)")
    parser.add_argument("--quick", action="store_true", help="40 photos")
    parser.add_argument("--no-bank", action="store_true", help="skip the caption-bank reference row")
    args = parser.parse_args(argv)
    if not (args.flickr8k / "Flickr8k.token.txt").is_file():
        print(f"no Flickr8k at {args.flickr8k}", file=sys.stderr)
        return 1
    refs, test, train = read_flickr8k(args.flickr8k)
    names = test[: 40 if args.quick else args.n]
    results = {}
    with tempfile.TemporaryDirectory() as tmp, Service(Path(tmp) / "none.sqlite", progress=False) as service:
        banks: dict[str, str | None] = {"composed (no bank)": None}
        if not args.no_bank:
            bank = Path(tmp) / "train-captions.txt"
            bank.write_text("\n".join(text for name in train for text in refs.get(name, [])), encoding="utf-8")
            banks["Flickr8k train bank"] = str(bank)
        for label, spec in banks.items():
            print(f"{label}, {len(names)} Flickr8k test photos:")
            results[label] = run(service, args.flickr8k / "images", names, refs, spec)
            if (args.classes / "classes.csv").is_file():
                results[label]["class named"] = run_classes(service, args.classes, 2 if args.quick else 4, spec)
    keys = list(next(iter(results.values())))
    print(f"\n{'path':22}" + "".join(f"{key:>15}" for key in keys))
    for label, metrics in results.items():
        print(f"{label:22}" + "".join(f"{metrics[key]:>15.3f}" for key in keys))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
