"""Photo metadata, filters, restricted search and collection tags in the embedded store (real SQLite + FAISS)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vistext.store import SCHEMA_VERSION, SQLiteStore, Store, open_store
from vistext.store.records import ImageFilter, PhotoMeta, great_circle_km
from vistext.store.sqlite.catalogue import Catalogue

PARIS = (48.8566, 2.3522)
LONDON = (51.5074, -0.1278)
DAY = 86400.0
T0 = 1_600_000_000.0  # 2020-09-13


def _meta(i: int) -> PhotoMeta:
    """Record i: even ones in Paris by a Canon, odd ones in London by a Nikon, every third without EXIF."""
    if i % 3 == 2:
        return PhotoMeta(width=640, height=480)
    lat, lon = PARIS if i % 2 == 0 else LONDON
    make, model = ("Canon", "EOS 5D") if i % 2 == 0 else ("NIKON CORPORATION", "D750")
    return PhotoMeta(T0 + i * DAY, make, model, lat + i * 1e-4, lon, 4000, 3000, 1)


@pytest.fixture
def filled(
    store_location: Path | str, tmp_path: Path, make_records: Callable[..., Any]
) -> tuple[Store, list[Any], np.ndarray]:
    """60 photos with metadata in a store of each backend (the collection is the catalogue's folder)."""
    records, pooled = make_records(60)
    base = store_location.parent if isinstance(store_location, Path) else tmp_path
    for i, record in enumerate(records):
        record.path = str(base / ("trips/paris" if i % 2 == 0 else "home") / f"{i:03d}.jpg")
        record.meta = _meta(i)
    store = open_store(store_location)
    store.add(records)
    return store, records, pooled


def _paths(store: Store, ids: np.ndarray) -> list[str]:
    return [Path(r.path).name for r in store.records(ids.tolist())]


def test_metadata_round_trips_and_filters_select_the_right_photos(filled: Any) -> None:
    store, records, _ = filled
    with store:
        got = store.get(records[4].path)
        assert got is not None and got.meta == _meta(4)
        # what a search hit shows, read without features: the same metadata, by id; unknown ids are absent
        metas = store.photo_metas([got.id, 999_999])
        assert metas == {got.id: _meta(4)}
        assert store.ids_matching(ImageFilter()).tolist() == list(range(1, 61))
        assert ImageFilter().empty and not ImageFilter(tag="x").empty
        # dates: after inclusive, before exclusive; photos without a date never pass
        chosen = store.ids_matching(ImageFilter(after=T0 + 10 * DAY, before=T0 + 20 * DAY))
        assert _paths(store, chosen) == [f"{i:03d}.jpg" for i in range(10, 20) if i % 3 != 2]
        # camera: case-insensitive substring of "make model"
        nikon = store.ids_matching(ImageFilter(camera="corporation d7"))
        assert _paths(store, nikon) == [f"{i:03d}.jpg" for i in range(60) if i % 2 == 1 and i % 3 != 2]
        # near: great-circle km; Paris-London is ~344 km
        assert 340 < great_circle_km(*PARIS, *LONDON) < 350
        near_paris = store.ids_matching(ImageFilter(near=(*PARIS, 50.0)))
        assert _paths(store, near_paris) == [f"{i:03d}.jpg" for i in range(60) if i % 2 == 0 and i % 3 != 2]
        assert len(store.ids_matching(ImageFilter(near=(*PARIS, 400.0)))) == 40
        # folder: collection-relative or absolute prefix, never a partial folder name
        relative = store.ids_matching(ImageFilter(folder="trips"))
        absolute = store.ids_matching(ImageFilter(folder=str(Path(records[0].path).parent)))
        assert relative.tolist() == absolute.tolist() and len(relative) == 30
        assert len(store.ids_matching(ImageFilter(folder="trip"))) == 0
        combined = store.ids_matching(ImageFilter(folder="home", camera="canon"))
        assert len(combined) == 0


def test_restricted_search_returns_k_hits_from_the_subset(filled: Any) -> None:
    store, records, pooled = filled
    with store:
        wanted = store.ids_matching(ImageFilter(camera="nikon"))
        assert len(wanted) == 20
        query = pooled[0]  # a Canon photo: unrestricted, its own neighbours come first
        hits = store.search("image", query, 5, restrict=wanted)[0]
        assert len(hits) == 5 and {h.id for h in hits} <= set(wanted.tolist())
        # the same answer as exact cosine over the subset
        rows = np.asarray(wanted) - 1
        unit = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
        best = rows[np.argsort(-(unit[rows] @ unit[0]))[:5]] + 1
        assert [h.id for h in hits] == best.tolist()
        assert len(store.search("image", query, 50, restrict=wanted)[0]) == 20  # k beyond the subset
        assert store.search("image", query, 5, restrict=np.empty(0, np.int64)) == [[]]
        assert len(store.search("joint:t", np.ones(8, np.float32), 3, restrict=wanted)[0]) == 3


def test_restricted_hnsw_search_is_exact_on_small_subsets(tmp_path: Path, make_records: Callable[..., Any]) -> None:
    records, pooled = make_records(300)
    with SQLiteStore(tmp_path / "h.sqlite", hnsw_threshold=50) as store:
        store.add(records)
        subset = np.arange(1, 301, 37, dtype=np.int64)  # 9 scattered photos
        hits = store.search("image", pooled[:3], 4, restrict=subset)
        unit = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
        for q, row in enumerate(hits):
            best = (subset - 1)[np.argsort(-(unit[subset - 1] @ unit[q]))[:4]] + 1
            assert [h.id for h in row] == best.tolist()


def test_tags_are_stored_counted_filtered_and_dropped_with_their_photo(filled: Any) -> None:
    store, records, pooled = filled
    with store:
        before = store.version()
        store.set_tags("scenes", {1: [("beach", 0.9), ("sea", 0.6)], 2: [("beach", 0.7)], 3: [("city", 0.8)]})
        store.set_tags("other", {1: [("Beach", 0.95)], 999: [("ghost", 1.0)]})
        assert store.version() != before
        assert store.tags_for([1, 2, 4]) == {1: [("Beach", 0.95), ("beach", 0.9), ("sea", 0.6)], 2: [("beach", 0.7)]}
        assert store.tag_counts() == {"beach": 2, "Beach": 1, "city": 1, "sea": 1}
        assert store.ids_matching(ImageFilter(tag="BEACH")).tolist() == [1, 2]
        hits = store.search("image", pooled[5], 10, restrict=store.ids_matching(ImageFilter(tag="beach")))[0]
        assert sorted(h.id for h in hits) == [1, 2]
        store.set_tags("scenes", {1: []})  # replaced: only the other tagger's tag is left
        assert store.tags_for([1]) == {1: [("Beach", 0.95)]}
        # new content drops the photo's tags and metadata; the same content with meta=None keeps them
        same = dataclasses.replace(records[2], meta=None)
        store.add([same])
        assert store.tags_for([3]) == {3: [("city", 0.8)]}
        assert store.get(records[2].path).meta == _meta(2)  # type: ignore[union-attr]
        changed = dataclasses.replace(records[1], sha="new-content", meta=None)
        store.add([changed])
        assert store.tags_for([2]) == {} and store.get(records[1].path).meta is None  # type: ignore[union-attr]
        store.remove([records[2].path])
        assert store.tags_for([3]) == {}
        facets = store.facets()
        assert facets["folders"] == {"home": 30, "trips/paris": 29}
        assert facets["cameras"] == {"Canon EOS 5D": 20, "NIKON CORPORATION D750": 19}
        assert facets["has_gps"] == 39 and facets["with_meta"] == 58
        assert facets["date_range"] == [T0, T0 + 58 * DAY]
        assert facets["tags"] == {"Beach": 1}


def test_hand_edits_add_user_tags_and_removed_tags_stay_removed(filled: Any) -> None:
    store, records, _ = filled
    with store:
        store.set_tags("default", {1: [("dog", 0.9), ("animal", 0.95)], 2: [("dog", 0.8)]})
        store.edit_tags(1, add=["Holiday"], remove=["DOG"])
        assert store.tags_for([1]) == {1: [("Holiday", 1.0), ("animal", 0.95)]}
        assert store.ids_tagged_by("user").tolist() == [1] and store.ids_tagged_by("default").tolist() == [1, 2]
        # a tagger's next pass (default tags, a trained tagger) does not give the removed tag back
        store.set_tags("default", {1: [("dog", 0.9), ("animal", 0.95)]})
        store.set_tags("pets", {1: [("Dog", 0.7), ("puppy", 0.6)]})
        assert store.tags_for([1]) == {1: [("Holiday", 1.0), ("animal", 0.95), ("puppy", 0.6)]}
        assert store.ids_matching(ImageFilter(tag="holiday")).tolist() == [1]
        store.edit_tags(1, add=["dog"])  # added by hand again: it is the user's now, and taggers may give it
        store.set_tags("default", {1: [("dog", 0.9)]})
        assert dict(store.tags_for([1])[1])["dog"] == 1.0 and store.tag_counts()["dog"] == 2
        store.edit_tags(999, add=["ghost"])  # unknown ids are skipped
        assert "ghost" not in store.tag_counts()
        # new content drops the photo's tags and its hand edits
        store.add([dataclasses.replace(records[0], sha="new-content", meta=None)])
        store.set_tags("default", {1: [("dog", 0.9)]})
        assert store.tags_for([1]) == {1: [("dog", 0.9)]}


def test_a_v3_catalogue_is_upgraded_with_its_rows_kept(tmp_path: Path, make_records: Callable[..., Any]) -> None:
    db = tmp_path / "old.sqlite"
    records, _ = make_records(5)
    old = Catalogue(db, target_version=3)
    old.upsert(records)
    old.close()
    readonly = SQLiteStore(db, readonly=True)  # a v3 catalogue is still readable as it is, without metadata
    assert readonly.count() == 5 and readonly.get(records[0].path).meta is None  # type: ignore[union-attr]
    assert readonly.tag_counts() == {} and len(readonly.ids_matching(ImageFilter(camera="x"))) == 0
    assert len(readonly.ids_matching(ImageFilter())) == 5
    readonly.close()
    with SQLiteStore(db) as store:
        assert store.info()["schema_version"] == SCHEMA_VERSION == 8
        assert store.count("ok") == 5 and store.paths_without_meta() == {r.path for r in records}
        store.set_photo_meta({records[0].path: _meta(0)})
        assert store.get(records[0].path).meta == _meta(0)  # type: ignore[union-attr]
        assert store.get(records[0].path).pooled is not None  # type: ignore[union-attr]
        assert len(store.paths_without_meta()) == 4


def test_vectors_of_gives_a_few_photos_stored_vectors_as_stored(filled: Any) -> None:
    """A few photos' vectors of one space without their records: unnormalised, only ids that have one."""
    store, records, _ = filled
    ids = sorted(int(r.id) for r in store.records())
    joint = store.vectors_of("joint:t", [ids[0], ids[5], 10**9])
    by_path = {r.path: r for r in records}
    for image_id, vector in joint.items():
        stored = store.get(image_id)
        assert stored is not None
        np.testing.assert_allclose(vector, by_path[stored.path].embeddings["joint:t"], rtol=1e-6)
    assert set(joint) == {ids[0], ids[5]}
    second = store.get(ids[1])
    assert second is not None and second.pooled is not None
    np.testing.assert_allclose(store.vectors_of("image", [ids[1]])[ids[1]], second.pooled, rtol=1e-6)
    assert store.vectors_of("no such space", ids[:3]) == {}
