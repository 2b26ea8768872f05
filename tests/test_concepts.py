"""The concept space (ConSE over the classifier's label embeddings) and its fusion with the joint space: the maths
on hand-made arrays, the shipped label matrix against a rebuild from MiniLM, and search on real photos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vistext.errors import ModelError
from vistext.models.concepts import (
    AdaptiveFusion,
    ConceptSpace,
    FusedSpace,
    build_label_embeddings,
    class_probabilities,
    embed_prompted,
    imagenet_class_names,
    load_concept_space,
)


def one_hot_embedder(vocabulary: list[str]):
    """A text -> one-hot embedder over a fixed vocabulary: means of its outputs are easy to reason about."""

    def embed(texts: list[str]) -> np.ndarray:
        return np.stack([np.eye(len(vocabulary))[vocabulary.index(t)] for t in texts]).astype(np.float32)

    return embed


def test_class_probabilities_keep_the_top_classes() -> None:
    logits = np.log(np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]))
    assert np.allclose(class_probabilities(logits, 1.0, 3), [[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]], atol=1e-6)
    assert np.allclose(class_probabilities(logits, 1.0, 2)[0], [0.625, 0.375, 0.0], atol=1e-6)
    assert np.allclose(class_probabilities(logits, 1.0, 1), [[1, 0, 0], [0, 0, 1]])
    sharp = class_probabilities(logits, 0.5, 3)  # a lower temperature sharpens: p^2 renormalised
    assert np.allclose(sharp[0], np.array([0.25, 0.09, 0.04]) / 0.38, atol=1e-6)
    with pytest.raises(ModelError, match="temperature > 0"):
        class_probabilities(logits, 0.0, 3)


def test_label_embeddings_average_synonyms_and_templates() -> None:
    vocab = ["cup", "a photo of a cup", "mug", "a photo of a mug", "dog", "a photo of a dog"]
    labels = build_label_embeddings(one_hot_embedder(vocab), [["cup", "mug"], ["dog"]], ("{}", "a photo of a {}"))
    assert np.allclose(labels[0], [0.5, 0.5, 0.5, 0.5, 0, 0]) and np.allclose(
        labels[1], [0, 0, 0, 0, 1, 1] / np.sqrt(2)
    )
    prompted = embed_prompted(one_hot_embedder(vocab), ["mug"], ("{}", "a photo of a {}"))
    assert np.allclose(prompted, np.array([[0, 0, 1, 1, 0, 0]]) / np.sqrt(2))


def test_concept_embedding_is_the_convex_combination() -> None:
    space = ConceptSpace(np.eye(3, 4, dtype=np.float32), top=2, temperature=1.0)
    image = space.embed_logits(np.log(np.array([[0.6, 0.3, 0.1]])))
    assert np.allclose(image, np.array([[2, 1, 0, 0]]) / np.sqrt(5), atol=1e-6)
    with pytest.raises(ModelError, match="logits"):
        space.embed_logits(np.zeros((1, 5)))


def test_class_space_meets_in_the_classes() -> None:
    labels = np.eye(3, 4, dtype=np.float32)
    space = ConceptSpace(labels, top=3, temperature=1.0, query_temperature=0.1)
    image = space.embed_logits(np.log(np.array([[0.6, 0.3, 0.1]])))
    assert image.shape == (1, 3) and np.allclose(image, np.array([[0.6, 0.3, 0.1]]) / np.linalg.norm([0.6, 0.3, 0.1]))
    text = space.embed_texts(np.array([[0.0, 1.0, 0.0, 0.0]]))  # exactly label 1: its softmax is nearly one-hot
    assert text.argmax() == 1 and text[0, 1] > 0.99
    assert space.confidence(np.array([[0.0, 1.0, 0.0, 0.0], [0, 0, 0, 1.0]])).tolist() == [1.0, 0.0]


def test_fused_cosine_is_the_weighted_sum() -> None:
    rng = np.random.default_rng(0)
    c_img, c_txt, j_img, j_txt = (rng.normal(size=(4, d)) for d in (6, 6, 5, 5))
    unit = [x / np.linalg.norm(x, axis=1, keepdims=True) for x in (c_img, c_txt, j_img, j_txt)]
    fused = FusedSpace(0.3)
    images, texts = fused.fuse(unit[0], unit[2]), fused.fuse(unit[1], unit[3])
    assert np.allclose(np.linalg.norm(images, axis=1), 1.0)
    assert np.allclose(images @ texts.T, 0.3 * unit[0] @ unit[1].T + 0.7 * unit[2] @ unit[3].T, atol=1e-6)
    with pytest.raises(ModelError, match="in \\[0, 1\\]"):
        FusedSpace(1.5)


def test_adaptive_fusion_is_one_inner_product() -> None:
    fusion = AdaptiveFusion(0.1, 0.1, -0.2, 0.05, low=0.4, high=0.8, max_weight=0.8, calibration=(2.0, -1.0))
    assert np.allclose(fusion.weights(np.array([0.3, 0.6, 0.9])), [0.0, 0.4, 0.8])
    rng = np.random.default_rng(1)
    c_img, c_txt, j_img, j_txt = (rng.normal(size=(n, d)) for n, d in ((4, 6), (3, 6), (4, 5), (3, 5)))
    c_img, c_txt, j_img, j_txt = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in (c_img, c_txt, j_img, j_txt))
    confidence = np.array([0.3, 0.6, 0.9])
    scores = fusion.image_vectors(c_img, j_img) @ fusion.text_vectors(c_txt, j_txt, confidence).T
    w = np.array([0.0, 0.4, 0.8])[None, :]
    expected = w * (c_img @ c_txt.T - 0.1) / 0.1 + (1 - w) * (j_img @ j_txt.T + 0.2) / 0.05
    assert np.allclose(scores, expected, atol=1e-4)
    assert fusion.relevance(np.array([0.5]))[0] == pytest.approx(0.5)
    assert AdaptiveFusion.from_card(fusion.to_card()) == fusion
    with pytest.raises(ModelError, match="high > low"):
        AdaptiveFusion(0.1, 0.1, -0.2, 0.05, low=0.8, high=0.4, max_weight=0.8)


def test_class_names_drop_latin_binomials() -> None:
    names = imagenet_class_names()
    assert len(names) == 1000
    assert names[0] == ["tench"]  # "Tinca tinca" dropped
    assert "American robin" in names[15] and not any("Turdus" in n for n in names[15])
    assert all(names) and all(len({n.lower() for n in ns}) == len(ns) for ns in names)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    space = ConceptSpace(np.eye(4, 3, dtype=np.float32), top=3, temperature=2.0)
    fusion = AdaptiveFusion(0.1, 0.1, -0.2, 0.05, low=0.4, high=0.8, max_weight=0.8)
    space.save(tmp_path / "c", {"adaptive_fusion": fusion.to_card()})
    back = load_concept_space(tmp_path / "c")
    assert (back.top, back.temperature, back.fusion()) == (3, 2.0, fusion)
    assert np.allclose(back.label_embeddings, space.label_embeddings)
    card = json.loads((tmp_path / "c" / "config.json").read_text())
    (tmp_path / "c" / "config.json").write_text(json.dumps({**card, "format_version": 99}))
    with pytest.raises(ModelError, match="version 99 is not supported"):
        load_concept_space(tmp_path / "c")


# ---- the shipped space and the real models -----------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm():
    from vistext.encoders.text_encoders import MiniLMEncoder

    encoder = MiniLMEncoder()
    return lambda texts: encoder.encode(list(texts)).numpy()


def test_shipped_space_matches_a_rebuild(minilm) -> None:
    space = load_concept_space()
    assert space.label_embeddings[: space.n_classes].shape == (1000, 384) and space.text_encoder == "minilm"
    assert 0.0 <= space.fusion().max_weight <= 1.0
    names = imagenet_class_names() if space.card["label_names"] == "synonyms" else None
    assert names is not None
    some = [0, 151, 504, 919, 999]  # tench, Chihuahua, coffee mug, street sign, toilet tissue
    rebuilt = build_label_embeddings(minilm, [names[i] for i in some], space.card["label_templates"])
    # the space was built with MiniLM's float32 weights; vistext now ships them in float16, which moves a label
    # embedding's entries by up to ~2e-4 (cosine 0.9999996 measured): the same labels, not a different space
    shipped = space.label_embeddings[some]
    cosine = (rebuilt * shipped).sum(1) / np.linalg.norm(rebuilt, axis=1) / np.linalg.norm(shipped, axis=1)
    assert cosine.min() >= 0.99999 and np.allclose(rebuilt, shipped, atol=5e-4)


def test_concept_search_finds_dogs_in_flickr8k(flickr8k: Path, minilm) -> None:
    """Flickr8k test photos whose five captions all say "dog" against ones where none does: the concept space
    alone (no caption training at all) ranks the dog photos first for "a photo of a dog"."""
    from vistext.datasets import open_caption_dataset
    from vistext.encoders import create_image_encoder
    from vistext.features import encode_files

    by_image = open_caption_dataset(f"flickr8k:{flickr8k}").captions_by_image("test")
    dogs = [p for p, caps in by_image.items() if all("dog" in c.lower() for c in caps)][:15]
    others = [p for p, caps in by_image.items() if not any("dog" in c.lower() for c in caps)][:15]
    features = encode_files(dogs + others, create_image_encoder("efficientnet-lite0"), progress=False)
    space = load_concept_space()
    scores = (space.embed_logits(features.logits) @ space.embed_texts(minilm(["a photo of a dog"])).T).ravel()
    top15 = np.argsort(-scores)[:15]
    assert (top15 < 15).sum() >= 13
    assert scores[:15].mean() > scores[15:].mean() + 0.1


def test_concept_tags_name_everyday_objects(opendomain_classes: Path, minilm) -> None:
    """Real opendomain photos of objects Flickr8k captions never show: the concept space tags them right."""
    from vistext.encoders import create_image_encoder
    from vistext.features import encode_files
    from vistext.models.concepts import TAG_TEMPLATES

    classes = ["pizza", "stop_sign", "ceiling_fan", "laptop", "sunflower"]
    labels = ["pizza", "stop sign", "ceiling fan", "laptop", "sunflower"]
    photos = [p for c in classes for p in sorted((opendomain_classes / c).glob("*.jpg"))[:4]]
    features = encode_files(photos, create_image_encoder("efficientnet-lite0"), progress=False)
    space = load_concept_space()
    scores = space.embed_logits(features.logits) @ space.embed_texts(embed_prompted(minilm, labels, TAG_TEMPLATES)).T
    predicted = scores.argmax(axis=1)
    assert (predicted == np.repeat(np.arange(5), 4)).mean() >= 0.75  # 16 of 20 when shipped (release joint: ~0.45)


def test_adaptive_fusion_finds_objects_and_keeps_captions(flickr8k: Path, opendomain_classes: Path, minilm) -> None:
    """The shipped fusion over real photos (everyday objects plus Flickr8k scenes), one vector per image: an
    object query finds its objects, and a Flickr8k caption still finds its own photo."""
    from vistext.datasets import open_caption_dataset
    from vistext.encoders import create_image_encoder
    from vistext.features import encode_files
    from vistext.models.joint import load_joint_model

    objects = [p for c in ("pizza", "stop_sign", "laptop") for p in sorted((opendomain_classes / c).glob("*.jpg"))[:4]]
    by_image = open_caption_dataset(f"flickr8k:{flickr8k}").captions_by_image("test")
    scenes = list(by_image)[:12]
    features = encode_files(objects + scenes, create_image_encoder("efficientnet-lite0"), progress=False)
    space, joint = load_concept_space(), load_joint_model()
    fusion = space.fusion()
    index = fusion.image_vectors(space.embed_logits(features.logits), joint.encode_images(features))

    def search(text: str) -> np.ndarray:
        raw = minilm([text])
        query = fusion.text_vectors(space.embed_texts(raw), joint.encode_text([text]), space.confidence(raw))
        return np.argsort(-(index @ query.T).ravel())

    assert len(set(search("a photo of a pizza")[:4]) & {0, 1, 2, 3}) >= 3
    assert len(set(search("a stop sign")[:4]) & {4, 5, 6, 7}) >= 3
    for i in (0, 5):
        assert 12 + i in search(by_image[scenes[i]][0])[:3]
