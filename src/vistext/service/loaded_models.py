"""The models a service uses, each loaded on first use and then kept.

The image encoder and the joint model are one each per service. Taggers and match classifiers are named per
call (``vistext tag --model``, ``/api/tag?tagger=``), so the last few are kept in a small cache keyed by
their resolved directory and the modification time of their model card: a request reuses the loaded
weights, and a model retrained in place is read again.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np
from PIL import Image

from vistext.encoders import ImageEncoder, ImageFeatures, create_image_encoder
from vistext.models.card import CARD_FILE
from vistext.service.clip_spaces import ClipModels, is_clip_space
from vistext.service.inputs import ImageInput, decode

if TYPE_CHECKING:
    from vistext.indexing.local import Derivation
    from vistext.models.captioner import CaptionComposer
    from vistext.models.default_tags import DefaultTagVocabulary
    from vistext.models.joint import JointModel
    from vistext.models.joint_onnx import OnnxJointModel
    from vistext.models.matcher_numpy import NumpyMatcher
    from vistext.models.ocr import TextReader
    from vistext.models.open_domain import OpenDomainModel
    from vistext.models.tagger import TaggerModel

T = TypeVar("T")
STRONG_SCORE = 0.5  # calibrated relevance: "as likely relevant as not" (docs/commands.md#scores)
MODEL_CACHE_SIZE = 4  # taggers and match classifiers kept loaded at once
DEFAULT_ENCODER = "efficientnet-lite0"  # the shipped image encoder: its classifier logits feed the fused space


def cosine_to_unit(cosines: np.ndarray) -> np.ndarray:
    """Cosines in [-1, 1] -> [0, 1], order kept: how scores without a calibration are shown."""
    return np.clip((np.asarray(cosines, dtype=np.float32) + 1.0) / 2.0, 0.0, 1.0)


class Lazy(Generic[T]):
    """A value built by ``build`` on first ``get()`` (once, even with concurrent callers), then kept."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._value: T | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._value is not None

    def get(self) -> T:
        if self._value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._build()
        return self._value


class ModelCache:
    """The ``size`` most recently used models, keyed by (kind, resolved directory, model card mtime)."""

    def __init__(self, size: int = MODEL_CACHE_SIZE) -> None:
        self.size = size
        self._models: OrderedDict[tuple[str, str, int], object] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, kind: str, directory: Path, load: Callable[[Path], T]) -> T:
        """The model in ``directory``, loaded with ``load`` unless an unchanged copy is cached. A directory
        without a model card is handed to ``load`` as is, so its error says what is wrong."""
        resolved = directory.resolve()
        try:
            stamp = (resolved / CARD_FILE).stat().st_mtime_ns
        except OSError:
            return load(directory)
        key = (kind, str(resolved), stamp)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]  # type: ignore[return-value]
            model = load(resolved)
            # an older copy of the same directory is stale now; drop it before counting
            for old in [k for k in self._models if k[:2] == key[:2]]:
                del self._models[old]
            self._models[key] = model
            while len(self._models) > self.size:
                self._models.popitem(last=False)
        return model

    def __len__(self) -> int:
        return len(self._models)


class LoadedModels:
    """The image encoder, the joint image-text model, and cached taggers and match classifiers."""

    def __init__(
        self,
        encoder: str = DEFAULT_ENCODER,
        joint_model: str | Path | None = None,
        cache_size: int = MODEL_CACHE_SIZE,
    ) -> None:
        self.encoder_name = encoder
        self.joint_path = joint_model
        self._encoder: Lazy[ImageEncoder] = Lazy(lambda: _image_encoder(self.encoder_name))
        self._joint: Lazy[JointModel | OnnxJointModel] = Lazy(self._load_joint)
        self._joint_key: Lazy[str] = Lazy(self._fingerprint)
        self._open_domain: Lazy[tuple[OpenDomainModel | None]] = Lazy(self._load_open_domain)
        self._composer: Lazy[tuple[CaptionComposer | None]] = Lazy(self._load_composer)
        self.cache = ModelCache(cache_size)
        self._text_reader: Lazy[TextReader] = Lazy(_text_reader)
        self.clips = ClipModels()  # CLIP-family models named by --model, each loaded once

    @property
    def text_reader(self) -> TextReader:
        """The OCR engine that reads the text in photos (its models load on its first photo)."""
        return self._text_reader.get()

    @property
    def encoder(self) -> ImageEncoder:
        return self._encoder.get()

    @property
    def joint(self) -> JointModel | OnnxJointModel:
        return self._joint.get()

    @property
    def encoder_loaded(self) -> bool:
        return self._encoder.loaded

    @property
    def joint_loaded(self) -> bool:
        return self._joint.loaded

    @property
    def joint_key(self) -> str:
        """The joint model's name plus a fingerprint of its model card: a retrained model under the same name
        gets new index and cache entries instead of silently mixing with the old model's vectors."""
        return self._joint_key.get()

    @property
    def joint_space(self) -> str:
        from vistext.models.open_domain import joint_space

        return joint_space(self.joint_key)

    @property
    def open_domain(self) -> OpenDomainModel | None:
        """The shipped default for words and photos (joint model fused with the classifier's concept space), or
        None for a joint model without an ONNX export (a GloVe model), which is then used alone."""
        return self._open_domain.get()[0]

    @property
    def caption_composer(self) -> CaptionComposer | None:
        """Captions without a bank (``models.captioner``), or None where there is no fused space to rank them."""
        return self._composer.get()[0]

    def can_compose_captions(self) -> bool:
        """Whether captions can be composed without a bank, without loading a model for the shipped default:
        its joint model has the ONNX export the fused space needs, with the shipped image encoder."""
        if self.joint_path is None and not self._joint.loaded:
            return self.encoder_name == DEFAULT_ENCODER
        return self.open_domain is not None

    @property
    def text_space(self) -> str:
        """The stored space text search, captions and tag sets are scored in: the fused one when available."""
        fused = self.open_domain
        return fused.space if fused is not None else self.joint_space

    def encode_query_texts(self, texts: list[str]) -> np.ndarray:
        """Search texts -> query vectors for ``text_space``."""
        fused = self.open_domain
        return fused.text_vectors(texts) if fused is not None else self.joint.encode_text(texts)

    def readable_scores(self, space: str, query: np.ndarray, cosines: np.ndarray) -> np.ndarray:
        """A vector index's cosines for one query -> the documented 0-1 score: calibrated relevance in the fused
        space; a joint space alone (a GloVe joint model) maps its cosine c to (c + 1) / 2; similar photos keep
        their image-feature cosine (the features are non-negative, so it is already 0-1); a CLIP space keeps its
        plain cosines."""
        if space == "image":  # checked first: similar photos never load the text models
            return np.clip(np.asarray(cosines, dtype=np.float32), 0.0, 1.0)
        if is_clip_space(space):  # a CLIP model's cosines, shown as they are (see service.clip_spaces)
            return np.asarray(cosines, dtype=np.float32)
        fused = self.open_domain
        if fused is not None and space == fused.space:
            return fused.from_cosines(query, cosines)
        return cosine_to_unit(cosines)

    def strong_score(self, space: str) -> float | None:
        """The score from which a hit in ``space`` is a likely match: ``STRONG_SCORE`` where scores are a
        calibrated relevance (the fused space), None where they are not (image similarity, a joint space alone)."""
        if space == "image":
            return None
        fused = self.open_domain
        return STRONG_SCORE if fused is not None and space == fused.space else None

    @property
    def words_need_grid(self) -> bool:
        """Whether scoring photos against words wants the encoder's feature grid: a grid joint head, or the
        fused space's region evidence (one owner of this for every caller that encodes a photo for words)."""
        fused = self.open_domain
        return self.joint.needs_grid or (fused is not None and fused.needs_grid)

    def text_projectors(self) -> dict[str, Any]:
        """The spaces indexing stores for words: the joint space, and the fused space when available."""
        from vistext.indexing.local import DerivedProjector

        projectors = {self.joint_space: self.joint_projector()}
        fused = self.open_domain
        if fused is not None and fused.needs_grid:  # region evidence: from each photo's grid, not derivable

            def project(features: ImageFeatures) -> np.ndarray:
                return fused.project(features)

            project.needs_grid = True  # type: ignore[attr-defined]
            projectors[fused.space] = project
        for space, (source, derive) in self.derived_spaces().items():  # the fused space, from the joint vectors
            projectors[space] = DerivedProjector(source, projectors[source], derive)
        return projectors

    def derived_spaces(self) -> dict[str, Derivation]:
        """Spaces an index can add from stored features alone: the fused one from the stored logits and joint
        vectors (hypernym nodes need nothing more). Region evidence needs the feature grid, which a catalogue does
        not keep: with it, photos lacking the space are read again by the next ``vistext index`` (and searching
        before that says to run it)."""
        fused = self.open_domain
        if fused is None or fused.needs_grid:
            return {}
        return {fused.space: (self.joint_space, fused.image_vectors)}

    def features(self, pictures: Sequence[Image.Image], grid: bool = False) -> ImageFeatures:
        """The image encoder's features of decoded pictures (``grid``: keep the spatial grid too)."""
        return self.encoder.encode(np.stack([self.encoder.preprocess(p) for p in pictures]), grid=grid)

    def encode_images(self, images: Sequence[ImageInput], grid: bool = False) -> ImageFeatures:
        return self.features([decode(image) for image in images], grid=grid)

    def joint_image_vector(self, image: ImageInput) -> np.ndarray:
        """``image`` in the joint image-text space."""
        return self.joint.encode_images(self.encode_images([image], grid=self.joint.needs_grid))[0]

    def joint_projector(self) -> Any:
        """Encoder features -> joint-space vectors, as indexing wants it (``needs_grid`` says what to keep)."""
        joint = self.joint

        def project(features: ImageFeatures) -> np.ndarray:
            return joint.encode_images(features)

        project.needs_grid = joint.needs_grid  # type: ignore[attr-defined]
        return project

    def tagger(self, name_or_path: str | Path) -> TaggerModel:
        """A trained tagger by directory or name (``$VISTEXT_HOME/models/NAME``), loaded once."""
        return self._cached("tagger", name_or_path)

    def default_tags(self) -> DefaultTagVocabulary:
        """The shipped default tag vocabulary (tags with no training), loaded once."""
        return self._cached("default-tags", None)

    def matcher(self, name_or_path: str | Path | None = None) -> NumpyMatcher:
        """A match classifier by directory or name, or the shipped one for None; loaded once, scored in NumPy
        (the same weights as ``MatchModel``, without importing torch)."""
        from vistext.models.card import resolve_model_dir
        from vistext.models.matcher_numpy import load_numpy_matcher

        return self.cache.get("matcher", resolve_model_dir(name_or_path, "matcher"), load_numpy_matcher)

    def _cached(self, kind: str, name_or_path: str | Path | None) -> Any:
        from vistext.models.card import resolve_model_dir
        from vistext.models.loading import load_model

        directory = resolve_model_dir(name_or_path, kind)
        return self.cache.get(kind, directory, lambda path: load_model(path, kind))

    def _load_joint(self) -> JointModel | OnnxJointModel:
        # ONNX Runtime on graphs built from the weights (on first use, then cached): queries never import torch
        from vistext.models.joint_onnx import load_query_model

        return load_query_model(self.joint_path)

    def _load_open_domain(self) -> tuple[OpenDomainModel | None]:
        from vistext.models.concepts import load_concept_space
        from vistext.models.joint_onnx import OnnxJointModel
        from vistext.models.open_domain import OpenDomainModel

        joint = self.joint
        if not isinstance(joint, OnnxJointModel) or self.encoder_name != DEFAULT_ENCODER:
            return (None,)
        return (OpenDomainModel(joint, load_concept_space(), self.joint_key),)

    def _load_composer(self) -> tuple[CaptionComposer | None]:
        from vistext.models.captioner import CaptionComposer

        fused = self.open_domain
        return (None if fused is None else CaptionComposer(fused, self.encoder.labels or [], self.default_tags()),)

    def _fingerprint(self) -> str:
        joint = self.joint
        card = joint.metadata or joint.config  # a model built in memory has no card yet
        digest = hashlib.sha1(json.dumps(card, sort_keys=True, default=str).encode()).hexdigest()[:10]
        return f"{joint.name}@{digest}"


def _image_encoder(name: str) -> ImageEncoder:
    """The image encoder ``name``; the shipped one sized for indexing's concurrent encode streams."""
    if name == DEFAULT_ENCODER:
        from vistext.encoders.onnx import bulk_streams

        return create_image_encoder(name, streams=bulk_streams())
    return create_image_encoder(name)


def _text_reader() -> TextReader:
    from vistext.models.ocr import TextReader

    return TextReader()
