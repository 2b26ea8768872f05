"""The match classifier: shapes and save/load on a random model, training on real photos, and the shipped
default model picking the right tag set for clear cases."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from vistext.datasets import TaggedDataset, TaggedImage, open_caption_dataset, tags_from_captions
from vistext.encoders import create_image_encoder
from vistext.errors import ModelError, UsageError
from vistext.evaluation.matching import evaluate, two_choice_accuracy, two_choice_pairs
from vistext.features import encode_files
from vistext.models.card import shipped_dir
from vistext.models.matcher import MatcherSettings, MatchModel, load_matcher, parse_tag_set
from vistext.training.matcher import MatcherTrainConfig, train_matcher


def test_parse_tag_set() -> None:
    assert parse_tag_set("dog  ball grass") == ["dog", "ball", "grass"]
    assert parse_tag_set("dog, red ball ,") == ["dog", "red ball"]
    assert parse_tag_set("   ") == []


def test_random_model_scores_and_roundtrip(tmp_path: Path) -> None:
    model = MatchModel(MatcherSettings(image_dim=32, hidden=8, joint=16))
    image = np.random.default_rng(0).random(32).astype(np.float32)
    sets = [["dog", "ball"], ["snow", "ski", "mountain", "zzqxunknownword"], []]
    scores = model.score(image, sets)
    assert scores.shape == (3,) and np.all((scores > 0) & (scores < 1))
    paired = model.score(np.stack([image] * 3), sets)
    assert np.allclose(scores, paired, atol=1e-6)
    model.save(tmp_path / "m", metrics={"two_choice_accuracy": 0.5})
    loaded = load_matcher(tmp_path / "m")
    assert np.allclose(loaded.score(image, sets), scores, atol=1e-6)
    assert json.loads((tmp_path / "m" / "config.json").read_text())["metrics"]["two_choice_accuracy"] == 0.5
    with pytest.raises(UsageError, match="do not fit"):
        model.score(np.zeros((2, 32)), sets)
    with pytest.raises(UsageError, match="no tag sets"):
        model.score(image, [])
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["format_version"] = 7
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="version"):
        load_matcher(tmp_path / "m")


def test_two_choice_helpers() -> None:
    items = [TaggedImage(Path(f"{i}.jpg"), tags) for i, tags in enumerate([["a"], ["b"], ["a"], [], ["c", "d"]])]
    pairs = two_choice_pairs(items, seed=0)
    assert len(pairs) == 4 and all(set(items[i].tags) != set(items[j].tags) for i, j in pairs)
    assert all(items[j].tags for _, j in pairs)
    assert two_choice_accuracy(np.array([0.9, 0.2, 0.5]), np.array([0.1, 0.3, 0.5])) == pytest.approx(0.5)


@pytest.fixture(scope="module")
def tagged(flickr8k: Path) -> TaggedDataset:
    return tags_from_captions(open_caption_dataset(f"flickr8k:{flickr8k}"), top_n=300)


@pytest.mark.slow
def test_train_small_matcher(tagged: TaggedDataset, tmp_path: Path) -> None:
    path = tmp_path / "tags.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "tags", "split"])
        for split, n in (("train", 150), ("dev", 40)):
            writer.writerows((i.image, "|".join(i.tags), split) for i in tagged.items(split)[:n])
    result = train_matcher(
        MatcherTrainConfig(data=f"csv:{path}", out=tmp_path / "matcher", epochs=1, pretrain_epochs=15, threads=1),
        progress=False,
    )
    assert len(result.history) == 1 and all(np.isfinite(h["loss"]) for h in result.history)
    assert (tmp_path / "matcher" / "model.safetensors").is_file()
    # GloVe-generated word taggers, pre-trained densely, already tell own from foreign tags on 150 photos
    assert result.metrics["validation"]["two_choice_accuracy"] > 0.75
    loaded = load_matcher(tmp_path / "matcher")
    evaluation = evaluate(loaded, f"csv:{path}", split="dev", progress=False)
    assert evaluation.primary == "two_choice_accuracy" and evaluation.metrics["n_pairs"] > 30
    assert result.history[0]["val_two_choice_accuracy"] == result.metrics["validation"]["two_choice_accuracy"]


@pytest.mark.slow
@pytest.mark.skipif(not (shipped_dir("matcher-default") / "config.json").is_file(), reason="no shipped default matcher")
def test_default_matcher_picks_the_right_tag_set(tagged: TaggedDataset) -> None:
    test = [i for i in tagged.items("test") if i.tags][:80]
    features = encode_files([i.image for i in test], create_image_encoder(), progress=False).pooled
    model = load_matcher()
    # clear cases: a dog photo against people/snow/city sets, and a snow photo against beach/dog sets
    dog = next(k for k, i in enumerate(test) if "dog" in i.tags and "snow" not in i.tags)
    scores = model.score(features[dog], [test[dog].tags, ["man", "guitar", "stage"], ["snow", "skier", "mountain"]])
    assert int(np.argmax(scores)) == 0
    # and the two-choice test on these 80 test photos is mostly right
    pairs = two_choice_pairs(test, seed=0)
    own = np.array([model.score(features[i], [test[i].tags])[0] for i, _ in pairs])
    other = np.array([model.score(features[i], [test[j].tags])[0] for i, j in pairs])
    assert two_choice_accuracy(own, other) > 0.85
