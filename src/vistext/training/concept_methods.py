"""The candidates a concept space is chosen among, and the data they are scored on.

``ConceptSearch`` encodes the opendomain-classes photos (dev and test halves) and Flickr8k's dev and test splits
once, then builds each candidate as a ``Method``: the shipped joint model alone (tags: plain cosines of
"a {word}"; search: hubness-corrected vectors), ConSE over the classifier's label embeddings (MiniLM) for three
label texts, the class space (texts as a softmax over label cosines), one global fusion weight, and the adaptive
fusion (both cosines standardised, mixed with a per-query weight ramping with the query's best label cosine).
``vistext.training.concepts`` runs the search and saves the winner; ``bench/opendomain.py`` prints every figure.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vistext.errors import ModelError

if TYPE_CHECKING:
    from vistext.features import FeatureArrays
    from vistext.models.concepts import ConceptSpace

TEMPERATURES = (0.5, 1.0, 2.0, 3.0, 5.0)
TOPS = (1, 3, 5, 10, 20, 50, 1000)
WEIGHTS = tuple(round(w, 2) for w in np.arange(0.0, 1.0001, 0.1))
CLASS_TOPS = (10, 50, 1000)
TAUS = (0.05, 0.1, 0.2)
# (low, high, max_weight, min_weight) of the adaptive fusion's confidence ramp
RAMPS = tuple(itertools.product((0.4, 0.5, 0.55), (0.7, 0.75, 0.8), (0.7, 0.8, 0.9), (0.0, 0.1)))

F8K_SPLITS = ("dev", "test")
Embed = Callable[[list[str]], np.ndarray]


def memo(embed: Embed, file: Path | None = None) -> Embed:
    """``embed`` with a per-text cache (the grids ask for the same prompts again and again), kept in ``file``
    between runs when given (``--cache``)."""
    cache: dict[str, np.ndarray] = {}
    if file is not None and file.is_file():
        with np.load(file) as stored:
            cache.update(zip(stored["texts"].tolist(), stored["vectors"], strict=True))

    def cached(texts: list[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in cache))
        if missing:
            cache.update(zip(missing, embed(missing), strict=True))
            if file is not None:
                file.parent.mkdir(parents=True, exist_ok=True)
                np.savez(file, texts=np.array(list(cache)), vectors=np.stack(list(cache.values())))
        return np.stack([cache[t] for t in texts])

    return cached


@dataclass
class ConceptConfig:
    """What ``vistext train concepts`` reads and where it writes (the only home of these defaults)."""

    data: str  # the opendomain-classes folder (one folder per class)
    flickr: str  # the Flickr8k folder
    out: str | None = None  # where the chosen concept space is saved (None: choose, save nothing)
    seed: int = 0  # of the stratified dev/test halves
    template: str = "a photo of a {}"  # search query template
    cache: str | None = None  # keep text embeddings in this directory between runs


def _logits(features: FeatureArrays) -> np.ndarray:
    if features.logits is None:
        raise ModelError("the concept space needs the image classifier's logits")
    return features.logits


@dataclass
class Method:
    name: str
    params: str
    tag_images: np.ndarray  # (N, d) the opendomain photos as tagging compares them
    search_images: np.ndarray  # (N, d) as an index stores them
    tag_texts: Embed
    search_texts: Embed
    f8k_images: dict[str, np.ndarray]  # Flickr8k split -> (1000, d) images as an index stores them
    f8k_captions: dict[str, np.ndarray]  # split -> (5000, d) captions as search embeds them


class ConceptSearch:
    """The data every candidate is scored on, and the candidates: the joint model alone, concept spaces (ConSE
    and the class space), global and adaptive fusions. Photos are encoded once; texts through a per-text cache."""

    def __init__(self, config: ConceptConfig) -> None:
        from vistext.datasets import open_caption_dataset
        from vistext.datasets.classes import ClassFolder
        from vistext.encoders import create_image_encoder
        from vistext.encoders.text_encoders import MiniLMEncoder
        from vistext.features import encode_files
        from vistext.models.joint import load_joint_model

        self.template = config.template
        self.data = ClassFolder(config.data, seed=config.seed)
        self.names = self.data.class_names
        encoder = create_image_encoder("efficientnet-lite0")
        every = self.data.images("all")
        row = {p: i for i, p in enumerate(every)}
        self.rows = {s: np.array([row[p] for p in self.data.images(s)]) for s in ("dev", "test")}
        self.targets = {s: np.array(self.data.targets(s)) for s in ("dev", "test")}
        self.features = encode_files(every, encoder, progress=False)
        # Flickr8k dev fits the fusion's standardisation and guards its floors; test is only reported
        self.f8k_owner, self.f8k_texts, self.f8k_features = {}, {}, {}
        for split in F8K_SPLITS:
            captions = list(open_caption_dataset(f"flickr8k:{config.flickr}").captions(split))
            f8k_images = sorted({c.image for c in captions})
            f8k_row = {p: i for i, p in enumerate(f8k_images)}
            self.f8k_owner[split] = np.array([f8k_row[c.image] for c in captions])
            self.f8k_texts[split] = [c.text for c in captions]
            self.f8k_features[split] = encode_files(f8k_images, encoder, progress=False)
        self.joint = load_joint_model()
        minilm = MiniLMEncoder()
        cache = Path(config.cache) if config.cache else None
        self.minilm = memo(lambda texts: minilm.encode(texts).numpy(), cache and cache / "minilm.npz")
        self.joint_plain = memo(lambda t: self.joint.encode_text(t, corrected=False), cache and cache / "plain.npz")
        self.joint_search = memo(lambda t: self.joint.encode_text(t), cache and cache / "search.npz")

    def joint_method(self) -> Method:
        from vistext.encoders.base import ImageFeatures

        def images(f: FeatureArrays, corrected: bool) -> np.ndarray:
            return self.joint.encode_images(ImageFeatures(pooled=f.pooled, logits=f.logits), corrected=corrected)

        def tag_texts(words: list[str]) -> np.ndarray:  # the release's tag prompt: "dog" -> "a dog"
            return self.joint_plain([w if w.startswith(("a ", "an ", "the ")) else f"a {w}" for w in words])

        f8k = (
            {s: images(self.f8k_features[s], True) for s in F8K_SPLITS},
            {s: self.joint_search(self.f8k_texts[s]) for s in F8K_SPLITS},
        )
        tags, search = images(self.features, False), images(self.features, True)
        return Method("joint", "shipped joint model (release)", tags, search, tag_texts, self.joint_search, *f8k)

    def evaluate(self, method: Method, split: str) -> dict:
        from vistext.evaluation.opendomain import evaluate_open_domain

        rows = self.rows[split]
        return evaluate_open_domain(
            lambda texts: method.tag_texts(texts) @ method.tag_images[rows].T,
            self.targets[split],
            self.names,
            tag_template="{}",
            search_template=self.template,
            score_queries=lambda texts: method.search_texts(texts) @ method.search_images[rows].T,
        )

    def recall(self, method: Method, split: str = "test") -> dict:
        from vistext.evaluation.retrieval import retrieval_metrics

        scores = method.f8k_images[split] @ method.f8k_captions[split].T
        return retrieval_metrics(scores, self.f8k_owner[split])

    # ---- concept space -----------------------------------------------------------------------------------
    def label_sets(self) -> dict[str, tuple[np.ndarray, str, tuple[str, ...]]]:
        """name -> (label embeddings, which names, label templates)."""
        from vistext.encoders.efficientnet import imagenet_labels
        from vistext.models.concepts import build_label_embeddings, imagenet_class_names

        first = [[name] for name in imagenet_labels()]
        names = imagenet_class_names()
        sets = {
            "first name": (first, "first", ("{}",)),
            "names+synonyms": (names, "synonyms", ("{}",)),
            "names+synonyms x2 prompts": (names, "synonyms", ("{}", "a photo of a {}")),
        }
        return {k: (build_label_embeddings(self.minilm, n, t), kind, t) for k, (n, kind, t) in sets.items()}

    def concept_method(
        self, labels: np.ndarray, label_name: str, top: int, temperature: float, tags: str, tau: float | None = None
    ) -> Method:
        from vistext.models.concepts import TAG_TEMPLATES, ConceptSpace, embed_prompted

        space = ConceptSpace(labels, top=top, temperature=temperature, query_temperature=tau)

        def tag_texts(texts: list[str]) -> np.ndarray:
            plain = tags == "plain"
            return space.embed_texts(self.minilm(texts) if plain else embed_prompted(self.minilm, texts, TAG_TEMPLATES))

        images = space.embed_logits(_logits(self.features))
        kind = "ConSE" if tau is None else f"class space, query T={tau:g}"
        params = f"{kind}, labels={label_name}, top={top}, T={temperature:g}, tag prompts={tags}"
        return Method(
            "concept",
            params,
            images,
            images,
            tag_texts,
            lambda texts: space.embed_texts(self.minilm(texts)),
            {s: space.embed_logits(_logits(self.f8k_features[s])) for s in F8K_SPLITS},
            {s: space.embed_texts(self.minilm(self.f8k_texts[s])) for s in F8K_SPLITS},
        )

    def best_concept(self) -> list[tuple[float, Method, dict]]:
        """The best ConSE setting per label text, then the class space over the best label text; the dev winner."""
        settings = []
        label_sets = self.label_sets()
        grids: list[tuple[str, Iterator[tuple[Any, ...]]]]
        grids = [(name, itertools.product(TOPS, TEMPERATURES, ("plain", "ensemble"), (None,))) for name in label_sets]
        grids.append(
            ("names+synonyms x2 prompts", itertools.product(CLASS_TOPS, TEMPERATURES, ("plain", "ensemble"), TAUS))
        )
        for label_name, grid in grids:
            labels, kind, templates = label_sets[label_name]
            best: tuple[float, Method, dict] | None = None
            for top, temperature, tags, tau in grid:
                method = self.concept_method(labels, label_name, top, temperature, tags, tau)
                primary = self.evaluate(method, "dev")["primary"]
                if best is None or primary > best[0]:
                    chosen = {
                        "labels": labels,
                        "names": kind,
                        "templates": templates,
                        "top": top,
                        "temperature": temperature,
                        "tags": tags,
                        "tau": tau,
                    }
                    best = (primary, method, chosen)
            assert best is not None
            settings.append(best)
        return settings

    def adaptive(self, concept: Method, joint: Method, space: ConceptSpace, chosen: dict, ramp: tuple,
                 stats: tuple) -> Method:  # fmt: skip
        from vistext.models.concepts import TAG_TEMPLATES, AdaptiveFusion, embed_prompted

        fusion = AdaptiveFusion(*stats, *ramp)
        vectors = fusion.image_vectors

        def raw_tags(t: list[str]) -> np.ndarray:  # what the tag words' confidence is measured on
            return self.minilm(t) if chosen["tags"] == "plain" else embed_prompted(self.minilm, t, TAG_TEMPLATES)

        def texts(concept_embed: Embed, joint_embed: Embed, raw: Embed) -> Embed:
            return lambda t: fusion.text_vectors(concept_embed(t), joint_embed(t), space.confidence(raw(t)))

        f8k_confidence = {s: space.confidence(self.minilm(self.f8k_texts[s])) for s in F8K_SPLITS}
        params = "low={:g}, high={:g}, max w={:g}, min w={:g}".format(*ramp)
        return Method(
            "adaptive",
            params,
            vectors(concept.tag_images, joint.tag_images),
            vectors(concept.search_images, joint.search_images),
            texts(concept.tag_texts, joint.tag_texts, raw_tags),
            texts(concept.search_texts, joint.search_texts, self.minilm),
            {s: vectors(concept.f8k_images[s], joint.f8k_images[s]) for s in F8K_SPLITS},
            {
                s: fusion.text_vectors(concept.f8k_captions[s], joint.f8k_captions[s], f8k_confidence[s])
                for s in F8K_SPLITS
            },
        )

    @staticmethod
    def fused(concept: Method, joint: Method, weight: float) -> Method:
        from vistext.models.concepts import FusedSpace

        fuse = FusedSpace(weight).fuse
        return Method(
            "fused",
            f"w={weight:g} x concept [{concept.params}] + joint",
            fuse(concept.tag_images, joint.tag_images),
            fuse(concept.search_images, joint.search_images),
            lambda t: fuse(concept.tag_texts(t), joint.tag_texts(t)),
            lambda t: fuse(concept.search_texts(t), joint.search_texts(t)),
            {s: fuse(concept.f8k_images[s], joint.f8k_images[s]) for s in F8K_SPLITS},
            {s: fuse(concept.f8k_captions[s], joint.f8k_captions[s]) for s in F8K_SPLITS},
        )
