"""``vistext index --engine ray --model SPEC`` on a local Ray cluster (loopback only): the CLIP space is added on
Ray's workers, holds the same vectors the local engine stores, and a re-run adds nothing."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # read when ray is imported: before that
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
pytest.importorskip("ray", reason="the [distributed] extra is not installed")

import ray  # noqa: E402

from vistext.cli.main import main  # noqa: E402
from vistext.models.clip import ClipModel  # noqa: E402
from vistext.store import open_store  # noqa: E402


@pytest.fixture(scope="module")
def cluster(_isolated_home: Path) -> Iterator[None]:
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def _space(db: Path, space: str) -> dict[str, np.ndarray]:
    with open_store(str(db)) as store:
        ids, vectors = store.vectors(space)
        return {store.get(int(i)).path: v for i, v in zip(ids, vectors, strict=True)}  # type: ignore[union-attr]


def test_ray_adds_the_models_space(
    cluster: None,
    tmp_path: Path,
    flickr8k_images: list[Path],
    copy_photos: Callable[..., Path],
    tiny_clip: tuple[Path, Any],
) -> None:
    folder = copy_photos(flickr8k_images[:12], tmp_path / "photos")
    shutil.copy(flickr8k_images[0], folder / "copy.jpg")
    model = ClipModel(tiny_clip[0])
    on_ray, local = tmp_path / "ray.sqlite", tmp_path / "local.sqlite"
    argv = ["index", str(folder), "--model", str(model.folder), "--quiet"]
    assert main([*argv, "--engine", "ray", "--db", str(on_ray)]) == 0
    assert main([*argv, "--db", str(local)]) == 0
    ray_vectors, local_vectors = _space(on_ray, model.space), _space(local, model.space)
    assert set(ray_vectors) == set(local_vectors) and len(ray_vectors) == 13
    for path, vector in local_vectors.items():
        assert float(vector @ ray_vectors[path]) >= 0.9999
    with open_store(str(on_ray)) as store:
        assert store.space_models()[model.space]["name"] == "tiny-clip"
    assert main([*argv, "--engine", "ray", "--db", str(on_ray)]) == 0  # nothing left to add
    assert _space(on_ray, model.space).keys() == ray_vectors.keys()
