"""Reporting for ``bench/opendomain.py``: the Flickr8k floors, table cells, the score scale and the tags' 0-1
calibration (kept apart from the methods so each file stays readable)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from opendomain import Bench, Method

FLOORS = {"i2t_r1": 30, "i2t_r10": 70, "t2i_r1": 25, "t2i_r10": 65}  # the issue's, on Flickr8k test
# the same floors carried to Flickr8k dev (set in main): the joint model alone's dev recall less the drop the test
# floors allow from its test recall (the dev split is easier for i2t and harder for t2i R@1 than test)
DEV_FLOORS = dict(FLOORS)


def cells(m: dict) -> str:
    return f"{m['top1']:.3f} | {m['top5']:.3f} | {m['p@10']:.3f} | {m['map']:.3f} | {m['ap@100']:.3f}"


def recall_cells(r: dict, floors: dict = FLOORS) -> str:
    ok = keeps_floors(r, floors)
    return f"{r['i2t_r1']:.1f} / {r['i2t_r10']:.1f} | {r['t2i_r1']:.1f} / {r['t2i_r10']:.1f} | {'yes' if ok else 'NO'}"


def keeps_floors(recall: dict, floors: dict = FLOORS) -> bool:
    return all(recall[k] >= v for k, v in floors.items())


def floor_keepers(table: list) -> list:
    """The rows (metrics, Flickr8k DEV recall, ...) that keep every floor on dev; when none does, those whose
    worst shortfall is smallest (the floors are the issue's, stated for the test split)."""
    keep = [r for r in table if keeps_floors(r[1], DEV_FLOORS)]
    if keep:
        return keep
    shortfall = [max(v - r[1][k] for k, v in DEV_FLOORS.items()) for r in table]
    return [r for r, s in zip(table, shortfall, strict=True) if s <= min(shortfall) + 1e-9]


def figures(metrics: dict) -> dict:
    return {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)}


def score_scale(bench: Bench, method: Method) -> dict:
    """Search scores of relevant and irrelevant (query, photo) pairs on each half, and the dev calibration."""
    out = {}
    for split in ("dev", "test"):
        rows = bench.rows[split]
        queries = method.search_texts([bench.template.format(n) for n in bench.names])
        scores = queries @ method.search_images[rows].T
        relevant = bench.targets[split][None, :] == np.arange(len(bench.names))[:, None]
        out[split] = (scores.ravel(), relevant.ravel())
    from vistext.evaluation.opendomain import fit_relevance_calibration

    a, b = fit_relevance_calibration(*out["dev"])
    return {"halves": out, "a": a, "b": b}


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


def tag_fusion(bench: Bench, method: Method) -> dict:
    """The 0-1 calibration of open-vocabulary tag scores, fitted on the opendomain dev half (image x label,
    relevant = its class): tags compare plain joint cosines, whose fused scores sit higher than search scores.
    (Standardising the plain cosines by their own Flickr8k dev spread instead was measured worse for ranking:
    dev top-1 0.660 against 0.755.) Prints the tag figures on both halves."""
    from vistext.evaluation.opendomain import fit_relevance_calibration

    rows = bench.rows["dev"]
    scores = method.tag_texts(bench.names) @ method.tag_images[rows].T
    relevant = bench.targets["dev"][None, :] == np.arange(len(bench.names))[:, None]
    a, b = fit_relevance_calibration(scores.T.ravel(), relevant.T.ravel())
    print(f"\ntag calibration (dev): relevance = sigmoid({a:.3f} * score {b:+.3f})")
    return {"calibration": [a, b]}


