"""NMF topics recover topics planted in synthetic image x word scores."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vistext.analysis.topics import fit_topics
from vistext.errors import UsageError

PLANTED = [
    ["beach", "sea", "sand", "wave", "surf"],
    ["snow", "ski", "mountain", "cold", "sled"],
    ["dog", "ball", "grass", "fetch", "puppy"],
    ["street", "car", "city", "building", "crowd"],
]


def _planted(n_images: int = 400, seed: int = 0) -> tuple[np.ndarray, list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    vocab = [w for words in PLANTED for w in words] + ["photo", "day", "people"]
    truth = rng.integers(0, len(PLANTED), n_images)
    x = rng.random((n_images, len(vocab))) * 0.05  # background noise on every word
    for i, t in enumerate(truth):
        cols = [vocab.index(w) for w in PLANTED[t]]
        x[i, cols] += rng.uniform(0.5, 1.0, len(cols))
        x[i, -3:] += rng.uniform(0.0, 0.3, 3)  # words common to every topic
    return x, vocab, truth


def test_recovers_planted_topics() -> None:
    x, vocab, truth = _planted()
    model = fit_topics(x, vocab, n_topics=4, seed=0, ids=[f"img{i}.jpg" for i in range(len(x))], top_words=5)
    found = [set(w for w, _ in topic.words) for topic in model.topics]
    assert sorted(map(sorted, found)) == sorted(map(sorted, PLANTED))
    # every image's dominant topic is its planted one (up to the topic permutation)
    dominant = model.image_topics()
    mapping = {t: next(i for i, f in enumerate(found) if f == set(PLANTED[t])) for t in range(4)}
    assert np.mean(dominant == np.array([mapping[t] for t in truth])) > 0.98
    # the typical images of a topic really belong to it
    for topic in model.topics:
        planted_of = [truth[int(name[3:-4])] for name in topic.images]
        assert all(mapping[p] == topic.index for p in planted_of)
    assert np.allclose(model.image_weights.sum(axis=1), 1.0, atol=1e-5)
    assert model.components.shape == (4, len(vocab))


def test_deterministic_json_and_transform() -> None:
    x, vocab, _ = _planted(120, seed=1)
    a, b = fit_topics(x, vocab, 4, seed=3), fit_topics(x, vocab, 4, seed=3)
    assert a.to_dict() == b.to_dict()
    payload = json.loads(json.dumps(a.to_dict()))
    assert payload["n_topics"] == 4 and len(payload["topics"][0]["words"]) == 10
    assert {"topic", "label", "weight", "words", "images"} <= set(payload["topics"][0])
    assert sum(t["weight"] for t in payload["topics"]) == pytest.approx(1.0, abs=1e-4)
    again = a.transform(x[:10])
    assert again.shape == (10, 4)
    assert np.array_equal(again.argmax(axis=1), a.image_weights[:10].argmax(axis=1))


def test_bad_input() -> None:
    x, vocab, _ = _planted(20)
    with pytest.raises(UsageError, match="non-negative"):
        fit_topics(-x, vocab, 2)
    with pytest.raises(UsageError, match="n_topics"):
        fit_topics(x, vocab, 0)
    with pytest.raises(UsageError, match="words"):
        fit_topics(x, vocab[:-1], 2)
