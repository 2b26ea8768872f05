"""NMF topics recover topics planted in synthetic image x word scores; on a real collection of Flickr8k photos
a topic's label says what its photos show, its typical images come with their files, and each topic is drawn."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vistext.analysis.topics import EVERYDAY_WORDS, describe_topics, fit_topics, label_text
from vistext.errors import UsageError
from vistext.models.default_tags import load_default_tags

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


def test_describe_topics_picks_distinct_words_deterministically() -> None:
    words = ["dog", "dogs", "ball", "snow"]
    vectors = np.array([[1.0, 0.0, 0.0], [0.99, 0.14, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0]])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    topics = np.array([[1.0, 0.3, 0.0], [0.0, 0.1, 1.0]])
    described = describe_topics(topics, vectors, words, k=2)
    # "dog" and "dogs" are all but the same word: the second one is passed over for "ball"
    assert [w for w, _ in described[0]] == ["dogs", "ball"]
    assert described[1][0][0] == "snow"
    assert describe_topics(topics, vectors, words, k=2) == described
    assert label_text(["dog", "ball", "grass"]) == "dog, ball and grass" and label_text(["dog"]) == "dog"
    with pytest.raises(UsageError, match="do not match"):
        describe_topics(topics, vectors[:, :2], words)


def _photos_about(flickr8k: Path, pattern: str, avoid: str, count: int) -> list[Path]:
    """``count`` Flickr8k photos all five of whose captions match ``pattern`` and none ``avoid``."""
    captions: dict[str, list[str]] = {}
    for line in (flickr8k / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines():
        name, _, text = line.partition("\t")
        captions.setdefault(name.split("#")[0], []).append(text.lower())
    chosen = [
        name
        for name, texts in sorted(captions.items())
        if all(re.search(pattern, t) for t in texts) and not any(re.search(avoid, t) for t in texts)
    ]
    return [flickr8k / "images" / name for name in chosen[:count]]


def test_real_topics_are_labelled_by_what_the_photos_show(
    tmp_path: Path, flickr8k: Path, copy_photos: Callable[[list[Path], Path], Path]
) -> None:
    from vistext.service import Service

    dogs = _photos_about(flickr8k, r"\bdogs?\b", r"\b(snow|bikes?|bicycles?)\b", 14)
    bikes = _photos_about(flickr8k, r"\b(bikes?|bicycles?|cyclists?)\b", r"\bdogs?\b", 14)
    folder = copy_photos(dogs + bikes, tmp_path / "photos")
    with Service(db=folder, progress=False) as service:
        service.index(folder)
        result = service.topics(3)  # the dogs' many breeds need a topic more than the bikes' few classes
        again = service.topics(3)  # from the cache beside the catalogue: the same answer, files included
        sheets = service.topic_grids(result, tmp_path / "grids")
        files = {topic.topic: [str(service.image_file(i)) for i in topic.images] for topic in result.topics}
    assert again.to_dict() == result.to_dict()
    labels = [topic.label for topic in result.topics]
    vocabulary = {*EVERYDAY_WORDS, *load_default_tags().words}
    dog_topics = [t for t in result.topics if re.search(r"\b(dogs?|puppy)\b", t.label)]
    bike_topics = [t for t in result.topics if re.search(r"\b(bicycle|cycling|bike)\b", t.label)]
    assert dog_topics and bike_topics and not set(map(id, dog_topics)) & set(map(id, bike_topics)), labels
    for topics, truth in ((dog_topics, dogs), (bike_topics, bikes)):
        for topic in topics:
            # the label is made of everyday words and tag words (not ImageNet classes like "whippet"), best first
            assert all(word in vocabulary for word, _ in topic.label_words) and len(topic.label_words) == 3
            assert topic.label == label_text([word for word, _ in topic.label_words])
            assert topic.words and topic.words[0][0] not in topic.label  # the ImageNet classes stay beside it
            # typical images come with their files, in the order of their ids, and mostly show the topic
            assert topic.paths == files[topic.topic] and len(topic.paths) > 0
            assert sum(Path(p).name in {t.name for t in truth} for p in topic.paths) >= 0.75 * len(topic.paths)
    payload = json.loads(json.dumps(result.to_dict()))
    first = payload["topics"][0]
    assert {"topic", "label", "weight", "words", "images", "paths", "label_words"} <= set(first)
    # one contact sheet per topic, one cell per typical image
    assert [s.name for s in sheets] == ["topic-00.png", "topic-01.png", "topic-02.png"]
    for sheet in sheets:
        with Image.open(sheet) as picture:
            assert picture.width > 192 and picture.height > 192


def test_topics_of_everyday_objects_are_named_by_them(
    tmp_path: Path, opendomain_classes: Path, copy_photos: Callable[[list[Path], Path], Path]
) -> None:
    """Photos unlike the captions the joint model learned from (a catalogue's lamps, cups and elephants) get
    labels that name them: the label words are read in the fused space, whose relevance holds out of domain."""
    from vistext.service import Service

    classes = ("lamp", "cup", "elephant")
    photos = [path for name in classes for path in sorted((opendomain_classes / name).glob("*.jpg"))[:10]]
    folder = copy_photos(photos, tmp_path / "photos")
    with Service(db=folder, progress=False) as service:
        service.index(folder)
        result = service.topics(3)
    named = {word for topic in result.topics for word, _ in topic.label_words[:1]}  # each topic's first word
    assert named == set(classes), [topic.label for topic in result.topics]
