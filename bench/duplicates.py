"""Duplicates: how well copies are told from distinct photos of the same scene, and what grouping costs.

    .venv/bin/python bench/duplicates.py --quick     # both parts, small (under 2 min on 2 cores)
    .venv/bin/python bench/duplicates.py copies      # 1,000 Flickr8k originals + all 1,034 opendomain photos
    .venv/bin/python bench/duplicates.py memory      # old vs new grouping on 18,000 photos: peak RSS and time

``copies``: every original (read where it lies, never copied into the repository) gets four copies written to a
temporary folder: re-encoded (JPEG quality 50-95), resized (25-100 %), cropped by 5 % (95 % of each side, off
centre) and EXIF-rotated (pixels turned, the orientation tag turning them back). Every file is hashed as
``vistext duplicates`` hashes it; every pair of files is a copy pair (same original) or not (distinct photos:
Flickr8k's bursts and near-identical scenes, and the photos of one opendomain class). Originals are split in a
dev half, on which the copy distance is chosen (the largest with precision >= 0.995), and a test half, reported
per kind of copy.

``memory``: real image features of Flickr8k photos, mixed into 18,000 vectors of which half are perturbed
near-copies of the others: the similar-shot grouping of the last release (every pair kept as a Python tuple, then
a union-find) against this one (blocks of links merged into an int32 union-find), each in its own process, its
peak RSS (VmHWM) and time printed side by side, at the default cosine 0.85 and at 0.5, where millions of pairs
link (as in a collection of many near-copies).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from vistext.analysis.duplicates import cosine_links, hash_links, linked_groups
from vistext.analysis.picture_hash import COPY_DISTANCE, hamming_block, hash_photo

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
FLICKR8K = Path(os.environ.get("VISTEXT_FLICKR8K") or SHARED / "flickr8k")
OPENDOMAIN = Path(os.environ.get("VISTEXT_OPENDOMAIN") or SHARED / "opendomain-classes")
KINDS = ("recoded", "resized", "crop5", "exif")
_TURNS = {6: Image.Transpose.ROTATE_90, 3: Image.Transpose.ROTATE_180, 8: Image.Transpose.ROTATE_270}


# ---- copies ----------------------------------------------------------------------------------------------------
def originals(flickr: int, per_class: int, seed: int) -> list[Path]:
    rng = random.Random(seed)
    photos = sorted((FLICKR8K / "originals").glob("*.jpg"))
    chosen = sorted(rng.sample(photos, min(flickr, len(photos))))  # sorted: neighbours in id are often bursts
    for folder in sorted(p for p in OPENDOMAIN.iterdir() if p.is_dir()) if OPENDOMAIN.is_dir() else []:
        chosen += sorted(folder.glob("*.jpg"))[:per_class]
    return chosen


def make_copies(original: Path, folder: Path, stem: str, rng: random.Random) -> list[Path]:
    """The four kinds of copy of ``original`` in ``folder``, in the order of ``KINDS``."""
    with Image.open(original) as opened:
        picture = opened.convert("RGB")
    recoded = folder / f"{stem}_recoded.jpg"
    picture.save(recoded, quality=rng.randint(50, 95))
    scale = rng.uniform(0.25, 1.0)
    resized = folder / f"{stem}_resized.jpg"
    size = (max(8, round(picture.width * scale)), max(8, round(picture.height * scale)))
    picture.resize(size, Image.Resampling.LANCZOS).save(resized, quality=90)
    width, height = round(picture.width * 0.95), round(picture.height * 0.95)
    left, top = rng.randint(0, picture.width - width), rng.randint(0, picture.height - height)
    cropped = folder / f"{stem}_crop5.jpg"
    picture.crop((left, top, left + width, top + height)).save(cropped, quality=90)
    orientation = rng.choice(sorted(_TURNS))
    exif = Image.Exif()
    exif[0x0112] = orientation  # a viewer turns the stored pixels back to the original
    rotated = folder / f"{stem}_exif.jpg"
    picture.transpose(_TURNS[orientation]).save(rotated, quality=92, exif=exif)
    return [recoded, resized, cropped, rotated]


def _pairs(codes: np.ndarray, family: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair (i < j) among ``rows``: its distance, whether it is a copy pair, and the copy's kind index."""
    sub = codes[rows]
    distance = hamming_block(sub, sub)
    i, j = np.triu_indices(len(rows), k=1)
    same = family[rows][i] == family[rows][j]
    return distance[i, j], same, np.stack([rows[i], rows[j]])


def run_copies(flickr: int, per_class: int, seed: int) -> None:
    rng = random.Random(seed)
    sources = originals(flickr, per_class, seed)
    if not sources:
        print(f"no photos under {FLICKR8K} or {OPENDOMAIN}", file=sys.stderr)
        return
    files, family, kind, origin = [], [], [], []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for number, source in enumerate(sources):
            copies = make_copies(source, Path(tmp), f"{number:05d}", rng)
            for k, path in enumerate([source, *copies]):
                files.append(hash_photo(path))
                family.append(number)
                kind.append(k - 1)  # -1: the original
                origin.append(source.parent.name if OPENDOMAIN in source.parents else "flickr8k")
    elapsed = time.perf_counter() - start
    codes = np.asarray([[h.dct, h.diff] for h in files], dtype=np.int64)
    family_a, kind_a = np.asarray(family), np.asarray(kind)
    print(f"{len(sources)} originals ({(len(origin) - origin.count('flickr8k')) // 5} opendomain), {len(files)} files")
    print(f"made and hashed in {elapsed:.1f} s ({1000 * elapsed / len(files):.1f} ms per file)\n")
    halves = np.asarray([random.Random(seed + n).random() < 0.5 for n in range(len(sources))])
    dev_rows, test_rows = (np.flatnonzero(halves[family_a] == side) for side in (True, False))
    distance, same, _ = _pairs(codes, family_a, dev_rows)
    print("dev half: pair precision and recall by the most hash bits (of 128) two copies may differ in")
    print("| distance | precision | recall |\n|---:|---:|---:|")
    chosen = 0
    for limit in range(4, 41, 2):
        found = distance <= limit
        precision = float((found & same).sum() / max(found.sum(), 1))
        recall = float((found & same).sum() / max(same.sum(), 1))
        print(f"| {limit} | {precision:.4f} | {recall:.4f} |")
        chosen = chosen or (limit if recall >= 0.995 else 0)
    print(f"\nchosen on dev (the smallest with recall >= 0.995): {chosen}; COPY_DISTANCE is {COPY_DISTANCE}\n")
    _report_test(codes, family_a, kind_a, test_rows, chosen, origin)


def _report_test(
    codes: np.ndarray, family: np.ndarray, kind: np.ndarray, rows: np.ndarray, limit: int, origin: list[str]
) -> None:
    distance, same, pairs = _pairs(codes, family, rows)
    found = distance <= limit
    print(f"test half at distance {limit}: {len(rows)} files")
    print("| copy kind | recall | copy pairs |\n|---|---:|---:|")
    originals_only = (kind[pairs[0]] == -1) | (kind[pairs[1]] == -1)
    for k, name in enumerate(KINDS):
        of_kind = same & originals_only & ((kind[pairs[0]] == k) | (kind[pairs[1]] == k))
        print(f"| {name} | {float((found & of_kind).sum() / max(of_kind.sum(), 1)):.4f} | {int(of_kind.sum())} |")
    false = found & ~same
    print(f"\npair precision {float((found & same).sum() / max(found.sum(), 1)):.4f}: {int(false.sum())} false pairs")
    print(f"pair recall (any two files of one original) {float((found & same).sum() / max(same.sum(), 1)):.4f}")
    for a, b in pairs[:, false].T[:10]:
        bits = int(hamming_block(codes[[a]], codes[[b]])[0, 0])
        print(f"  false pair: {origin[a]} #{family[a]} ~ {origin[b]} #{family[b]}: {bits} bits")
    groups = linked_groups(len(rows), hash_links(codes[rows], limit))
    mixed = sum(len(set(family[rows[g]].tolist())) > 1 for g in groups)
    print(f"groups as `vistext duplicates` forms them: {len(groups)}, {mixed} of them mixing distinct photos")
    scene = np.asarray(origin)
    same_scene = ~same & (scene[pairs[0]] == scene[pairs[1]]) & (scene[pairs[0]] != "flickr8k")
    called = int((found & same_scene).sum())
    print(f"pairs of distinct photos of one opendomain class: {int(same_scene.sum())}, called copies: {called}")


# ---- memory ----------------------------------------------------------------------------------------------------
def _old_groups(matrix: np.ndarray, threshold: float, chunk: int = 1024) -> list[list[int]]:
    """The last release's grouping: every pair as a Python tuple, then a union-find over them."""
    matrix = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    pairs: list[tuple[int, int, float]] = []
    for start in range(0, matrix.shape[0], chunk):
        sims = matrix[start : start + chunk] @ matrix[start:].T
        rows, cols = np.nonzero(sims >= threshold)
        keep = start + cols > start + rows
        for row, col in zip(rows[keep].tolist(), cols[keep].tolist(), strict=True):
            pairs.append((start + row, start + col, float(sims[row, col])))
    parent = list(range(len(matrix)))

    def root(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for i, j, _ in pairs:
        a, b = root(i), root(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    members: dict[int, list[int]] = {}
    for node in range(len(matrix)):
        members.setdefault(root(node), []).append(node)
    print(f"{len(pairs)} pairs kept", file=sys.stderr)
    return sorted((sorted(g) for g in members.values() if len(g) > 1), key=lambda g: (-len(g), g[0]))


def synthetic_features(real: int, total: int, seed: int) -> np.ndarray:
    """``total`` vectors from ``real`` Flickr8k photos' pooled features: half mixtures of two photos, half
    near-copies of those (cosine 0.86-0.99)."""
    from vistext.encoders import create_image_encoder
    from vistext.features import encode_files

    photos = sorted((FLICKR8K / "images").glob("*.jpg"))[:real]
    base = encode_files(photos, create_image_encoder(), progress=False).pooled.astype(np.float32)
    rng = np.random.default_rng(seed)
    half = total // 2
    a, b = rng.integers(0, len(base), half), rng.integers(0, len(base), half)
    weight = rng.uniform(0.2, 0.8, (half, 1)).astype(np.float32)
    mixed = weight * base[a] + (1 - weight) * base[b]
    parents = mixed[rng.integers(0, half, total - half)]
    noise = rng.normal(size=parents.shape).astype(np.float32)
    noise *= np.linalg.norm(parents, axis=1, keepdims=True) / np.linalg.norm(noise, axis=1, keepdims=True)
    strength = rng.uniform(0.15, 0.6, (len(parents), 1)).astype(np.float32)
    return np.vstack([mixed, parents + strength * noise])


def run_memory(real: int, total: int, thresholds: tuple[float, ...], seed: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        matrix_file = Path(tmp) / "features.npy"
        np.save(matrix_file, synthetic_features(real, total, seed))
        print(f"{total} vectors from {real} real photos' features (lower thresholds: more pairs)\n")
        print("| grouping | cosine | peak RSS | time | groups |\n|---|---:|---:|---:|---|")
        for way, threshold in ((way, t) for t in thresholds for way in ("old", "new")):
            done = subprocess.run(
                [sys.executable, __file__, "memory-run", way, str(matrix_file), str(threshold)],
                capture_output=True,
                text=True,
                check=True,
            )
            peak, seconds, groups, largest = done.stdout.split()
            note = f"largest {largest}; {done.stderr.strip()}".rstrip("; ")
            print(f"| {way} | {threshold} | {int(peak) / 1024:.0f} MB | {float(seconds):.1f} s | {groups} ({note}) |")


def _peak_kb() -> int:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def memory_run(way: str, matrix_file: str, threshold: float) -> None:
    matrix = np.load(matrix_file)
    start = time.perf_counter()
    if way == "old":
        groups = _old_groups(matrix, threshold)
    else:
        groups = linked_groups(len(matrix), cosine_links(matrix, threshold))
    elapsed = time.perf_counter() - start
    peak = _peak_kb()
    print(peak, f"{elapsed:.2f}", len(groups), max((len(g) for g in groups), default=0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", nargs="*", default=["copies", "memory"], help="copies, memory (default both)")
    parser.add_argument("--quick", action="store_true", help="small sizes: both parts in under 2 minutes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--total", type=int, default=18_000, help="vectors in the memory part")
    args = parser.parse_args(argv)
    if args.part[:1] == ["memory-run"]:
        memory_run(args.part[1], args.part[2], float(args.part[3]))
        return 0
    if "copies" in args.part:
        run_copies(150 if args.quick else 1000, 6 if args.quick else 100, args.seed)
    if "memory" in args.part:
        run_memory(100 if args.quick else 400, 3000 if args.quick else args.total, (0.85, 0.5), args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
