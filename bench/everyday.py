"""Everyday photos nobody tuned on: object queries and the honesty of search scores, beside the previous release.

    .venv/bin/python bench/everyday.py --coco /data/coco128                      # this version only
    .venv/bin/python bench/everyday.py --coco /data/coco128 --previous /tmp/prev/src

The photos are COCO128: the first 128 photos of COCO train2017 and of val2017 (256 everyday photos of rooms,
streets, animals, food and sport) with their object boxes in YOLO form, from the public repository
github.com/lightly-ai/coco128_yolo (folders ``images/`` and ``object_detection/labels/``). COCO's annotations
are CC BY 4.0 and its photos keep their Flickr licences, so they stay outside this repository; fetch them and
point ``--coco`` at the checkout. Nothing in vistext was chosen on these photos: they are a check, not dev data.

Queries are the COCO classes with at least ``--min-photos`` photos in the set, typed as a person would ("a
giraffe", "people", "a mobile phone"). A photo is relevant when it holds at least one box of the class, however
small: COCO boxes every instance of its 80 classes, so a cup at the edge of a kitchen photo counts, which is what
``find the objects anywhere in the photo`` asks. Each version indexes the photos into its own catalogue (and
its own VISTEXT_HOME) in a fresh process, then scores every photo for every query.

Printed per version: mean P@5, P@10 and AP over the queries; the reliability of the 0-1 scores over every (query,
photo) pair (score bin -> share relevant, pairs in the bin) with the expected calibration error; the share
relevant among hits scored >= 0.5 and >= 0.8; and the share of queries whose best relevant photo scores >= 0.5
(a true match not pushed under 0.5).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
COCO_NAMES = (
    "person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant stop_sign parking_meter "
    "bench bird cat dog horse sheep cow elephant bear zebra giraffe backpack umbrella handbag tie suitcase frisbee "
    "skis snowboard sports_ball kite baseball_bat baseball_glove skateboard surfboard tennis_racket bottle "
    "wine_glass cup fork knife spoon bowl banana apple sandwich orange broccoli carrot hot_dog pizza donut cake "
    "chair couch potted_plant bed dining_table toilet tv laptop mouse remote keyboard cell_phone microwave oven "
    "toaster sink refrigerator book clock vase scissors teddy_bear hair_drier toothbrush"
).split()
PHRASES = {
    "person": "people",
    "tv": "a television",
    "cell_phone": "a mobile phone",
    "sports_ball": "a ball",
    "remote": "a remote control",
    "mouse": "a computer mouse",
    "skis": "skis",
    "apple": "an apple",
    "orange": "an orange",
    "airplane": "an airplane",
    "elephant": "an elephant",
    "umbrella": "an umbrella",
    "oven": "an oven",
}


def photo_labels(coco: Path) -> dict[Path, set[str]]:
    """Every photo of the checkout with the set of COCO classes boxed in it (empty when it has no label file)."""
    found: dict[Path, set[str]] = {}
    for photo in sorted((coco / "images").glob("*/*.jpg")):
        label_file = coco / "object_detection" / "labels" / photo.parent.name / (photo.stem + ".txt")
        classes = set()
        if label_file.is_file():
            for line in label_file.read_text().splitlines():
                if line.strip():
                    classes.add(COCO_NAMES[int(line.split()[0])])
        found[photo] = classes
    if not found:
        sys.exit(f"{coco}: no photos under images/*/ (a checkout of github.com/lightly-ai/coco128_yolo?)")
    return found


def phrase(name: str) -> str:
    return PHRASES.get(name, "a " + name.replace("_", " "))


def worker(photos: Path, db: Path, queries: list[str]) -> None:
    """In the version under test (its src/ first on sys.path): index ``photos``, then print every photo's score
    for every query as JSON."""
    from vistext.service import Service

    with Service(db=db, progress=False) as service:
        service.index(photos)
        total = sum(1 for _ in photos.iterdir())
        scores = {}
        for query in queries:
            result = service.search(query, k=total)
            scores[query] = {Path(hit.path).name: float(hit.score) for hit in result.results}
    print(json.dumps(scores))


def run_version(src: Path, photos: Path, work: Path, queries: list[str]) -> dict[str, dict[str, float]]:
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(src), "VISTEXT_HOME": str(work / "home"), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, __file__, "--worker", "--photos", str(photos), "--db", str(work / "catalogue.sqlite")]
    done = subprocess.run(
        command + ["--queries", json.dumps(queries)], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.exit(f"{src}: the worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def precision_at(ranked: list[bool], k: int) -> float:
    return sum(ranked[:k]) / k


def average_precision(ranked: list[bool]) -> float:
    hits, total = 0, 0.0
    for i, relevant in enumerate(ranked, 1):
        if relevant:
            hits += 1
            total += hits / i
    return total / max(hits, 1)


def report(name: str, scores: dict[str, dict[str, float]], truth: dict[str, set[str]]) -> None:
    # imported here: the worker runs under the version being measured, which may predate this module
    from vistext.evaluation.calibration import expected_calibration_error, precision_at_least, reliability

    p5, p10, aps, best_true = [], [], [], []
    pairs: list[tuple[float, bool]] = []
    for query, relevant in truth.items():
        ranking = sorted(scores[query].items(), key=lambda item: -item[1])
        flags = [photo in relevant for photo, _ in ranking]
        p5.append(precision_at(flags, 5))
        p10.append(precision_at(flags, 10))
        aps.append(average_precision(flags))
        best_true.append(max(score for photo, score in ranking if photo in relevant) >= 0.5)
        pairs.extend((score, photo in relevant) for photo, score in ranking)
    score = np.array([s for s, _ in pairs])
    hit = np.array([r for _, r in pairs])
    print(f"\n{name}: {len(truth)} queries, {len(pairs)} (query, photo) pairs")
    print(f"  P@5 {np.mean(p5):.3f}   P@10 {np.mean(p10):.3f}   mAP {np.mean(aps):.3f}")
    print("  score bin     pairs  relevant  mean score")
    for b in reliability(score, hit):
        if b.count:
            print(f"  {b.low:.1f}-{b.high:.1f}   {b.count:7d}   {b.precision:7.3f}   {b.mean_score:9.3f}")
    for cut in (0.5, 0.8):
        share, count = precision_at_least(score, hit, cut)
        print(f"  relevant among hits >= {cut}: " + (f"{share:.3f} of {count}" if count else "no hits"))
    print(f"  expected calibration error {expected_calibration_error(score, hit):.3f}")
    print(f"  queries whose best relevant photo scores >= 0.5: {np.mean(best_true):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--coco", type=Path, help="a checkout of github.com/lightly-ai/coco128_yolo")
    parser.add_argument("--previous", type=Path, help="the previous release's src/ (e.g. a git worktree's)")
    parser.add_argument("--min-photos", type=int, default=3, help="queries: classes boxed in this many photos")
    parser.add_argument("--workdir", type=Path, help="catalogues and model homes (default: a temporary folder)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--photos", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--queries", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.photos, args.db, json.loads(args.queries))
        return
    if args.coco is None:
        parser.error("--coco is required")
    labels = photo_labels(args.coco)
    counts = {name: sum(name in classes for classes in labels.values()) for name in COCO_NAMES}
    names = [name for name in COCO_NAMES if counts[name] >= args.min_photos]
    truth = {phrase(name): {p.name for p, classes in labels.items() if name in classes} for name in names}
    print(f"{len(labels)} photos, {len(names)} queries (classes in >= {args.min_photos} photos)")
    with tempfile.TemporaryDirectory(prefix="vistext-everyday-") as scratch:
        work = args.workdir or Path(scratch)
        folder = work / "photos"
        if not folder.exists():  # one flat folder of links: the two COCO halves share no file names
            folder.mkdir(parents=True)
            for photo in labels:
                (folder / photo.name).symlink_to(photo.resolve())
        versions = [("this version", ROOT / "src")]
        if args.previous is not None:
            versions.insert(0, ("previous release", args.previous))
        for i, (name, src) in enumerate(versions):
            scores = run_version(src, folder, work / f"v{i}", list(truth))
            report(name, scores, truth)
            # "people" is answered by the person head since 2026-12-03: the rest, apart
            report(
                f"{name}, without 'people'",
                scores,
                {query: found for query, found in truth.items() if query != "people"},
            )


if __name__ == "__main__":
    main()
