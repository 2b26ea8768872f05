"""Duplicates end to end on real photos: exact copies, resized, re-encoded and cropped copies are found, other
photos are left alone; and the array part (pairs above a threshold -> groups) on its own."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vistext.analysis.duplicates import connected_groups, group_pairs, pair_precision_recall, similar_pairs
from vistext.cli import main
from vistext.errors import UsageError
from vistext.service import Service
from vistext.service.duplicates import DEFAULT_THRESHOLD


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory, real_jpegs: list[Path]) -> Path:
    """Five real photos, plus an exact copy, a half-size copy, a JPEG-quality-40 copy and a 90% crop of the first;
    indexed through the CLI."""
    folder = tmp_path_factory.mktemp("dupes")
    photos = real_jpegs[:5]
    assert len(photos) == 5
    for photo in photos:
        shutil.copy(photo, folder / photo.name)
    first = photos[0]
    shutil.copy(first, folder / "copy.jpg")
    with Image.open(first) as opened:
        picture = opened.convert("RGB")
    picture.resize((picture.width // 2, picture.height // 2), Image.Resampling.LANCZOS).save(folder / "half.jpg")
    picture.save(folder / "q40.jpg", quality=40)
    width, height = int(picture.width * 0.9), int(picture.height * 0.9)
    picture.crop((picture.width - width, 0, picture.width, height)).save(folder / "crop.jpg", quality=90)
    assert main(["index", str(folder), "--no-text", "--quiet"]) == 0
    return folder


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main([*argv, "--json", "--quiet"]) == 0
    return json.loads(capsys.readouterr().out)


def test_exact_and_near_copies_are_grouped(
    collection: Path, real_jpegs: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    answer = _json(capsys, "duplicates", "--db", str(collection))
    assert answer["threshold"] == DEFAULT_THRESHOLD
    kinds = [group["kind"] for group in answer["groups"]]
    assert sorted(kinds) == ["exact", "near"], answer
    exact = next(group for group in answer["groups"] if group["kind"] == "exact")
    near = next(group for group in answer["groups"] if group["kind"] == "near")
    original = real_jpegs[0].name
    assert sorted(Path(image["path"]).name for image in exact["images"]) == sorted(["copy.jpg", original])
    assert all(image["score"] == 1.0 for image in exact["images"])
    # one image per distinct content: the original (or its exact copy) and the three altered copies
    names = {Path(image["path"]).name for image in near["images"]}
    assert names - {original, "copy.jpg"} == {"half.jpg", "q40.jpg", "crop.jpg"} and len(names) == 4
    # the original (most pixels, then the largest file) comes first, the copies follow by similarity to it
    assert Path(near["images"][0]["path"]).name in {original, "copy.jpg"}
    assert near["images"][0]["score"] == pytest.approx(1.0, abs=1e-5)
    scores = [image["score"] for image in near["images"]]
    assert scores == sorted(scores, reverse=True)
    assert all(DEFAULT_THRESHOLD <= image["score"] <= 1.0 for image in near["images"])
    # the other real photos are nobody's duplicate
    grouped = {Path(image["path"]).name for group in answer["groups"] for image in group["images"]}
    assert not grouped & {photo.name for photo in real_jpegs[1:5]}
    assert all(isinstance(image["id"], int) for group in answer["groups"] for image in group["images"])


def test_a_strict_threshold_keeps_only_exact_copies(collection: Path) -> None:
    with Service(db=collection, progress=False) as service:
        strict = service.duplicates(threshold=1.0)
        loose = service.duplicates()
    assert [group.kind for group in strict.groups] == ["exact"]
    assert strict.to_dict()["threshold"] == 1.0
    assert len(loose.groups) == 2
    with Service(db=collection, progress=False) as service, pytest.raises(UsageError, match="threshold"):
        service.duplicates(threshold=1.5)


def test_text_and_contact_sheets(collection: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sheets = tmp_path / "sheets"
    assert main(["duplicates", "--db", str(collection), "--grid", str(sheets), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "group 1: exact, 2 images" in out and "near, 4 images" in out
    assert "q40.jpg" in out and "1 exact, 1 near groups" in out
    files = sorted(path.name for path in sheets.iterdir())
    assert files == ["group-001-exact.png", "group-002-near.png"]
    with Image.open(sheets / "group-002-near.png") as sheet:
        assert sheet.width > 4 * 192 and sheet.height > 192


def test_bad_threshold_is_a_one_line_error(collection: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["duplicates", "--db", str(collection), "--threshold", "2", "--json"]) == 2
    assert "threshold" in json.loads(capsys.readouterr().out)["error"]


def test_pairs_and_groups_on_vectors() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(4, 64)).astype(np.float32)
    # rows 0,4,5 are one photo and two slight variants; row 6 is a variant of row 2; 1 and 3 stand alone
    noisy = [base[0] + 0.05 * rng.normal(size=64), base[0] + 0.05 * rng.normal(size=64), base[2] * 3.0]
    matrix = np.vstack([base, np.asarray(noisy, dtype=np.float32)])
    pairs = similar_pairs(matrix, 0.9, chunk=3)  # chunks smaller than the matrix still find every pair once
    assert sorted((i, j) for i, j, _ in pairs) == [(0, 4), (0, 5), (2, 6), (4, 5)]
    assert all(0.9 <= score <= 1.0 + 1e-6 for _, _, score in pairs)
    groups = connected_groups(len(matrix), pairs)
    assert groups == [[0, 4, 5], [2, 6]]
    precision, recall = pair_precision_recall(group_pairs(groups), {(0, 4), (0, 5), (4, 5), (1, 3)})
    assert precision == pytest.approx(3 / 4) and recall == pytest.approx(3 / 4)
    assert connected_groups(3, []) == []
    with pytest.raises(UsageError):
        similar_pairs(matrix, 1.5)
