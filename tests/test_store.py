"""The embedded store on real SQLite files: catalogue semantics, vector search, caches, schema, concurrency."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vistext.errors import StoreError
from vistext.store import SCHEMA_VERSION, ImageRecord, SQLiteStore, open_store
from vistext.store.sqlite.catalogue import Catalogue

DIM = 48


def first_row(db: Path | str, query: str) -> Any:
    """The first row of ``query`` on the store's database, read beside the store (either backend)."""
    if str(db).startswith("postgresql://"):
        import psycopg

        with psycopg.connect(str(db), autocommit=True) as conn:
            return conn.execute(query).fetchone()
    with sqlite3.connect(db) as conn:
        return conn.execute(query).fetchone()


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def exact_top(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(unit(queries) @ unit(base).T), axis=1)[:, :k]


@pytest.fixture
def db(store_location: Path | str) -> Any:
    """A new store of each backend (a SQLite catalogue path, a PostgreSQL database URL)."""
    return store_location


# tests of what only the embedded backend has: catalogue files, FAISS index files, SQLite schema versions
sqlite_only = pytest.mark.parametrize("store_backend", ["sqlite"], indirect=True)


@sqlite_only
def test_open_by_path_uri_and_unknown_scheme(db: Path, make_records: Callable[..., Any]) -> None:
    with open_store(db) as store:
        store.add(make_records(3)[0])
    with open_store(f"sqlite://{db}") as store:
        assert store.count() == 3
    with pytest.raises(StoreError, match="unknown store backend 'qdrant'.*known: sqlite"):
        open_store("qdrant://host/collection")


def test_add_get_upsert_remove(db: Path, make_records: Callable[..., Any]) -> None:
    records, pooled = make_records(5)
    with open_store(db) as store:
        store.add(records)
        first = store.get("/photos/00002.jpg")
        assert first is not None and first.id is not None
        assert store.get(first.id).path == "/photos/00002.jpg"
        np.testing.assert_array_equal(first.pooled, pooled[2])
        assert first.embeddings["joint:t"].shape == (8,)
        assert first.mtime == records[2].mtime
        states = store.file_states()
        assert set(states) == {r.path for r in records}
        assert states["/photos/00002.jpg"].sha == "sha-0-2" and states["/photos/00002.jpg"].status == "ok"

        changed = ImageRecord("/photos/00002.jpg", 7, 5.0, "new-sha", "enc", "ok", None, pooled[0] * 2, None)
        store.add([changed])
        again = store.get("/photos/00002.jpg")
        assert again.id == first.id and again.sha == "new-sha" and again.size == 7
        assert store.features_for_hash("sha-0-2", "enc") is None  # the old content is no longer referenced
        assert first_row(db, "SELECT count(*) FROM features WHERE sha = 'sha-0-2'")[0] == 0

        store.add([ImageRecord("/photos/bad.jpg", 0, 1.0, "", "enc", "failed", "truncated JPEG", None, None)])
        assert store.count() == 6 and store.count("failed") == 1 and store.count("ok") == 5
        assert store.get("/photos/bad.jpg").error == "truncated JPEG"

        store.remove(["/photos/00000.jpg", "/photos/bad.jpg", "/not/indexed.jpg"])
        assert store.get("/photos/00000.jpg") is None and store.count() == 4
        assert store.get(999_999) is None


def test_features_shared_by_content_until_unreferenced(db: Path, make_records: Callable[..., Any]) -> None:
    records, pooled = make_records(1)
    copy = ImageRecord("/elsewhere/copy.jpg", 1, 2.0, records[0].sha, "enc", "ok", None, pooled[0], records[0].logits)
    with open_store(db) as store:
        store.add(records + [copy])
        reuse = store.features_for_hash(records[0].sha, "enc")
        assert reuse is not None and reuse.status == "ok"
        np.testing.assert_array_equal(reuse.pooled, pooled[0])
        np.testing.assert_array_equal(reuse.logits, records[0].logits)
        assert set(reuse.embeddings) == {"joint:t"}
        assert store.features_for_hash(records[0].sha, "other-model") is None
        store.remove([records[0].path])
        assert store.features_for_hash(records[0].sha, "enc") is not None  # the copy still uses it
        store.remove([copy.path])
        assert store.features_for_hash(records[0].sha, "enc") is None
        assert first_row(db, "SELECT count(*) FROM features")[0] == 0
        assert first_row(db, "SELECT count(*) FROM embeddings")[0] == 0


def test_failed_batch_is_rolled_back_entirely(db: Path, make_records: Callable[..., Any]) -> None:
    records, _ = make_records(4)
    records[3].status = "weird"
    with open_store(db) as store:
        with pytest.raises(StoreError, match="status"):
            store.add(records)
        assert store.count() == 0
        store.add(records[:3])
        assert store.count() == 3


def test_flat_search_returns_exact_neighbours(db: Path, make_records: Callable[..., Any]) -> None:
    records, pooled = make_records(300, seed=1)
    rng = np.random.default_rng(2)
    queries = pooled[:20] + 0.5 * rng.normal(size=(20, DIM)).astype(np.float32)
    with open_store(db) as store:
        store.add(records)
        hits = store.search("image", queries, 10)
        ids = {r.path: store.get(r.path).id for r in records}
        expected = exact_top(pooled, queries, 10)
        for row, want in zip(hits, expected, strict=True):
            assert [h.path for h in row] == [records[j].path for j in want]
            assert [h.id for h in row] == [ids[records[j].path] for j in want]
            scores = [h.score for h in row]
            assert scores == sorted(scores, reverse=True) and -1.0 <= scores[-1] <= scores[0] <= 1.0001
        single = store.search("image", pooled[7], 1)  # a 1-D query is one query
        assert single[0][0].path == records[7].path and single[0][0].score == pytest.approx(1.0, abs=1e-5)
        assert len(store.search("image", queries[:2], 10_000)[0]) == 300
        assert len(store.search("joint:t", np.ones((1, 8)), 5)[0]) == 5
        with pytest.raises(StoreError, match="dimension"):
            store.search("image", np.ones((1, DIM + 1)), 3)
        with pytest.raises(StoreError, match="no vector space 'nope'"):
            store.search("nope", queries, 3)


def test_empty_space_and_failed_only(db: Path) -> None:
    with open_store(db) as store:
        assert store.search("image", np.ones((2, DIM)), 5) == [[], []]
        store.add([ImageRecord("/x.jpg", 0, 1.0, "", "enc", "failed", "0-byte file", None, None)])
        assert store.search("image", np.ones((1, DIM)), 5) == [[]]
        ids, matrix = store.vectors("image")
        assert len(ids) == 0 and store.spaces() == ["image"]


def test_hnsw_recall_and_removal(db: Path, make_records: Callable[..., Any]) -> None:
    records, pooled = make_records(3000, seed=3, dim=32, space=None)
    rng = np.random.default_rng(4)
    queries = pooled[:100] + 0.3 * rng.normal(size=(100, 32)).astype(np.float32)
    with open_store(db, hnsw_threshold=500) as store:
        store.add(records)
        hits = store.search("image", queries, 10)
        assert store.info()["spaces"]["image"]["index"] == "hnsw"
        position = {r.path: i for i, r in enumerate(records)}
        expected = exact_top(pooled, queries, 10)
        found = [len({position[h.path] for h in row} & set(want)) for row, want in zip(hits, expected, strict=True)]
        assert sum(found) / expected.size >= 0.95

        gone = [records[i].path for i in range(0, 100, 2)]  # half the queries' own images
        store.remove(gone)
        moved = records[1]
        store.add([ImageRecord(moved.path, 1, 1.0, "moved", "enc", "ok", None, -pooled[1], None)])
        hits = store.search("image", queries, 10)
        assert not {h.path for row in hits for h in row} & set(gone)
        assert all(len(row) == 10 for row in hits)
        assert store.search("image", -pooled[1], 1)[0][0].path == moved.path
        assert store.search("image", pooled[3], 1)[0][0].path == records[3].path


def test_reopen_keeps_everything(db: Path, make_records: Callable[..., Any]) -> None:
    records, pooled = make_records(50, seed=6)
    with open_store(db) as store:
        store.add(records)
        store.set_meta("topics", {"k": 3, "labels": ["a", "b", "c"]})
        before = store.search("joint:t", np.ones(8), 5)
        info = store.info()
    with open_store(db) as store:
        assert store.get_meta("topics") == {"k": 3, "labels": ["a", "b", "c"]}
        assert store.get_meta("missing", 7) == 7
        assert store.search("joint:t", np.ones(8), 5) == before
        assert store.spaces() == ["image", "joint:t"]
        assert store.count() == 50
        again = store.info()
        assert again["spaces"] == info["spaces"] and again["models"] == {"enc": 50}
        assert again["spaces"]["image"] == {"dim": DIM, "index": "flat", "size": 50}
        ids, matrix = store.vectors("image")
        assert matrix.shape == (50, DIM) and np.allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(matrix[0], unit(pooled[0]), atol=1e-6)
        streamed = list(store.records())
        assert [r.path for r in streamed] == [r.path for r in records]
        picked = list(store.records(ids=[int(ids[5]), int(ids[2]), 10**9]))
        assert [r.id for r in picked] == [int(ids[5]), int(ids[2])]


@sqlite_only
def test_migrates_a_version_1_catalogue(db: Path, make_records: Callable[..., Any]) -> None:
    old = Catalogue(db, target_version=1)
    assert old.schema_version() == 1
    vector = np.arange(DIM, dtype=np.float32) + 1
    with old.transaction() as conn:
        conn.execute(
            "INSERT INTO images (path, size, mtime, sha, model, status, error, indexed_at) "
            "VALUES ('/old.jpg', 10, 3.5, 'abc', 'enc', 'ok', NULL, 0)"
        )
        conn.execute("INSERT INTO features VALUES ('abc', 'enc', ?, NULL)", (vector.tobytes(),))
    old.close()
    with open_store(db) as store:
        assert store.catalogue.schema_version() == SCHEMA_VERSION
        columns = {row[1] for row in store.catalogue.conn.execute("PRAGMA table_info(images)")}
        assert "generation" in columns
        assert store.get("/old.jpg").size == 10
        assert store.search("image", vector, 1)[0][0].path == "/old.jpg"
        store.add(make_records(2)[0])
        assert store.search("image", vector, 5)[0][0].path == "/old.jpg"
        assert store.count() == 3


@sqlite_only
def test_newer_schema_is_refused(db: Path) -> None:
    open_store(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match=r"catalogue\.sqlite: catalogue schema version 99 .*newer vistext"):
        open_store(db)


def test_not_a_database(tmp_path: Path) -> None:
    bad = tmp_path / "notes.sqlite"
    bad.write_text("this is a text file, not SQLite\n" * 100)
    with pytest.raises(StoreError, match=rf"{bad}: .*not a database"):
        open_store(bad)
    with pytest.raises(StoreError, match="is a folder"):
        open_store(tmp_path)


@sqlite_only
def test_reader_searches_while_writer_adds(db: Path, make_records: Callable[..., Any]) -> None:
    records, pooled = make_records(1200, seed=7)
    open_store(db).close()
    errors: list[BaseException] = []
    done = threading.Event()

    def write() -> None:
        try:
            with open_store(db) as writer:
                for start in range(0, len(records), 40):
                    writer.add(records[start : start + 40])
                    if start % 200 == 0:
                        writer.remove([records[start].path])
        except BaseException as error:  # noqa: BLE001 - surfaced to the test thread below
            errors.append(error)
        finally:
            done.set()

    thread = threading.Thread(target=write)
    with open_store(db) as reader:
        thread.start()
        searches = 0
        while not done.is_set() or searches < 3:
            hits = reader.search("image", pooled[:4], 5)
            assert all(len(row) <= 5 for row in hits)
            searches += 1
        thread.join()
        assert not errors, errors
        removed = {records[s].path for s in range(0, len(records), 200)}
        assert reader.count() == len(records) - len(removed)
        top = reader.search("image", pooled[1199], 1)[0][0]
        assert top.path == records[1199].path and top.score == pytest.approx(1.0, abs=1e-5)
        assert len(reader.search("image", pooled[:1], 5000)[0]) == len(records) - len(removed)
    assert isinstance(reader, SQLiteStore)


@sqlite_only
def test_reads_of_other_threads_do_not_wait_for_a_write_in_progress(db: Path, make_records: Callable) -> None:
    """A server's threads read on connections of their own: while one thread holds the catalogue's write
    transaction open (the watcher indexing a batch), pages of results, versions and searches of other threads
    are answered from what was committed, and see the write once it commits."""
    records, pooled = make_records(30, seed=3)
    store = open_store(db)
    assert isinstance(store, SQLiteStore)
    store.add(records[:20])
    store.search("image", pooled[:1], 3)  # the index is current with the catalogue
    version = store.version()
    holding, release = threading.Event(), threading.Event()

    def write() -> None:
        with store._locked(), store.catalogue.transaction():  # a long write, not yet committed
            store.catalogue._bump_generation()
            holding.set()
            release.wait(30)

    writer = threading.Thread(target=write)
    writer.start()
    assert holding.wait(30)
    answered: dict[str, Any] = {}

    def read() -> None:
        answered["version"] = store.version()
        answered["records"] = [r.path for r in store.records([1, 2])]
        answered["tags"] = store.tags_for([1])
        answered["search"] = store.search("image", pooled[5], 1)[0][0].path

    reader = threading.Thread(target=read)
    reader.start()
    reader.join(20)
    finished_while_writing = not reader.is_alive()
    release.set()
    writer.join(30)
    reader.join(30)
    assert finished_while_writing, "a read waited for the write transaction of another thread"
    assert answered == {"version": version, "records": [records[0].path, records[1].path], "tags": {},
                        "search": records[5].path}  # fmt: skip
    assert store.version() == version + 1  # committed: every thread sees it now
    store.add(records[20:])
    assert store.count() == 30
    assert store.search("image", pooled[25], 1)[0][0].path == records[25].path
    store.close()
    with pytest.raises(StoreError):
        store.version()


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_vector_index_replace_compact_and_save(kind: str, tmp_path: Path) -> None:
    from vistext.store.sqlite.vectors import VectorIndex

    rng = np.random.default_rng(8)
    vectors = unit(rng.normal(size=(200, 16)).astype(np.float32))
    index = VectorIndex(16, kind)
    index.add(np.arange(200) + 1000, vectors)
    index.add(np.array([1000]), -vectors[:1])  # replace: the old vector must never be found again
    index.remove(np.arange(1001, 1030))
    assert len(index) == 171 and index.dead == 30
    _, ids = index.search(vectors[:1], 5)
    assert 1000 not in ids[0]
    index.save(tmp_path / "x.faiss")
    loaded = VectorIndex.load(tmp_path / "x.faiss")
    assert loaded.kind == kind and len(loaded) == 171
    np.testing.assert_array_equal(loaded.search(vectors[50:60], 3)[1], index.search(vectors[50:60], 3)[1])
    index.remove(np.arange(1030, 1060))  # dead > 20%: rebuilt without them
    assert index.dead == 0 and len(index) == 141 and index.index.ntotal == 141
    assert index.search(-vectors[:1], 1)[1][0, 0] == 1000
    assert index.search(vectors[150:151], 1)[1][0, 0] == 1150
    index.compact("hnsw")
    assert index.kind == "hnsw" and index.search(vectors[150:151], 1)[1][0, 0] == 1150


@sqlite_only
def test_flat_index_switches_to_hnsw_when_it_grows(db: Path, make_records: Callable[..., Any]) -> None:
    records, pooled = make_records(700, seed=9, space=None)
    with open_store(db, hnsw_threshold=500) as store:
        store.add(records[:400])
        assert store.search("image", pooled[5], 1)[0][0].path == records[5].path
        assert store.indexes.cached["image"].index.kind == "flat"
        store.add(records[400:])
        assert store.search("image", pooled[650], 1)[0][0].path == records[650].path
        assert store.indexes.cached["image"].index.kind == "hnsw"
    with open_store(db, hnsw_threshold=500) as store:
        assert store.search("image", pooled[600], 1)[0][0].path == records[600].path
        assert store.indexes.cached["image"].dirty is False  # loaded from the saved file, not rebuilt


@sqlite_only
def test_killed_writer_loses_only_its_open_transaction(db: Path, make_records: Callable[..., Any]) -> None:

    records, pooled = make_records(3, seed=10)
    with open_store(db) as store:
        store.add(records[:1])
    script = f"""
import os, signal
from vistext.store import open_store
store = open_store({str(db)!r})
conn = store.catalogue.conn
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT INTO images (path, size, mtime, sha, model, status, indexed_at) "
             "VALUES ('/half.jpg', 1, 1, 'h', 'enc', 'ok', 0)")
os.kill(os.getpid(), signal.SIGKILL)
"""
    killed = subprocess.run([sys.executable, "-c", script], timeout=60)
    assert killed.returncode == -9
    with open_store(db, timeout=5) as store:
        assert store.get("/half.jpg") is None and store.count() == 1
        store.add(records[1:])  # the dead writer left no lock behind
        assert store.search("image", pooled[2], 1)[0][0].path == records[2].path


def _record(path: str, sha: str, vector: np.ndarray) -> ImageRecord:
    return ImageRecord(
        path=path, size=10, mtime=1.5, sha=sha, model="enc", status="ok", error=None, pooled=vector, logits=None
    )


def test_a_name_that_is_not_utf8_round_trips(db: Path) -> None:
    name = os.fsdecode(b"/photos/caf\xe9 \xff.jpg")  # surrogate escapes: what os.walk gives for such a file
    vector = unit(np.ones((1, DIM), np.float32))[0]
    with open_store(db) as store:
        store.add([_record(name, "latin", vector), _record("/photos/ok.jpg", "ok", -vector)])
        assert store.count() == 2 and name in store.file_states()
        assert store.get(name).path == name  # type: ignore[union-attr]
        assert store.search("image", vector, 1)[0][0].path == name
        assert os.fsencode(store.file_states()[name].path) == b"/photos/caf\xe9 \xff.jpg"
        store.remove([name])
        assert set(store.file_states()) == {"/photos/ok.jpg"}


def test_an_id_beyond_64_bits_is_an_unknown_id(db: Path, make_records: Callable) -> None:
    with open_store(db) as store:
        store.add(make_records(2)[0])
        for huge in (2**63, 10**20, -(2**63) - 1):
            assert store.get(huge) is None
        assert [record.id for record in store.records(ids=[10**20, 1])] == [1]


def test_a_second_writer_is_told_another_index_is_running(db: Path) -> None:
    with open_store(db) as first, open_store(db) as second:
        with first.writer_lock():
            with pytest.raises(StoreError, match=rf"another `vistext index` \(pid {os.getpid()}\) is writing"):
                with second.writer_lock():
                    pass
        with second.writer_lock():  # released: the next run goes ahead
            pass
