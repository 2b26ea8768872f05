"""Judged (text, photo) sets for checking what a 0-1 score means away from the training data.

A ``JudgedSet`` is a list of texts, a list of photos and a judgement for every pair: 1 relevant, 0 irrelevant,
-1 unjudged (left out of every figure). Built from data the project has, each in a dev and a test half, so a
calibration is chosen on dev and reported on test:

- ``opendomain_sets``: opendomain-classes (26 everyday Caltech-101 classes, split into the dataset's stratified
  halves). Search: the query ``"a {label}"`` over the half's photos, relevant = the photo's class. Tags: the 26
  labels as one vocabulary, exactly one right per photo (mutually exclusive words).
- ``flickr8k_caption_set``: whole captions as queries (what a person types as a sentence): each photo's first
  caption, relevant = that photo, irrelevant = a photo none of whose captions shares a content word with it
  (``content_words``), unjudged otherwise (another photo may fit the sentence as well).
- ``flickr8k_human_sets``: Flickr8k's own human judgements of captions against photos (test images only, so they
  check a calibration and are never fitted on): the experts' 1-4 scores (``ExpertAnnotations.txt``, relevant when
  their mean is 3 or more, "describes the photo, perhaps with minor mistakes"; irrelevant at 2 or less) and the
  CrowdFlower yes/no votes (``CrowdFlowerAnnotations.txt``, relevant with at least two thirds yes, irrelevant with
  at most a third); every other pair unjudged. The candidates were other photos' captions that retrieval systems
  ranked high, so these are the hard pairs the other sets leave unjudged.
- ``flickr8k_sets``: Flickr8k captions (dev / test images). Search: everyday caption nouns (``"a dog"``) and
  colour + noun phrases (``"a red car"``); a photo is relevant when at least ``AGREE`` of its five captions name
  the phrase, irrelevant when none does, unjudged otherwise. Tags: scene words (beach, snow, street...) as one
  vocabulary with the same rule, so a photo may rightly carry two words (beach and water).

A phrase is kept when its half has at least ``MIN_RELEVANT`` relevant photos. Captions name a noun as the word,
its plural or a listed synonym (``puppy`` for dog); the noun and colour lists are fixed here, not chosen on the
data, so the sets are the same on every machine.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vistext.errors import UsageError

log = logging.getLogger(__name__)

AGREE = 2  # captions (of 5) that must name a phrase for the photo to count as relevant
MIN_RELEVANT = 5  # relevant photos a phrase needs in a half to be kept
RELEVANT, IRRELEVANT, UNJUDGED = 1, 0, -1

# everyday things a person types, with the other words captions use for them
NOUNS: dict[str, tuple[str, ...]] = {
    "dog": ("puppy", "puppies"), "cat": ("kitten",), "horse": ("pony",), "bird": (), "cow": ("cattle",),
    "sheep": (), "duck": (), "car": (), "bus": (), "truck": (), "bicycle": ("bike",), "motorcycle": ("motorbike",),
    "boat": ("canoe", "kayak"), "train": (), "ball": (), "frisbee": (), "umbrella": (), "tent": (), "bench": (),
    "fence": (), "flag": (), "hat": ("cap",), "helmet": (), "jacket": ("coat",), "shirt": ("t-shirt",),
    "dress": (), "skateboard": (), "surfboard": (), "guitar": (), "baby": (), "child": ("children", "kid", "kids"),
    "ladder": (), "chair": (), "table": (), "stairs": ("steps",), "tree": (), "flower": (), "bridge": (),
}  # fmt: skip
COLOURS = ("black", "white", "red", "green", "yellow", "blue", "brown", "orange", "pink", "purple", "grey")
# scene words for zero-shot tags (``tag --vocab``), several of them mutually exclusive
SCENES: dict[str, tuple[str, ...]] = {
    "beach": ("shore",), "mountain": ("mountains", "hill", "hills"), "street": ("road", "sidewalk"),
    "snow": ("snowy",), "water": ("ocean", "lake", "river", "sea", "pool"), "grass": ("grassy", "lawn"),
    "forest": ("woods",), "desert": (), "city": ("building", "buildings"), "field": (),
}  # fmt: skip
_WORD = re.compile(r"[a-z]+(?:-[a-z]+)?")
_STOP = frozenset(
    "a an the and or of in on at to into onto from for with without by near over under while his her its their "
    "is are was be being one two three four some other another each who that this there it he she they them".split()
)
_IRREGULAR = {"child": "children", "sheep": "sheep", "stairs": "stairs", "grass": "grass", "snow": "snow"}


@dataclass
class JudgedSet:
    """Texts x photos judgements (1 relevant, 0 irrelevant, -1 unjudged) of one half of one source."""

    name: str
    texts: list[str]
    paths: list[str]
    judgements: np.ndarray  # (len(texts), len(paths)) int8

    def __post_init__(self) -> None:
        if self.judgements.shape != (len(self.texts), len(self.paths)):
            raise UsageError(f"{self.name}: judgements {self.judgements.shape} for {len(self.texts)} texts and "
                             f"{len(self.paths)} photos")  # fmt: skip

    @property
    def judged(self) -> np.ndarray:
        """(texts, photos) True where the pair is judged."""
        return self.judgements != UNJUDGED

    @property
    def relevant(self) -> np.ndarray:
        return self.judgements == RELEVANT


def forms(noun: str, synonyms: Sequence[str] = ()) -> set[str]:
    """The words a caption names ``noun`` by: itself, its plural, its synonyms."""
    plural = _IRREGULAR.get(noun) or (noun + "es" if noun.endswith(("s", "sh", "ch", "x")) else noun + "s")
    return {noun, plural, *synonyms}


def _names(tokens: list[str], words: set[str], colour: str | None) -> bool:
    if colour is None:
        return not words.isdisjoint(tokens)
    return any(a == colour and b in words for a, b in zip(tokens, tokens[1:], strict=False))


def tokenise(captions: Sequence[Sequence[str]]) -> list[list[list[str]]]:
    """Each photo's captions as lists of lower-case words (what ``judge`` reads)."""
    return [[_WORD.findall(text.lower()) for text in texts] for texts in captions]


def judge(tokens: Sequence[Sequence[list[str]]], words: set[str], colour: str | None = None) -> np.ndarray:
    """(photos,) judgement of one phrase from each photo's tokenised captions (``tokenise``): relevant when
    ``AGREE`` or more name it, irrelevant when none does (for a colour phrase: none names the colour + noun),
    unjudged otherwise."""
    out = np.empty(len(tokens), np.int8)
    for i, texts in enumerate(tokens):
        named = sum(_names(caption, words, colour) for caption in texts)
        out[i] = RELEVANT if named >= AGREE else IRRELEVANT if named == 0 else UNJUDGED
    return out


def _phrase_set(name: str, phrases: dict[str, np.ndarray], paths: list[str]) -> JudgedSet:
    kept = {text: row for text, row in phrases.items() if int((row == RELEVANT).sum()) >= MIN_RELEVANT}
    rows = list(kept.values()) or [np.empty(len(paths), np.int8)]
    return JudgedSet(name, list(kept), paths, np.stack(rows)[: len(kept)])


def flickr8k_sets(root: str | Path, split: str) -> tuple[JudgedSet, JudgedSet]:
    """(search set, scene-word tag set) of Flickr8k's ``split`` (dev or test) images, judged by their captions."""
    from vistext.datasets.flickr8k import Flickr8kDataset

    data = Flickr8kDataset(root)
    by_image = data.captions_by_image(split)
    if not by_image:
        raise UsageError(f"{root}: Flickr8k split {split!r} has no images")
    paths, tokens = [str(p) for p in by_image], tokenise(list(by_image.values()))
    said = [set().union(*captions) for captions in tokens]
    queries: dict[str, np.ndarray] = {}
    for noun, synonyms in NOUNS.items():
        queries[f"a {noun}"] = judge(tokens, forms(noun, synonyms))
        plain = forms(noun)
        for colour in COLOURS:  # a colour phrase needs both words somewhere: skip the photos that lack either
            maybe = [i for i, words in enumerate(said) if colour in words and not plain.isdisjoint(words)]
            row = np.full(len(tokens), IRRELEVANT, np.int8)
            row[maybe] = judge([tokens[i] for i in maybe], plain, colour)
            queries[f"a {colour} {noun}"] = row
    scenes = {word: judge(tokens, forms(word, synonyms)) for word, synonyms in SCENES.items()}
    return _phrase_set(f"flickr8k {split}", queries, paths), _phrase_set(f"flickr8k scenes {split}", scenes, paths)


def content_words(text: str) -> set[str]:
    """The words of ``text`` that name something (stop words and words under 3 letters left out), each with a
    final "s" dropped ("dogs" meets "dog"; not "ss": grass)."""
    words = (w for w in _WORD.findall(text.lower()) if len(w) >= 3 and w not in _STOP)
    return {w[:-1] if w.endswith("s") and not w.endswith("ss") and len(w) > 3 else w for w in words}


def flickr8k_caption_set(root: str | Path, split: str) -> JudgedSet:
    """Each ``split`` photo's first caption as a query over the split's photos (see the module docstring)."""
    from vistext.datasets.flickr8k import Flickr8kDataset

    by_image = Flickr8kDataset(root).captions_by_image(split)
    if not by_image:
        raise UsageError(f"{root}: Flickr8k split {split!r} has no images")
    queries = [texts[0] for texts in by_image.values()]
    named = [set().union(*(content_words(t) for t in texts)) for texts in by_image.values()]
    judgements = np.empty((len(queries), len(named)), np.int8)
    for i, query in enumerate(queries):
        words = content_words(query)
        judgements[i] = [IRRELEVANT if words.isdisjoint(other) else UNJUDGED for other in named]
        judgements[i, i] = RELEVANT
    return JudgedSet(f"flickr8k captions {split}", queries, [str(p) for p in by_image], judgements)


def _indefinite(label: str) -> str:
    """ "a {label}" or "an {label}", the query a person types for one thing of a class."""
    return f"an {label}" if label[0] in "aeiou" else f"a {label}"


def opendomain_sets(root: str | Path, split: str, seed: int = 0) -> tuple[JudgedSet, JudgedSet]:
    """(search set, label tag set) of opendomain-classes' ``split`` half (dev or test)."""
    from vistext.datasets.classes import ClassFolder

    data = ClassFolder(root, seed=seed)
    paths = [str(p) for p in data.images(split)]
    if not paths:
        raise UsageError(f"{root}: split {split!r} has no images (splits: dev, test)")
    labels, targets = data.class_names, np.asarray(data.targets(split))
    judgements = (targets[None, :] == np.arange(len(labels))[:, None]).astype(np.int8)
    queries = [_indefinite(label) for label in labels]
    return (JudgedSet(f"opendomain {split}", queries, paths, judgements),
            JudgedSet(f"opendomain labels {split}", list(labels), paths, judgements))  # fmt: skip


def class_folder_tag_set(root: str | Path, name: str) -> JudgedSet:
    """A folder-per-class dataset (every photo, e.g. scene photos under buildings/, forest/, ...) judged as one
    tag vocabulary of its class names: a photo is relevant to its own class's word, irrelevant to the others'."""
    from vistext.datasets.classes import ClassFolder

    data = ClassFolder(root)
    labels, targets = data.class_names, np.asarray(data.targets("all"))
    judgements = (targets[None, :] == np.arange(len(labels))[:, None]).astype(np.int8)
    return JudgedSet(name, list(labels), [str(p) for p in data.images("all")], judgements)


def class_folder_search_set(tags: JudgedSet, name: str, overlaps: Sequence[tuple[str, str]] = ()) -> JudgedSet:
    """``tags`` (a ``class_folder_tag_set``) as search queries, "a {class}" ("buildings" for a plural folder):
    relevant = the query's class, irrelevant = the others, except each ``(query class, photo class)`` of
    ``overlaps``, left unjudged (a glacier photo shows a mountain to a person's eye, and a street buildings)."""
    queries = [label if label.endswith("s") else _indefinite(label) for label in tags.texts]
    judgements = tags.judgements.copy()
    classes = np.argmax(tags.judgements == RELEVANT, axis=0)
    for query, photo in overlaps:
        if query not in tags.texts or photo not in tags.texts:
            raise UsageError(f"{name}: no class folder named {query if query not in tags.texts else photo!r}")
        judgements[tags.texts.index(query), classes == tags.texts.index(photo)] = UNJUDGED
    return JudgedSet(name, queries, list(tags.paths), judgements)


HUMAN_FILES = {"experts": "ExpertAnnotations.txt", "crowd": "CrowdFlowerAnnotations.txt"}
_HUMAN_LINE = re.compile(r"^(\w+\.jpg)\t(\w+\.jpg#\d)\t(\d+(?:\.\d+)?)\t(\d+)\t(\d+)$")


def _expert_judgement(a: str, b: str, c: str) -> int:
    mean = (int(a) + int(b) + int(c)) / 3
    return RELEVANT if mean >= 3 else IRRELEVANT if mean <= 2 else UNJUDGED


def _crowd_judgement(share: str, _yes: str, _no: str) -> int:
    yes = float(share)
    return RELEVANT if yes >= 2 / 3 else IRRELEVANT if yes <= 1 / 3 else UNJUDGED


def flickr8k_human_sets(root: str | Path, annotations: str | Path) -> list[JudgedSet]:
    """Flickr8k's expert and crowd judgements in ``annotations`` (the folder of ``HUMAN_FILES``, from the Flickr8k
    text release) as search sets over the photos they judge, captions as queries (see the module docstring). A
    file that is missing is left out; lines that do not parse are skipped and counted in a warning (the copy that
    circulates has a damaged stretch)."""
    from vistext.datasets.base import read_text
    from vistext.datasets.flickr8k import TOKEN_FILE

    root, annotations = Path(root), Path(annotations)
    captions = dict(
        line.split("\t", 1) for line in read_text(root / TOKEN_FILE, "caption file").splitlines() if "\t" in line
    )
    images = root / "images" if (root / "images").is_dir() else root
    judged: dict[str, Callable[[str, str, str], int]] = {"experts": _expert_judgement, "crowd": _crowd_judgement}
    out = []
    for name, filename in HUMAN_FILES.items():
        path = annotations / filename
        if not path.is_file():
            continue
        pairs, skipped = [], 0
        for line in path.read_text(encoding="latin-1").splitlines():
            match = _HUMAN_LINE.match(line)
            if match is None or match.group(2) not in captions or f"{match.group(1)}#0" not in captions:
                skipped += 1
                continue
            pairs.append((match.group(1), match.group(2), judged[name](*match.group(3, 4, 5))))
        if skipped:
            why = "not <image> <image>#<n> and three numbers, or a photo or caption Flickr8k lacks"
            log.warning("%s: %d lines skipped (%s)", path, skipped, why)
        if not pairs:
            raise UsageError(f"{path}: no judged pairs")
        texts = list(dict.fromkeys(caption for _, caption, _ in pairs))
        photos = list(dict.fromkeys(photo for photo, _, _ in pairs))
        row, column = {t: i for i, t in enumerate(texts)}, {p: i for i, p in enumerate(photos)}
        judgements = np.full((len(texts), len(photos)), UNJUDGED, np.int8)
        for photo, caption, judgement in pairs:
            judgements[row[caption], column[photo]] = judgement
        out.append(JudgedSet(f"flickr8k {name} test", [captions[t].strip() for t in texts],
                             [str(images / p) for p in photos], judgements))  # fmt: skip
    return out
