"""Do 0-1 scores tell the truth out of domain? Reliability tables and ECE of search and ``tag --vocab`` scores.

    .venv/bin/python bench/calibration.py            # release calibration vs one refitted on dev, dev and test
    .venv/bin/python bench/calibration.py --write    # also save the refit in models/pretrained/concepts-default
    .venv/bin/python bench/calibration.py --tables   # with a reliability table (bin -> precision, count) per set
    .venv/bin/python bench/calibration.py --length   # also a search refit that knows each query's length (analysis)
    .venv/bin/python bench/calibration.py --human DIR   # also Flickr8k's expert and crowd judgements (a check only)
    .venv/bin/python bench/calibration.py --scenes DIR [DIR ...]  # also folder-per-class tag sets (see below)

Judged sets (``vistext.evaluation.relevance_sets``): opendomain-classes halves (queries "a {label}", tags over
the 26 labels) and Flickr8k dev / test (caption nouns and colour + noun queries; scene words as a tag vocabulary;
relevant = at least 2 of 5 captions name it, irrelevant = none, others unjudged). The refit is chosen on the dev
sets only (``vistext.training.calibration``) and reported on test. Figures per set: ECE, precision and count
among pairs scored >= 0.5 and >= 0.8, the share of relevant top matches that keep >= 0.5, and for tags the
photos given 3 or more words at >= 0.7 and the photos with two true words that keep both at >= 0.5.

``--scenes`` adds folder-per-class photo sets (scene photos under buildings/, forest/, ...), scored as ``tag
--vocab`` over their folder names: a folder named ``dev`` is fitted on with the other dev sets, one named ``test``
is reported as a test set, any other as a check. Each is also reported (never fitted) as a search set, "a
{class}" over its photos; ``--overlap glacier:mountain`` leaves glacier photos unjudged for "a mountain" (and the
reverse) where one class's photos show the other's thing. The shipped tag fit used the Intel scene photos
(Kaggle's "Intel Image Classification", as committed in github.com/luangtatipsy/intel-image-classification;
research use, kept outside this repository): 150 photos a class from seg_train as dev
(``random.Random(0).sample(sorted(paths), 150)`` per class), all 3,000 of seg_test as test, each in class folders
under ``DIR/dev`` and ``DIR/test``. Re-run with ``--write`` whenever the concept scores change (a new concept space
or fusion).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from vistext.encoders import ImageFeatures, create_image_encoder
from vistext.evaluation.calibration import calibration_metrics, reliability
from vistext.evaluation.relevance_sets import (
    JudgedSet,
    class_folder_search_set,
    class_folder_tag_set,
    flickr8k_caption_set,
    flickr8k_human_sets,
    flickr8k_sets,
    opendomain_sets,
)
from vistext.features import encode_files
from vistext.models.card import CARD_FILE, shipped_dir, write_card
from vistext.models.concepts import AdaptiveFusion, load_concept_space
from vistext.models.open_domain import OpenDomainModel
from vistext.service.loaded_models import LoadedModels
from vistext.text import content_words
from vistext.training.calibration import fit_logistic, fit_search_calibration, fit_tag_calibration

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
# the release's card (2026-12-02): search sigmoid(a * score + b) fitted class-balanced on opendomain dev; tags alike
RELEASE = {"search": (1.559723046100343, -5.835900979639676), "tags": (1.6777176200625064, -8.009807570801453)}


TAG_SETS = ("opendomain labels", "flickr8k scenes", "folder ")  # sets scored as a tag vocabulary


@dataclass
class Scored:
    """One judged set with its fused scores: search (query weights known) or a tag vocabulary."""

    judged: JudgedSet
    scores: np.ndarray
    weights: np.ndarray | None  # None: a tag vocabulary

    @property
    def split(self) -> str:
        return self.judged.name.rsplit(" ", 1)[1]


def score_sets(fused: OpenDomainModel, sets: list[JudgedSet]) -> list[Scored]:
    encoder = create_image_encoder(fused.concepts.image_encoder)
    out = []
    for judged in sets:
        arrays = encode_files(judged.paths, encoder, progress=False)
        features = ImageFeatures(pooled=arrays.pooled, logits=arrays.logits)
        if judged.name.startswith(TAG_SETS):
            scores = fused.scores(fused.tag_vectors(judged.texts, vocabulary=True), fused.tag_image_vectors(features))
            out.append(Scored(judged, scores, None))
        else:
            texts = fused.text_vectors(judged.texts)
            scores = fused.scores(texts, fused.project(features))
            out.append(Scored(judged, scores, fused.fusion.query_weights(texts)))
    return out


def readings(fused: OpenDomainModel, item: Scored, release: bool) -> np.ndarray:
    """0-1 scores of one set as the release read them (``release``) or as ``fused``'s card does."""
    if item.weights is None:
        if release:
            return replace(fused.tag_fusion, calibration=RELEASE["tags"]).relevance(item.scores)  # each on its own
        return fused.vocabulary_relevance(item.scores)
    if release:
        return replace(fused.fusion, calibration=RELEASE["search"]).relevance(item.scores)
    return fused.fusion.relevance(item.scores, item.weights[:, None])


def tag_figures(p: np.ndarray, judgements: np.ndarray) -> str:
    crowded = int(((p >= 0.7).sum(axis=0) >= 3).sum())
    two_true = (judgements == 1).sum(axis=0) >= 2
    kept = ((p >= 0.5) & (judgements == 1)).sum(axis=0) >= 2
    return f"{crowded} | {int(kept[two_true].sum())}/{int(two_true.sum())}"


def refit(fused: OpenDomainModel, scored: list[Scored]) -> OpenDomainModel:
    """``fused`` with both calibrations refitted on the dev sets (a copy; the card is not touched)."""
    dev = [s for s in scored if s.split == "dev"]
    search = [s for s in dev if s.weights is not None]
    tags = [s for s in dev if s.weights is None]
    calibration = fit_search_calibration([s.scores for s in search], [s.weights for s in search],
                                         [s.judged.judgements for s in search])  # fmt: skip
    tag_card = fit_tag_calibration([s.scores for s in tags], [s.judged.judgements for s in tags])
    card = dict(fused.concepts.card)
    card["adaptive_fusion"] = {**card["adaptive_fusion"], "calibration": list(calibration)}
    card["tag_vocabulary"] = tag_card
    card["calibration_chosen_on"] = ", ".join(s.judged.name for s in dev) + " (bench/calibration.py)"
    return OpenDomainModel(fused.joint, replace(fused.concepts, card=card), "refit")


def length_features(item: Scored) -> np.ndarray:
    """The shipped calibration's terms plus score * log(n) and log(n), n a query's content words."""
    assert item.weights is not None
    base = AdaptiveFusion.calibration_features(item.scores, item.weights[:, None])
    n = np.array([max(1, len(content_words(text))) for text in item.judged.texts], dtype=np.float64)
    log_n = np.broadcast_to(np.log(n)[:, None], item.scores.shape)
    return np.concatenate([base, np.stack([item.scores * log_n, log_n], axis=-1)], axis=-1)


def length_refit(scored: list[Scored]) -> None:
    """Analysis, not shipped: a search refit on the dev sets that also knows each query's length, its figures per
    set, and on the sentence sets how many unjudged pairs (photos sharing a word with the sentence) it scores high."""
    search = [s for s in scored if s.weights is not None]
    dev = [s for s in search if s.split == "dev"]
    coefficients = fit_logistic([length_features(s) for s in dev], [s.judged.judgements for s in dev], False)
    print(f"\nsearch refit with the query's content-word count: {np.round(coefficients, 4).tolist()}")
    for item in search:
        j = item.judged.judgements
        p = 1.0 / (1.0 + np.exp(-(length_features(item) @ coefficients)))
        m = calibration_metrics(p, j)
        print(
            f"| {item.judged.name} | length refit | {m['ece']:.3f} | {m['p>=0.5']:.3f} ({m['n>=0.5']:.0f}) "
            f"| {m['p>=0.8']:.3f} ({m['n>=0.8']:.0f}) | {m['top_kept']:.2f} of {m['top_queries']:.0f} |"
        )
        if item.judged.name.startswith("flickr8k captions"):
            for t in (0.5, 0.8):
                high = p >= t
                counts = [int((high & judged).sum()) for judged in (j == 1, j == 0, j < 0)]
                print(f"    >= {t}: relevant {counts[0]}, irrelevant {counts[1]}, unjudged {counts[2]}")


def print_table(name: str, p: np.ndarray, judgements: np.ndarray) -> None:
    judged = judgements >= 0
    rows = reliability(p[judged], judgements[judged] == 1)
    cells = " | ".join(f"{b.precision:.2f} ({b.count})" if b.count else "- (0)" for b in rows)
    print(f"| {name} | {cells} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flickr", type=Path, default=SHARED / "flickr8k")
    parser.add_argument("--opendomain", type=Path, default=SHARED / "opendomain-classes")
    parser.add_argument("--write", action="store_true", help="save the refit in the shipped concept card")
    parser.add_argument("--tables", action="store_true", help="print a reliability table per set")
    parser.add_argument("--length", action="store_true", help="also measure a search refit knowing query lengths")
    human = "a folder with Flickr8k's ExpertAnnotations.txt and CrowdFlowerAnnotations.txt (reported, not fitted)"
    parser.add_argument("--human", type=Path, help=human)
    scenes = "folder-per-class sets scored as a tag vocabulary of their folder names (a folder named dev is fitted on)"
    parser.add_argument("--scenes", type=Path, nargs="+", default=[], help=scenes)
    overlap = "class pairs A:B whose photos show each other's thing, unjudged both ways in --scenes search sets"
    parser.add_argument("--overlap", nargs="+", default=[], metavar="A:B", help=overlap)
    args = parser.parse_args()
    fused = LoadedModels().open_domain
    if fused is None:
        raise SystemExit("the shipped fused space is not available")
    sets = [s for split in ("dev", "test") for s in (*opendomain_sets(args.opendomain, split),
                                                     *flickr8k_sets(args.flickr, split),
                                                     flickr8k_caption_set(args.flickr, split))]  # fmt: skip
    if args.human:
        sets += flickr8k_human_sets(args.flickr, args.human)
    # a folder named dev is fitted on with the other dev sets, one named test reported as test, others as checks
    if any(":" not in pair for pair in args.overlap):
        parser.error("--overlap takes class pairs as A:B, e.g. glacier:mountain")
    pairs = [tuple(pair.split(":", 1)) for pair in args.overlap]
    overlaps = pairs + [(b, a) for a, b in pairs]
    for d in args.scenes:
        tags = class_folder_tag_set(d, f"folder {d.parent.name} {d.name if d.name in ('dev', 'test') else 'check'}")
        sets += [tags, class_folder_search_set(tags, f"search {d.parent.name} {d.name} check", overlaps)]
    scored = score_sets(fused, sets)
    new = refit(fused, scored)
    print(
        "| set | texts | judged pairs | calibration | ECE | P >= 0.5 (n) | P >= 0.8 (n) | top match >= 0.5 "
        "| photos with 3+ words >= 0.7 | two true words both >= 0.5 |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for item in scored:
        j = item.judged.judgements
        for label, model, release in (("release", fused, True), ("refit", new, False)):
            p = readings(model, item, release)
            m = calibration_metrics(p, j)
            tags = tag_figures(p, j) if item.weights is None else "- | -"
            print(f"| {item.judged.name} | {len(item.judged.texts)} | {int((j >= 0).sum())} | {label} "
                  f"| {m['ece']:.3f} | {m['p>=0.5']:.3f} ({m['n>=0.5']:.0f}) | {m['p>=0.8']:.3f} ({m['n>=0.8']:.0f}) "
                  f"| {m['top_kept']:.2f} of {m['top_queries']:.0f} | {tags} |")  # fmt: skip
    if args.tables:
        print("\n| set, calibration | " + " | ".join(f"{b / 10:.1f}-{(b + 1) / 10:.1f}" for b in range(10)) + " |")
        print("| --- " * 11 + "|")
        for item in scored:
            for label, model, release in (("release", fused, True), ("refit", new, False)):
                print_table(f"{item.judged.name}, {label}", readings(model, item, release), item.judged.judgements)
    if args.length:
        length_refit(scored)
    card = new.concepts.card
    print(f"\nrefit search calibration: {[round(c, 4) for c in card['adaptive_fusion']['calibration']]}")
    print(f"refit tag --vocab calibration: {card['tag_vocabulary']}")
    if args.write:  # the card only: the label embeddings (and so every catalogue's fused space) stay as they are
        directory = shipped_dir("concepts-default")
        load_concept_space(directory)  # the card there must be readable before it is rewritten
        write_card(directory, "concepts", {k: v for k, v in card.items() if k not in ("format", "format_version")})
        print(f"saved to {directory / CARD_FILE}")


if __name__ == "__main__":
    main()
