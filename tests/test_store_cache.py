"""The vector index files beside a SQLite catalogue are caches that prove their contents: a file damaged in
place (same size, mtime kept) is rebuilt from the catalogue, never searched."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vistext.store import open_store
from vistext.store.records import l2_normalise
from vistext.store.sqlite.index_files import MARK


def unit(vector: np.ndarray) -> np.ndarray:
    return l2_normalise(vector.reshape(1, -1))[0]  # as the store normalises what it indexes


def rewrite_in_place(path: Path, changes: dict[bytes, bytes]) -> None:
    """Overwrite byte runs of ``path`` where they are (no new inode, same size), then put its times back."""
    stat = path.stat()
    data = bytearray(path.read_bytes())
    for old, new in changes.items():
        at = data.find(old)
        assert at > 0 and len(old) == len(new)
        data[at : at + len(old)] = new
    with open(path, "r+b") as handle:
        handle.write(data)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (stat.st_size, stat.st_mtime_ns, stat.st_ino)


@pytest.mark.parametrize("hnsw_threshold", [10_000, 10], ids=["flat", "hnsw"])
def test_floats_flipped_in_place_with_the_mtime_kept_are_never_searched(
    hnsw_threshold: int, tmp_path: Path, make_records: Callable[..., Any]
) -> None:
    db = tmp_path / "catalogue.sqlite"
    records, pooled = make_records(60, seed=3)
    with open_store(db, hnsw_threshold=hnsw_threshold) as store:
        store.add(records)
        assert store.search("image", pooled[7], 1)[0][0].path == records[7].path
    cache = db.with_name("catalogue.image.faiss")
    assert MARK in cache.read_bytes()[-200:]
    # the "dog" photo's vector becomes noise, and an unrelated photo's becomes exactly the query
    noise = unit(np.random.default_rng(0).normal(size=pooled.shape[1]))
    rewrite_in_place(
        cache, {unit(pooled[7]).tobytes(): noise.tobytes(), unit(pooled[3]).tobytes(): unit(pooled[7]).tobytes()}
    )
    with open_store(db, hnsw_threshold=hnsw_threshold) as store:
        best = store.search("image", pooled[7], 2)[0]
        assert best[0].path == records[7].path and best[0].score == pytest.approx(1.0, abs=1e-5)
        assert best[1].score < 0.9
    with open_store(db, hnsw_threshold=hnsw_threshold, readonly=True) as store:  # the rebuilt file was saved
        assert store.search("image", pooled[3], 1)[0][0].path == records[3].path


def test_a_damaged_header_an_old_format_or_a_cut_file_is_rebuilt(
    tmp_path: Path, make_records: Callable[..., Any]
) -> None:
    db = tmp_path / "catalogue.sqlite"
    records, pooled = make_records(40, seed=4)
    with open_store(db) as store:
        store.add(records)
        store.search("image", pooled[:1], 1)
        index = store.indexes.cached["image"].index
    cache = db.with_name("catalogue.image.faiss")
    good = cache.read_bytes()
    damages = {
        "old format (plain FAISS)": lambda: index.save(cache),
        "cut short": lambda: cache.write_bytes(good[: len(good) // 2]),
        "stamp garbage": lambda: cache.write_bytes(good[:-30] + b"{not json\n"),
        "ahead of the catalogue": lambda: cache.write_bytes(re.sub(rb'"generation": \d+', b'"generation": 99', good)),
    }
    for name, damage in damages.items():
        damage()
        with open_store(db) as store:
            assert store.search("image", pooled[11], 1)[0][0].path == records[11].path, name
            assert store.indexes.cached["image"].dirty, f"{name}: the file was trusted"
        assert MARK in cache.read_bytes()[-200:], name


def test_index_file_missing_or_stale_is_rebuilt(tmp_path: Path, make_records: Callable[..., Any]) -> None:
    db = tmp_path / "cat" / "catalogue.sqlite"
    records, pooled = make_records(200, seed=5)
    with open_store(db) as store:
        store.add(records[:100])
        store.search("image", pooled[:1], 1)
    index_file = db.with_name("catalogue.image.faiss")
    assert index_file.exists()
    old_copy = db.with_name("old.faiss")
    shutil.copy(index_file, old_copy)

    with open_store(db) as store:  # loads the file, catches up with rows added later
        store.add(records[100:150])
        assert store.search("image", pooled[120], 1)[0][0].path == records[120].path
    shutil.copy(old_copy, index_file)  # an out-of-date file put back: the stamp no longer matches
    with open_store(db) as store:
        assert store.search("image", pooled[140], 1)[0][0].path == records[140].path
        assert len(store.indexes.cached["image"].index) == 150
    index_file.unlink()
    with open_store(db) as store:
        assert store.search("image", pooled[10], 1)[0][0].path == records[10].path
    index_file.write_bytes(b"garbage")
    with open_store(db) as store:
        assert store.search("image", pooled[11], 1)[0][0].path == records[11].path

    # a writer that dies without flushing: the catalogue moved on, the saved index did not
    crashed = open_store(db)
    crashed.add(records[150:])
    crashed.remove([records[0].path])
    crashed.search("image", pooled[:1], 1)  # in memory only
    crashed.catalogue.close()
    with open_store(db) as store:
        assert store.search("image", pooled[190], 1)[0][0].path == records[190].path
        assert records[0].path not in {h.path for h in store.search("image", pooled[0], 200)[0]}
        assert len(store.search("image", pooled[0], 500)[0]) == 199


def test_an_index_file_from_a_replaced_catalogue_is_never_used(
    tmp_path: Path, make_records: Callable[..., Any]
) -> None:
    """A catalogue deleted and made again at the same path counts its generations from 0 again: once it has as
    many as the old one, the old index file must not pass for its own (its ids name the old photos)."""
    db = tmp_path / "cat" / "catalogue.sqlite"
    old, old_pooled = make_records(60, seed=1)
    with open_store(db) as store:
        store.add(old[:30])
        store.add(old[30:])
        store.search("image", old_pooled[:1], 1)
    index_file = db.with_name("catalogue.image.faiss")
    kept = index_file.read_bytes()
    for leftover in db.parent.glob("catalogue.sqlite*"):
        leftover.unlink()
    new, new_pooled = make_records(60, seed=2)
    with open_store(db) as store:
        store.add(new[:30])
        store.add(new[30:])
    index_file.write_bytes(kept)  # the old catalogue's file, at the new one's generation
    with open_store(db) as store:
        hit = store.search("image", new_pooled[7], 1)[0][0]
        assert hit.path == new[7].path and hit.score > 0.999
