"""A CLIP-family model at run time: ONNX Runtime and ``tokenizers`` over an Immich-layout folder, no torch.

The folder (what ``vistext.service.clip_models.prepare_clip_model`` hands back, and what Immich downloads):
``config.json`` (open_clip's model config: ``embed_dim``, ``vision_cfg``, ``text_cfg``), ``visual/model.onnx``
(input ``image``, float32 N x 3 x H x W -> image embeddings), ``visual/preprocess_cfg.json`` (size, mean, std,
interpolation, resize_mode, fill_color), ``textual/model.onnx`` (input ``text`` for open_clip-style towers, or
``input_ids`` + ``attention_mask`` for multilingual ones -> text embeddings) and ``textual/tokenizer.json`` with
``tokenizer_config.json``. Texts and pictures are prepared as Immich prepares them (whitespace collapsed, padded
and truncated to the context length with the configured pad token; shortest side resized, then centre-cropped),
so a folder Immich uses gives the same embeddings here. Embeddings are L2-normalised float32.

A model is named in a catalogue by ``key``: its folder's name and a hash of its two graphs, so two models with
the same name but other weights never share a space. Hashing a large graph costs a read of it, so the hash is
cached under ``$VISTEXT_HOME`` by path, size and modification time.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vistext.encoders.base import ImageEncoder, ImageFeatures, Preprocessing
from vistext.encoders.onnx import open_session
from vistext.errors import ModelError
from vistext.models.clip_preprocess import ClipPreprocess
from vistext.models.clip_sources import files_digest, read_json_object
from vistext.paths import cache_dir

CLIP_SPACE_PREFIX = "clip:"
DEFAULT_CONTEXT_LENGTH = 77
VISUAL_GRAPH = Path("visual") / "model.onnx"
TEXTUAL_GRAPH = Path("textual") / "model.onnx"
_HASH_CHUNK = 1 << 22


def weights_digest(folder: Path) -> str:
    """A short hash of the two towers' files (graphs, external weights, tokenizer), remembered by path, size and
    mtime in the cache folder so a query does not re-read a 600 MB graph."""
    files = sorted(p for side in ("visual", "textual") for p in (folder / side).iterdir() if p.is_file())
    return files_digest(files, cache_dir("clip") / "digests.json")[:12]


class ClipModel:
    """A CLIP-family model in an Immich-layout folder: ``encode_images`` and ``encode_texts`` into one space.

    The two ONNX sessions open on first use, each on its own: a search loads only the text tower."""

    def __init__(self, folder: str | Path, *, threads: int | None = None) -> None:
        self.folder = Path(folder)
        for part in ("config.json", VISUAL_GRAPH, TEXTUAL_GRAPH, Path("visual") / "preprocess_cfg.json"):
            if not (self.folder / part).is_file():
                raise ModelError(f"{self.folder / part}: missing; not a CLIP model folder in Immich's layout")
        self.config = read_json_object(self.folder / "config.json")
        try:
            self.dim = int(self.config["embed_dim"])
        except (KeyError, TypeError, ValueError):
            raise ModelError(f"{self.folder / 'config.json'}: no embed_dim (open_clip's model config)") from None
        text_cfg = self.config.get("text_cfg") or {}
        self.context_length = int(text_cfg.get("context_length", DEFAULT_CONTEXT_LENGTH))
        kwargs = text_cfg.get("tokenizer_kwargs") or {}
        self.canonicalize = isinstance(kwargs, dict) and kwargs.get("clean") == "canonicalize"
        self.preprocess = ClipPreprocess.from_folder(self.folder)
        self.name = self.folder.resolve().name
        self.threads = threads
        self._key: str | None = None
        self._lock = threading.Lock()
        self._sessions: dict[str, Any] = {}
        self._tokenizer: Any = None

    @property
    def key(self) -> str:
        """``name@digest``: what names this model's space in a catalogue."""
        if self._key is None:
            self._key = f"{self.name}@{weights_digest(self.folder)}"
        return self._key

    @property
    def space(self) -> str:
        """The catalogue space this model's vectors live in."""
        return CLIP_SPACE_PREFIX + self.key

    def describe(self) -> dict[str, Any]:
        """What a catalogue records about the model that made a space."""
        return {"kind": "clip", "name": self.name, "key": self.key, "dim": self.dim, "source": str(self.folder)}

    def _session(self, graph: Path) -> Any:
        with self._lock:
            if graph.as_posix() not in self._sessions:
                # the text tower answers queries, a few texts at a time: opened without graph rewrites it is
                # ready in less than half the time (measured on ViT-B/32's: 1.1 s against 2.5 s here)
                optimise = graph != TEXTUAL_GRAPH
                self._sessions[graph.as_posix()] = open_session(
                    self.folder / graph, threads=self.threads, optimise=optimise
                )
            return self._sessions[graph.as_posix()]

    # ---- images ---------------------------------------------------------------------------------------------
    def encode_images(self, pictures: Sequence[Image.Image]) -> np.ndarray:
        """Decoded pictures -> (N, dim) L2-normalised float32 image embeddings."""
        if not pictures:
            return np.zeros((0, self.dim), np.float32)
        return self.encode_pixels(np.stack([self.preprocess.pixels(p) for p in pictures]))

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 N x size x size x 3 (``preprocess.pixels``) -> (N, dim) L2-normalised image embeddings."""
        session = self._session(VISUAL_GRAPH)
        graph_input = session.get_inputs()[0]
        # some of Immich's exports normalise inside the graph and take the RGB bytes as they are
        batch = pixels if "uint8" in graph_input.type else self.preprocess.normalise(pixels)
        return _unit(session.run(None, {graph_input.name: batch})[0])

    # ---- texts ----------------------------------------------------------------------------------------------
    def tokenizer(self) -> Any:
        """The model's own tokenizer, padded and truncated to the context length as Immich sets it up."""
        with self._lock:
            if self._tokenizer is None:
                self._tokenizer = self._load_tokenizer()
            return self._tokenizer

    def _load_tokenizer(self) -> Any:
        from tokenizers import Tokenizer

        textual = self.folder / "textual"
        try:
            tokenizer = Tokenizer.from_file(str(textual / "tokenizer.json"))
        except Exception as error:  # noqa: BLE001 - tokenizers raises its own untyped errors
            raise ModelError(f"{textual / 'tokenizer.json'}: cannot load this tokenizer ({error})") from None
        pad_token = read_json_object(textual / "tokenizer_config.json").get("pad_token")
        if isinstance(pad_token, dict):  # older tokenizer configs spell an added token out
            pad_token = pad_token.get("content")
        pad_id = tokenizer.token_to_id(pad_token) if isinstance(pad_token, str) else None
        if pad_id is None:
            raise ModelError(
                f"{textual / 'tokenizer_config.json'}: its pad_token {pad_token!r} is not in the vocabulary"
            )
        tokenizer.enable_padding(length=self.context_length, pad_token=pad_token, pad_id=pad_id)
        tokenizer.enable_truncation(max_length=self.context_length)
        return tokenizer

    def tokenize(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Texts -> the text graph's inputs (``text``, or ``input_ids`` + ``attention_mask``), int32/int64 as
        the graph declares."""
        cleaned = [" ".join(t.split()) for t in texts]
        if self.canonicalize:
            import string

            table = str.maketrans("", "", string.punctuation)
            cleaned = [t.translate(table).lower() for t in cleaned]
        encodings = self.tokenizer().encode_batch(cleaned)
        ids = np.array([e.ids for e in encodings])
        mask = np.array([e.attention_mask for e in encodings])
        graph_inputs = self._session(TEXTUAL_GRAPH).get_inputs()
        if not isinstance(graph_inputs[0].shape[-1], int):
            # a graph that takes any length gets the texts padded to the longest, not to the context length:
            # the causal (or masked) attention makes the embedding the same, and a short query costs a tenth
            width = max(1, int(mask.sum(axis=1).max()))
            ids, mask = ids[:, :width], mask[:, :width]
        inputs = {}
        for graph_input in graph_inputs:
            values = mask if graph_input.name == "attention_mask" else ids
            inputs[graph_input.name] = values.astype(np.int64 if "int64" in graph_input.type else np.int32)
        return inputs

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> (N, dim) L2-normalised float32 text embeddings."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return _unit(self._session(TEXTUAL_GRAPH).run(None, self.tokenize(list(texts)))[0])


class ClipImageEncoder(ImageEncoder):
    """A ``ClipModel``'s image tower as an ``ImageEncoder``, so the feature pipeline (threaded decode, batches)
    runs it: ``pooled`` is the L2-normalised CLIP image embedding; there are no logits and no grid."""

    def __init__(self, model: ClipModel) -> None:
        self.model = model
        self.name = model.space
        self.dim = model.dim
        self.preprocessing = Preprocessing(size=model.preprocess.size)  # its size: how small a decode may be

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return self.model.preprocess.normalise(self.model.preprocess.pixels(image)[None])[0]

    def pixels(self, image: Image.Image) -> np.ndarray:
        return self.model.preprocess.pixels(image)

    def encode(self, batch: np.ndarray, grid: bool = False) -> ImageFeatures:
        """Normalised float32 N x 3 x H x W (``preprocess``) -> the image embeddings."""
        pixels = np.asarray(batch, np.float32).transpose(0, 2, 3, 1) * np.asarray(self.model.preprocess.std, np.float32)
        pixels = (pixels + np.asarray(self.model.preprocess.mean, np.float32)) * 255.0
        return ImageFeatures(pooled=self.model.encode_pixels(np.clip(np.rint(pixels), 0, 255).astype(np.uint8)))

    def encode_pixels(self, batch: np.ndarray, grid: bool = False) -> ImageFeatures:
        return ImageFeatures(pooled=self.model.encode_pixels(batch))


def _unit(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32).reshape(len(matrix), -1)
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
