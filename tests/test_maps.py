"""The collection map (layout, cache, neighbours, topic colours, standalone HTML) and contact sheets."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from vistext.analysis import maps
from vistext.analysis.grid import SheetItem, render_contact_sheet
from vistext.cli import serving
from vistext.cli.main import common_options
from vistext.errors import UsageError
from vistext.service import Service


def clusters(n_per: int = 30, dim: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, dim)) * 4
    labels = np.repeat(np.arange(3), n_per)
    return (centres[labels] + rng.normal(size=(len(labels), dim))).astype(np.float32), labels


@pytest.fixture(scope="module")
def indexed(
    tmp_path_factory: pytest.TempPathFactory, flickr8k_images: list[Path], copy_photos: Callable[..., Path]
) -> Path:
    root = tmp_path_factory.mktemp("maps")
    photos = copy_photos(flickr8k_images[300:330], root / "photos")
    db = root / "db" / "catalogue.sqlite"
    with Service(db=db, progress=False) as service:
        service.index(photos, text_search=False)
    return db


# ---- layout ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["tsne", "pca"])
def test_layout_keeps_clusters_apart(method: str) -> None:
    matrix, labels = clusters()
    xy = maps.compute_layout(matrix, method, seed=0)
    assert xy.shape == (90, 2) and xy.min() >= 0 and xy.max() <= 1
    distances = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    assert (labels[distances.argmin(axis=1)] == labels).mean() > 0.95
    assert np.array_equal(xy, maps.compute_layout(matrix, method, seed=0))  # deterministic


def test_layout_of_tiny_and_empty_collections() -> None:
    assert maps.compute_layout(np.ones((1, 8)), "tsne").shape == (1, 2)
    assert maps.compute_layout(np.eye(2, 8), "tsne").shape == (2, 2)
    assert maps.compute_layout(np.eye(5, 8), "tsne").shape == (5, 2)
    with pytest.raises(UsageError, match="empty"):
        maps.compute_layout(np.zeros((0, 8)))
    with pytest.raises(UsageError, match="unknown map method"):
        maps.compute_layout(np.eye(4), "umap-ish")


def test_layout_is_cached_by_collection_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    matrix, _ = clusters(10)
    ids = np.arange(1, 31)
    first = maps.cached_layout(ids, matrix, tmp_path, "pca")
    assert maps.is_cached(ids, matrix, tmp_path, "pca")

    def fail(*args: object, **kwargs: object) -> np.ndarray:
        raise AssertionError("the cached layout should have been used")

    monkeypatch.setattr(maps, "compute_layout", fail)
    again = maps.cached_layout(ids, matrix, tmp_path, "pca")
    assert again.key == first.key and np.array_equal(again.xy, first.xy)
    monkeypatch.undo()
    changed = matrix.copy()
    changed[0, 0] += 1
    assert not maps.is_cached(ids, changed, tmp_path, "pca")
    maps.cached_layout(ids, changed, tmp_path, "pca")
    assert len(list(tmp_path.glob("map-pca-*.npz"))) == 1  # the stale layout was replaced, not kept


def test_nearest_neighbours_match_brute_force() -> None:
    matrix, _ = clusters(20)
    indices, scores = maps.nearest_neighbours(matrix, 5, chunk=7)
    unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    expected = np.argsort(-sims, axis=1)[:, :5]
    assert np.array_equal(indices, expected)
    assert np.allclose(scores, np.take_along_axis(sims, expected, axis=1), atol=1e-5)


# ---- the service's map --------------------------------------------------------------------------------------
def test_map_points_are_coloured_by_topic_and_cached(indexed: Path) -> None:
    with Service(db=indexed, progress=False) as service:
        assert service.status().map_ready is False
        answer = service.map_points("pca", topics=4).to_dict()
        points = answer["points"]
        assert answer["count"] == 30 and len(points["x"]) == 30 and len(set(points["id"])) == 30
        assert all(name.endswith(".jpg") for name in points["name"])
        assert len(answer["topics"]) == 4 and all(t["words"] for t in answer["topics"])
        assert set(points["topic"]) <= {0, 1, 2, 3} and len(set(points["topic"])) >= 2
        assert service.status().map_ready is True and service.status().maps_cached == ["pca"]
        assert service.map_points("pca", topics=4).to_dict() == json.loads(json.dumps(answer))
        table = service.neighbour_table(3).neighbours
        first = points["id"][0]
        assert len(table[first]) == 3 and first not in [other for other, _ in table[first]]
        assert [other for other, _ in table[first]] == [h.id for h in service.similar(first, 3).results]


def test_map_command_writes_a_standalone_html(indexed: Path, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    serving.register(parser.add_subparsers(), common_options())
    for extra, thumbs in (([], 30), (["--link"], 0)):
        out = tmp_path / f"map{len(extra)}.html"
        args = parser.parse_args(["map", "--db", str(indexed), "--out", str(out), "--method", "pca", "-q", *extra])
        assert args.run(args) == 0
        html = out.read_text()
        data = json.loads(re.search(r"window\.VISTEXT_MAP_DATA = (\{.*?\});</script>", html).group(1))
        assert data["count"] == 30 and len(data["files"]) == 30 and len(data["thumbs"]) == thumbs
        assert len(data["neighbours"]) == 30 and "/static/" not in html
    with pytest.raises(UsageError, match=r"\.html"):
        bad = parser.parse_args(["map", "--db", str(indexed), "--out", str(tmp_path / "map.png"), "--method", "pca"])
        bad.run(bad)


# ---- contact sheets ----------------------------------------------------------------------------------------------
def test_contact_sheet_of_search_results(indexed: Path, tmp_path: Path) -> None:
    with Service(db=indexed, progress=False) as service:
        result = service.similar(1, 7, include_self=True)
        out = service.grid(result, tmp_path / "sheet.png", thumb=96)
    sheet = Image.open(out)
    assert sheet.mode == "RGB" and sheet.width > 3 * 96 and sheet.height > 2 * 96
    # the best hit is the query itself: the top-left cell shows its pixels, not the grey placeholder
    cell = np.asarray(sheet)[40:130, 10:100].astype(float)
    assert cell.std() > 10


def test_contact_sheet_survives_missing_files_and_rejects_bad_requests(
    tmp_path: Path, flickr8k_images: list[Path]
) -> None:
    items = [SheetItem(flickr8k_images[0], "1. 0.900", "a.jpg"), SheetItem(tmp_path / "gone.jpg", "2. 0.800")]
    out = render_contact_sheet(items, tmp_path / "sheet.jpg", title="dogs", columns=2, thumb=64)
    sheet = np.asarray(Image.open(out))
    assert sheet.shape[1] == 6 + 2 * (64 + 6)
    with pytest.raises(UsageError, match="empty"):
        render_contact_sheet([], tmp_path / "x.png")
    with pytest.raises(UsageError, match=r"\.png"):
        render_contact_sheet(items, tmp_path / "x.gif")
    with pytest.raises(UsageError, match="between 32 and 1024"):
        render_contact_sheet(items, tmp_path / "x.png", thumb=4)


def test_status_fingerprints_the_vectors_only_after_the_collection_changed(
    tmp_path: Path, joint_records: Callable[..., Any]
) -> None:
    from vistext.store import open_store

    records, _, _ = joint_records(30)
    db = tmp_path / "catalogue.sqlite"
    with open_store(db) as store:
        store.add(records[:20])
    with Service(db=db, progress=False) as service:
        store = service.store()
        reads = []
        original = store.vectors
        store.vectors = lambda space: reads.append(space) or original(space)  # type: ignore[method-assign]
        assert service.status().images == 20
        assert service.status().map_ready is False
        assert reads == ["image"]  # polled twice, read once
        store.add(records[20:])
        assert service.status().images == 30
        assert reads == ["image", "image"]
        maps.cached_layout(*original("image"), service.location.cache_folder / "maps", "tsne")
        assert service.status().map_ready is True and len(reads) == 2
