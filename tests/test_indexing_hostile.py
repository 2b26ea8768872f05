"""Indexing hostile folders: photos changing under the run, trees too deep to recurse, folders that cannot be
listed, huge files that are no image.

What is stored for a photo always comes from the bytes hashed: a real writer process replaces each file
(``os.replace``, as an editor or a sync tool saves) with the other of two real pictures right after its first
read, while the real index runs; every stored feature must then be the feature of the content whose hash is
stored beside it, since every other copy of that content reuses it by hash.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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


def test_a_huge_sparse_non_image_is_refused_from_its_header_without_being_hashed(
    tmp_path: Path, store: Store, encoder: ImageEncoder, pictures: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import vistext.images.files as files

    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(pictures[0], folder / "real.jpg")
    with open(folder / "huge.jpg", "wb") as out:
        out.truncate(2 << 30)  # 2 GB of zeros, sparse: nothing on disk, all of it to read for a hash
    hashed: list[int] = []
    original = files.hash_stream
    monkeypatch.setattr(files, "hash_stream", lambda handle, size: hashed.append(size) or original(handle, size))

    report = index_folder(folder, store, encoder, progress=False)
    assert (report.added, report.failed) == (1, 1)
    assert report.failures == [(str(folder / "huge.jpg"), "not an image file (or not a supported format)")]
    assert hashed == [pictures[0].stat().st_size]  # only the real photo was hashed
    failed = store.get(str(folder / "huge.jpg"))
    assert failed is not None and failed.status == "failed" and failed.sha == ""


def _deep_tree(root: Path, depth: int, photo: bytes, at: set[int]) -> list[str]:
    """``root/d/d/.../d`` ``depth`` levels deep, made through folder descriptors (``os.makedirs`` recurses and
    stops near 1,000 levels); ``x.jpg`` at each level in ``at``. Returns the relative paths of the photos."""
    made: list[str] = []
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for level in range(1, depth + 1):
        os.mkdir("d", dir_fd=fd)
        inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = inner
        if level in at:
            out = os.open("x.jpg", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
            os.write(out, photo)
            os.close(out)
            made.append("d/" * level + "x.jpg")
    os.close(fd)
    return made


def _remove_deep_tree(top: Path) -> None:
    """Remove a tree too deep for ``shutil.rmtree`` (it recurses), deepest folder first."""
    fds = [os.open(top, os.O_RDONLY | os.O_DIRECTORY)]
    while "d" in os.listdir(fds[-1]):
        fds.append(os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fds[-1]))
    for parent, child in zip(reversed(fds[:-1]), reversed(fds[1:]), strict=True):
        for name in os.listdir(child):
            os.unlink(name, dir_fd=child)
        os.close(child)
        os.rmdir("d", dir_fd=parent)
    os.close(fds[0])


@pytest.fixture()
def deep_folder(tmp_path: Path) -> Iterator[Path]:
    top = tmp_path / "t"
    top.mkdir()
    yield top
    _remove_deep_tree(top)


def test_a_folder_tree_2000_deep_is_listed_and_deeper_folders_are_one_line_each(
    deep_folder: Path, store: Store, encoder: ImageEncoder, pictures: list[Path]
) -> None:
    depth = (4096 - len(str(deep_folder))) // 2 + 40  # the last 40 levels lie beyond PATH_MAX
    assert depth >= 2000
    made = _deep_tree(deep_folder, depth, pictures[0].read_bytes(), {1, 1000, 1900, depth})
    (deep_folder / "d" / "loop").symlink_to("..")  # a link back up: not followed

    report = index_folder(deep_folder, store, encoder, progress=False)
    assert sorted(store.file_states()) == sorted(str(deep_folder / rel) for rel in made[:3])
    assert report.added == 3 and report.failed == 1 and len(report.failures) == 1
    (folder, reason), *_ = report.failures
    assert reason == "cannot list this folder (its path is too long): its photos are left as they were"
    assert len(folder) > 4000 and "\n" not in reason
    assert index_folder(deep_folder, store, encoder, progress=False).unchanged == 3


def test_a_folder_that_cannot_be_listed_keeps_its_photos_in_the_catalogue(
    tmp_path: Path, store: Store, encoder: ImageEncoder, pictures: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "photos"
    (folder / "locked").mkdir(parents=True)
    shutil.copy(pictures[0], folder / "a.jpg")
    shutil.copy(pictures[1], folder / "locked" / "b.jpg")
    assert index_folder(folder, store, encoder, progress=False).added == 2
    if os.geteuid() == 0:
        # root lists every folder whatever its mode: the kernel's refusal is given here as it would come
        real_scandir = os.scandir

        def scandir(path: Any) -> Any:
            if Path(path) == folder / "locked":
                raise PermissionError(13, "Permission denied", str(path))
            return real_scandir(path)

        monkeypatch.setattr(os, "scandir", scandir)
    (folder / "locked").chmod(0)
    try:
        report = index_folder(folder, store, encoder, progress=False)
    finally:
        (folder / "locked").chmod(0o755)
        monkeypatch.undo()
    assert report.failures == [
        (str(folder / "locked"), "cannot list this folder (permission denied): its photos are left as they were")
    ]
    assert (report.removed, report.unchanged) == (0, 1) and store.count() == 2
