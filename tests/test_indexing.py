"""Incremental indexing on real Flickr8k photos: re-runs, edits, corrupt files, moves, and a SIGKILL mid-run."""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vistext.encoders import ImageEncoder, ImageFeatures, create_image_encoder
from vistext.errors import ModelError
from vistext.features import EncodedImage
from vistext.indexing.local import DerivedProjector, IndexReport, index_folder, project_batch
from vistext.store import Store, open_store


@pytest.fixture(scope="module")
def encoder() -> ImageEncoder:
    return create_image_encoder()


def _copy_photos(sources: list[Path], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for source in sources:
        shutil.copy(source, folder / source.name)
    return folder


@pytest.fixture()
def folder(tmp_path: Path, flickr8k_images: list[Path]) -> Path:
    return _copy_photos(flickr8k_images[:30], tmp_path / "photos")


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    opened = open_store(tmp_path / "db" / "catalogue.sqlite")
    yield opened
    opened.close()


def _rows(store: Store) -> dict[str, tuple[str, str]]:
    return {path: (state.sha, state.status) for path, state in store.file_states().items()}


def test_index_rerun_and_changes(
    folder: Path, store: Store, encoder: ImageEncoder, flickr8k_images: list[Path]
) -> None:
    first = index_folder(folder, store, encoder, batch_size=8, progress=False)
    assert (first.added, first.updated, first.removed, first.unchanged, first.failed) == (30, 0, 0, 0, 0)
    assert store.count() == 30 and set(store.file_states()) == {str(p.resolve()) for p in folder.iterdir()}
    record = store.get(str((folder / flickr8k_images[0].name).resolve()))
    assert record is not None and record.status == "ok" and record.pooled is not None
    assert record.pooled.shape == (1280,) and np.isfinite(record.pooled).all()

    again = index_folder(folder, store, encoder, progress=False)
    assert (again.added, again.updated, again.removed, again.unchanged) == (0, 0, 0, 30)

    changed = folder / flickr8k_images[1].name
    shutil.copy(flickr8k_images[40], changed)  # new content under an old name
    os.utime(changed, (time.time() + 5, time.time() + 5))
    (folder / flickr8k_images[2].name).unlink()
    _copy_photos(flickr8k_images[30:33], folder / "sub")
    report = index_folder(folder, store, encoder, progress=False)
    assert (report.added, report.updated, report.removed, report.unchanged, report.failed) == (3, 1, 1, 28, 0)
    assert store.count() == 32
    assert report.to_dict()["added"] == 3


def test_corrupt_file_is_recorded_and_rows_survive(
    folder: Path, store: Store, encoder: ImageEncoder, flickr8k_images: list[Path]
) -> None:
    index_folder(folder, store, encoder, progress=False)
    before = _rows(store)
    bad = folder / "zz_broken.jpg"
    bad.write_bytes(flickr8k_images[0].read_bytes()[:1200])
    (folder / "notes.png").write_text("not a picture")
    report = index_folder(folder, store, encoder, progress=False)
    assert report.failed == 2 and report.added == 0 and report.unchanged == 30
    reasons = dict(report.failures)
    assert "truncated or corrupt" in reasons[str(bad.resolve())]
    assert "not an image file" in reasons[str((folder / "notes.png").resolve())]
    failed = store.get(str(bad.resolve()))
    assert failed is not None and failed.status == "failed" and "truncated" in (failed.error or "")
    after = _rows(store)
    assert {p: after[p] for p in before} == before  # nothing already stored was lost
    assert store.count(status="ok") == 30

    assert index_folder(folder, store, encoder, progress=False).failed == 0  # not retried while unchanged
    shutil.copy(flickr8k_images[50], bad)  # fixed: retried because the file changed
    fixed = index_folder(folder, store, encoder, progress=False)
    assert fixed.updated == 1 and store.get(str(bad.resolve())).status == "ok"  # type: ignore[union-attr]


def test_moved_and_copied_files_reuse_features_and_projectors(
    folder: Path, store: Store, encoder: ImageEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    grids: list[tuple[int, ...]] = []

    def first8(features: ImageFeatures) -> np.ndarray:
        return features.pooled[:, :8] * 2

    def from_grid(features: ImageFeatures) -> np.ndarray:
        assert features.grid is not None
        grids.append(features.grid.shape)
        return features.grid.mean(axis=(2, 3))[:, :4]

    from_grid.needs_grid = True  # type: ignore[attr-defined]
    projectors = {"joint:test": first8, "grid:test": from_grid}
    index_folder(folder, store, encoder, projectors=projectors, progress=False)
    assert grids and all(shape[1:] == (1280, 7, 7) for shape in grids)
    some = sorted(folder.iterdir())[0]
    record = store.get(str(some.resolve()))
    assert record is not None and record.embeddings["joint:test"].shape == (8,)
    np.testing.assert_allclose(record.embeddings["joint:test"], record.pooled[:8] * 2, rtol=1e-5)  # type: ignore[index]

    calls: list[int] = []
    original = encoder.encode
    monkeypatch.setattr(encoder, "encode", lambda batch, grid=False: calls.append(len(batch)) or original(batch, grid))
    some.rename(folder / "renamed.jpg")
    shutil.copy(folder / "renamed.jpg", folder / "copy.jpg")
    report = index_folder(folder, store, encoder, projectors=projectors, progress=False)
    assert (report.added, report.removed) == (2, 1) and calls == []  # same content: nothing decoded or encoded
    moved = store.get(str((folder / "renamed.jpg").resolve()))
    assert moved is not None and moved.embeddings["joint:test"].shape == (8,)


_INDEX_SCRIPT = """
import sys
from vistext.encoders import create_image_encoder
from vistext.errors import ModelError
from vistext.features import EncodedImage
from vistext.indexing.local import DerivedProjector, IndexReport, index_folder, project_batch
from vistext.store import open_store
store = open_store(sys.argv[2])
index_folder(sys.argv[1], store, create_image_encoder(threads=1), batch_size=8, workers=1, progress=False)
"""


@pytest.mark.slow
def test_killed_run_resumes_without_loss_or_duplicates(
    tmp_path: Path, encoder: ImageEncoder, flickr8k_images: list[Path]
) -> None:
    photos = _copy_photos(flickr8k_images[100:250], tmp_path / "many")
    db = tmp_path / "killed" / "catalogue.sqlite"
    db.parent.mkdir()
    open_store(db).close()
    child = subprocess.Popen([sys.executable, "-c", _INDEX_SCRIPT, str(photos), str(db)])
    watcher = open_store(db)
    try:
        deadline = time.monotonic() + 60
        while watcher.count() < 24 and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait()
        partial = watcher.count()
    finally:
        watcher.close()
    assert 0 < partial < 150, f"the child was not stopped mid-run ({partial} rows)"

    resumed = open_store(db)
    clean = open_store(tmp_path / "clean" / "catalogue.sqlite")
    try:
        report = index_folder(photos, resumed, encoder, progress=False)
        assert report.unchanged == partial and report.added == 150 - partial and report.failed == 0
        index_folder(photos, clean, encoder, progress=False)
        assert resumed.count() == clean.count() == 150
        assert _rows(resumed) == _rows(clean)  # same paths, same content hashes, all ok
        path = str((photos / flickr8k_images[120].name).resolve())
        np.testing.assert_allclose(resumed.get(path).pooled, clean.get(path).pooled, atol=1e-5)  # type: ignore[union-attr]
    finally:
        resumed.close()
        clean.close()


def test_rerun_adds_a_new_embedding_space_to_unchanged_files(folder: Path, store: Store, encoder: ImageEncoder) -> None:
    index_folder(folder, store, encoder, progress=False)
    assert "joint:test" not in store.spaces()

    def first8(features: ImageFeatures) -> np.ndarray:
        return features.pooled[:, :8]

    report = index_folder(folder, store, encoder, projectors={"joint:test": first8}, progress=False)
    assert (report.updated, report.unchanged) == (30, 0)
    assert store.paths_missing("joint:test") == set()
    again = index_folder(folder, store, encoder, projectors={"joint:test": first8}, progress=False)
    assert again.unchanged == 30


def _dds_texture() -> bytes:
    """A DDS texture header Pillow's DDS plugin rejects with NotImplementedError (once fatal to a whole run)."""
    pixel_format = struct.pack("<II4s5I", 32, 0x4, b"XXXX", 0, 0, 0, 0, 0)
    header = struct.pack("<7I", 124, 0x1007, 4, 4, 0, 0, 0) + b"\0" * 44 + pixel_format + b"\0" * 20
    return b"DDS " + header + b"\0" * 64


def _in_time(call: Callable[[], IndexReport], seconds: float = 180.0) -> IndexReport:
    """Run ``call`` in a thread so that a hang fails the test instead of stalling the suite."""
    result: list[IndexReport | BaseException] = []
    thread = threading.Thread(target=lambda: result.append(_catching(call)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert result, f"index still running after {seconds}s: it hangs"
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


def _catching(call: Callable[[], IndexReport]) -> IndexReport | BaseException:
    try:
        return call()
    except BaseException as error:  # noqa: BLE001 - re-raised in the test's thread
        return error


def test_hostile_files_never_stop_or_hang_a_run(
    folder: Path, store: Store, encoder: ImageEncoder, flickr8k_images: list[Path]
) -> None:
    (folder / "texture.png").write_bytes(_dds_texture())
    os.mkfifo(folder / "pipe.jpg")
    (folder / "zero.jpg").symlink_to("/dev/zero")
    (folder / "random.jpg").symlink_to("/dev/urandom")
    latin1 = Path(os.fsdecode(os.path.join(os.fsencode(folder), b"caf\xe9.jpg")))  # not valid UTF-8
    shutil.copy(flickr8k_images[60], latin1)
    exif = b"II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHII", 0x010E, 2, 1000, 100) + struct.pack("<I", 0)
    Image.open(flickr8k_images[61]).save(folder / "odd-exif.jpg", exif=b"Exif\x00\x00" + exif)  # decodes, warns
    deep = np.tile(np.linspace(0, 65535, 300).astype(np.uint16), (200, 1))
    Image.fromarray(deep).save(folder / "deep.png")

    report = _in_time(lambda: index_folder(folder, store, encoder, batch_size=8, progress=False))
    reasons = dict(report.failures)
    assert (report.added, report.failed) == (33, 4), reasons
    assert "not an image file" in reasons[str(folder / "texture.png")]
    assert "FIFO" in reasons[str(folder / "pipe.jpg")]
    assert "device" in reasons[str(folder / "zero.jpg")] and "device" in reasons[str(folder / "random.jpg")]
    assert any(path == str(folder / "odd-exif.jpg") for path, _ in report.warnings)
    assert report.to_dict()["warnings"][0]["path"] == str(folder / "odd-exif.jpg")
    record = store.get(str(latin1))
    assert record is not None and record.status == "ok" and record.path == str(latin1)
    assert str(latin1) in store.file_states()

    again = _in_time(lambda: index_folder(folder, store, encoder, progress=False))
    assert (again.added, again.removed, again.unchanged, again.failed) == (0, 0, 34, 3)


def test_a_moved_or_copied_collection_keeps_its_index(
    tmp_path: Path, encoder: ImageEncoder, flickr8k_images: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    photos = _copy_photos(flickr8k_images[:12], tmp_path / "photos")
    _copy_photos(flickr8k_images[12:15], photos / "sub")
    with open_store(photos / ".vistext" / "catalogue.sqlite") as store:
        assert index_folder(photos, store, encoder, progress=False).added == 15
        probe = store.get(str(photos / "sub" / flickr8k_images[13].name))
    assert probe is not None and probe.pooled is not None

    calls: list[int] = []
    original = encoder.encode
    monkeypatch.setattr(encoder, "encode", lambda batch, grid=False: calls.append(len(batch)) or original(batch, grid))
    moved = tmp_path / "pictures"
    photos.rename(moved)
    copied = tmp_path / "other-disk" / "copy"
    shutil.copytree(moved, copied)  # keeps mtimes, like cp -a or rsync -a
    for root in (moved, copied):
        with open_store(root / ".vistext" / "catalogue.sqlite") as store:
            hit = store.search("image", probe.pooled, 1)[0][0]
            assert hit.path == str(root / "sub" / flickr8k_images[13].name)
            report = index_folder(root, store, encoder, progress=False)
            assert (report.added, report.updated, report.removed, report.unchanged) == (0, 0, 0, 15)
            assert store.count() == 15 and all(path.startswith(str(root)) for path in store.file_states())
    assert calls == []  # nothing decoded or encoded again


def test_a_second_index_into_the_same_catalogue_is_told_so(
    tmp_path: Path, store: Store, encoder: ImageEncoder, flickr8k_images: list[Path]
) -> None:
    photos = _copy_photos(flickr8k_images[:4], tmp_path / "few")
    db = tmp_path / "db" / "catalogue.sqlite"
    with store.writer_lock():  # a first `vistext index` is running
        child = subprocess.run(
            [sys.executable, "-c", _INDEX_SCRIPT, str(photos), str(db)], capture_output=True, text=True, timeout=300
        )
        assert child.returncode != 0
        assert f"another `vistext index` (pid {os.getpid()}) is writing this catalogue" in child.stderr
        assert store.count() == 0
    assert index_folder(photos, store, encoder, progress=False).added == 4


def test_thumbnails_are_served_when_their_cache_cannot_be_written(
    tmp_path: Path, encoder: ImageEncoder, flickr8k_images: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from vistext.errors import StoreError
    from vistext.paths import vistext_home
    from vistext.service import Service
    from vistext.service.explore import UnknownImageError

    photos = _copy_photos(flickr8k_images[:2], tmp_path / "thumbs")
    db = photos / ".vistext" / "catalogue.sqlite"
    with open_store(db) as store:
        index_folder(photos, store, encoder, progress=False)
        image_id = next(iter(store.records())).id
    blocker = tmp_path / "a-file"
    blocker.write_text("VISTEXT_HOME cannot be made under a file")
    monkeypatch.setenv("VISTEXT_HOME", str(blocker / "home"))
    with pytest.raises(StoreError, match=r"a-file/home: cannot create this folder .*set VISTEXT_HOME"):
        vistext_home()
    with Service(db, progress=False) as service:
        assert service.thumbnail(image_id, 128)[:2] == b"\xff\xd8"  # unwritable home: served, not cached
        with pytest.raises(UnknownImageError, match="no indexed image with id 99999999999999999999"):
            service.thumbnail(99999999999999999999, 128)  # beyond signed 64-bit: unknown, not OverflowError

    home = tmp_path / "home"
    monkeypatch.setenv("VISTEXT_HOME", str(home))

    def disk_full(*args: object) -> None:  # the temporary file was written; the disk fills before the rename
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("vistext.paths.os.replace", disk_full)
    with Service(db, progress=False) as service:
        assert service.thumbnail(image_id, 256)[:2] == b"\xff\xd8"  # full disk: served, not cached
    assert [p for p in home.rglob("*") if p.is_file()] == []  # no 0-byte temporary file left behind
    monkeypatch.undo()
    monkeypatch.setenv("VISTEXT_HOME", str(home))
    with Service(db, progress=False) as service:
        service.thumbnail(image_id, 256)
    assert len([p for p in home.rglob("*.jpg") if p.stat().st_size > 0]) == 1  # cached once there is room


_PEAK_INDEX_SCRIPT = """
import sys
from vistext.encoders import create_image_encoder
from vistext.indexing.local import index_folder
from vistext.store import open_store
with open_store(sys.argv[2]) as store:
    report = index_folder(sys.argv[1], store, create_image_encoder(), progress=False)
# VmHWM: this process's own peak (ru_maxrss would include the forking test process's RSS, kept across exec)
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(report.added, report.failed, peak_kb // 1024)
"""


def test_index_of_big_deep_pictures_stays_under_1_gb(tmp_path: Path, flickr8k_images: list[Path]) -> None:
    import vistext

    folder = _copy_photos(flickr8k_images[:4], tmp_path / "big")
    side = 8900
    ramp = np.arange(side, dtype=np.uint32)[:, None] * 7 + np.arange(side, dtype=np.uint32)[None, :]
    Image.fromarray((ramp % 65536).astype(np.uint16)).save(folder / "deep.png", compress_level=1)
    Image.fromarray((ramp[:7000, :7000] % 1000).astype(np.float32) / 1000, "F").save(
        folder / "float.tif", compression="tiff_adobe_deflate"
    )
    del ramp
    Image.linear_gradient("L").resize((11000, 8200), Image.Resampling.NEAREST).save(folder / "pano.jpg", quality=70)
    env = {**os.environ, "PYTHONPATH": str(Path(vistext.__file__).resolve().parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_INDEX_SCRIPT, str(folder), str(tmp_path / "db" / "catalogue.sqlite")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    added, failed, peak_mb = map(int, done.stdout.split())
    assert (added, failed) == (7, 0)  # the 90-megapixel JPEG is indexed, not refused
    assert peak_mb < 1000, f"peak RSS {peak_mb} MB"  # the previous release: 4.6 GB on a folder like this


def test_a_derived_space_reuses_its_source_vectors_of_the_batch() -> None:
    """The fused space is derived from the joint vectors ``project_batch`` has just computed: the joint graph
    runs once per batch, and the vectors are those the derived projector gives on its own."""
    calls: list[int] = []

    def joint(features: ImageFeatures) -> np.ndarray:
        calls.append(len(features.pooled))
        return features.pooled[:, :4] * 2

    def fuse(logits: np.ndarray, source: np.ndarray) -> np.ndarray:
        return np.concatenate([logits[:, :2], source], axis=1)

    fused = DerivedProjector("joint:t", joint, fuse)
    rng = np.random.default_rng(0)
    batch = [
        EncodedImage(f"{i}.jpg", pooled=rng.random(8, np.float32), logits=rng.random(5, np.float32)) for i in range(3)
    ]
    vectors = project_batch(batch, {"joint:t": joint, "fused:t": fused})
    assert calls == [3] and set(vectors) == {"joint:t", "fused:t"}
    alone = fused(ImageFeatures(np.stack([e.pooled for e in batch]), logits=np.stack([e.logits for e in batch])))
    np.testing.assert_array_equal(vectors["fused:t"], alone)
    np.testing.assert_array_equal(vectors["fused:t"][:, 2:], vectors["joint:t"])
    # without its source asked for, it projects the source itself
    assert set(project_batch(batch, {"fused:t": fused})) == {"fused:t"} and calls == [3, 3, 3]
    with pytest.raises(ModelError, match="logits"):
        project_batch([EncodedImage("x.jpg", pooled=batch[0].pooled)], {"joint:t": joint, "fused:t": fused})
