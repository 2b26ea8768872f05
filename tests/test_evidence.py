"""Region evidence and hypernym nodes: the maths on hand-made arrays, the classifier on the real grid, and the
shipped concept space routing a query the classifier cannot see to the joint model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vistext.errors import ModelError
from vistext.models.concept_nodes import ConceptNodes, default_tag_nodes
from vistext.models.concepts import ConceptSpace, class_probabilities, load_concept_space
from vistext.models.evidence import RegionEvidence, window_boxes


def test_windows_overlap_and_cover_the_grid() -> None:
    assert window_boxes((7,)) == [(0, 7, 0, 7)]
    quadrants = window_boxes((4,))
    assert quadrants == [(0, 4, 0, 4), (0, 4, 3, 7), (3, 7, 0, 4), (3, 7, 3, 7)]
    assert len(window_boxes((3,))) == 9 and len(window_boxes((7, 4, 3))) == 14
    with pytest.raises(ModelError, match="1..7 cells"):
        RegionEvidence((7, 8))
    with pytest.raises(ModelError, match="pooling"):
        RegionEvidence((7, 4), "mean")


def _corner_photo() -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """A 3-class linear classifier on 2-d features; the grid shows class 1 in one 3x3 corner only, background
    (class 0) everywhere else, so the whole frame's mean hardly shows class 1."""
    weight, bias = np.array([[4.0, 0.0], [0.0, 4.0], [0.0, 0.0]], np.float32), np.zeros(3, np.float32)
    grid = np.zeros((1, 2, 7, 7), np.float32)
    grid[0, 0] = 1.0
    grid[0, :, :3, :3] = np.array([0.0, 1.0])[:, None, None]
    logits = grid.mean(axis=(2, 3)) @ weight.T + bias
    return logits, grid, (weight, bias)


def test_a_corner_object_counts_through_its_window() -> None:
    logits, grid, classifier = _corner_photo()
    whole = np.exp(RegionEvidence().evidence(logits, None, classifier))[0]
    pooled = np.exp(RegionEvidence((7, 3), "max").evidence(logits, grid, classifier))[0]
    noisy = np.exp(RegionEvidence((7, 3), "noisy-or").evidence(logits, grid, classifier))[0]
    assert whole[1] < 0.1 and pooled[1] > 0.9  # the corner window sees the object the whole frame drowns
    assert np.all(noisy >= pooled - 1e-6)  # at least one view shows it: never less than the best view
    weak = np.exp(RegionEvidence((7, 3), "max", region_weight=0.25).evidence(logits, grid, classifier))[0]
    assert weak[1] == pytest.approx(0.25 * pooled[1], rel=1e-4)
    with pytest.raises(ModelError, match="7x7 feature grid"):
        RegionEvidence((7, 3)).evidence(logits, None, classifier)


def test_whole_frame_evidence_is_read_exactly_as_logits() -> None:
    """log of the whole frame's probabilities tempered and cut at top-T is the logits tempered and cut: a space
    without windows gives the release's vectors."""
    logits = np.random.default_rng(0).normal(0, 3, (4, 50)).astype(np.float32)
    evidence = RegionEvidence().evidence(logits, None, (np.zeros((50, 1)), np.zeros(50)))
    assert np.allclose(class_probabilities(evidence, 5.0, 10), class_probabilities(logits, 5.0, 10), atol=1e-6)


def test_the_classifier_is_linear_on_the_real_grid(flickr8k_images: list[Path]) -> None:
    from vistext.encoders import create_image_encoder
    from vistext.encoders.efficientnet import classifier_weights
    from vistext.images import open_image

    encoder = create_image_encoder("efficientnet-lite0")
    features = encoder.encode(encoder.preprocess(open_image(flickr8k_images[0]))[None], grid=True)
    weight, bias = classifier_weights()
    assert features.grid is not None and features.logits is not None
    again = features.grid.mean(axis=(2, 3)) @ weight.T + bias
    assert np.abs(again - features.logits).max() < 1e-3


def test_nodes_sum_their_classes_and_meet_the_word() -> None:
    nodes = ConceptNodes(["dog"], [[0, 1]], weight=1.0, n_classes=3)
    probabilities = np.array([[0.4, 0.4, 0.2]], np.float32)
    assert nodes.evidence(probabilities) == pytest.approx(np.array([[0.8]]))
    # labels: two breeds, a cat, then the node "dog"; the query "dog" is the node's own embedding
    labels = np.array([[1, 0.2, 0, 0], [0.2, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], np.float32)
    plain = ConceptSpace(labels[:3], top=3, temperature=1.0)
    with_node = ConceptSpace(labels, top=3, temperature=1.0, nodes=nodes)
    logits = np.log(probabilities)
    query = np.array([[0, 0, 0, 1.0]], np.float32)
    assert with_node.n_classes == 3 and with_node.embed_logits(logits).shape == (1, 4)
    with_score = (with_node.embed_logits(logits) @ with_node.embed_texts(query).T)[0, 0]
    assert with_score > 0.5 and with_node.confidence(query)[0] == pytest.approx(1.0)
    # without the node the word "dog" names no label: no evidence and no confidence
    assert plain.confidence(np.array([[0, 0, 0.0001, 1.0]], np.float32))[0] < 0.01
    with pytest.raises(ModelError, match="class indices"):
        ConceptNodes(["x"], [[5]], n_classes=3)


def test_nodes_and_regions_round_trip(tmp_path: Path) -> None:
    nodes = default_tag_nodes(0.5, ["dog", "vehicle"])
    assert len(nodes.classes[0]) >= 118  # every dog breed under "dog"
    space = ConceptSpace(np.eye(1002, 8, dtype=np.float32), top=5, temperature=2.0, nodes=nodes,
                         regions=RegionEvidence((7, 4), "max", 0.5))  # fmt: skip
    back = load_concept_space(space.save(tmp_path / "c"))
    assert back.nodes is not None and back.nodes.words == ["dog", "vehicle"] and back.nodes.weight == 0.5
    assert back.regions == space.regions and back.n_classes == 1000
    assert np.allclose(back.embed_logits(np.zeros((1, 1000))), space.embed_logits(np.zeros((1, 1000))))


def test_object_queries_judge_photos_by_their_other_captions() -> None:
    from vistext.evaluation.object_queries import evaluate_object_queries, object_queries

    captions = [
        ["A dog runs .", "Two dogs play .", "A brown dog .", "A field .", "Grass ."],  # relevant: 3 name it
        ["A dog sits .", "A man .", "A bench .", "A park .", "A tree ."],  # one caption: left out
        ["A man rides a bike .", "A cyclist .", "A road .", "A man .", "A hill ."],  # irrelevant
        ["Dogs swim .", "A dog in water .", "A lake .", "Water .", "A swimmer ."],  # relevant
    ]
    [query] = object_queries(captions, nouns=("dog", "cat"), min_relevant=2)
    assert query.text == "a dog" and query.relevant.tolist() == [0, 3] and query.irrelevant.tolist() == [2]
    # a scorer ranking the left-out photo first and an irrelevant one above a relevant one
    scores = np.array([[0.9, 1.0, 0.8, 0.1]])
    m = evaluate_object_queries(lambda texts: scores, [query])
    assert m["queries"] == 1 and m["p@5"] == pytest.approx(2 / 3) and m["map"] == pytest.approx((1 + 2 / 3) / 2)


def test_indexing_stores_region_evidence_computed_from_the_grid(
    flickr8k_images: list[Path], tmp_path: Path, copy_photos
) -> None:
    """A concept space with windows: indexing hands its projector the grid, the stored vectors are the ones
    ``project`` gives from the grid, and the space has its own name (never mixed with whole-frame vectors)."""
    from dataclasses import replace

    from vistext.encoders import ImageFeatures, create_image_encoder
    from vistext.images import open_image
    from vistext.indexing.local import index_folder
    from vistext.models.joint_onnx import load_query_model
    from vistext.models.open_domain import OpenDomainModel
    from vistext.store import open_store

    joint, shipped = load_query_model(), load_concept_space()
    whole = OpenDomainModel(joint, shipped, "test")  # type: ignore[arg-type]
    fused = OpenDomainModel(joint, replace(shipped, regions=RegionEvidence((7, 4), "max", 0.5)), "test")  # type: ignore[arg-type]
    assert fused.needs_grid and not whole.needs_grid and fused.space != whole.space
    folder = copy_photos(flickr8k_images[:3], tmp_path / "photos")

    def project(features: ImageFeatures) -> np.ndarray:
        return fused.project(features)

    project.needs_grid = True  # type: ignore[attr-defined]
    encoder = create_image_encoder("efficientnet-lite0")
    with open_store(tmp_path / "catalogue.sqlite") as store:
        index_folder(folder, store, encoder, projectors={fused.space: project}, progress=False)
        stored = {r.path: r.embeddings[fused.space] for r in store.records()}
    for path, vector in stored.items():
        features = encoder.encode(encoder.preprocess(open_image(Path(path)))[None], grid=True)
        assert np.abs(fused.project(features)[0] - vector).max() < 2e-3
    with pytest.raises(ModelError, match="7x7 feature grid"):
        fused.project(ImageFeatures(pooled=features.pooled, logits=features.logits))


def test_the_shipped_space_leaves_what_the_classifier_cannot_see_to_the_joint_model() -> None:
    """Broad words meet their hypernym node and lean on the concept space; "a giraffe" (no ImageNet class, no
    node) keeps a low label confidence, so the fusion gives the concept space almost no weight."""
    from vistext.models.joint_onnx import load_query_model

    space = load_concept_space()
    assert space.nodes is not None and {"dog", "vehicle", "food", "bird"} <= set(space.nodes.words)
    assert "giraffe" not in space.nodes.words
    texts = ["a giraffe", "someone surfing", "a dog", "a vehicle", "a bird"]
    _, minilm = load_query_model().encode_text_and_minilm(texts)  # type: ignore[union-attr]
    weights = dict(zip(texts, space.fusion().weights(space.confidence(minilm)), strict=True))
    assert weights["a giraffe"] < 0.15 and weights["someone surfing"] < 0.15, weights
    assert min(weights["a dog"], weights["a vehicle"], weights["a bird"]) >= 0.8, weights
