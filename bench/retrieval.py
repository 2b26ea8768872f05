"""Flickr8k image<->text retrieval: the shipped joint model (and others) against published pre-CLIP results.

    .venv/bin/python bench/retrieval.py                      # the shipped default model on the test split
    .venv/bin/python bench/retrieval.py --model DIR ...      # any saved joint models as well
    .venv/bin/python bench/retrieval.py --train-glove        # also train + evaluate the seed-faithful GloVe-GRU

Standard protocol: the 1,000 test images against their 5,000 captions, one plain view per image (what indexing
computes). Prints a markdown table: R@1/5/10 and median rank both ways, pair accuracy, training time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = f"flickr8k:{ROOT.parent / 'shared' / 'datasets' / 'flickr8k'}"

PUBLISHED = [  # (name, i2t R@1/5/10, i2t medr, t2i R@1/5/10, t2i medr), as quoted in the issue
    ("Kiros et al. 2014 (best published pre-CLIP Flickr8k)", (18.0, 40.9, 55.0), None, (12.5, 37.0, 51.5), None),
]
ISSUE_BASELINE = (
    "pooled Lite0 + frozen MiniLM, 2-layer MLP, InfoNCE [issue baseline]",
    (20.9, 46.7, 57.3),
    None,
    (17.7, 42.0, 55.0),
    None,
)
TARGETS = "targets: i2t R@1 >= 30, R@10 >= 70; t2i R@1 >= 25, R@10 >= 65"


def glove_config(out: str, data: str) -> dict:
    """The seed-faithful GloVe-GRU run reported in docs/benchmarks.md."""
    return {
        "data": data,
        "out": out,
        "text": "glove-gru",
        "loss": "infonce",
        "hard_after": 4,
        "epochs": 12,
        "rnn_hidden": 512,
        "hidden": 512,
        "patience": 3,
        "branches": 1,
    }


def _cell(value: float | None, fmt: str = ".1f") -> str:
    return "–" if value is None else format(value, fmt)


def row(name: str, m: dict, seconds: float | None) -> str:
    took = f"{seconds / 60:.1f} min" if seconds else ""
    return (
        f"| {name} | {m['i2t_r1']:.1f} / {m['i2t_r5']:.1f} / {m['i2t_r10']:.1f} | {_cell(m['i2t_medr'], 'g')} | "
        f"{m['t2i_r1']:.1f} / {m['t2i_r5']:.1f} / {m['t2i_r10']:.1f} | {_cell(m['t2i_medr'], 'g')} | "
        f"{_cell(m.get('pair_acc'))} | {took} |"
    )


def published_row(entry: tuple) -> str:
    name, i2t, i2t_medr, t2i, t2i_medr = entry
    metrics = {
        "i2t_r1": i2t[0],
        "i2t_r5": i2t[1],
        "i2t_r10": i2t[2],
        "i2t_medr": i2t_medr,
        "t2i_r1": t2i[0],
        "t2i_r5": t2i[1],
        "t2i_r10": t2i[2],
        "t2i_medr": t2i_medr,
    }
    return row(name, metrics, None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--split", default="test")
    parser.add_argument("--model", action="append", default=[], help="a saved joint model dir (repeatable)")
    parser.add_argument("--no-default", action="store_true", help="skip the shipped default model")
    parser.add_argument("--train-glove", action="store_true", help="train and add the GloVe-GRU model")
    parser.add_argument("--glove-out", default=str(ROOT / ".bench" / "glove-gru"))
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON lines instead")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from vistext.datasets import open_caption_dataset
    from vistext.evaluation.retrieval import evaluate
    from vistext.models.joint import load_joint_model

    dataset = open_caption_dataset(args.data)
    models: list[tuple[str, str | None]] = [] if args.no_default else [("shipped joint-default", None)]
    models += [(Path(m).name, m) for m in args.model]
    if args.train_glove:
        from vistext.training.joint import JointTrainConfig, train_joint

        start = time.monotonic()
        train_joint(JointTrainConfig(**glove_config(args.glove_out, args.data)), progress=True)
        print(f"trained GloVe-GRU in {time.monotonic() - start:.0f} s -> {args.glove_out}", file=sys.stderr)
        models.append(("GloVe-GRU (seed-faithful)", args.glove_out))

    lines = []
    for name, path in models:
        model = load_joint_model(path)
        metrics = evaluate(model, dataset, split=args.split, progress=False).metrics
        training = getattr(model, "metadata", {}).get("training", {})
        seconds = training.get("seconds_total")
        if args.json:
            print(json.dumps({"model": name, **metrics, "train_seconds": seconds}))
        lines.append(row(f"{name}: {training.get('method', '')}", metrics, seconds))
    if args.json:
        return 0
    print(f"Flickr8k {args.split} ({TARGETS})\n")
    print("| model | i2t R@1 / R@5 / R@10 | i2t medr | t2i R@1 / R@5 / R@10 | t2i medr | pair acc | train time |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for line in lines:
        print(line)
    print(published_row(ISSUE_BASELINE))
    for entry in PUBLISHED:
        print(published_row(entry))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
