"""``vistext train concepts``: the concept-space search of the workshop, end to end on a small slice of the real
opendomain-classes photos and Flickr8k (three classes, a dozen captioned photos), saved and loaded back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import FLICKR8K, require

from vistext.cli import main
from vistext.models.concepts import load_concept_space

OPENDOMAIN = FLICKR8K.parent / "opendomain-classes"
CLASSES = ("dog", "cup", "airplane")


def _class_slice(target: Path) -> Path:
    for name in CLASSES:
        (target / name).mkdir(parents=True)
        for photo in sorted((OPENDOMAIN / name).glob("*.jpg"))[:4]:
            shutil.copy(photo, target / name / photo.name)
    return target


def _flickr_slice(target: Path) -> Path:
    """Six dev and six test photos of Flickr8k with their captions, in Flickr8k's own layout."""
    (target / "images").mkdir(parents=True)
    lines = (FLICKR8K / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines()
    tokens: list[str] = []
    for split in ("dev", "test"):
        names = (FLICKR8K / f"Flickr_8k.{split}Images.txt").read_text().split()[:6]
        (target / f"Flickr_8k.{split}Images.txt").write_text("\n".join(names) + "\n")
        for name in names:
            shutil.copy(FLICKR8K / "images" / name, target / "images" / name)
            tokens += [line for line in lines if line.startswith(f"{name}#")]
    (target / "Flickr8k.token.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return target


@pytest.mark.slow
def test_train_concepts_chooses_saves_and_loads_a_space(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require((FLICKR8K / "images").is_dir(), f"research data absent: Flickr8k not found at {FLICKR8K}")
    require((OPENDOMAIN / "dog").is_dir(), f"research data absent: opendomain-classes not found at {OPENDOMAIN}")
    classes, flickr, out = _class_slice(tmp_path / "classes"), _flickr_slice(tmp_path / "flickr"), tmp_path / "space"
    argv = ["train", "concepts", "--data", str(classes), "--flickr", str(flickr), "--out", str(out), "--json", "-q"]
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out)
    assert summary["out"] == str(out) and 0.0 <= summary["dev_primary"] <= 1.0
    space = load_concept_space(out)
    assert space.label_embeddings.shape == (1000, 384) and np.isfinite(space.label_embeddings).all()
    assert space.top == summary["top"] and space.temperature == summary["temperature"]
    fusion = space.fusion()
    assert fusion.concept_std > 0 and fusion.joint_std > 0 and fusion.low < fusion.high
    card = space.card
    assert card["chosen_on"] == "opendomain-classes dev half (seed 0), vistext train concepts"
    assert len(card["tag_fusion"]["calibration"]) == 2 and set(card["flickr8k_dev"]) == set(card["flickr8k_test"])
