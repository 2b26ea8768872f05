"""Calibration of 0-1 scores: the metrics on hand-made arrays, the judged sets' rule, the query-dependent
reading of fused scores, the vocabulary-joint reading of tags and the fits that make them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vistext.cli.collection import print_hits
from vistext.errors import ModelError, UsageError
from vistext.evaluation.calibration import (
    calibration_metrics,
    expected_calibration_error,
    precision_at_least,
    reliability,
    top_match_kept,
)
from vistext.evaluation.relevance_sets import IRRELEVANT, RELEVANT, UNJUDGED, content_words, forms, judge, tokenise
from vistext.models.concepts import AdaptiveFusion
from vistext.models.open_domain import sure_logits, vocabulary_gap
from vistext.service.results import Hit, SearchResult
from vistext.training.calibration import fit_logistic, fit_search_calibration, fit_tag_calibration


def test_reliability_and_ece_on_known_pairs() -> None:
    scores = np.array([0.05, 0.05, 0.95, 0.95, 0.95, 0.95])
    relevant = np.array([0, 0, 1, 1, 1, 0])
    bins = reliability(scores, relevant)
    assert (bins[0].count, bins[0].precision) == (2, 0.0)
    assert (bins[-1].count, bins[-1].precision) == (4, 0.75)
    assert expected_calibration_error(scores, relevant) == pytest.approx((2 * 0.05 + 4 * 0.2) / 6)
    assert reliability(np.array([1.0]), np.array([1]))[-1].count == 1  # 1.0 falls in the last bin
    assert precision_at_least(scores, relevant, 0.5) == (0.75, 4)


def test_top_match_kept_counts_queries_whose_best_judged_photo_is_relevant() -> None:
    scores = np.array([[0.9, 0.1, 0.99], [0.3, 0.2, 0.1], [0.8, 0.9, 0.0]])
    judgements = np.array([[1, 0, -1], [1, 0, 0], [1, 0, 0]])  # query 3's best is irrelevant: not counted
    assert top_match_kept(scores, judgements) == (0.5, 2)
    metrics = calibration_metrics(scores, judgements)
    assert metrics["top_queries"] == 2 and metrics["n>=0.5"] == 3


def test_judge_needs_two_captions_and_none_for_irrelevant() -> None:
    captions = [
        ["A dog runs .", "Two puppies play .", "A field ."],  # two name it (plural synonym counts)
        ["A dog .", "A field .", "Grass ."],  # one: unjudged
        ["A cat .", "A cat sleeps .", "A sofa ."],  # none: irrelevant
        ["A red car .", "The red cars race .", "A car ."],
    ]
    tokens = tokenise(captions)
    assert judge(tokens, forms("dog", ("puppy", "puppies"))).tolist() == [RELEVANT, UNJUDGED, IRRELEVANT,
                                                                          IRRELEVANT]  # fmt: skip
    assert judge(tokens, forms("car"), "red").tolist() == [IRRELEVANT, IRRELEVANT, IRRELEVANT, RELEVANT]
    assert forms("bus") == {"bus", "buses"} and "children" in forms("child")


def test_content_words_fold_plurals_and_drop_stop_words() -> None:
    assert content_words("Two dogs run on the grass .") == {"dog", "run", "grass"}
    assert content_words("A bus is in the street") == {"bus", "street"}  # "bus" keeps its s (3 letters)


def test_query_weights_are_read_back_from_query_vectors() -> None:
    fusion = AdaptiveFusion(0.1, 0.1, -0.2, 0.05, low=0.4, high=0.8, max_weight=0.9)
    rng = np.random.default_rng(0)
    concept, joint = rng.normal(size=(3, 6)), rng.normal(size=(3, 5))
    texts = fusion.text_vectors(concept, joint, np.array([0.3, 0.6, 0.9]))
    assert np.allclose(fusion.query_weights(texts), [0.0, 0.45, 0.9], atol=1e-5)


def test_six_number_calibration_depends_on_the_query_weight() -> None:
    # slope 1 + 2w, intercept -2 - w: at w = 0 a score of 2 is 0.5, at w = 1 a score of 1 is 0.5
    fusion = AdaptiveFusion(0.1, 0.1, -0.2, 0.05, 0.4, 0.8, 0.9, calibration=(1.0, 2.0, 0.0, -2.0, -1.0, 0.0))
    assert fusion.relevance(np.array([2.0, 1.0]), np.array([0.0, 1.0])) == pytest.approx([0.5, 0.5])
    assert fusion.relevance(np.array([[3.0, 0.0]]), np.array([[1.0]]))[0, 0] > 0.99
    with pytest.raises(ModelError, match="query weights"):
        fusion.relevance(np.array([1.0]))
    with pytest.raises(ModelError, match="2 or 6"):
        AdaptiveFusion(0.1, 0.1, -0.2, 0.05, 0.4, 0.8, 0.9, calibration=(1.0, 2.0, 3.0))
    assert AdaptiveFusion.from_card(fusion.to_card()) == fusion


def test_vocabulary_gap_penalises_words_below_the_best_other() -> None:
    scores = np.array([[5.0, 1.0], [4.5, 3.0], [1.0, 3.0]])  # photo 1: two close words; photo 2: a tie
    assert vocabulary_gap(scores).tolist() == [[0.0, -2.0], [-0.5, 0.0], [-4.0, 0.0]]
    assert vocabulary_gap(np.array([[2.0, -1.0]])).tolist() == [[0.0, 0.0]]  # a word alone is not penalised


def test_fits_recover_known_calibrations() -> None:
    rng = np.random.default_rng(3)
    scores, weights = rng.normal(size=(40, 300)) * 3, rng.uniform(0, 1, size=40)
    truth = 1 / (1 + np.exp(-((1 + 2 * weights[:, None]) * scores - 2)))
    judgements = (rng.uniform(size=scores.shape) < truth).astype(np.int8)
    a0, a1, a2, b0, b1, b2 = fit_search_calibration([scores], [weights], [judgements])
    assert (a0, a1, b0) == pytest.approx((1.0, 2.0, -2.0), abs=0.5) and abs(a2) < 1 and abs(b1) < 1.5
    words = rng.normal(size=(6, 2000)) * 2
    logit = words - 1 + 1.5 * vocabulary_gap(words)
    tags = (rng.uniform(size=words.shape) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    fit = fit_tag_calibration([words], [tags])
    assert fit["calibration"] == pytest.approx([1.0, -1.0], abs=0.2)
    assert fit["competition"] == pytest.approx(1.5, abs=0.3)


def test_the_tag_fit_keeps_its_promises_on_every_dev_vocabulary() -> None:
    rng = np.random.default_rng(5)

    def vocabulary(confusion: float) -> tuple[np.ndarray, np.ndarray]:
        """Six words, 3,000 photos; with ``confusion`` of the photos the model scores a wrong word highest, and
        nearly as confidently as a right one (glaciers read as mountains)."""
        truth = rng.integers(0, 6, size=3000)
        confused = rng.uniform(size=3000) < confusion
        scores = rng.normal(size=(6, 3000))
        scores[np.where(confused, (truth + 1) % 6, truth), np.arange(3000)] += np.where(confused, 5.5, 6.0)
        judgements = np.zeros((6, 3000), dtype=np.int8)
        judgements[truth, np.arange(3000)] = 1
        return scores, judgements

    sets = [vocabulary(0.05), vocabulary(0.05), vocabulary(0.3)]
    features = [np.stack([scores, vocabulary_gap(scores)], axis=-1) for scores, _ in sets]
    a, c, b = fit_logistic(features, [j for _, j in sets], intercept=True)
    confused = 1 / (1 + np.exp(-(features[2] @ np.array([a, c]) + b)))
    assert precision_at_least(confused, sets[2][1] == 1, 0.8)[0] < 0.8  # the plain fit breaks it on the third
    fit = fit_tag_calibration([scores for scores, _ in sets], [j for _, j in sets])
    assert fit["calibration"] == pytest.approx([a, b]) and 0.3 <= fit["sure_scale"] < 1.0
    for (scores, judgements), x in zip(sets, features, strict=True):
        logit = fit["calibration"][0] * scores + fit["calibration"][1] + fit["competition"] * vocabulary_gap(scores)
        p = 1 / (1 + np.exp(-sure_logits(logit, fit["sure_scale"])))
        assert ((p >= 0.5) == (x @ np.array([a, c]) + b >= 0)).all()  # only readings above 0.5 moved
        for t in (0.5, 0.8):
            precision, n = precision_at_least(p, judgements == 1, t)
            assert n > 0 and precision >= t


def test_the_cli_says_when_no_hit_is_a_strong_match(capsys: pytest.CaptureFixture[str]) -> None:
    weak = SearchResult("a giraffe", [Hit("/p/a.jpg", 0.31, 1), Hit("/p/b.jpg", 0.2, 2)], strong_score=0.5)
    print_hits(weak, as_json=False)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "no strong match for a giraffe; closest:" and "/p/a.jpg" in lines[1]
    strong = SearchResult("a dog", [Hit("/p/a.jpg", 0.7, 1)], strong_score=0.5)
    print_hits(strong, as_json=False)
    assert "no strong match" not in capsys.readouterr().out
    assert not SearchResult("x", [Hit("/p/a.jpg", 0.1, 1)]).only_weak  # uncalibrated scores are never "weak"


def test_open_domain_relevance_reads_each_query_with_its_own_weight() -> None:
    from vistext.service.loaded_models import LoadedModels

    fused = LoadedModels().open_domain
    if fused is None:
        pytest.skip("the shipped fused space needs the bundled joint model's ONNX export")
    texts = fused.text_vectors(["a pizza", "a man in a red shirt climbs a rock"])
    scores = np.array([[4.0, 1.0, -2.0], [4.0, 1.0, -2.0]])
    expected = fused.fusion.relevance(scores, fused.fusion.query_weights(texts)[:, None])
    assert np.allclose(fused.relevance(scores, texts), expected)
    cosines = scores[0] / (np.linalg.norm(texts[0]) * np.sqrt(3.0))
    assert np.allclose(fused.from_cosines(texts[0], cosines), expected[0], atol=1e-5)
    assert fused.fusion.query_weights(texts)[0] > fused.fusion.query_weights(texts)[1]  # a class name leans on concepts


def test_judged_sets_from_the_research_data(flickr8k: Path, opendomain_classes: Path) -> None:
    from vistext.evaluation.relevance_sets import MIN_RELEVANT, flickr8k_caption_set, flickr8k_sets, opendomain_sets

    search, scenes = flickr8k_sets(flickr8k, "dev")
    assert "a dog" in search.texts and len(search.paths) == 1000
    assert (search.relevant.sum(axis=1) >= MIN_RELEVANT).all() and (search.judgements == UNJUDGED).any()
    assert "beach" in scenes.texts and (scenes.relevant.sum(axis=0) >= 2).any()  # some photos rightly show two
    captions = flickr8k_caption_set(flickr8k, "test")
    assert (captions.relevant == np.eye(len(captions.paths), dtype=bool)).all()
    queries, labels = opendomain_sets(opendomain_classes, "test")
    assert len(queries.texts) == 26 and "an airplane" in queries.texts
    assert (labels.relevant.sum(axis=0) == 1).all()  # one right label per photo


def test_class_folders_become_a_tag_set_and_a_search_set_with_overlaps_unjudged(tmp_path: Path) -> None:
    from PIL import Image

    from vistext.evaluation.relevance_sets import class_folder_search_set, class_folder_tag_set

    for label, colour in (("buildings", "grey"), ("glacier", "white"), ("mountain", "brown")):
        (tmp_path / label).mkdir()
        for i in range(2):
            Image.new("RGB", (32, 32), colour).save(tmp_path / label / f"{i}.jpg")
    tags = class_folder_tag_set(tmp_path, "folder scenes check")
    assert tags.texts == ["buildings", "glacier", "mountain"]
    assert tags.judgements.tolist() == [[1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1]]
    search = class_folder_search_set(tags, "search scenes check", [("mountain", "glacier"), ("glacier", "mountain")])
    assert search.texts == ["buildings", "a glacier", "a mountain"] and search.paths == tags.paths
    assert search.judgements.tolist() == [[1, 1, 0, 0, 0, 0], [0, 0, 1, 1, -1, -1], [0, 0, -1, -1, 1, 1]]
    assert tags.judgements[1, 4] == 0  # the tag set is left as it was
    with pytest.raises(UsageError, match="no class folder named 'forest'"):
        class_folder_search_set(tags, "x", [("forest", "glacier")])


def test_flickr8k_human_judgements_become_judged_sets(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from vistext.evaluation.relevance_sets import flickr8k_human_sets

    root, notes = tmp_path / "flickr8k", tmp_path / "text"
    root.mkdir()
    notes.mkdir()
    names = ["1_a.jpg", "2_b.jpg", "3_c.jpg"]
    (root / "Flickr8k.token.txt").write_text(
        "".join(f"{name}#{n}\t{name} caption {n} .\n" for name in names for n in range(5)), encoding="utf-8"
    )
    (notes / "ExpertAnnotations.txt").write_text(
        "1_a.jpg\t2_b.jpg#2\t4\t3\t3\n"  # mean 3.3: relevant
        "1_a.jpg\t3_c.jpg#2\t1\t2\t2\n"  # mean 1.7: irrelevant
        "2_b.jpg\t3_c.jpg#2\t2\t3\t3\n",  # mean 2.7: unjudged
        encoding="utf-8",
    )
    (notes / "CrowdFlowerAnnotations.txt").write_bytes(
        b"1_a.jpg\t1_a.jpg#2\t1\t3\t0\n"  # relevant
        b"2_b.jpg\t1_a.jpg#2\t0.333333\t1\t2\n"  # irrelevant
        b"3_c.jpg\t1_a.jpg#2\t0.5\t2\t2\n"  # unjudged
        b"\xff\xff\xff7_z.jpg\t1_a.jpg#2\t0\t0\t3\n"  # a damaged line
        b"9_q.jpg\t1_a.jpg#2\t0\t0\t3\n"  # a photo Flickr8k lacks
    )
    with caplog.at_level("WARNING"):
        experts, crowd = flickr8k_human_sets(root, notes)
    assert "2 lines skipped" in caplog.text
    assert experts.name == "flickr8k experts test" and crowd.name == "flickr8k crowd test"
    assert experts.texts == ["2_b.jpg caption 2 .", "3_c.jpg caption 2 ."]
    assert [Path(p).name for p in experts.paths] == ["1_a.jpg", "2_b.jpg"]
    assert experts.judgements.tolist() == [[RELEVANT, UNJUDGED], [IRRELEVANT, UNJUDGED]]
    assert crowd.texts == ["1_a.jpg caption 2 ."] and crowd.judgements.tolist() == [[RELEVANT, IRRELEVANT, UNJUDGED]]
    (notes / "ExpertAnnotations.txt").unlink()
    assert [s.name for s in flickr8k_human_sets(root, notes)] == ["flickr8k crowd test"]  # a missing file is left out


def test_words_of_one_vocabulary_compete_with_weights_pulled_to_their_mean() -> None:
    from vistext.models.open_domain import VOCABULARY_SHARE
    from vistext.service.loaded_models import LoadedModels

    fused = LoadedModels().open_domain
    if fused is None:
        pytest.skip("the shipped fused space needs the bundled joint model's ONNX export")
    words = ["mountain", "forest", "glacier"]  # a node of alps and volcanoes; two words no class names
    alone = fused.tag_fusion.query_weights(fused.tag_vectors(words))
    together = fused.tag_fusion.query_weights(fused.tag_vectors(words, vocabulary=True))
    assert alone[0] > 0.8 and alone[1] < 0.3  # each word on its own leans on the space that knows it
    expected = (1 - VOCABULARY_SHARE) * alone + VOCABULARY_SHARE * alone.mean()
    assert np.allclose(together, expected, atol=1e-4)
    one = fused.tag_vectors(["forest"], vocabulary=True)  # a word offered alone keeps its own weight
    assert np.allclose(fused.tag_fusion.query_weights(one), alone[1], atol=1e-4)
