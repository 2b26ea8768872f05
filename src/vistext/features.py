"""Streaming, batched feature extraction: paths -> threaded decode -> batches -> encoder -> results.

Decoding runs in a small thread pool (PIL releases the GIL while decoding and resizing) and overlaps with
inference in the calling thread. At most a few batches are in flight, so memory stays flat for any folder size.
``encode_files`` is the dataset/training entry point: arrays aligned with the input paths, cached on disk;
``embed_files`` maps each batch's features through a model (e.g. ``JointModel.encode_images``) without keeping
them, for evaluation.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import deque
from collections.abc import Callable, Generator, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from vistext.encoders import ImageEncoder, ImageFeatures
from vistext.errors import ImageDecodeError
from vistext.images import PhotoFile, open_image
from vistext.images.attributes import pixel_measures
from vistext.paths import atomic_path, cache_dir

log = logging.getLogger(__name__)

_CACHE_VERSION = "1"


@dataclass
class EncodedImage:
    """One image's features, or the reason it could not be decoded (``error``; arrays are then None)."""

    path: str
    pooled: np.ndarray | None = None
    logits: np.ndarray | None = None
    grid: np.ndarray | None = None
    error: str | None = None
    attributes: np.ndarray | None = None  # the pixels' colour and light measures (``images.attributes``)


@dataclass
class FeatureArrays:
    """Features aligned with ``paths``: pooled (N[,V],D) float32, logits (N[,V],C), grid (N[,V],D,h,w) float16."""

    paths: list[str]
    pooled: np.ndarray
    logits: np.ndarray | None = None
    grid: np.ndarray | None = None


Source = str | Path | PhotoFile  # a path, or a photo indexing has already opened and hashed (decoded from that file)
Prepare = Callable[[Source], np.ndarray]


# Decode threads produce uint8 pixels; normalising them to float is left to the encoder, which for the bundled
# ONNX model happens inside the graph on ONNX Runtime's threads instead of in numpy per image.
def _prepare_single(encoder: ImageEncoder, min_side: int) -> Prepare:
    def prepare(source: Source) -> np.ndarray:
        return encoder.pixels(open_image(source, min_side=min_side))[None]

    return prepare


def _prepare_views(encoder: ImageEncoder, views: Callable[[Image.Image], list[Image.Image]], min_side: int) -> Prepare:
    def prepare(source: Source) -> np.ndarray:
        return np.stack([encoder.pixels(view) for view in views(open_image(source, min_side=min_side))])

    return prepare


def _decode_or_error(prepare: Prepare, source: Source) -> tuple[str, np.ndarray | None, str | None]:
    path = source.path if isinstance(source, PhotoFile) else str(source)
    try:
        return path, prepare(source), None
    except ImageDecodeError as error:
        return path, None, str(error)
    except Exception as error:  # noqa: BLE001 - one file's failure never stops a batch
        return path, None, f"{path}: cannot decode image ({type(error).__name__}: {' '.join(str(error).split())})"


def _stream(
    paths: Iterable[Source],
    encoder: ImageEncoder,
    prepare: Prepare,
    *,
    batch_size: int,
    workers: int,
    grid: bool,
    bar: tqdm,
) -> Generator[list[EncodedImage], None, None]:
    """The runner: a bounded window of decode futures feeds batches to ``encoder.encode_pixels`` on the
    encoder's ``encode_streams`` threads, and the caller gets each batch's results in order while the next
    batches are being encoded (its own work on a batch, such as storing it, overlaps the model's).

    Each prepared item is (V, H, W, 3) uint8; a batch encodes all views at once and results keep the V axis only
    when V > 1 is asked for by the caller (``encode_files``).
    """
    streams = max(1, encoder.encode_streams)
    window = (streams + 1) * batch_size + 2 * workers  # a batch for each stream and the next, being decoded
    pending: deque[Future] = deque()
    encoding: deque[Future[list[EncodedImage]]] = deque()
    source = iter(paths)
    decoders = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="vistext-decode")
    encoders = ThreadPoolExecutor(max_workers=streams, thread_name_prefix="vistext-encode")

    def refill() -> None:
        while len(pending) < window:
            path = next(source, None)
            if path is None:
                return
            pending.append(decoders.submit(_decode_or_error, prepare, path))

    def next_batch() -> Future[list[EncodedImage]]:
        ready: list[tuple[str, np.ndarray]] = []
        failed: list[EncodedImage] = []
        while pending and len(ready) < batch_size:
            path, pixels, error = pending.popleft().result()
            if error is not None:
                failed.append(EncodedImage(path=path, error=error))
            else:
                ready.append((path, pixels))  # type: ignore[arg-type]
            refill()  # keep the decoders busy while the encoders run
        return encoders.submit(lambda: _encode_batch(encoder, ready, grid) + failed)

    try:
        refill()
        while pending or encoding:
            while pending and len(encoding) < streams:
                encoding.append(next_batch())
            results = encoding.popleft().result()
            bar.update(len(results))
            yield results
    finally:  # a caller that stops early: photos not yet decoded are dropped, the batches in flight finish
        decoders.shutdown(wait=True, cancel_futures=True)
        encoders.shutdown(wait=True, cancel_futures=True)


def _encode_batch(encoder: ImageEncoder, ready: list[tuple[str, np.ndarray]], grid: bool) -> list[EncodedImage]:
    if not ready:
        return []
    n_views = ready[0][1].shape[0]
    features = encoder.encode_pixels(np.concatenate([pixels for _, pixels in ready]), grid=grid)
    measures = pixel_measures(np.stack([pixels[0] for _, pixels in ready]))  # the first view: the whole frame

    def split(array: np.ndarray | None, i: int) -> np.ndarray | None:
        if array is None:
            return None
        rows = array[i * n_views : (i + 1) * n_views]
        return rows[0] if n_views == 1 else rows

    return [
        EncodedImage(
            path=path,
            pooled=split(features.pooled, i),
            logits=split(features.logits, i),
            grid=split(features.grid, i),
            attributes=measures[i],
        )
        for i, (path, _) in enumerate(ready)
    ]


def _progress_bar(total: int | None, progress: bool, desc: str) -> tqdm:
    return tqdm(total=total, disable=not progress, desc=desc, unit="img", dynamic_ncols=True, smoothing=0.1)


def extract(
    paths: Iterable[Source],
    encoder: ImageEncoder,
    *,
    batch_size: int = 16,
    workers: int = 2,
    grid: bool = False,
    progress: bool = True,
) -> Generator[list[EncodedImage], None, None]:
    """Encode images in batches, yielding one list per batch (so a caller can commit per batch).

    Decoding runs in ``workers`` threads and overlaps inference. A file that cannot be decoded yields an
    ``EncodedImage`` with ``error`` set; it never stops the run. Results in a batch need not follow input order.
    ``paths`` may be a lazy iterable; it is consumed only as fast as the encoder keeps up. An item may be a
    ``PhotoFile`` (indexing): it is decoded from its open file, and its ``EncodedImage.path`` is its path.
    """
    total = len(paths) if isinstance(paths, Sequence) else None
    min_side = encoder.preprocessing.size
    with _progress_bar(total, progress, "encoding") as bar:
        yield from _stream(
            paths,
            encoder,
            _prepare_single(encoder, min_side),
            batch_size=batch_size,
            workers=workers,
            grid=grid,
            bar=bar,
        )


def _cache_key(paths: Sequence[str], encoder: ImageEncoder, grid: bool, views: object) -> str:
    digest = hashlib.blake2b(digest_size=16)
    views_name = "" if views is None else getattr(views, "name", None) or getattr(views, "__name__", repr(views))
    digest.update(f"{_CACHE_VERSION}|{encoder.name}|{grid}|{views_name}".encode())
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError:
            raise ImageDecodeError(path, "file not found") from None
        digest.update(f"\n{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def _load_cached(file: Path, n: int) -> FeatureArrays | None:
    try:
        with np.load(file) as data:
            if data["pooled"].shape[0] != n:
                return None
            return FeatureArrays(
                paths=[],
                pooled=data["pooled"],
                logits=data["logits"] if "logits" in data else None,
                grid=data["grid"] if "grid" in data else None,
            )
    except (OSError, ValueError, KeyError) as error:
        log.warning("ignoring unreadable feature cache %s (%s)", file, error)
        return None


def _save_cached(file: Path, arrays: FeatureArrays) -> None:
    payload: dict[str, Any] = {"pooled": arrays.pooled}
    if arrays.logits is not None:
        payload["logits"] = arrays.logits
    if arrays.grid is not None:
        payload["grid"] = arrays.grid
    with atomic_path(file, fsync=False) as tmp, tmp.open("wb") as out:  # a crash never leaves half a cache file
        np.savez(out, **payload)


def _rows_by_path(names: Sequence[str]) -> dict[str, list[int]]:
    """Each distinct path and the rows it fills (a path listed twice is decoded once)."""
    rows: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        rows.setdefault(name, []).append(i)
    return rows


def _raise_if_failed(item: EncodedImage) -> None:
    if item.error is not None:
        raise ImageDecodeError(item.path, item.error.removeprefix(f"{item.path}: "))


def embed_files(
    paths: Sequence[str | Path],
    encoder: ImageEncoder,
    embed: Callable[[ImageFeatures], np.ndarray],
    *,
    grid: bool = False,
    progress: bool = True,
    batch_size: int = 32,
    workers: int = 2,
) -> np.ndarray:
    """``embed(features)`` of every image file, rows aligned with ``paths``: decode -> encode -> embed streams
    batch by batch (one plain view each, decoded as indexing decodes them), so only a few batches' features
    are ever held; nothing is cached. Any undecodable file raises ``ImageDecodeError``."""
    names = [str(p) for p in paths]
    rows = _rows_by_path(names)
    out: np.ndarray | None = None
    prepare = _prepare_single(encoder, encoder.preprocessing.size)
    with _progress_bar(len(rows), progress, "images") as bar:
        for batch in _stream(list(rows), encoder, prepare, batch_size=batch_size, workers=workers, grid=grid, bar=bar):
            for item in batch:
                _raise_if_failed(item)
            pooled = [item.pooled for item in batch if item.pooled is not None]
            grids = [item.grid for item in batch if item.grid is not None]
            vectors = np.asarray(embed(ImageFeatures(np.stack(pooled), grid=np.stack(grids) if grid else None)))
            if out is None:
                out = np.empty((len(names), *vectors.shape[1:]), vectors.dtype)
            for item, vector in zip(batch, vectors, strict=True):
                out[rows[item.path]] = vector
    if out is None:  # no paths: whatever shape ``embed`` gives an empty batch
        empty = ImageFeatures(np.empty((0, encoder.dim), np.float32), grid=np.empty((0, encoder.dim, 0, 0), np.float32))
        out = np.asarray(embed(empty))
    return out


def encode_files(
    paths: Sequence[str | Path],
    encoder: ImageEncoder,
    *,
    grid: bool = False,
    views: Callable[[Image.Image], list[Image.Image]] | None = None,
    cache: bool = True,
    progress: bool = True,
    batch_size: int = 32,
    workers: int = 2,
) -> FeatureArrays:
    """Features for a dataset, aligned with ``paths`` (for training and evaluation).

    ``views`` maps a decoded image to several (flips, crops...): arrays then get a views axis (N, V, ...).
    Results are cached under ``cache_dir("features", encoder.name)`` keyed by the files (path, size, mtime),
    the encoder, ``grid`` and the views' ``name``, so a second call only reads the cache. Any undecodable
    file raises ``ImageDecodeError``: datasets must be clean.
    """
    names = [str(p) for p in paths]
    file = None
    if cache:
        file = cache_dir("features", encoder.name) / f"{_cache_key(names, encoder, grid, views)}.npz"
        if file.is_file():
            cached = _load_cached(file, len(names))
            if cached is not None:
                cached.paths = names
                return cached
    min_side = encoder.preprocessing.size
    prepare = _prepare_single(encoder, min_side) if views is None else _prepare_views(encoder, views, min_side)
    rows = _rows_by_path(names)
    pooled: np.ndarray | None = None
    logits: np.ndarray | None = None
    fmap: np.ndarray | None = None
    unique = list(rows)
    with _progress_bar(len(unique), progress, "features") as bar:
        for batch in _stream(unique, encoder, prepare, batch_size=batch_size, workers=workers, grid=grid, bar=bar):
            for item in batch:
                _raise_if_failed(item)
                if pooled is None:
                    pooled = np.empty((len(names), *item.pooled.shape), np.float32)  # type: ignore[union-attr]
                    if item.logits is not None:
                        logits = np.empty((len(names), *item.logits.shape), np.float32)
                    if item.grid is not None:
                        fmap = np.empty((len(names), *item.grid.shape), np.float16)
                row = rows[item.path]
                pooled[row] = item.pooled
                if logits is not None:
                    logits[row] = item.logits
                if fmap is not None:
                    fmap[row] = item.grid
    if pooled is None:
        pooled = np.empty((0, encoder.dim), np.float32)
    arrays = FeatureArrays(paths=names, pooled=pooled, logits=logits, grid=fmap)
    if file is not None:
        _save_cached(file, arrays)
    return arrays
