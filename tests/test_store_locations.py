"""Stored paths are relative to the collection's root: a moved, renamed or copied folder keeps its catalogue,
and catalogues of earlier releases (absolute paths, even of a folder moved since) are migrated."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vistext.store import SCHEMA_VERSION, ImageRecord, open_store
from vistext.store.sqlite.catalogue import Catalogue

DIM = 48


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def _record(path: str, sha: str, vector: np.ndarray) -> ImageRecord:
    return ImageRecord(
        path=path, size=10, mtime=1.5, sha=sha, model="enc", status="ok", error=None, pooled=vector, logits=None
    )


def test_paths_are_stored_relative_to_the_collection_and_follow_a_move(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    db = photos / ".vistext" / "catalogue.sqlite"
    vectors = unit(np.random.default_rng(3).normal(size=(3, DIM)).astype(np.float32))
    with open_store(db) as store:
        store.add(
            [_record(str(photos / "a.jpg"), "a", vectors[0]), _record(str(photos / "sub" / "b.jpg"), "b", vectors[1])]
        )
        store.add([_record("/elsewhere/c.jpg", "c", vectors[2])])  # outside the collection: stays absolute
        stored = {row[0] for row in store.catalogue.conn.execute("SELECT path FROM images")}
        assert stored == {"a.jpg", "sub/b.jpg", "/elsewhere/c.jpg"}
        assert store.search("image", vectors[1], 1)[0][0].path == str(photos / "sub" / "b.jpg")
    moved = tmp_path / "pictures"
    photos.rename(moved)
    with open_store(moved / ".vistext" / "catalogue.sqlite") as store:
        assert set(store.file_states()) == {str(moved / "a.jpg"), str(moved / "sub" / "b.jpg"), "/elsewhere/c.jpg"}
        assert store.search("image", vectors[1], 1)[0][0].path == str(moved / "sub" / "b.jpg")
        record = store.get(str(moved / "a.jpg"))
        assert record is not None and record.path == str(moved / "a.jpg")
        np.testing.assert_allclose(record.pooled, vectors[0], atol=1e-6)  # type: ignore[arg-type]
        store.remove([str(moved / "a.jpg")])
        assert store.count() == 2


def _previous_release_catalogue(db: Path, paths: list[str]) -> None:
    """A catalogue as the previous release wrote it: schema version 2, absolute paths."""
    old = Catalogue(db, target_version=2)
    assert old.schema_version() == 2
    with old.transaction() as conn:
        for i, path in enumerate(paths):
            conn.execute(
                "INSERT INTO images (path, size, mtime, sha, model, status, error, indexed_at, generation) "
                "VALUES (?, 10, 1.5, ?, 'enc', 'ok', NULL, 0, 1)",
                (path, f"sha{i % 3}"),
            )
            conn.execute(
                "INSERT OR IGNORE INTO features VALUES (?, 'enc', ?, NULL)",
                (f"sha{i % 3}", (np.arange(DIM, dtype=np.float32) + i % 3).tobytes()),
            )
    old.close()


def test_migrates_a_previous_release_catalogue_to_relative_paths(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    db = photos / ".vistext" / "catalogue.sqlite"
    names = ["a.jpg", "b.jpg", "sub/c.jpg"]
    _previous_release_catalogue(db, [str(photos / name) for name in names] + ["/elsewhere/d.jpg"])
    with open_store(db) as store:
        assert store.catalogue.schema_version() == SCHEMA_VERSION == 8
        stored = sorted(row[0] for row in store.catalogue.conn.execute("SELECT path FROM images"))
        assert stored == sorted([*names, "/elsewhere/d.jpg"])
        hits = store.search("image", np.arange(DIM, dtype=np.float32), 4)[0]
        assert {hit.path for hit in hits} == {str(photos / n) for n in names} | {"/elsewhere/d.jpg"}


def test_migration_finds_a_collection_moved_before_the_upgrade_and_drops_stale_duplicates(tmp_path: Path) -> None:
    old, new = tmp_path / "photos", tmp_path / "pictures"
    names = ["a.jpg", "b.jpg", "sub/c.jpg"]
    # the previous release, after `mv photos pictures; vistext index pictures`: every file twice
    _previous_release_catalogue(
        old / ".vistext" / "catalogue.sqlite", [str(old / n) for n in names] + [str(new / n) for n in names]
    )
    for name in names:
        (old / name).parent.mkdir(parents=True, exist_ok=True)
        (old / name).write_bytes(b"x")
    old.rename(new)
    with open_store(new / ".vistext" / "catalogue.sqlite") as store:
        assert set(store.file_states()) == {str(new / n) for n in names}
        assert store.count() == 3 and store.vectors("image")[1].shape == (3, DIM)
    # moved and never re-indexed: the old absolute paths are recognised by the files found under the new root
    again = tmp_path / "again"
    _previous_release_catalogue(again / ".vistext" / "catalogue.sqlite", [str(again / n) for n in names])
    for name in names:
        (again / name).parent.mkdir(parents=True, exist_ok=True)
        (again / name).write_bytes(b"x")
    final = tmp_path / "final"
    again.rename(final)
    with open_store(final / ".vistext" / "catalogue.sqlite") as store:
        assert set(store.file_states()) == {str(final / n) for n in names}
