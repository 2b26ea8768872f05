"""vistext.paths: the home directory and atomic writes (whole new file or the old one, never a part or a leftover)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from vistext.errors import StoreError
from vistext.paths import atomic_path, atomic_write, cache_dir, vistext_home


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


def test_home_and_cache_dir_follow_vistext_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISTEXT_HOME", str(tmp_path / "home"))
    assert vistext_home() == tmp_path / "home" and vistext_home().is_dir()
    assert cache_dir("onnx", "x") == tmp_path / "home" / "onnx" / "x" and cache_dir("onnx", "x").is_dir()


def test_atomic_write_bytes_and_text_replace_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "config.json"
    assert atomic_write(target, b"\x00old") == target and target.read_bytes() == b"\x00old"
    atomic_write(target, "névé ✓")
    assert target.read_text(encoding="utf-8") == "névé ✓"
    assert leftovers(tmp_path) == []


def test_atomic_path_keeps_the_suffix_for_format_picking_writers(tmp_path: Path) -> None:
    target = tmp_path / "vectors.npy"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".vectors.npy.") and tmp.suffix == ".npy"
        np.save(tmp, np.arange(4))  # np.save adds ".npy" unless the name already ends with it
    assert np.load(target).tolist() == [0, 1, 2, 3]
    assert leftovers(tmp_path) == []


def test_a_failing_writer_leaves_the_old_file_and_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "index.faiss"
    target.write_bytes(b"old contents")

    with pytest.raises(RuntimeError, match="disk full"), atomic_path(target) as tmp:
        tmp.write_bytes(b"half a new fi")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"old contents"
    assert leftovers(tmp_path) == []

    with pytest.raises(KeyboardInterrupt), atomic_path(target):
        raise KeyboardInterrupt  # interrupted before the writer even created its file
    assert target.read_bytes() == b"old contents" and leftovers(tmp_path) == []


def test_writing_into_a_missing_folder_is_an_error_without_leftovers(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"missing/file.txt: cannot write \(No such file or directory\)"):
        atomic_write(tmp_path / "missing" / "file.txt", "x")
    assert list(tmp_path.iterdir()) == []


def test_concurrent_writers_each_leave_a_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "cache.json"
    payloads = [str(i) * 10_000 for i in range(8)]
    threads = [threading.Thread(target=atomic_write, args=(target, p), kwargs={"fsync": False}) for p in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert target.read_text() in payloads
    assert leftovers(tmp_path) == []
