"""Attributes a person types, exclusions and two-thing queries: P@5 / P@10 with and without the syntax, side by side.

    PYTHONPATH=src .venv/bin/python bench/attributes.py                 # dev and test splits of Flickr8k
    PYTHONPATH=src .venv/bin/python bench/attributes.py --fit --sweep   # also the dev fits and the weights' sweep

Each split's 1,000 photos (links) plus greyscale copies of its first ``GREY`` photos are indexed through
``vistext index`` in ``--work`` (not the repository), then searched through ``Service.search`` as every surface
does. Queries and relevance come from the captions (a copy has its original's captions):
- colour + noun ("a red car"): relevant when >= 2 of the 5 captions say "<colour> <noun>", irrelevant when none
  does (one caption: unjudged, left out). Run with the syntax and in quotes (the same words, no attribute).
- night ("a man at night"): relevant when a caption says night and one names the thing; same comparison.
- black and white ("a black and white photo of a dog"): relevant are the greyscale copies whose captions name
  the thing, irrelevant every colour photo; same comparison.
- exclusion ("a dog -water"): relevant when >= 2 captions name the thing and none the excluded word; compared
  with the thing alone.
- two things ("a dog and a ball"): relevant when >= 2 captions name each; the syntax scores the whole text,
  compared with the minimum and the product of each thing's own relevance (the alternatives dev rejected).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
from PIL import Image

import vistext

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets" / "flickr8k"
LISTS = {"dev": "Flickr_8k.devImages.txt", "test": "Flickr_8k.testImages.txt"}
GREY = 60
COLOURS = ("black", "white", "red", "blue", "green", "yellow", "brown", "pink", "orange", "purple", "grey")
NOUNS = ("dog", "shirt", "car", "jacket", "ball", "bike", "boat", "hat", "dress", "coat", "shorts", "helmet",
         "truck", "building", "wall", "toy", "top", "uniform", "jersey", "suit", "tent", "bag", "pants")  # fmt: skip
PEOPLE = ("man", "woman", "people", "person", "boy", "girl", "men", "women", "crowd")
NIGHT = (("a street", ("street", "road")), ("people", PEOPLE), ("a man", ("man",)), ("a city", ("city", "building")),
         ("a dog", ("dog",)), ("a crowd", ("crowd", "people")))  # fmt: skip
MONO = (("a dog", ("dog",)), ("a man", ("man",)), ("people", PEOPLE), ("a child", ("child", "boy", "girl")))
EXCLUDE = (("a dog", "water"), ("a dog", "grass"), ("a beach", "dog"), ("people", "water"), ("a child", "ball"),
           ("snow", "dog"), ("a man", "bike"), ("a dog", "snow"), ("a girl", "water"))  # fmt: skip
BOTH = (("a dog", "a ball"), ("a man", "a dog"), ("a child", "a ball"), ("a dog", "snow"), ("a boy", "water"),
        ("a girl", "a dog"), ("a man", "a bike"), ("a dog", "grass"))  # fmt: skip

Judged = dict[str, bool]


def captions() -> dict[str, list[str]]:
    """Photo file name -> its captions, lower-case words between spaces (for whole-word matching)."""
    found: dict[str, list[str]] = {}
    for line in (DATA / "Flickr8k.token.txt").read_text().splitlines():
        name, text = line.split("\t")
        found.setdefault(name.split("#")[0], []).append(" " + " ".join(re.findall(r"[a-z]+", text.lower())) + " ")
    return found


def says(caps: list[str], *phrases: str) -> int:
    """How many of ``caps`` hold any of ``phrases`` as whole words."""
    return sum(any(f" {phrase} " in c for phrase in phrases) for c in caps)


def catalogue(split: str, work: Path, caps: dict[str, list[str]]) -> tuple[Path, dict[str, list[str]]]:
    """The split's photos (links) and greyscale copies of its first ``GREY`` ones, indexed through ``vistext
    index`` (a second run only checks them); returns the catalogue and each file name's captions."""
    folder = work / split
    folder.mkdir(parents=True, exist_ok=True)
    names = (DATA / LISTS[split]).read_text().split()
    photos = {name: caps[name] for name in names}
    for name in names:
        if not (folder / name).exists():
            (folder / name).symlink_to(DATA / "images" / name)
    for name in names[:GREY]:
        grey = folder / f"grey-{name}"
        if not grey.exists():
            with Image.open(DATA / "images" / name) as picture:
                picture.convert("L").convert("RGB").save(grey, quality=90)
        photos[grey.name] = caps[name]
    db = folder / ".vistext" / "catalogue.sqlite"
    with vistext.Service(db, progress=False) as service:
        service.index(folder)
    return db, photos


def queries(photos: dict[str, list[str]]) -> list[tuple[str, str, str, Judged]]:
    """(kind, query with the syntax, the query without it, relevance of the judged photos)."""
    colour_photos = {n: c for n, c in photos.items() if not n.startswith("grey-")}
    out = []
    for colour in COLOURS:
        for noun in NOUNS:
            phrase = f"{colour} {noun}"
            relevant = {n for n, c in colour_photos.items() if says(c, phrase) >= 2}
            judged = {n: n in relevant for n, c in colour_photos.items() if n in relevant or not says(c, phrase)}
            out.append(("colour + noun", f"a {phrase}", f'"a {phrase}"', judged))
    for thing, words in NIGHT:
        judged = {n: says(c, "night") >= 1 and says(c, *words) >= 1 for n, c in colour_photos.items()}
        out.append(("night", f"{thing} at night", f'"{thing} at night"', judged))
    for thing, words in MONO:
        judged = {n: n.startswith("grey-") and says(c, *words) >= 1 for n, c in photos.items()}
        text = f"a black and white photo of {thing}"
        out.append(("black and white", text, f'"{text}"', judged))
    for thing, word in EXCLUDE:
        judged = {n: says(c, thing.split()[-1]) >= 2 and not says(c, word) for n, c in colour_photos.items()}
        out.append(("exclusion", f"{thing} -{word}", thing, judged))
    for one, two in BOTH:
        judged = {n: says(c, one.split()[-1]) >= 2 and says(c, two.split()[-1]) >= 2 for n, c in colour_photos.items()}
        out.append(("two things", f"{one} and {two}", f'"{one} and {two}"', judged))
    return [row for row in out if sum(row[3].values()) >= 3]


def scores(service: vistext.Service, text: str) -> dict[str, float]:
    """File name -> score of the photos a search returns (its best 1,000)."""
    return {Path(hit.path).name: hit.score for hit in service.search(text, 1000).results}


def precision(found: dict[str, float], judged: Judged, k: int) -> float:
    """P@k of ``found`` (name -> score, in the order the search returned them) among the judged photos; equal
    scores keep the search's order, as a user sees them."""
    ranked = sorted((name for name in found if name in judged), key=lambda name: -found[name])
    return sum(judged[name] for name in ranked[:k]) / k


def two_thing_variants(service: vistext.Service, text: str) -> dict[str, dict[str, float]]:
    """The minimum and the product of each thing's own relevance (quoted: no syntax), over the photos found."""
    parts = [scores(service, f'"{part}"') for part in text.split(" and ")]
    names = set().union(*parts)
    return {
        "min": {n: min(p.get(n, 0.0) for p in parts) for n in names},
        "product": {n: float(np.prod([p.get(n, 0.0) for p in parts])) for n in names},
    }


def logistic_fit(features: np.ndarray, labels: np.ndarray, ridge: float = 0.01) -> np.ndarray:
    """(intercept, weights...) of a logistic regression by Newton's method (a small ridge keeps it finite)."""
    x = np.c_[np.ones(len(features)), features]
    w = np.zeros(x.shape[1])
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-x @ w))
        hessian = x.T @ (x * (p * (1 - p))[:, None]) + ridge * np.eye(len(w))
        w += np.linalg.solve(hessian, x.T @ (labels - p) - ridge * w)
    return w


def fit_chances(db: Path, photos: dict[str, list[str]]) -> None:
    """Print the dev fits of the attribute chances (``service.composed_search``'s coefficients)."""
    from vistext.images.attributes import ATTRIBUTE_SPACE
    from vistext.service.composed_search import attribute_features

    with vistext.open_store(str(db)) as store:
        stored = {Path(r.path).name: r.embeddings.get(ATTRIBUTE_SPACE) for r in store.records()}
    names = [n for n, m in stored.items() if m is not None and not n.startswith("grey-")]
    measures = np.stack([stored[n] for n in names])
    caps = [photos[n] for n in names]
    features, labels = [], []
    for colour in COLOURS:
        for noun in NOUNS:
            shows = np.array([says(c, noun) >= 2 for c in caps])
            said = np.array([says(c, f"{colour} {noun}") >= 2 for c in caps])
            if said.sum() >= 3:
                features.append(attribute_features(colour, measures[shows]))
                labels.append(said[shows])
    print("COLOUR_FIT", logistic_fit(np.concatenate(features), np.concatenate(labels).astype(float)).round(2))
    night = np.array([says(c, "night") >= 1 for c in caps], dtype=float)
    print("NIGHT_FIT", logistic_fit(attribute_features("night", measures), night).round(2))
    dusk = np.array([says(c, "sunset", "dusk") >= 1 for c in caps], dtype=float)
    print("DUSK_FIT", logistic_fit(attribute_features("dusk", measures), dusk).round(2))


def measure_cost(db: Path, photos: int = 200) -> None:
    """Milliseconds per photo of the colour and light measures beside the image encoder's, on the same pixels."""
    import time

    from vistext.encoders import create_image_encoder
    from vistext.images import open_image
    from vistext.images.attributes import pixel_measures

    encoder = create_image_encoder("efficientnet-lite0")
    with vistext.open_store(str(db)) as store:
        paths = [r.path for r in store.records()][:photos]
    pixels = np.stack([encoder.pixels(open_image(path, min_side=encoder.preprocessing.size)) for path in paths])
    encoder.encode_pixels(pixels[:16])  # warm the session
    started = time.perf_counter()
    for start in range(0, len(pixels), 16):
        encoder.encode_pixels(pixels[start : start + 16])
    encoding = (time.perf_counter() - started) / len(pixels) * 1000
    started = time.perf_counter()
    for start in range(0, len(pixels), 16):
        pixel_measures(pixels[start : start + 16])
    measuring = (time.perf_counter() - started) / len(pixels) * 1000
    print(f"cost per photo ({len(pixels)} photos, batches of 16): colour and light measures {measuring:.2f} ms, "
          f"image encoder {encoding:.1f} ms ({measuring / encoding:.1%} of it)")  # fmt: skip


SWEEP = (0.25, 0.5, 1.0, 2.0, 4.0)
FAMILIES = {"colour + noun": "colour", "night": "light", "black and white": "monochrome"}


def sweep_weights(db: Path, photos: dict[str, list[str]], split: str) -> None:
    """Each attribute family's weight (``composed_search.WEIGHTS``, the others as shipped): the mean of P@5 and
    P@10, and what its 0-1 scores promise (``honesty``). A fresh service for each weight: answers are kept per
    text, so one service would give every weight the first weight's answers."""
    from vistext.service import composed_search

    shipped = dict(composed_search.WEIGHTS)
    asked = [row for row in queries(photos) if row[0] in FAMILIES]
    for kind, family in FAMILIES.items():
        line = []
        for weight in SWEEP:
            composed_search.WEIGHTS.update({**shipped, family: weight})
            with vistext.Service(db, progress=False) as service:
                found = [(scores(service, text), judged) for k, text, _, judged in asked if k == kind]
            ranked = np.mean([precision(f, j, 5) + precision(f, j, 10) for f, j in found]) / 2
            line.append(f"{weight:g}: {ranked:.3f}, {honesty(found)}")
        print(f"{split} sweep, {family} weight (mean of P@5 and P@10; ECE; >= 0.5 relevant; right best >= 0.5):")
        print("  " + "\n  ".join(line))
    composed_search.WEIGHTS.update(shipped)


def honesty(found: list[tuple[dict[str, float], Judged]]) -> str:
    """What the scores of ``found`` (each query's name -> score, and its judged photos; a judged photo not
    returned scores 0) promise: ECE, the share relevant among hits >= 0.5 (their count), and the share of queries
    whose best-scored judged photo is relevant and still reads >= 0.5."""
    from vistext.evaluation.calibration import calibration_metrics

    names = sorted(set().union(*(judged for _, judged in found)))
    score = np.array([[f.get(n, 0.0) for n in names] for f, _ in found])
    judgement = np.array([[-1 if n not in j else int(j[n]) for n in names] for _, j in found])
    m = calibration_metrics(score, judgement)
    return f"ECE {m['ece']:.3f}, {m['p>=0.5']:.2f} ({m['n>=0.5']:.0f}), {m['top_kept']:.2f} of {m['top_queries']:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", nargs="+", default=["dev", "test"], choices=sorted(LISTS))
    parser.add_argument("--work", type=Path, default=Path("/tmp/vistext-bench-attributes"))
    parser.add_argument("--fit", action="store_true", help="print the dev fits of the attribute chances")
    parser.add_argument("--sweep", action="store_true", help="print each split's sweep of the attribute weights")
    args = parser.parse_args()
    caps = captions()
    for split in args.splits:
        db, photos = catalogue(split, args.work, caps)
        if args.fit and split == "dev":
            fit_chances(db, photos)
            measure_cost(db)
        if args.sweep:
            sweep_weights(db, photos, split)
        rows: dict[str, list[list[float]]] = {}
        promised: dict[str, list[tuple[dict[str, float], Judged]]] = {}
        with vistext.Service(db, progress=False) as service:
            for kind, text, without, judged in queries(photos):
                found, plain = scores(service, text), scores(service, without)
                promised.setdefault(kind, []).append((found, judged))
                row = [precision(found, judged, 5), precision(plain, judged, 5)]
                row += [precision(found, judged, 10), precision(plain, judged, 10)]
                if kind == "two things":
                    variants = two_thing_variants(service, text)
                    row += [precision(variants[v], judged, k) for v in ("min", "product") for k in (5, 10)]
                rows.setdefault(kind, []).append(row)
        print(f"\n{split} split, Flickr8k: {len(photos)} photos ({GREY} of them greyscale copies)")
        print("| queries | n | P@5 syntax | P@5 without | P@10 syntax | P@10 without | syntax's scores: ECE, >= 0.5 "
              "relevant (n), right best >= 0.5 |")  # fmt: skip
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for kind, values in rows.items():
            mean = np.mean(values, axis=0)
            print(f"| {kind} | {len(values)} | {mean[0]:.3f} | {mean[1]:.3f} | {mean[2]:.3f} | {mean[3]:.3f} "
                  f"| {honesty(promised[kind])} |")  # fmt: skip
            if kind == "two things":
                print(f"| two things, min of parts | | {mean[4]:.3f} | | {mean[5]:.3f} | | |")
                print(f"| two things, product of parts | | {mean[6]:.3f} | | {mean[7]:.3f} | | |")


if __name__ == "__main__":
    main()
