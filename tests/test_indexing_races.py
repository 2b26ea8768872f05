"""Indexing while the photos change under it: what is stored for a photo always comes from the bytes hashed.

A real writer process replaces each file (``os.replace``, as an editor or a sync tool saves) with the other of
two real pictures right after its first read, while the real index runs; every stored feature must then be the
feature of the content whose hash is stored beside it, since every other copy of that content reuses it by hash.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from vistext.encoders import ImageEncoder, create_image_encoder
from vistext.features import extract
from vistext.images import file_hash, open_image
from vistext.indexing.local import index_folder
from vistext.store import Store, open_store

N_FILES = 100


@pytest.fixture(scope="module")
def encoder() -> ImageEncoder:
    return create_image_encoder()


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(tmp_path / "db" / "catalogue.sqlite") as opened:
        yield opened


@pytest.fixture()
def pictures(real_jpegs: list[Path], tmp_path: Path) -> list[Path]:
    """Two real, different photos (kept outside the indexed folder)."""
    keep = tmp_path / "two"
    keep.mkdir()
    return [Path(shutil.copy(real_jpegs[i], keep / f"{i}.jpg")) for i in (0, 1)]


# Waits (inotify) for each photo's first read to end, then replaces it with the other picture at once (write a
# hidden temporary, then os.replace, as an editor or a sync tool saves): whatever reads the photo again by name
# later sees the other picture.
_REWRITER = r"""
import ctypes, os, struct, sys
folder, n = sys.argv[1], int(sys.argv[2])
data = [open(p, "rb").read() for p in sys.argv[3:5]]
libc = ctypes.CDLL(None, use_errno=True)
watch = libc.inotify_init()
IN_CLOSE_NOWRITE = 0x10
assert watch >= 0 and libc.inotify_add_watch(watch, folder.encode(), IN_CLOSE_NOWRITE) >= 0
done = set()
print("ready", flush=True)
while True:
    events, offset = os.read(watch, 1 << 16), 0
    while offset < len(events):
        _, _, _, length = struct.unpack_from("iIII", events, offset)
        name = events[offset + 16 : offset + 16 + length].rstrip(b"\0").decode()
        offset += 16 + length
        if not name.startswith("p") or name in done:
            continue
        done.add(name)
        temporary = os.path.join(folder, ".tmp-" + name)
        with open(temporary, "wb") as out:
            out.write(data[1 - int(name[1:4]) % 2])
        os.replace(temporary, os.path.join(folder, name))
"""


@contextmanager
def rewriting(folder: Path, pictures: list[Path]) -> Iterator[None]:
    """A separate process that replaces each ``folder/pNNN.jpg`` (holding ``pictures[NNN % 2]``) with the other
    picture right after something first reads it, for as long as the block runs."""
    writer = subprocess.Popen(
        [sys.executable, "-c", _REWRITER, str(folder), str(N_FILES), *map(str, pictures)], stdout=subprocess.PIPE
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline() == b"ready\n"
        yield
    finally:
        writer.kill()
        writer.wait()
    for temporary in folder.glob(".tmp-*"):
        temporary.unlink()


def _truth(pictures: list[Path], encoder: ImageEncoder) -> dict[str, np.ndarray]:
    """Each picture's content hash -> its pooled features, computed on their own."""
    (batch,) = list(extract([str(p) for p in pictures], encoder, batch_size=2, progress=False))
    features = {item.path: item.pooled for item in batch}
    return {file_hash(p): np.asarray(features[str(p)]) for p in pictures}


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _wrong_rows(store: Store, truth: dict[str, np.ndarray]) -> list[str]:
    """Stored photos whose features are not those of the content whose hash is stored with them."""
    wrong = []
    for record in store.records():
        assert record.status == "ok", (record.path, record.error)
        assert record.sha in truth and record.pooled is not None, record.path
        if _cosine(record.pooled, truth[record.sha]) <= 0.999:
            wrong.append(record.path)
    return wrong


def test_files_replaced_during_indexing_never_get_another_pictures_features(
    tmp_path: Path, store: Store, encoder: ImageEncoder, pictures: list[Path]
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(N_FILES):
        shutil.copy(pictures[i % 2], folder / f"p{i:03d}.jpg")
    truth = _truth(pictures, encoder)
    assert _cosine(*truth.values()) < 0.99  # two pictures the check can tell apart

    with rewriting(folder, pictures):
        report = index_folder(folder, store, encoder, batch_size=8, progress=False)
    assert (report.added, report.failed) == (N_FILES, 0), report.failures
    assert _wrong_rows(store, truth) == []

    quiet = index_folder(folder, store, encoder, batch_size=8, progress=False)  # nothing changes any more
    assert quiet.added == quiet.failed == 0 and quiet.updated + quiet.unchanged == N_FILES
    assert _wrong_rows(store, truth) == []
    states = store.file_states()
    for file in folder.glob("*.jpg"):
        assert states[str(file)].sha == file_hash(file), file  # every row describes the file as it is now


def test_ray_decode_stage_hashes_the_bytes_it_decodes(
    tmp_path: Path, encoder: ImageEncoder, pictures: list[Path]
) -> None:
    """The Ray engine's decode tasks follow the same rule: the pixels handed to the model are those of the
    content whose hash goes with them, and the size and mtime are those of the version read."""
    from vistext.indexing.ray_stages import decode_batch
    from vistext.indexing.sources import FolderSource

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(N_FILES):
        shutil.copy(pictures[i % 2], folder / f"p{i:03d}.jpg")
    size = encoder.preprocessing.size
    truth = {file_hash(p): encoder.pixels(open_image(p, min_side=size)) for p in pictures}
    paths = sorted(folder.glob("*.jpg"))
    batch = {
        "path": np.array([str(p) for p in paths], dtype=object),
        "size": np.array([p.stat().st_size for p in paths]),
        "mtime": np.array([p.stat().st_mtime for p in paths]),
    }
    with rewriting(folder, pictures):
        decoded = decode_batch(batch, FolderSource(folder), encoder.name)
    assert list(decoded["error"]) == [""] * N_FILES
    for sha, pixels, size_read in zip(decoded["sha"], decoded["pixels"], decoded["size"], strict=True):
        np.testing.assert_array_equal(pixels, truth[sha])
        assert size_read == next(p.stat().st_size for p in pictures if file_hash(p) == sha)
