"""Duplicates end to end on real photos: copies (the same bytes, resized, re-encoded, cropped, EXIF-rotated) form
one group with the one to keep first, other photos are left alone, similar shots come without a keep, a second
run decodes no photo, and a FIFO in place of an indexed copy is skipped in one line instead of hanging; and the
array part (links in blocks -> groups through a union-find) on its own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vistext.service.copies as copies_service
from vistext.analysis.duplicates import (
    copy_links,
    cosine_links,
    group_pairs,
    hash_links,
    linked_groups,
    pair_precision_recall,
)
from vistext.analysis.picture_hash import hamming_block, hash_picture
from vistext.cli import main
from vistext.errors import UsageError
from vistext.service import Service
from vistext.service.duplicates import DEFAULT_THRESHOLD

COPIES = ("copy.jpg", "half.jpg", "q40.jpg", "crop.jpg", "rotated.jpg")


def _make_copies(first: Path, folder: Path) -> None:
    """An exact copy (newer), a half-size, a JPEG-quality-40, a 5 % crop and an EXIF-rotated copy of ``first``."""
    shutil.copy(first, folder / "copy.jpg")
    os.utime(folder / "copy.jpg", (first.stat().st_mtime + 3600,) * 2)  # the newer exact copy: not the one to keep
    with Image.open(first) as opened:
        picture = opened.convert("RGB")
    picture.resize((picture.width // 2, picture.height // 2), Image.Resampling.LANCZOS).save(folder / "half.jpg")
    picture.save(folder / "q40.jpg", quality=40)
    width, height = int(picture.width * 0.95), int(picture.height * 0.95)
    picture.crop((picture.width - width, 0, picture.width, height)).save(folder / "crop.jpg", quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown after a 270-degree turn: undoes the 90-degree turn of the stored pixels
    picture.transpose(Image.Transpose.ROTATE_90).save(folder / "rotated.jpg", quality=92, exif=exif)


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory, real_jpegs: list[Path]) -> Path:
    """Five real photos and five copies of the first; indexed through the CLI."""
    folder = tmp_path_factory.mktemp("dupes")
    photos = real_jpegs[:5]
    assert len(photos) == 5
    for photo in photos:
        shutil.copy2(photo, folder / photo.name)
    _make_copies(folder / photos[0].name, folder)
    assert main(["index", str(folder), "--no-text", "--quiet"]) == 0
    return folder


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main([*argv, "--json", "--quiet"]) == 0
    return json.loads(capsys.readouterr().out)


def test_copies_form_one_group_with_the_one_to_keep_first(
    collection: Path, real_jpegs: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    answer = _json(capsys, "duplicates", "--db", str(collection))
    assert answer["threshold"] == DEFAULT_THRESHOLD and answer["skipped"] == [] and answer["copy_distance"] > 0
    copies = [group for group in answer["groups"] if group["kind"] == "copies"]
    assert len(copies) == 1, answer
    group = copies[0]
    original = real_jpegs[0].name
    names = [Path(image["path"]).name for image in group["images"]]
    assert sorted(names) == sorted([original, *COPIES])
    # the original: as many pixels as the exact copy, the same EXIF and size, but older; then its exact copy
    assert names[0] == original and group["keep"] == group["images"][0]["id"]
    matches = {Path(image["path"]).name: image["match"] for image in group["images"]}
    assert matches == {original: "keep", "copy.jpg": "exact", **{name: "copy" for name in COPIES[1:]}}
    assert all(0.0 < image["score"] <= 1.0 for image in group["images"])
    # the other real photos are nobody's copy, and similar shots never carry a keep
    assert not {photo.name for photo in real_jpegs[1:5]} & set(names)
    assert all(group["keep"] is None for group in answer["groups"] if group["kind"] == "similar")


def test_similar_shots_have_no_keep_and_copies_stand_in_once(collection: Path) -> None:
    with Service(db=collection, progress=False) as service:
        loose = service.duplicates(threshold=0.05)  # everything is "the same scene" at this similarity
    kinds = [group.kind for group in loose.groups]
    assert kinds == ["copies", "similar"], kinds
    similar = loose.groups[1]
    assert similar.keep is None and all(image.match == "" for image in similar.images)
    names = [Path(image.path).name for image in similar.images]
    assert len(names) == 5 and not set(names) & set(COPIES)  # the copies' group stands in by its kept file
    with Service(db=collection, progress=False) as service, pytest.raises(UsageError, match="threshold"):
        service.duplicates(threshold=1.5)


def test_a_second_run_reads_no_photo(
    collection: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["duplicates", "--db", str(collection), "--json", "--quiet"]) == 0  # the CLI fills the cache too
    first = json.loads(capsys.readouterr().out)
    with Service(db=collection, progress=False) as service:
        rows = service.store().picture_hashes(r.sha for r in service.store().records())
    assert len(rows) == 5 + len(COPIES) - 1  # one row per distinct content (the exact copy shares one)

    def no_decoding(path: object) -> object:
        raise AssertionError(f"{path} was decoded again")

    monkeypatch.setattr(copies_service, "hash_photo", no_decoding)
    with Service(db=collection, progress=False) as service:
        assert service.duplicates().to_dict() == first


def test_text_and_contact_sheets(collection: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sheets = tmp_path / "sheets"
    assert main(["duplicates", "--db", str(collection), "--grid", str(sheets), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "group 1: copies, 6 images" in out and "keep " in out and "q40.jpg" in out
    assert "1 groups of copies (5 files could go)" in out
    assert [path.name for path in sorted(sheets.iterdir())][0] == "group-001-copies.png"
    with Image.open(sheets / "group-001-copies.png") as sheet:
        assert sheet.width > 5 * 192 and sheet.height > 192


def test_help_states_the_keep_rule(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["duplicates", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "most pixels" in text and "camera's EXIF" in text and "oldest" in text and "similar shots" in text


def test_bad_threshold_is_a_one_line_error(collection: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["duplicates", "--db", str(collection), "--threshold", "2", "--json"]) == 2
    assert "threshold" in json.loads(capsys.readouterr().out)["error"]


def test_a_fifo_in_place_of_a_copy_is_skipped_not_waited_on(tmp_path: Path, real_jpegs: list[Path]) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in real_jpegs[:2]:
        shutil.copy2(photo, folder / photo.name)
    with Image.open(real_jpegs[0]) as opened:
        opened.convert("RGB").resize((opened.width // 2, opened.height // 2)).save(folder / "half.jpg")
    assert main(["index", str(folder), "--no-text", "--quiet"]) == 0
    (folder / "half.jpg").unlink()
    os.mkfifo(folder / "half.jpg")  # nobody ever writes to it: a reader that opens it blocks for good
    command = "import sys; from vistext.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run(
        [sys.executable, "-c", command, "duplicates", "--db", str(folder), "--json", "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert [Path(s["path"]).name for s in answer["skipped"]] == ["half.jpg"]
    assert "FIFO" in answer["skipped"][0]["reason"] and "\n" not in answer["skipped"][0]["reason"]
    assert all("half.jpg" not in image["path"] for group in answer["groups"] for image in group["images"])


def test_links_in_blocks_and_groups_on_vectors() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(4, 64)).astype(np.float32)
    # rows 0,4,5 are one photo and two slight variants; row 6 is a variant of row 2; 1 and 3 stand alone
    noisy = [base[0] + 0.05 * rng.normal(size=64), base[0] + 0.05 * rng.normal(size=64), base[2] * 3.0]
    matrix = np.vstack([base, np.asarray(noisy, dtype=np.float32)])
    blocks = list(cosine_links(matrix, 0.9, block_cells=14))  # two rows per block: every pair still found once
    assert len(blocks) >= 4
    pairs = sorted((int(i), int(j)) for rows, cols in blocks for i, j in zip(rows, cols, strict=True))
    assert pairs == [(0, 4), (0, 5), (2, 6), (4, 5)]
    groups = linked_groups(len(matrix), cosine_links(matrix, 0.9))
    assert groups == [[0, 4, 5], [2, 6]]
    precision, recall = pair_precision_recall(group_pairs(groups), {(0, 4), (0, 5), (4, 5), (1, 3)})
    assert precision == pytest.approx(3 / 4) and recall == pytest.approx(3 / 4)
    assert linked_groups(3, []) == []
    with pytest.raises(UsageError):
        next(cosine_links(matrix, 1.5))


def _root(parent: list[int], node: int) -> int:
    while parent[node] != node:
        node = parent[node]
    return node


def test_union_find_matches_a_plain_one_on_random_graphs() -> None:
    rng = np.random.default_rng(1)
    for _ in range(30):
        n, m = int(rng.integers(2, 150)), int(rng.integers(0, 250))
        a, b = rng.integers(0, n, m), rng.integers(0, n, m)
        parent = list(range(n))
        for x, y in zip(a.tolist(), b.tolist(), strict=True):
            parent[max(_root(parent, x), _root(parent, y))] = min(_root(parent, x), _root(parent, y))
        members: dict[int, list[int]] = {}
        for node in range(n):
            members.setdefault(_root(parent, node), []).append(node)
        expected = sorted((g for g in members.values() if len(g) > 1), key=lambda g: (-len(g), g[0]))
        assert linked_groups(n, [(a[i : i + 7], b[i : i + 7]) for i in range(0, m, 7)]) == expected


def test_hashes_and_their_distances(real_jpegs: list[Path]) -> None:
    with Image.open(real_jpegs[0]) as opened:
        picture = opened.convert("RGB")
    with Image.open(real_jpegs[1]) as opened:
        other = opened.convert("RGB")
    same = hash_picture(picture)
    smaller = hash_picture(picture.resize((picture.width // 3, picture.height // 3)))
    different = hash_picture(other)
    codes = np.array([[h.dct, h.diff] for h in (same, smaller, different)], dtype=np.int64)
    distance = hamming_block(codes, codes)
    assert distance.tolist()[0][0] == 0 and distance[0, 1] <= 8 and distance[0, 2] > 30
    reference = [
        [sum(bin((int(x) ^ int(y)) & (2**64 - 1)).count("1") for x, y in zip(r, c, strict=True)) for c in codes]
        for r in codes
    ]
    assert distance.tolist() == reference
    assert sorted(linked_groups(3, hash_links(codes, 8))) == [[0, 1]]


def test_the_hash_cache_is_keyed_by_content_in_each_backend(store_location: Path | str) -> None:
    from vistext.store import open_store

    big = (1 << 63) - 1
    with open_store(store_location) as store:
        assert store.picture_hashes(["a" * 40]) == {}
        store.set_picture_hashes({"a" * 40: (-(1 << 63), big), "b" * 40: (0, -1)})
        store.set_picture_hashes({"a" * 40: (1, 1)})  # a content's hashes never change: the first row stays
        assert store.picture_hashes(iter(["a" * 40, "b" * 40, "c" * 40])) == {
            "a" * 40: (-(1 << 63), big),
            "b" * 40: (0, -1),
        }
    with open_store(store_location, readonly=True) as store:
        store.set_picture_hashes({"c" * 40: (2, 2)})  # read-only: nothing written, no error
        assert store.picture_hashes(["c" * 40, "b" * 40]) == {"b" * 40: (0, -1)}


def test_copy_links_need_features_to_agree_beyond_the_sure_distance() -> None:
    # four photos: 0~1 are 4 bits apart, 0~2 are 20 bits apart, 0~3 are 20 bits apart; 2 looks like 0, 3 does not
    codes = np.array([[0, 0], [0b1111, 0], [(1 << 20) - 1, 0], [((1 << 20) - 1) << 30, 0]], dtype=np.int64)
    features = np.array([[1.0, 0.0], [0.99, 0.1], [0.97, 0.2], [0.2, 0.98]], dtype=np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    pairs = sorted(
        (int(i), int(j))
        for rows, cols in copy_links(codes, features, sure=8, most=24, min_cosine=0.9)
        for i, j in zip(rows, cols, strict=True)
    )
    assert pairs == [(0, 1), (0, 2), (1, 2)]  # 3 is as close in hash as 2, but another picture by its features


def test_a_removed_photo_leaves_no_cached_hash(tmp_path: Path, real_jpegs: list[Path]) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in real_jpegs[:3]:
        shutil.copy2(photo, folder / photo.name)
    assert main(["index", str(folder), "--no-text", "--quiet"]) == 0
    assert main(["duplicates", "--db", str(folder), "--quiet"]) == 0
    gone = folder / real_jpegs[0].name
    with Service(db=folder, progress=False) as service:
        [sha] = [r.sha for r in service.store().records() if r.path == str(gone)]
        assert service.store().picture_hashes([sha])
    gone.unlink()
    assert main(["index", str(folder), "--no-text", "--quiet"]) == 0
    with Service(db=folder, progress=False) as service:
        assert service.store().picture_hashes([sha]) == {}
        assert len(service.store().picture_hashes(r.sha for r in service.store().records())) == 2
