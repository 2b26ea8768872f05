"""The shipped default for words and photos: the joint model fused with the classifier's concept space.

``OpenDomainModel`` joins the torch-free joint model (``joint_onnx``) and the concept space (``concepts``) with
the adaptive fusion saved in the concept card: one vector per image (computed from the classifier's logits and
the joint image vector, both of which indexing stores), one vector per text, whose inner product is the fused,
standardised score. ``relevance`` reads that score as a calibrated 0-1 chance that the photo matches the text
(the logistic fit on dev data saved with the fusion): the one score scale of search, tags, match and captions.

Image vectors are stored L2-normalised; each is the concatenation of two unit vectors and a 1, so its norm is
always sqrt(3) and a stored cosine times ``sqrt(3) * |text vector|`` gives the fused score back exactly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from vistext.encoders.base import ImageFeatures
from vistext.errors import ModelError
from vistext.images.attributes import ATTRIBUTE_SPACE
from vistext.models.concepts import ConceptSpace, embed_prompted

if TYPE_CHECKING:
    from vistext.models.joint_onnx import OnnxJointModel

IMAGE_NORM = float(np.sqrt(3.0))  # |[concept unit, joint unit, 1]|
SPACE_PREFIX = "fused:"
_CONCEPTS = "+concepts@"  # between the joint model's key and the concept space's fingerprint in a space's name
VOCABULARY_SHARE = 0.5  # how far a competing word's concept weight moves to its vocabulary's mean (chosen on dev)


def joint_space(joint_key: str) -> str:
    """The stored space of the joint model with this key, which the fused space is derived from."""
    return f"joint:{joint_key}"


def source_space(space: str) -> str | None:
    """The joint space a fused space was derived from, read from its name; None for any other space."""
    if not space.startswith(SPACE_PREFIX) or _CONCEPTS not in space:
        return None
    return joint_space(space[len(SPACE_PREFIX) :].rsplit(_CONCEPTS, 1)[0])


def read_whole_spaces(spaces: Iterable[str]) -> set[str]:
    """The spaces among ``spaces`` that search reads whole but never searches by nearest neighbour (so a store
    need not index them): the joint space beneath each fused one, and the colour and light measures."""
    spaces = set(spaces)
    return {found for space in spaces if (found := source_space(space))} | (spaces & {ATTRIBUTE_SPACE})


class OpenDomainModel:
    """Text and image vectors of the fused space, and their scores on the readable 0-1 relevance scale."""

    def __init__(self, joint: OnnxJointModel, concepts: ConceptSpace, joint_key: str) -> None:
        self.joint = joint
        self.concepts = concepts
        self.fusion = concepts.fusion()
        # tags compare plain (uncorrected) joint cosines: their own standardisation and calibration when saved
        tags = concepts.card.get("tag_fusion") or {}
        self.tag_fusion = replace(
            self.fusion,
            joint_mean=float(tags.get("joint_mean", self.fusion.joint_mean)),
            joint_std=float(tags.get("joint_std", self.fusion.joint_std)),
            calibration=tuple(tags.get("calibration", self.fusion.calibration[:2])),
        )
        # ``tag --vocab`` reads a whole vocabulary at once: its own fit (see ``vocabulary_relevance``)
        vocabulary = concepts.card.get("tag_vocabulary") or {}
        self.vocabulary_calibration = tuple(vocabulary.get("calibration", self.tag_fusion.calibration))
        self.competition = float(vocabulary.get("competition", 0.0))
        self.sure_scale = float(vocabulary.get("sure_scale", 1.0))
        # the stored image vectors depend only on the label embeddings and the ConSE settings: a recalibrated
        # fusion (text side only) keeps the catalogues' space
        fingerprint = hashlib.sha1(concepts.label_embeddings.tobytes())
        fingerprint.update(repr((concepts.top, concepts.temperature, concepts.query_temperature)).encode())
        if concepts.nodes is not None:  # spaces saved before nodes and regions keep their names
            fingerprint.update(concepts.nodes.fingerprint().encode())
        if not concepts.regions.whole_frame_only:
            fingerprint.update(repr(concepts.regions.to_card()).encode())
        self.space = f"{SPACE_PREFIX}{joint_key}{_CONCEPTS}{fingerprint.hexdigest()[:10]}"
        self._classifier: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def needs_grid(self) -> bool:
        """Whether ``project`` wants the encoder's feature grid (region evidence)."""
        return not self.concepts.regions.whole_frame_only

    def evidence(self, features: ImageFeatures) -> np.ndarray:
        """(N, classes) the class evidence the concept space reads: the whole frame's logits pooled with the
        grid windows' (``models.evidence``); the logits themselves when the space uses the whole frame alone."""
        if features.logits is None:
            raise ModelError("the fused space needs the image classifier's logits")
        regions = self.concepts.regions
        if regions.whole_frame_only:
            return np.asarray(features.logits, dtype=np.float32)
        if self._classifier is None:
            from vistext.encoders.efficientnet import classifier_weights

            self._classifier = classifier_weights()
        return regions.evidence(features.logits, features.grid, self._classifier)

    # ---- images ---------------------------------------------------------------------------------------------
    def image_vectors(self, logits: np.ndarray, joint_vectors: np.ndarray) -> np.ndarray:
        """(N, d) unit vectors of N images from their classifier logits and (corrected) joint vectors: what an
        index stores, so a catalogue indexed before this space existed gets it without reading a photo."""
        concept = self.concepts.embed_logits(np.asarray(logits, dtype=np.float32))
        return (self.fusion.image_vectors(concept, joint_vectors) / IMAGE_NORM).astype(np.float32)

    def project(self, features: ImageFeatures) -> np.ndarray:
        """Encoder features (with the grid when ``needs_grid``) -> stored fused vectors (an indexing projector)."""
        return self.image_vectors(self.evidence(features), self.joint.encode_images(features))

    def tag_image_vectors(self, features: ImageFeatures) -> np.ndarray:
        """Unit image vectors for open-vocabulary tags: the joint part without the hubness correction (words
        compete for one photo there; see ``Understanding``), as the bench chose the tag method."""
        evidence = self.evidence(features)
        joint = self.joint.encode_images(features, corrected=False)
        concept = self.concepts.embed_logits(evidence)
        return (self.fusion.image_vectors(concept, joint) / IMAGE_NORM).astype(np.float32)

    # ---- texts ----------------------------------------------------------------------------------------------
    def text_vectors(self, texts: Sequence[str]) -> np.ndarray:
        """(N, d) query vectors of N search texts: inner product with a stored image vector times sqrt(3) is
        the fused score (see ``scores``)."""
        joint, minilm = self.joint.encode_text_and_minilm(list(texts))
        concept = self.concepts.embed_texts(minilm)
        return self.fusion.text_vectors(concept, joint, self.concepts.confidence(minilm))

    def tag_vectors(self, words: Sequence[str], *, vocabulary: bool = False) -> np.ndarray:
        """(N, d) query vectors of N tag words: the concept side a prompt ensemble over the space's tag
        templates, the joint side "a {word}" without the hubness correction (as the bench measured).

        ``vocabulary``: the words compete for each photo (``tag --vocab``), so each word's concept weight is
        pulled halfway to the vocabulary's mean (``VOCABULARY_SHARE``): scores made mostly in one space are not
        set against scores made mostly in the other. Scene words are where that told: "mountain" and "sea"
        name a classifier class or node squarely, "forest" and "glacier" do not, and with each word at its own
        weight the concept space's alps and seashores outvoted the joint model's forests and glaciers (Intel
        scenes dev 0.726 -> 0.757 top-1, Flickr8k scenes dev 0.532 -> 0.622, opendomain labels dev 0.772 ->
        0.776; 2026-12-06)."""
        words = list(words)
        templates = self.concepts.tag_templates
        phrased = [w if w.lower().startswith(("a ", "an ", "the ")) else f"a {w}" for w in words]
        prompts = [t.format(w) for t in templates for w in words]
        joint, minilm = self.joint.encode_text_and_minilm(phrased + prompts, corrected=False)
        table = {text: vector for text, vector in zip(phrased + prompts, minilm, strict=True)}
        raw = embed_prompted(lambda batch: np.stack([table[t] for t in batch]), words, templates)
        concept = self.concepts.embed_texts(raw)
        confidence = self.concepts.confidence(raw)
        weights = self.tag_fusion.weights(confidence)
        if vocabulary and len(weights) > 1:
            weights = (1.0 - VOCABULARY_SHARE) * weights + VOCABULARY_SHARE * weights.mean()
        return self.tag_fusion.text_vectors(concept, joint[: len(words)], confidence, weights=weights)

    def tag_relevance(self, scores: np.ndarray) -> np.ndarray:
        """Fused tag scores (``tag_vectors`` x ``tag_image_vectors``) -> their calibrated 0-1 relevance, each
        word read on its own (the subjects of composed captions, the tag sets of ``match``)."""
        return self.tag_fusion.relevance(scores)

    def vocabulary_relevance(self, scores: np.ndarray) -> np.ndarray:
        """(words, photos) fused tag scores of one vocabulary -> 0-1 relevance calibrated over the vocabulary
        jointly: a word scored below the photo's best other word loses ``competition`` per unit of the gap, so
        mutually exclusive words ("forest", "desert", "beach") do not each read as likely, while two words
        scored alike (a photo that shows both) keep their own reading (fitted on dev, ``bench/calibration.py``).
        Readings above 0.5 are drawn toward it by ``sure_scale`` (on the logit), so that a sure reading keeps its
        promise on every kind of photo; which words read >= 0.5, and every ranking, do not change."""
        scores = np.asarray(scores, dtype=np.float64)
        a, b = self.vocabulary_calibration
        logit = a * scores + b + self.competition * vocabulary_gap(scores)
        logit = sure_logits(logit, self.sure_scale)
        return (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)

    # ---- scores ---------------------------------------------------------------------------------------------
    def scores(self, texts: np.ndarray, images: np.ndarray) -> np.ndarray:
        """(N_texts, N_images) fused scores of query vectors against stored (unit) image vectors."""
        return np.asarray(texts, dtype=np.float32) @ np.asarray(images, dtype=np.float32).T * IMAGE_NORM

    def from_cosines(self, text: np.ndarray, cosines: np.ndarray) -> np.ndarray:
        """A vector index's cosines (it normalises the query) of one query vector -> that query's relevance."""
        scores = np.asarray(cosines) * float(np.linalg.norm(text)) * IMAGE_NORM
        return self.relevance(scores[None, :], text[None, :])[0]

    def relevance(self, scores: np.ndarray, texts: np.ndarray) -> np.ndarray:
        """(N_texts, ...) fused scores of N query vectors ``texts`` -> calibrated 0-1 relevance (monotone for
        each query: its ranking does not change)."""
        scores = np.asarray(scores)
        weights = self.fusion.query_weights(texts).reshape((-1,) + (1,) * (scores.ndim - 1))
        return self.fusion.relevance(scores, weights)


def vocabulary_gap(scores: np.ndarray) -> np.ndarray:
    """(words, photos) each word's score less the best other word's for that photo, capped at 0 (the best word,
    and a word offered alone, get 0)."""
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) < 2:
        return np.zeros_like(scores)
    order = np.argsort(-scores, axis=0)
    columns = np.arange(scores.shape[1])
    best, second = scores[order[0], columns], scores[order[1], columns]
    others = np.where(np.arange(len(scores))[:, None] == order[0][None, :], second[None, :], best[None, :])
    return np.minimum(scores - others, 0.0)


def sure_logits(logits: np.ndarray, scale: float) -> np.ndarray:
    """``logits`` with their positive part (readings above 0.5) multiplied by ``scale``."""
    return np.where(logits > 0.0, scale * logits, logits)
