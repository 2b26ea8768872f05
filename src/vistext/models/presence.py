"""Whether a photo shows people: a logistic head over the bundled encoder's pooled features.

No ImageNet class is a person, so neither the classifier nor the concept space can say that a photo shows people,
and the joint model (trained on Flickr8k, where nearly every photo does) scores "people" low everywhere. This
head reads the pooled features every catalogue already stores (indexing never changes for it, and old catalogues
need nothing re-read): ``sigmoid(pooled . weights + bias)`` is the chance that a photo shows a person.

It is fitted by ``vistext.training.presence`` (``bench/presence.py --write``): Flickr8k train photos that two or
more captions describe with a person word are positives, those no caption does are negatives, with the
people-free classes of the opendomain-classes dev half as negatives from outside Flickr8k (without them, a stop
sign or a sunflower read as a person, because Flickr8k's photos without people are mostly dogs and landscapes).
Positives and negatives weigh half each, so 0.5 means "as likely as not" whatever share of a collection shows
people. The search syntax asks it when a query asks for or excludes people (``PEOPLE_TERMS``) or names a person among
other words (``service.query_syntax``, ``service.composed_search``).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vistext.errors import ModelError
from vistext.models.card import read_card, resolve_model_dir, write_card

# the words that name a person in a caption (the head's labels) or a query (the search syntax, pronouns aside)
PERSON_WORDS = frozenset(
    """man men woman women person people persons boy boys girl girls child children kid kids baby babies toddler
    toddlers guy guys lady ladies gentleman gentlemen player players rider riders biker bikers skier skiers surfer
    surfers snowboarder snowboarders climber climbers swimmer swimmers crowd team teams couple family adult adults
    teenager teenagers teen teens worker workers dancer dancers runner runners cyclist cyclists skateboarder
    skateboarders hiker hikers someone he she his her soldier soldiers athlete athletes spectators audience
    performer performers musician musicians bride groom mother father daughter son brother sister friends student
    students boxer wrestler wrestlers infant""".split()
)
PRONOUNS = frozenset(("he", "she", "his", "her"))
CHANCE_RANGE = (0.01, 0.99)  # where its chances are read as a relevance: it is right ~99 times in 100 at its surest


@dataclass(frozen=True)
class PresenceModel:
    """``sigmoid(pooled . weights + bias)`` over an encoder's pooled features (``encoder`` names it)."""

    weights: np.ndarray
    bias: float
    encoder: str
    card: dict[str, Any] = field(default_factory=dict, compare=False)

    def probability(self, pooled: np.ndarray) -> np.ndarray:
        """(n,) chance each of n photos shows a person, from their (n, d) pooled features."""
        pooled = np.asarray(pooled, dtype=np.float32)
        if pooled.ndim != 2 or pooled.shape[1] != len(self.weights):
            raise ModelError(f"presence model: expected (n, {len(self.weights)}) pooled features, got {pooled.shape}")
        z = pooled.astype(np.float64) @ self.weights.astype(np.float64) + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0)))

    def fits(self, dim: int) -> bool:
        """Whether pooled features of ``dim`` dimensions are what this head reads."""
        return dim == len(self.weights)

    @property
    def fingerprint(self) -> str:
        """Changes whenever the chances it gives could (its weights or bias)."""
        digest = hashlib.blake2b(np.asarray(self.weights, dtype=np.float32).tobytes(), digest_size=8)
        digest.update(repr(float(self.bias)).encode())
        return digest.hexdigest()


def save_presence(directory: str | Path, model: PresenceModel) -> Path:
    """Write ``model`` to ``directory/config.json`` (its weights inside, as a list)."""
    fields = {**model.card, "encoder": model.encoder, "bias": float(model.bias)}
    fields["weights"] = [float(w) for w in np.asarray(model.weights, dtype=np.float32)]
    return write_card(directory, "presence", fields)


def load_presence(path: str | Path | None = None) -> PresenceModel:
    """The presence head saved in ``path`` (a directory or a name; default: the shipped one)."""
    directory = resolve_model_dir(path, "presence")
    card = read_card(directory, "presence")
    try:
        weights = np.asarray(card["weights"], dtype=np.float32)
        bias, encoder = float(card["bias"]), str(card["encoder"])
    except (KeyError, TypeError, ValueError) as error:
        raise ModelError(f"{directory}: presence model card lacks its weights, bias or encoder ({error})") from None
    if weights.ndim != 1 or not len(weights) or not np.isfinite(weights).all():
        raise ModelError(f"{directory}: presence model weights must be a non-empty list of finite numbers")
    return PresenceModel(weights, bias, encoder, {k: v for k, v in card.items() if k != "weights"})


@functools.cache
def shipped_presence() -> PresenceModel:
    """The shipped person head, loaded once per process."""
    return load_presence(None)
