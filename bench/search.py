"""Vector search benchmark: build time, single-query latency and recall@10 of the store's ANN index.

Random unit vectors (the hardest case for ANN: no cluster structure) at dims 1280 (pooled image features) and
256 (joint space). Recall@10 is measured against exact inner-product search on the same data; queries are
independent random unit vectors. Latency is one query at a time, as a search request would issue it.

    .venv/bin/python bench/search.py --quick                 # 100k at both dims
    .venv/bin/python bench/search.py --sizes 1000000 --dims 256 1280 --ef 64 128 256 512
    .venv/bin/python bench/search.py --sizes 1000000 --dims 256 --m --ivf 4096   # IVF-Flat instead of HNSW
"""

from __future__ import annotations

import argparse
import time

import faiss
import numpy as np

from vistext.store.vectors import FLAT, HNSW, VectorIndex


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 65536):  # chunked so 1M x 1280 never needs a float64 copy
        block = rng.standard_normal((min(65536, n - start), dim), dtype=np.float32)
        out[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


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


def measure(
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
        n=index.ntotal if isinstance(index, faiss.Index) else len(index),
        dim=queries.shape[1],
        index=kind,
        params=params,
        build=build,
        p50=np.percentile(times, 50),
        p99=np.percentile(times, 99),
        recall=recall_at_k(found, truth[: len(queries)]),
    )
    print_row(row)
    return row


def run(n: int, dim: int, args: argparse.Namespace) -> list[dict]:
    base = unit_vectors(n, dim, seed=1)
    queries = unit_vectors(args.queries, dim, seed=2)
    ids = np.arange(n, dtype=np.int64)

    exact = VectorIndex(dim, FLAT)
    started = time.perf_counter()
    for start in range(0, n, 65536):
        exact.add(ids[start : start + 65536], base[start : start + 65536])
    flat_build = time.perf_counter() - started
    _, truth = exact.index.search(queries, args.k)  # batched ground truth (labels == ids here)
    rows = [measure(exact, "flat", "-", flat_build, queries[: args.flat_queries], truth, args)]
    del exact

    for m in args.m:
        ann = VectorIndex(dim, HNSW, hnsw_m=m, ef_construction=args.ef_construction)
        started = time.perf_counter()
        for start in range(0, n, 65536):
            ann.add(ids[start : start + 65536], base[start : start + 65536])
        build = time.perf_counter() - started
        for ef in args.ef:
            ann.ef_search = ef
            rows.append(measure(ann, "hnsw", f"M={m} efC={args.ef_construction} ef={ef}", build, queries, truth, args))
        del ann

    for nlist in args.ivf:
        # not what the store uses: the question here is whether any FAISS index reaches the target on this data
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        started = time.perf_counter()
        sample = np.random.default_rng(3).choice(n, min(n, 64 * nlist), replace=False)
        ivf.train(base[np.sort(sample)])
        ivf.add(base)
        build = time.perf_counter() - started
        for nprobe in args.nprobe:
            ivf.nprobe = nprobe
            rows.append(measure(ivf, "ivf", f"nlist={nlist} nprobe={nprobe}", build, queries, truth, args))
        del ivf
    return rows


HEADER = f"{'n':>8} {'dim':>5} {'index':>5} {'params':<24} {'build s':>8} {'p50 ms':>8} {'p99 ms':>8} {'R@10':>6}"


def print_row(row: dict) -> None:
    print(
        f"{row['n']:>8} {row['dim']:>5} {row['index']:>5} {row['params']:<24} {row['build']:>8.1f} "
        f"{row['p50']:>8.3f} {row['p99']:>8.3f} {row['recall']:>6.3f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100k vectors only")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dims", type=int, nargs="+", default=[1280, 256])
    parser.add_argument("--m", type=int, nargs="*", default=[32], help="HNSW M values to build (none: skip)")
    parser.add_argument("--ivf", type=int, nargs="*", default=[], help="IVF-Flat nlist values to build too")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[8, 32, 128, 512], help="IVF lists probed")
    parser.add_argument("--ef-construction", type=int, default=80)
    parser.add_argument("--ef", type=int, nargs="+", default=[64, 128, 256, 512], help="efSearch values")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--flat-queries", type=int, default=200, help="single queries timed on the exact index")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2, help="OpenMP threads (build and batched ground truth)")
    args = parser.parse_args()
    sizes = [100_000] if args.quick else args.sizes
    faiss.omp_set_num_threads(args.threads)
    print(
        f"faiss {faiss.__version__}, {args.threads} build threads, 1 query thread, "
        f"{args.queries} random unit queries, k={args.k}"
    )
    print(HEADER)
    for n in sizes:
        for dim in args.dims:
            run(n, dim, args)


if __name__ == "__main__":
    main()
