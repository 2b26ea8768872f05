"""The two stages a Ray indexing run maps over its plan: decode (CPU tasks) and encode + write (model actors).

Decode opens each file (or fetched object) once, hashes it and turns those same bytes into the encoder's uint8
pixels; it never loads a model. Encode + write is an actor holding one ONNX session (and the projectors of the requested
embedding spaces), which writes its batch straight into the store in one transaction and hands back only each
file's outcome, so no features flow back to the driver. Writes are upserts by path: a task Ray retries after a
crash writes the same rows again instead of adding new ones.

Derived spaces (the fused open-domain space: the classifier's logits with the joint vector) are computed in the
actor from the batch it has just encoded, so no pass over the catalogue follows the run; a photo whose content
is stored already (a copy, a move, or a catalogue from before the space existed) takes the stored vectors and
gets any derived space it lacks from its stored logits, without being encoded again.
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
from vistext.images.attributes import ATTRIBUTE_SPACE, pixel_measures
from vistext.indexing.attributes import with_attributes
from vistext.indexing.local import Derivation, Projector, project_batch
from vistext.indexing.sources import FolderSource, PhotoSource
from vistext.photo_meta import PhotoMeta, read_photo_meta
from vistext.store import ImageRecord, Store, open_store

Batch = dict[str, np.ndarray]
_Vectors = tuple[np.ndarray | None, np.ndarray | None, dict[str, np.ndarray]]  # pooled, logits, spaces
ProjectorFactory = Callable[[], Projector]  # picklable; called once in each model actor
DerivationFactory = Callable[[], Derivation]  # the same for a derived space


@functools.cache
def _joint_model(path: str | None) -> Any:
    """The joint model, loaded once per worker process (the joint projector and the fused space share it)."""
    from vistext.models.joint_onnx import load_query_model

    return load_query_model(path)


@dataclass(frozen=True)
class JointProjection:
    """Builds the joint image-text projector inside a worker (an ONNX session cannot travel between processes)."""

    path: str | None = None  # the joint model's directory; None = the shipped one

    def __call__(self) -> Projector:
        joint = _joint_model(self.path)

        def project(features: Any) -> np.ndarray:
            return joint.encode_images(features)

        project.needs_grid = joint.needs_grid  # type: ignore[attr-defined]
        return project


@dataclass(frozen=True)
class FusedDerivation:
    """Builds the fused open-domain space's derivation inside a worker: (joint space, (logits, joint) -> fused)."""

    space: str  # the fused space's name, as the driver's models name it
    joint_path: str | None  # the joint model's directory; None = the shipped one
    joint_key: str  # the joint model's name and card fingerprint (``LoadedModels.joint_key``)

    def __call__(self) -> Derivation:
        from vistext.models.concepts import load_concept_space
        from vistext.models.open_domain import OpenDomainModel

        fused = OpenDomainModel(_joint_model(self.joint_path), load_concept_space(), self.joint_key)
        if fused.space != self.space:  # the worker's concept space is not the driver's: never mix two spaces
            raise ModelError(f"this worker's fused space is {fused.space}, the run's is {self.space}")
        return f"joint:{self.joint_key}", fused.image_vectors


@dataclass(frozen=True)
class ModelSpec:
    """What each model actor loads: the image encoder by registered name, one projector per embedding space and
    one derivation per space computed from the classifier's logits and another space."""

    encoder: str = "efficientnet-lite0"
    projectors: Mapping[str, ProjectorFactory] = field(default_factory=dict)
    derived: Mapping[str, DerivationFactory] = field(default_factory=dict)


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
    """A model actor: encodes decoded pixels, projects them into each space (derived spaces included) and upserts
    the batch's records."""

    def __init__(self, store_uri: str, models: ModelSpec) -> None:
        self.encoder = create_image_encoder(models.encoder)
        self.projectors = {name: factory() for name, factory in models.projectors.items()}
        self.derived = {name: factory() for name, factory in models.derived.items()}
        self.grid = any(getattr(p, "needs_grid", False) for p in self.projectors.values())
        self.store: Store = open_store(store_uri)

    def __call__(self, batch: Batch) -> Batch:
        decoded = [i for i, error in enumerate(batch["error"]) if not error]
        reused = {i: known for i in decoded if (known := self._known(str(batch["sha"][i]))) is not None}
        ok = [i for i in decoded if i not in reused]  # a moved or copied photo is not encoded again
        rows: dict[int, _Vectors] = {i: (r.pooled, r.logits, self._stored(r)) for i, r in reused.items()}
        if ok:
            rows.update(zip(ok, self._encode(batch["pixels"][ok], [str(batch["path"][i]) for i in ok]), strict=True))
        self.store.add([self._record(batch, i, rows.get(i)) for i in range(len(batch["path"]))])  # one transaction
        return {"path": batch["path"], "is_update": batch["is_update"], "error": batch["error"]}

    def _encode(self, pixels: np.ndarray, paths: list[str]) -> list[_Vectors]:
        """Features, then every space's vectors, of a batch of decoded pixels."""
        features = self.encoder.encode_pixels(pixels, grid=self.grid)
        logits = features.logits
        measures = pixel_measures(pixels)
        encoded = [
            EncodedImage(
                path=path,
                pooled=features.pooled[row],
                logits=None if logits is None else logits[row],
                grid=None if features.grid is None else features.grid[row],
                attributes=measures[row],
            )
            for row, path in enumerate(paths)
        ]
        spaces = project_batch(encoded, self.projectors)
        if logits is not None:
            spaces.update({name: derive(logits, spaces[source]) for name, (source, derive) in self.derived.items()})
        return [
            (e.pooled, e.logits, with_attributes({name: v[row] for name, v in spaces.items()}, e.attributes))
            for row, e in enumerate(encoded)
        ]

    def _stored(self, known: ImageRecord) -> dict[str, np.ndarray]:
        """A stored photo's vectors in every requested space, a derived one computed from its logits if missing."""
        vectors = {name: known.embeddings[name] for name in self.projectors}
        for name, (source, derive) in self.derived.items():
            stored = known.embeddings.get(name)
            if stored is None and known.logits is not None:  # ``_known`` checked it has what this space needs
                stored = derive(known.logits[None], known.embeddings[source][None])[0]
            vectors[name] = stored  # type: ignore[assignment]
        return with_attributes(vectors, known.embeddings.get(ATTRIBUTE_SPACE))

    def _record(self, batch: Batch, i: int, vectors: _Vectors | None) -> ImageRecord:
        error = str(batch["error"][i]) or None
        pooled, logits, embeddings = vectors if vectors is not None else (None, None, {})
        return ImageRecord(
            path=str(batch["path"][i]),
            size=int(batch["size"][i]),
            mtime=float(batch["mtime"][i]),
            sha=str(batch["sha"][i]),
            model=self.encoder.name,
            status="ok" if error is None else "failed",
            error=error,
            pooled=pooled,
            logits=logits,
            embeddings={name: np.asarray(v, dtype=np.float32) for name, v in embeddings.items()},
            meta=PhotoMeta(**json.loads(batch["meta"][i])) if batch["meta"][i] else None,
        )

    def _known(self, sha: str) -> ImageRecord | None:
        """Stored features of this content with every requested space, or what a derived space is made from."""
        known = self.store.features_for_hash(sha, self.encoder.name)
        if known is None or known.status != "ok" or not set(self.projectors) <= set(known.embeddings):
            return None
        derivable = all(
            name in known.embeddings or (known.logits is not None and source in known.embeddings)
            for name, (source, _) in self.derived.items()
        )
        return known if derivable else None

    def __del__(self) -> None:
        store = getattr(self, "store", None)
        if store is not None:
            store.close()
