"""The model card and weight resolver: one format key for every kind, old cards still read, models found in
``$VISTEXT_HOME/models`` before the shipped ones, one-line errors, and ``load_model`` returning whatever the card
says; plus the lazy public API of ``import vistext``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import vistext
from vistext.errors import ModelError
from vistext.models.card import (
    CARD_FILE,
    KINDS,
    model_kind,
    read_card,
    resolve_model_dir,
    shipped_dir,
    write_card,
)
from vistext.models.concepts import ConceptSpace
from vistext.models.default_tags import DefaultTagVocabulary
from vistext.models.joint import JointModel, load_joint_model
from vistext.models.loading import LOADERS, load_model
from vistext.models.matcher import MatcherSettings, MatchModel, load_matcher
from vistext.models.presence import PresenceModel, save_presence
from vistext.models.tagger import TaggerModel, load_tagger


def _tiny_joint(joint_config: Callable) -> JointModel:
    return JointModel(
        joint_config({"image_head_args": {"hidden": 0, "width": 8}, "text_hidden": 0, "dim": 8, "name": "tiny"})
    )


def _tiny_tagger() -> TaggerModel:
    weights = {
        "mean": np.zeros(4, np.float32),
        "std": np.ones(4, np.float32),
        "classifier.weight": np.eye(2, 4, dtype=np.float32),
        "classifier.bias": np.zeros(2, np.float32),
    }
    return TaggerModel(["dog", "cat"], weights, {"kind": "linear", "feature": "pooled"})


def _card(directory: Path) -> dict:
    return json.loads((directory / CARD_FILE).read_text())


def test_every_kind_writes_format_and_format_version(tmp_path: Path, joint_config: Callable) -> None:
    _tiny_joint(joint_config).save(tmp_path / "joint")
    _tiny_tagger().save(tmp_path / "tagger")
    MatchModel(MatcherSettings(image_dim=4, hidden=2, joint=4)).save(tmp_path / "matcher")
    ConceptSpace(np.eye(4, 3, dtype=np.float32), top=3, temperature=2.0).save(tmp_path / "concepts")
    DefaultTagVocabulary({"dog": [1, 2], "cat": [0]}, n_classes=3).save(tmp_path / "default-tags")
    save_presence(tmp_path / "presence", PresenceModel(np.ones(3, np.float32), -1.0, "some-encoder"))
    assert set(LOADERS) == set(KINDS)  # every kind the card knows has a loader
    for kind in KINDS:
        card = _card(tmp_path / kind)
        assert card["format"] == KINDS[kind].format and card["format_version"] == KINDS[kind].version
        assert "version" not in card
        assert model_kind(tmp_path / kind) == kind
    assert isinstance(load_model(tmp_path / "joint"), JointModel)
    assert isinstance(load_model(tmp_path / "tagger"), TaggerModel)
    assert isinstance(load_model(tmp_path / "matcher", kind="matcher"), MatchModel)
    assert isinstance(load_model(tmp_path / "concepts"), ConceptSpace)
    assert load_model(tmp_path / "default-tags").classes == {"dog": [1, 2], "cat": [0]}
    assert load_model(tmp_path / "presence").bias == -1.0
    assert not list(tmp_path.rglob("*.tmp"))  # the atomic writes left nothing behind


def test_old_version_key_still_loads(tmp_path: Path) -> None:
    tagger = _tiny_tagger()
    tagger.save(tmp_path / "t")
    card = _card(tmp_path / "t")
    del card["format_version"]
    (tmp_path / "t" / CARD_FILE).write_text(json.dumps({**card, "version": 1}))  # as taggers were saved before
    loaded = load_tagger(tmp_path / "t")
    x = np.random.default_rng(0).random((3, 4)).astype(np.float32)
    assert np.allclose(loaded.scores_from_features(x), tagger.scores_from_features(x))
    assert model_kind(tmp_path / "t") == "tagger"
    # the shipped matcher was saved with the old key too
    shipped = read_card(shipped_dir("matcher-default"), "matcher")
    assert shipped["version"] == 1 and "format_version" not in shipped
    assert isinstance(load_model("matcher-default"), MatchModel)


def test_unknown_kind_and_version_are_one_line_errors(tmp_path: Path) -> None:
    write_card(tmp_path / "m", "tagger", {"labels": []})
    (tmp_path / "m" / CARD_FILE).write_text(json.dumps({"format": "vistext-tagger", "format_version": 99}))
    with pytest.raises(ModelError, match="tagger format version 99 is not supported") as error:
        load_model(tmp_path / "m")
    assert "\n" not in str(error.value) and "vistext train tagger" in str(error.value)
    (tmp_path / "m" / CARD_FILE).write_text(json.dumps({"format": "vistext-colouriser", "format_version": 1}))
    with pytest.raises(ModelError, match="not a vistext model .format 'vistext-colouriser'; known: vistext-joint"):
        model_kind(tmp_path / "m")
    with pytest.raises(ModelError, match="not a vistext model"):
        load_model(tmp_path / "m")
    with pytest.raises(ModelError, match="unknown model kind 'colouriser'"):
        load_model(tmp_path / "m", kind="colouriser")
    _tiny_tagger().save(tmp_path / "t")
    with pytest.raises(ModelError, match="not a vistext match model .format 'vistext-tagger'"):
        load_matcher(tmp_path / "t")
    with pytest.raises(ModelError, match="no config.json"):
        model_kind(tmp_path)


def test_home_models_override_shipped_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, joint_config: Callable
) -> None:
    monkeypatch.setenv("VISTEXT_HOME", str(tmp_path / "home"))
    assert resolve_model_dir(None, "joint") == shipped_dir("joint-default")
    _tiny_joint(joint_config).save(tmp_path / "home" / "models" / "joint-default")
    assert resolve_model_dir(None, "joint") == tmp_path / "home" / "models" / "joint-default"
    for model in (load_joint_model(), load_model(), load_model("joint-default"), vistext.load_model()):
        assert isinstance(model, JointModel) and model.name == "tiny" and model.output_dim == 8
    # an explicit directory wins over both
    _tiny_tagger().save(tmp_path / "elsewhere" / "joint-default")
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert isinstance(load_model("joint-default"), TaggerModel)


def test_missing_model_lists_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISTEXT_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError, match="tagger 'birds' not found") as error:
        load_tagger("birds")
    message = str(error.value)
    assert str(tmp_path / "models" / "birds") in message and str(shipped_dir("birds")) in message
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "no" / "such" / "dir")
    with pytest.raises(ModelError, match="no tagger given"):
        resolve_model_dir(None, "tagger")


def test_joint_card_saves_the_encoder_preprocessing(tmp_path: Path, joint_config: Callable) -> None:
    _tiny_joint(joint_config).save(tmp_path / "j")
    assert _card(tmp_path / "j")["image_preprocessing"] == {"size": 224, "mean": 0.5, "std": 0.5}
    assert _card(shipped_dir("joint-default"))["image_preprocessing"] == {"size": 224, "mean": 0.5, "std": 0.5}


def test_import_vistext_is_cheap_and_lazy() -> None:
    code = (
        "import sys, vistext\n"
        "assert not {'torch', 'onnxruntime', 'numpy'} & set(sys.modules), sorted(sys.modules)\n"
        "assert callable(vistext.load_model) and callable(vistext.open_store)\n"
        "assert vistext.Service.__name__ == 'Service' and 'torch' not in sys.modules\n"
        "print(vistext.__version__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == vistext.__version__
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        vistext.nothing  # noqa: B018


def test_a_card_carried_over_keeps_the_kinds_own_format_and_version(tmp_path: Path) -> None:
    """A model re-saved with the fields of a card it was loaded from (an older version among them) is written
    with its kind's current format and version, as every saver relies on."""
    write_card(tmp_path, "concepts", {"format": "something-else", "format_version": 0, "top": 3})
    card = json.loads((tmp_path / "config.json").read_text())
    fresh = json.loads((write_card(tmp_path / "fresh", "concepts", {})).read_text())
    assert (card["format"], card["format_version"]) == (fresh["format"], fresh["format_version"])
    assert card["top"] == 3
