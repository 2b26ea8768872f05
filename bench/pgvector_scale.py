"""PostgreSQL + pgvector at scale: bulk load + index build, ingest with the index present, recall and latency.

Everything goes through vistext's ``PostgresStore`` on a throw-away server on 127.0.0.1 (``PgServer``, fsync on
unless ``--no-fsync``), as ``vistext index`` and ``vistext search`` use it:

1. bulk load ``--rows`` records into one space inside ``store.bulk_load`` (the index is built when it ends):
   load rate, build time, the ``maintenance_work_mem`` the build was given, the server processes' peak RSS and
   what the index holds (the vectors' leads, ``store/postgres/leads.py``, or the whole vectors);
2. ingest with the index present: ``--ingest`` more records in batches of ``--batch`` (the indexer's batch);
3. recall@10 of ``--queries`` held-out queries against exact search (NumPy, float32) and single-query p50/p99
   through ``store.search`` for each ``--ef``; storage per photo (table, TOAST and index bytes / rows);
4. ``--small``: a catalogue of that many rows searched exactly and through its index, 16 queries per batch
   (the exact-search threshold).

The vectors are synthetic but shaped like real ones: each is a real vector of the space (from ``--real``, a
catalogue indexed with vistext's default models; the space is chosen by ``--space``) plus a perturbation drawn
from a Gaussian with the real vectors' covariance (their principal components and spectrum), scaled by
``--spread``, then normalised: a mixture around the real photos, with their dimensions and correlations. Rows
are generated in seeded chunks, so exact search streams them again instead of holding them.

    .venv/bin/python bench/pgvector_scale.py --real CATALOGUE.sqlite --rows 100000 --ingest 5000
    .venv/bin/python bench/pgvector_scale.py --real CATALOGUE.sqlite --rows 1000000 --space image
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
# run as a script, this file's folder comes first on sys.path and bench/pgvector.py would shadow the package
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != HERE]

import numpy as np  # noqa: E402

from vistext.store import IMAGE_SPACE, ImageRecord, open_store  # noqa: E402
from vistext.store.postgres.indexes import build_memory  # noqa: E402
from vistext.store.postgres.search import SearchPlan  # noqa: E402
from vistext.store.postgres.server import PgServer  # noqa: E402
from vistext.store.postgres.store import PostgresStore  # noqa: E402

CHUNK = 2000


class Shapes:
    """Synthetic vectors around real ones: real[i] + spread * (z * sqrt(eigenvalues)) @ components, normalised."""

    def __init__(self, real: np.ndarray, spread: float) -> None:
        self.real = real
        centred = real - real.mean(axis=0)
        _, singular, components = np.linalg.svd(centred, full_matrices=False)
        self.scale = (singular / np.sqrt(max(len(real) - 1, 1)))[:, None] * components * spread
        self.dim = real.shape[1]

    def chunk(self, seed: int, rows: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        base = self.real[rng.integers(0, len(self.real), rows)]
        noise = rng.standard_normal((rows, len(self.scale)), dtype=np.float32) @ self.scale
        vectors = (base + noise).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def rows(self, count: int, seed: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        """(first row number, vectors) chunks of rows 0..count-1, the same on every call."""
        for start in range(0, count, CHUNK):
            yield start, self.chunk(seed * 1_000_003 + start // CHUNK, min(CHUNK, count - start))


def records(space: str, start: int, vectors: np.ndarray, tag: str = "r") -> list[ImageRecord]:
    def record(i: int, vector: np.ndarray) -> ImageRecord:
        pooled, embeddings = (vector, {}) if space == IMAGE_SPACE else (None, {space: vector})
        return ImageRecord(f"/{tag}/{start + i:08d}.jpg", 1, 1.0, f"{tag}{start + i}", "bench", "ok", None,
                           pooled, None, embeddings)  # fmt: skip

    return [record(i, vector) for i, vector in enumerate(vectors)]


class PeakRss:
    """The largest total RSS of the server's processes while it runs (sampled every 0.2 s)."""

    def __init__(self, server: PgServer) -> None:
        import psutil

        self.root = psutil.Process(server.pid())
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import psutil

        while not self._stop.wait(0.2):
            total = 0
            for process in [self.root, *self.root.children(recursive=True)]:
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def exact_top10(shapes: Shapes, rows: int, queries: np.ndarray) -> np.ndarray:
    """Row numbers of each query's 10 nearest rows by float32 cosine, streaming the rows again."""
    best_scores = np.full((len(queries), 10), -np.inf, dtype=np.float32)
    best_rows = np.zeros((len(queries), 10), dtype=np.int64)
    for start, vectors in shapes.rows(rows):
        scores = queries @ vectors.T
        joined_scores = np.concatenate([best_scores, scores], axis=1)
        joined_rows = np.concatenate(
            [best_rows, np.arange(start, start + len(vectors))[None].repeat(len(queries), 0)], 1
        )
        keep = np.argsort(-joined_scores, axis=1)[:, :10]
        best_scores = np.take_along_axis(joined_scores, keep, 1)
        best_rows = np.take_along_axis(joined_rows, keep, 1)
    return best_rows


def storage(url: str) -> tuple[int, int]:
    """(bytes of the vector tables with their TOAST, bytes of the HNSW indexes)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT sum(pg_table_size(c.oid)) FROM pg_class c WHERE c.relname IN ('features', 'embeddings')"
        ).fetchone()
        indexes = conn.execute(
            "SELECT coalesce(sum(pg_relation_size(c.oid)), 0) FROM pg_class c WHERE c.relname LIKE 'hnsw_%'"
        ).fetchone()
    return int((tables or (0,))[0] or 0), int((indexes or (0,))[0] or 0)


def load(store: PostgresStore, server: PgServer, shapes: Shapes, space: str, rows: int) -> None:
    started = time.perf_counter()
    built_at = 0.0
    with PeakRss(server) as rss:
        with store.bulk_load(rows):
            for start, vectors in shapes.rows(rows):
                store.add(records(space, start, vectors))
            built_at = time.perf_counter()
        finished = time.perf_counter()
    load_s, build_s = built_at - started, finished - built_at
    basis = store.space_state.leads.basis(space)  # the index holds the leads where the store fitted a basis
    dims = shapes.dim if basis is None else len(basis)
    memory = build_memory(rows, dims, limit=store.space_state.build_memory)
    log = (server.folder / "server.log").read_text(errors="replace")
    spilled = "no longer fits into maintenance_work_mem" in log  # pgvector's notice when the graph spills
    print(f"bulk load: {rows} rows in {load_s:.1f} s ({rows / load_s:.0f} rows/s), index build {build_s:.1f} s; "
          f"load + build {rows / (load_s + build_s):.0f} rows/s; maintenance_work_mem {memory / 2**20:.0f} MiB, "
          f"server peak RSS {rss.peak / 2**20:.0f} MiB; graph {'spilled to disk' if spilled else 'fitted in memory'}; "
          f"index over {'the whole vectors' if basis is None else f'leads of {dims} dims'}",
          flush=True)  # fmt: skip


def ingest(store: PostgresStore, shapes: Shapes, space: str, rows: int, batch: int) -> None:
    started = time.perf_counter()
    for start, vectors in shapes.rows(rows, seed=7):
        for offset in range(0, len(vectors), batch):
            store.add(records(space, start + offset, vectors[offset : offset + batch], tag="new"))
    seconds = time.perf_counter() - started
    print(f"ingest with the index present: {rows} rows in batches of {batch}: {rows / seconds:.0f} rows/s", flush=True)


def quality(store: PostgresStore, shapes: Shapes, space: str, rows: int, args: argparse.Namespace) -> None:
    queries = shapes.chunk(99_999_999, args.queries)
    truth = exact_top10(shapes, rows, queries)
    leads = store.space_state.leads.basis(space) is not None  # a leads index walks for more (LEAD_SLACK)
    print(f"  {'ef_search':>9s} {'walked':>6s} {'recall@10':>9s} {'p50 ms':>7s} {'p99 ms':>7s}")
    for ef in args.ef:
        store.ef_search = ef
        walked = SearchPlan(space, shapes.dim, 10, exact=False, ef_search=ef).candidates if leads else ef
        times, recalls = [], []
        for query, want in zip(queries, truth, strict=True):
            began = time.perf_counter()
            hits = store.search(space, query, 10)[0]
            times.append((time.perf_counter() - began) * 1000)
            found = {int(hit.path[3:11]) for hit in hits if hit.path.startswith("/r/")}  # path: the row number
            recalls.append(len(found & set(want.tolist())) / 10)
        print(f"  {ef:9d} {walked:6d} {np.mean(recalls):9.3f} {np.percentile(times, 50):7.2f} "
              f"{np.percentile(times, 99):7.2f}",
              flush=True)  # fmt: skip


def ivfflat(url: str, shapes: Shapes, space: str, rows: int, args: argparse.Namespace) -> None:
    """The same table with an IVFFlat index instead (lists = rows / 1000, at least 10), searched through the
    store with ``ivfflat.probes`` set on the database: build time, recall, latency and ingest."""
    import psycopg
    from psycopg import sql

    from vistext.store.postgres.indexes import index_name, index_type, space_source

    table, column, where_rows = space_source(space)
    lists = max(10, rows // 1000)
    with PostgresStore(url) as store:  # the rows ingest added are not in the exact answers: out they go
        store.remove([f"/new/{row:08d}.jpg" for row in range(args.ingest)])
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(index_name(space))))  # the store still
        memory = build_memory(rows, shapes.dim)  # thinks it is indexed: it searches the same expression
        conn.execute(sql.SQL("SET maintenance_work_mem = {}").format(sql.Literal(f"{memory // 1024}kB")))
        conn.execute("SET max_parallel_maintenance_workers = 1")
        started = time.perf_counter()
        conn.execute(
            sql.SQL(
                "CREATE INDEX ivf ON {} USING ivfflat (({}::{}) halfvec_cosine_ops) WITH (lists = {}) WHERE {}"
            ).format(table, column, sql.SQL(index_type(shapes.dim, url, space)), sql.Literal(lists), where_rows)
        )
        built = time.perf_counter() - started
        size = conn.execute("SELECT pg_relation_size('ivf')").fetchone()[0]  # type: ignore[index]
    print(
        f"ivfflat: lists {lists}, build {built:.1f} s ({rows / built:.0f} rows/s), {size / rows:.0f} B/row", flush=True
    )
    for probes in args.probes:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER DATABASE {} SET ivfflat.probes = {}").format(
                sql.Identifier(conn.info.dbname), sql.Literal(probes)))  # fmt: skip
        with PostgresStore(url) as store:
            print(f"  probes {probes}:", flush=True)
            quality(store, shapes, space, rows, argparse.Namespace(**{**vars(args), "ef": [store.ef_search]}))
    with PostgresStore(url) as store:
        ingest(store, shapes, space, args.ingest, args.batch)


def small(server: PgServer, shapes: Shapes, space: str, rows: int) -> None:
    """16-query batches over a small catalogue: exact scan against its index."""
    url = server.create_database(f"small_{int(time.time())}")
    queries = shapes.chunk(12345, 16)
    with PostgresStore(url, hnsw_threshold=10**12) as store:
        for start, vectors in shapes.rows(rows):
            store.add(records(space, start, vectors))
        for label, threshold in (("exact", 10**12), ("hnsw", 0)):
            store.hnsw_threshold = threshold
            if threshold == 0:
                store.build_index(space)
            times = []
            for _ in range(30):
                began = time.perf_counter()
                store.search(space, queries, 10)
                times.append((time.perf_counter() - began) * 1000)
            print(f"small catalogue, {rows} x {shapes.dim}, 16 queries per batch, {label}: "
                  f"p50 {np.percentile(times, 50):.1f} ms per batch", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", type=Path, required=True, help="a catalogue indexed with the default models")
    parser.add_argument("--space", default="fused", help="a space of --real, by name or its prefix (image: 1280-d)")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--ingest", type=int, default=5000, help="rows added with the index present")
    parser.add_argument("--batch", type=int, default=64, help="rows per store.add while ingesting")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ef", type=int, nargs="+", default=[40, 100, 200])
    parser.add_argument("--spread", type=float, default=0.5, help="perturbation, in the real vectors' deviations")
    parser.add_argument("--small", type=int, default=2000, help="rows of the small-catalogue check (0: skip it)")
    parser.add_argument("--probes", type=int, nargs="*", default=[], help="then the same with IVFFlat, these probes")
    parser.add_argument("--no-fsync", action="store_true")
    args = parser.parse_args()
    with open_store(args.real, readonly=True) as real_store:
        space = next(s for s in real_store.spaces() if s == args.space or s.startswith(args.space))
        real = real_store.vectors(space)[1]
    shapes = Shapes(real, args.spread)
    folder = Path(tempfile.mkdtemp(prefix="vistext-pgscale-"))
    folder.chmod(0o755)
    server = PgServer.start(folder / "server", fsync=not args.no_fsync)
    print(f"{space}: {len(real)} real {shapes.dim}-d vectors, spread {args.spread}; server {server.url()}", flush=True)
    try:
        if args.small:
            small(server, shapes, space, args.small)
        url = server.create_database(f"scale_{int(time.time())}")
        with PostgresStore(url) as store:
            load(store, server, shapes, space, args.rows)
            table, index = storage(url)
            print(f"storage: {table / args.rows:.0f} B/row table, {index / args.rows:.0f} B/row index", flush=True)
            quality(store, shapes, space, args.rows, args)
            ingest(store, shapes, space, args.ingest, args.batch)
        if args.probes:
            ivfflat(url, shapes, space, args.rows, args)
    finally:
        server.stop(delete=True)


if __name__ == "__main__":
    main()
