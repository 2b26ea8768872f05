"""Which backbone/method tags best? One table on Flickr8k test with the 300 caption-derived tags.

Rows: the three transfer-learning methods (cached frozen features with pooled and with grid features, frozen
backbone with augmented views, fine-tuning the top stages), a frequency-prior baseline and zero-shot tagging
through the joint image-text model. Then the match two-choice test (an image, its own tag set and another
image's) for the match classifier and for the joint model's similarity.

    .venv/bin/python bench/tagging.py                 # full run (features cached under VISTEXT_HOME)
    .venv/bin/python bench/tagging.py --quick         # 600/150/300 images, few epochs: a smoke run

mAP is over tags (each tag ranks the test images); mAP/img ranks each image's tags (where a prior is not
trivially beaten). F1 uses the per-tag thresholds calibrated on the dev split. Times are wall-clock on this
machine, shared with other jobs: compare rows of one run, not runs.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

from vistext.datasets import TaggedDataset, open_caption_dataset, open_tagged_dataset, tags_from_captions
from vistext.encoders import ImageFeatures, create_image_encoder
from vistext.errors import VistextError
from vistext.evaluation.matching import two_choice_accuracy, two_choice_eval, two_choice_pairs
from vistext.evaluation.tagging import label_matrix, mean_average_precision, tag_metrics, tagger_scores
from vistext.evaluation.thresholds import f1_optimal_thresholds
from vistext.features import encode_files
from vistext.models.matcher import load_matcher
from vistext.training.matcher import MatcherTrainConfig, train_matcher
from vistext.training.tagger import TaggerTrainConfig, train_tagger

ROOT = Path(__file__).resolve().parents[1]
METHODS = {
    "cached-pooled": dict(method="cached", feature="pooled"),
    "cached-grid": dict(method="cached", feature="grid"),
    "cached-mlp": dict(method="cached", feature="pooled", hidden=1024),
    "frozen-aug": dict(method="frozen-aug", feature="pooled"),
    "finetune": dict(method="finetune", feature="pooled"),
}


def subset_csv(tags: TaggedDataset, out: Path, sizes: dict[str, int]) -> Path:
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "tags", "split"])
        for split, n in sizes.items():
            writer.writerows((i.image, "|".join(i.tags), split) for i in tags.items(split)[:n])
    return out


def row(name: str, scores: np.ndarray, labels: np.ndarray, thresholds: np.ndarray, **extra: object) -> dict:
    metrics = tag_metrics(scores, labels, thresholds)
    metrics["map_sample"] = mean_average_precision(scores, labels, axis="sample")
    return {"name": name, **metrics, **extra}


def prior_row(dataset: TaggedDataset, labels: list[str]) -> dict:
    prior = label_matrix(dataset.items("train"), labels).mean(axis=0)
    dev, test = label_matrix(dataset.items("dev"), labels), label_matrix(dataset.items("test"), labels)
    jitter = np.random.default_rng(0).random((len(test), len(labels))) * 1e-9  # ties broken at random
    thresholds = f1_optimal_thresholds(np.tile(prior, (len(dev), 1)), dev)
    return row("frequency prior", np.tile(prior, (len(test), 1)) + jitter, test, thresholds, train_s=0.0)


def joint_scores(joint: object, paths: list, texts: list[str], progress: bool, corrected: bool = True) -> np.ndarray:
    arrays = encode_files(paths, create_image_encoder(), grid=joint.needs_grid, progress=progress)
    features = ImageFeatures(pooled=arrays.pooled, logits=arrays.logits, grid=arrays.grid)
    return joint.encode_images(features, corrected=corrected) @ joint.encode_text(texts, corrected=corrected).T


def zero_shot_row(joint: object, dataset: TaggedDataset, labels: list[str], prompt: str, progress: bool) -> dict:
    texts = [prompt.format(tag) for tag in labels]
    dev, test = dataset.items("dev"), dataset.items("test")
    # plain cosines, as `vistext tag --vocab` ranks words (the hubness correction is for collection search)
    dev_scores = joint_scores(joint, [i.image for i in dev], texts, progress, corrected=False)
    test_scores = joint_scores(joint, [i.image for i in test], texts, progress, corrected=False)
    thresholds = f1_optimal_thresholds(dev_scores, label_matrix(dev, labels))
    return row(f"zero-shot joint ({prompt!r})", test_scores, label_matrix(test, labels), thresholds, train_s=0.0)


def print_table(rows: list[dict]) -> None:
    head = f"{'method':34s} {'mAP':>6s} {'mAP/img':>7s} {'microF1':>7s} {'macroF1':>7s} {'P@5':>6s} {'top1':>6s}"
    print(head + f" {'feat s':>7s} {'train s':>7s}")
    print("-" * len(head + " " * 16))
    for r in rows:
        print(
            f"{r['name']:34s} {r['map']:6.3f} {r['map_sample']:7.3f} {r['micro_f1']:7.3f} {r['macro_f1']:7.3f} "
            f"{r['p_at_k']:6.3f} {r['accuracy']:6.3f} {r.get('feature_s', 0.0):7.1f} {r.get('train_s', 0.0):7.1f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flickr8k", default=str(ROOT.parent / "shared" / "datasets" / "flickr8k"))
    parser.add_argument("--work", default=str(ROOT / ".bench" / "tagging"), help="where models are written")
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS), help="none: baselines")
    parser.add_argument("--quick", action="store_true", help="a small subset and few epochs (smoke run)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--joint", default=None, help="joint model directory (default: the shipped one)")
    parser.add_argument("--matcher", default=None, help="match model directory (default: the shipped one)")
    parser.add_argument("--train-matcher", action="store_true", help="train a match model here instead")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    tags = tags_from_captions(open_caption_dataset(f"flickr8k:{args.flickr8k}"), top_n=300)
    sizes = {"train": 600, "dev": 150, "test": 300} if args.quick else {"train": 6000, "dev": 1000, "test": 1000}
    # the full run keeps the dataset's own image order, so features cached by earlier runs are found again
    table = subset_csv(tags, work / "tags.csv", sizes) if args.quick else tags.write_csv(work / "tags.csv")
    dataset = open_tagged_dataset(f"csv:{table}")
    vocabulary = tags.vocabulary()
    print(f"Flickr8k caption tags: {len(vocabulary)} tags; " + ", ".join(f"{s} {n}" for s, n in sizes.items()))
    test = dataset.items("test")
    rows = []
    for name in args.methods:
        settings = dict(METHODS[name])
        if args.quick:
            settings["epochs"] = 2 if settings["method"] == "finetune" else 6
        config = TaggerTrainConfig(data=dataset, out=work / f"tagger-{name}", threads=args.threads, **settings)
        result = train_tagger(config, progress=args.progress)
        scores = tagger_scores(result.model, [i.image for i in test], progress=args.progress)
        rows.append(row(name, scores, label_matrix(test, result.model.labels), result.model.thresholds,
                        feature_s=result.feature_seconds, train_s=result.train_seconds - result.feature_seconds,
                        best_epoch=result.model.training["best_epoch"]))  # fmt: skip
        print(f"  {name}: best epoch {rows[-1]['best_epoch']}, test mAP {rows[-1]['map']:.3f}", flush=True)
    labels = [t for t in vocabulary if any(t in i.tags for i in dataset.items("train"))]
    rows.append(prior_row(dataset, labels))
    joint = None
    try:
        from vistext.models.joint import load_joint_model

        joint = load_joint_model(args.joint)
        for prompt in ("{}", "a {}"):  # "a {}" is what `vistext tag --vocab` uses
            rows.append(zero_shot_row(joint, dataset, labels, prompt, args.progress))
    except (VistextError, ImportError) as error:
        print(f"  zero-shot skipped: {error}")
    print()
    print_table(rows)

    print("\nTwo-choice test on Flickr8k test (own tag set vs another image's):")
    tagged_test = [i for i in test if i.tags]
    features = encode_files([i.image for i in tagged_test], create_image_encoder(), progress=args.progress)
    if args.train_matcher:
        started = time.perf_counter()
        config = MatcherTrainConfig(data=dataset, out=work / "matcher", threads=args.threads,
                                    epochs=3 if args.quick else 12)  # fmt: skip
        matcher = train_matcher(config, progress=args.progress).model
        print(f"  match classifier trained in {time.perf_counter() - started:.0f} s")
    else:
        try:
            matcher = load_matcher(args.matcher)
        except VistextError as error:
            matcher = None
            print(f"  match classifier skipped: {error}")
    if matcher is not None:
        result = two_choice_eval(matcher, features.pooled, tagged_test)
        print(f"  match classifier (GloVe + GRU):  {result['two_choice_accuracy']:.4f}  ({result['n_pairs']} pairs)")
    if joint is not None:
        pairs = two_choice_pairs(tagged_test)
        sims = joint_scores(joint, [i.image for i in tagged_test], [" ".join(i.tags) for i in tagged_test], False)
        own = np.array([sims[i, i] for i, _ in pairs])
        other = np.array([sims[i, j] for i, j in pairs])
        print(f"  joint model similarity:          {two_choice_accuracy(own, other):.4f}  ({len(pairs)} pairs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
