"""``vistext index --engine ray --model SPEC``: a CLIP-family model's space added on a Ray cluster.

After the ordinary Ray run, the driver lists the ok photos lacking the model's space (``model_space.lacking_space``;
copies take their content's vector there, as locally) and Ray Data maps them: CPU tasks open each photo once,
check it is the content that was indexed and make the model's uint8 pixels; an actor pool, each actor holding
the model's image tower, encodes a batch and writes only that space into the store in one transaction. The model
travels as its folder (an ONNX session cannot travel between processes), so every node must read that folder.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from vistext.errors import ImageDecodeError
from vistext.images import PhotoFile, open_image
from vistext.indexing.model_space import lacking_space, reuse_copies
from vistext.indexing.ray_cluster import check_store_fits, ray_cluster
from vistext.indexing.ray_pipeline import run_stages
from vistext.indexing.ray_watch import DEFAULT_DEADLINE
from vistext.indexing.sources import PhotoSource, photo_source
from vistext.models.clip import ClipModel
from vistext.store import Store, open_store

log = logging.getLogger(__name__)
Batch = dict[str, np.ndarray]


@functools.cache
def _model(folder: str) -> ClipModel:
    return ClipModel(folder)  # in a decode task only its preprocessing is used: no session opens


def decode_for_model(batch: Batch, source: PhotoSource, folder: str) -> Batch:
    """Rows (path, sha) -> the same rows plus ``pixels`` and ``error`` ("" when decoded as the indexed content)."""
    preprocess = _model(folder).preprocess
    pixels, errors = [], []
    for path, sha in zip(batch["path"], batch["sha"], strict=True):
        picture = np.zeros((preprocess.size, preprocess.size, 3), np.uint8)
        error = ""
        try:
            with source.local_file(str(path)) as local, PhotoFile(local) as photo:
                if photo.sha != sha:
                    error = "changed since it was indexed"
                else:
                    picture = preprocess.pixels(open_image(photo, min_side=preprocess.size))
        except ImageDecodeError as failure:
            error = failure.reason
        except Exception as failure:  # noqa: BLE001 - one file's failure never stops a batch
            error = f"cannot decode image ({type(failure).__name__})"
        pixels.append(picture)
        errors.append(error)
    return {**batch, "pixels": np.stack(pixels), "error": np.array(errors)}


class EncodeSpaceAndWrite:
    """A model actor: the model's image tower over decoded pixels; writes only the model's space."""

    def __init__(self, store_uri: str, folder: str) -> None:
        self.model = ClipModel(folder)
        self.store: Store = open_store(store_uri)

    def __call__(self, batch: Batch) -> Batch:
        ok = [i for i, error in enumerate(batch["error"]) if not error]
        if ok:
            vectors = self.model.encode_pixels(batch["pixels"][ok])
            records = [self.store.get(str(batch["path"][i])) for i in ok]
            self.store.add(
                [
                    replace(record, pooled=None, logits=None, meta=None, embeddings={self.model.space: vector})
                    for record, vector in zip(records, vectors, strict=True)
                    if record is not None
                ]
            )
        return {"path": batch["path"], "error": batch["error"]}

    def __del__(self) -> None:
        store = getattr(self, "store", None)
        if store is not None:
            store.close()


def add_space_with_ray(
    location: str,
    store: Store,
    store_uri: str,
    model: ClipModel,
    *,
    address: str | None = None,
    batch_size: int = 16,
    deadline: float | None = None,
) -> int:
    """Give every ok photo at ``location`` lacking ``model.space`` its vector, on Ray; returns how many.
    ``deadline``: seconds without a finished photo before the run ends (None: the default)."""
    source = photo_source(location)
    store.record_space_model(model.space, model.describe())
    with store.writer_lock(), ray_cluster(address):
        check_store_fits(store, store_uri)
        todo = lacking_space(store, model.space, source.name)
        added = reuse_copies(store, model.space, todo)
        rows = [{"path": r.path, "sha": r.sha} for r in todo if model.space not in r.embeddings]
        if rows:
            added += _run(rows, source, store_uri, str(model.folder), batch_size, deadline or DEFAULT_DEADLINE)
    return added


def _run(
    rows: list[dict[str, Any]], source: PhotoSource, store_uri: str, folder: str, batch_size: int, deadline: float
) -> int:
    added = [0]

    def count(batch: Mapping[str, Any]) -> None:
        for path, error in zip(batch["path"], batch["error"], strict=True):
            if error:
                log.info("%s: not added to %s (%s)", path, folder, error)
            else:
                added[0] += 1

    run_stages(
        rows,
        functools.partial(decode_for_model, source=source, folder=folder),
        EncodeSpaceAndWrite,
        {"store_uri": store_uri, "folder": folder},
        count,
        batch_size=batch_size,
        actors=None,
        deadline=deadline,
    )
    return added[0]
