"""Filtered search benchmark: single-query latency and recall@10 of a search restricted to a filter's ids.

A filter (date, camera, place, folder, tag) gives a set of image ids; ``VectorIndex.search(..., restrict=ids)``
returns the k best of those, never "top k, then filter". Flat indexes search through a FAISS ``IDSelectorBatch``;
HNSW indexes score subsets up to ``EXACT_SUBSET`` exactly and search larger ones through the graph with the
selector and a widened ``efSearch``. Random unit vectors; recall@10 against exact scoring of the subset.

    .venv/bin/python bench/filters.py                      # 50k x 514 (the joint space), flat and hnsw
    .venv/bin/python bench/filters.py --size 200000 --dim 1280 --kinds hnsw
"""

from __future__ import annotations

import argparse
import time

import faiss
import numpy as np

from vistext.store.sqlite.vectors import FLAT, HNSW, VectorIndex


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    block = rng.standard_normal((n, dim), dtype=np.float32)
    return block / np.linalg.norm(block, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=514)
    parser.add_argument("--kinds", nargs="+", default=[FLAT, HNSW], choices=[FLAT, HNSW])
    parser.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.5, 0.1, 0.01, 0.001])
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("-k", type=int, default=10)
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    base = unit_vectors(args.size, args.dim, 0)
    queries = unit_vectors(args.queries, args.dim, 1)
    ids = np.arange(1, args.size + 1, dtype=np.int64)
    rng = np.random.default_rng(2)
    print(f"{args.size} x {args.dim}, k={args.k}, {args.queries} single queries, 1 thread")
    print(f"{'index':6} {'subset':>8} {'ms/query':>9} {'recall@10':>10} {'hits':>5}")
    for kind in args.kinds:
        index = VectorIndex(args.dim, kind)
        started = time.perf_counter()
        index.add(ids, base)
        build = time.perf_counter() - started
        print(f"{kind}: built in {build:.1f} s")
        for fraction in args.fractions:
            subset = np.sort(rng.choice(ids, max(1, int(args.size * fraction)), replace=False))
            restrict = None if fraction >= 1.0 else subset
            exact = base[subset - 1] @ queries.T  # (subset, queries)
            truth = subset[np.argsort(-exact, axis=0)[: args.k]].T
            times, recall, hits = [], [], []
            for q, query in enumerate(queries):
                started = time.perf_counter()
                _, found = index.search(query[None], args.k, restrict)
                times.append(time.perf_counter() - started)
                recall.append(len(set(found[0].tolist()) & set(truth[q].tolist())) / min(args.k, len(subset)))
                hits.append(int((found[0] >= 0).sum()))
            print(f"{kind:6} {len(subset):>8} {1000 * np.median(times):>9.2f} {np.mean(recall):>10.3f} {min(hits):>5}")


if __name__ == "__main__":
    main()
