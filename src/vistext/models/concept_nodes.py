"""Hypernym nodes of the concept space: broad words whose image evidence is the summed probability of the
classifier classes under them.

"a dog" is every one of the 118 breeds, "a vehicle" every car, bus and boat the classifier knows. The words and
their classes are the default tag vocabulary's (``pretrained/default-tags``, built from WordNet by
``training/default_tags``: one owner of which classes a word covers); the concept space adds each word as one more
label (its label embedding is the word's) whose evidence in a photo is ``weight`` times the sum of the (tempered,
top-T) class probabilities under it, so a photo of a beagle and the query "a dog" meet at the word "dog" itself
rather than only through "beagle"'s embedding. A word the classifier has no class for (``giraffe``) gets no node
and no evidence: its query's label confidence stays low and the fusion leans on the joint model.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vistext.errors import ModelError

SOURCE = "default-tags"  # where the words and their classes come from


@dataclass
class ConceptNodes:
    """Words, the classes under each, and the weight of a node's summed probability against a class's."""

    words: list[str]
    classes: list[list[int]]
    weight: float = 1.0
    n_classes: int = 1000
    membership: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.words or len(self.words) != len(self.classes):
            raise ModelError(f"concept nodes: {len(self.words)} words but {len(self.classes)} class lists")
        if self.weight < 0:
            raise ModelError(f"concept node weight must be >= 0, got {self.weight}")
        self.membership = np.zeros((self.n_classes, len(self.words)), np.float32)
        for column, (word, indices) in enumerate(zip(self.words, self.classes, strict=True)):
            if not indices or min(indices) < 0 or max(indices) >= self.n_classes:
                raise ModelError(f"concept node {word!r}: class indices must lie in 0..{self.n_classes - 1}")
            self.membership[indices, column] = 1.0

    def evidence(self, probabilities: np.ndarray) -> np.ndarray:
        """(N, words) ``weight`` x the summed class probability under each word."""
        return (np.asarray(probabilities, dtype=np.float32) @ self.membership) * np.float32(self.weight)

    def fingerprint(self) -> str:
        digest = hashlib.blake2b(digest_size=6)
        digest.update(repr((self.words, self.classes, self.weight)).encode())
        return digest.hexdigest()

    def to_card(self) -> dict[str, Any]:
        return {"source": SOURCE, "words": list(self.words), "weight": self.weight}


def default_tag_nodes(weight: float = 1.0, words: list[str] | None = None) -> ConceptNodes:
    """Nodes for the default tag vocabulary's words (all of them, or ``words`` in that order)."""
    from vistext.models.default_tags import load_default_tags

    vocabulary = load_default_tags()
    wanted = vocabulary.words if words is None else words
    unknown = [w for w in wanted if w not in vocabulary.classes]
    if unknown:
        raise ModelError(f"concept nodes {unknown[:5]} are not in the default tag vocabulary; rebuild the concept "
                         "space with `vistext train concepts`")  # fmt: skip
    return ConceptNodes(list(wanted), [vocabulary.classes[w] for w in wanted], weight, vocabulary.n_classes)


def nodes_from_card(card: dict[str, Any] | None) -> ConceptNodes | None:
    """The nodes a concept card names (None: a space without nodes)."""
    if not card:
        return None
    if card.get("source") != SOURCE:
        raise ModelError(f"concept nodes from {card.get('source')!r}: only {SOURCE!r} is known")
    return default_tag_nodes(float(card.get("weight", 1.0)), [str(w) for w in card.get("words", [])])
