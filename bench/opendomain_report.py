"""Printing for ``bench/opendomain.py``: table cells and the score scale of the chosen method (the search and
the Flickr8k floors live in ``vistext.training.concepts``)."""

from __future__ import annotations

import numpy as np


def cells(m: dict) -> str:
    return f"{m['top1']:.3f} | {m['top5']:.3f} | {m['p@10']:.3f} | {m['map']:.3f} | {m['ap@100']:.3f}"


def recall_cells(r: dict, floors: dict) -> str:
    ok = all(r[k] >= v for k, v in floors.items())
    return f"{r['i2t_r1']:.1f} / {r['i2t_r10']:.1f} | {r['t2i_r1']:.1f} / {r['t2i_r10']:.1f} | {'yes' if ok else 'NO'}"


def print_scale(scale: dict) -> None:
    print("\n### Score scale of the chosen method (fused standardised search score, 'a photo of a {label}')\n")
    print("| half | pairs | 5% | 25% | median | 75% | 95% |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for split, (scores, relevant) in scale["halves"].items():
        for name, mask in (("relevant", relevant), ("irrelevant", ~relevant)):
            q = np.percentile(scores[mask], [5, 25, 50, 75, 95])
            print(f"| {split} | {name} | " + " | ".join(f"{v:.3f}" for v in q) + " |")
    a, b = scale["a"], scale["b"]
    print(f"\ncalibration (dev): relevance = sigmoid({a:.3f} * score {b:+.3f}); 0.5 at score {-b / a:.3f}")
    print("\n| half | pairs | relevance 5% | 25% | median | 75% | 95% |\n| --- | --- | --- | --- | --- | --- | --- |")
    for split, (scores, relevant) in scale["halves"].items():
        for name, mask in (("relevant", relevant), ("irrelevant", ~relevant)):
            q = 1 / (1 + np.exp(-(a * np.percentile(scores[mask], [5, 25, 50, 75, 95]) + b)))
            print(f"| {split} | {name} | " + " | ".join(f"{v:.3f}" for v in q) + " |")
