"""The two stages a Ray indexing run maps over its plan: decode (CPU tasks) and encode + write (model actors).

Decode opens each file (or fetched object) once, hashes it and turns those same bytes into the encoder's uint8
pixels; it never loads a model. Encode + write is an actor holding one ONNX session (and the projectors of the requested
embedding spaces), which writes its batch straight into the store in one transaction and hands back only each
file's outcome, so no features flow back to the driver. Writes are upserts by path: a task Ray retries after a
crash writes the same rows again instead of adding new ones.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vistext.encoders import ImageEncoder, create_image_encoder
from vistext.errors import ImageDecodeError, ModelError
from vistext.features import EncodedImage
from vistext.images import PhotoFile, open_image
from vistext.indexing.local import Projector, project_batch
from vistext.indexing.sources import FolderSource, PhotoSource
from vistext.photo_meta import PhotoMeta, read_photo_meta
from vistext.store import ImageRecord, Store, open_store

Batch = dict[str, np.ndarray]
ProjectorFactory = Callable[[], Projector]  # picklable; called once in each model actor


@dataclass(frozen=True)
class JointProjection:
    """Builds the joint image-text projector inside a worker (an ONNX session cannot travel between processes)."""

    path: str | None = None  # the joint model's directory; None = the shipped one

    def __call__(self) -> Projector:
        from vistext.models.joint_onnx import load_query_model

        joint = load_query_model(self.path)

        def project(features: Any) -> np.ndarray:
            return joint.encode_images(features)

        project.needs_grid = joint.needs_grid  # type: ignore[attr-defined]
        return project


@dataclass(frozen=True)
class FusedProjection:
    """Builds the fused (open-domain) projector inside a worker: only for a concept space with region evidence,
    which needs each photo's feature grid (otherwise the driver derives the space from the stored logits)."""

    path: str | None = None  # the joint model's directory; None = the shipped one
    joint_key: str = ""  # names the space, as the driver's LoadedModels does

    def __call__(self) -> Projector:
        from vistext.models.concepts import load_concept_space
        from vistext.models.joint_onnx import OnnxJointModel, load_query_model
        from vistext.models.open_domain import OpenDomainModel

        joint = load_query_model(self.path)
        if not isinstance(joint, OnnxJointModel):
            raise ModelError("the fused space needs a joint model with an ONNX export")
        fused = OpenDomainModel(joint, load_concept_space(), self.joint_key)

        def project(features: Any) -> np.ndarray:
            return fused.project(features)

        project.needs_grid = fused.needs_grid  # type: ignore[attr-defined]
        return project


@dataclass(frozen=True)
class ModelSpec:
    """What each model actor loads: the image encoder by registered name and one projector per embedding space."""

    encoder: str = "efficientnet-lite0"
    projectors: Mapping[str, ProjectorFactory] = field(default_factory=dict)


@functools.cache
def _preprocessor(name: str) -> ImageEncoder:
    """The encoder, for its preprocessing only (its ONNX session opens on first encode, which decode never does)."""
    return create_image_encoder(name)


def decode_batch(batch: Batch, source: PhotoSource, encoder: str) -> Batch:
    """Plan rows -> the same rows plus ``sha``, ``pixels`` (uint8, H x W x 3), ``error`` ("" when decoded) and
    ``meta`` (the photo's metadata as JSON, "" when there is none).

    Each file is opened once (``PhotoFile``): hash, pixels and metadata come from the same bytes, as in the
    local engine; for a folder, ``size`` and ``mtime`` are replaced by those of the version that was read."""
    preprocessor = _preprocessor(encoder)
    size = preprocessor.preprocessing.size
    columns: dict[str, list[Any]] = {"sha": [], "pixels": [], "error": [], "meta": [], "size": [], "mtime": []}
    for path, listed_size, listed_mtime in zip(batch["path"], batch["size"], batch["mtime"], strict=True):
        row = {"sha": "", "error": "", "meta": "", "size": int(listed_size), "mtime": float(listed_mtime)}
        pixels = np.zeros((size, size, 3), np.uint8)
        try:
            with source.local_file(str(path)) as local, PhotoFile(local) as photo:
                pixels = preprocessor.pixels(open_image(photo, min_side=size))
                meta = read_photo_meta(photo)
                row.update(sha=photo.sha, meta="" if meta is None else json.dumps(meta.to_dict()))
                if isinstance(source, FolderSource):
                    row.update(size=photo.size, mtime=photo.mtime)
        except ImageDecodeError as failure:
            row.update(error=failure.reason, meta="")
        except Exception as failure:  # noqa: BLE001 - one file's failure never stops a batch
            message = f"cannot decode image ({type(failure).__name__}: {' '.join(str(failure).split())[:200]})"
            row.update(error=message, meta="")
        for name, value in row.items():
            columns[name].append(value)
        columns["pixels"].append(pixels)
    return {
        **batch,
        "sha": np.array(columns["sha"], dtype=object),
        "pixels": np.stack(columns["pixels"]),
        "error": np.array(columns["error"]),
        "meta": np.array(columns["meta"], dtype=object),
        "size": np.array(columns["size"], dtype=np.int64),
        "mtime": np.array(columns["mtime"], dtype=np.float64),
    }


class EncodeAndWrite:
    """A model actor: encodes decoded pixels, projects them into each space and upserts the batch's records."""

    def __init__(self, store_uri: str, models: ModelSpec) -> None:
        self.encoder = create_image_encoder(models.encoder)
        self.projectors = {name: factory() for name, factory in models.projectors.items()}
        self.grid = any(getattr(p, "needs_grid", False) for p in self.projectors.values())
        self.store: Store = open_store(store_uri)

    def __call__(self, batch: Batch) -> Batch:
        decoded = [i for i, error in enumerate(batch["error"]) if not error]
        known = {i: self._known(str(batch["sha"][i])) for i in decoded}
        reused = {i: record for i, record in known.items() if record is not None}  # a moved or copied photo
        ok = [i for i in decoded if i not in reused]
        encoded: list[EncodedImage] = []
        if ok:
            features = self.encoder.encode_pixels(batch["pixels"][ok], grid=self.grid)
            encoded = [
                EncodedImage(
                    path=str(batch["path"][i]),
                    pooled=features.pooled[row],
                    logits=None if features.logits is None else features.logits[row],
                    grid=None if features.grid is None else features.grid[row],
                )
                for row, i in enumerate(ok)
            ]
        embeddings = project_batch(encoded, self.projectors)
        vectors = {i: {name: rows[row] for name, rows in embeddings.items()} for row, i in enumerate(ok)}
        features_of: dict[int, EncodedImage | ImageRecord] = {**dict(zip(ok, encoded, strict=True)), **reused}
        vectors.update({i: {name: record.embeddings[name] for name in self.projectors} for i, record in reused.items()})
        records = []
        for i, path in enumerate(batch["path"]):
            image = features_of.get(i)
            error = str(batch["error"][i]) or None
            records.append(
                ImageRecord(
                    path=str(path),
                    size=int(batch["size"][i]),
                    mtime=float(batch["mtime"][i]),
                    sha=str(batch["sha"][i]),
                    model=self.encoder.name,
                    status="ok" if error is None else "failed",
                    error=error,
                    pooled=None if image is None else image.pooled,
                    logits=None if image is None else image.logits,
                    embeddings=vectors.get(i, {}),
                    meta=PhotoMeta(**json.loads(batch["meta"][i])) if batch["meta"][i] else None,
                )
            )
        self.store.add(records)  # one transaction, an upsert by path: a retried batch rewrites the same rows
        return {"path": batch["path"], "is_update": batch["is_update"], "error": batch["error"]}

    def _known(self, sha: str) -> ImageRecord | None:
        """Stored features of this content with every requested space, as the local engine reuses them."""
        known = self.store.features_for_hash(sha, self.encoder.name)
        if known is None or known.status != "ok" or not set(self.projectors) <= set(known.embeddings):
            return None
        return known

    def __del__(self) -> None:
        store = getattr(self, "store", None)
        if store is not None:
            store.close()
