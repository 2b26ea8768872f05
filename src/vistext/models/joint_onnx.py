"""The joint model at query time without torch: two ONNX graphs, the ``tokenizers`` library and NumPy.

``load_query_model(path)`` gives an ``OnnxJointModel`` with the numpy API the service uses from a
``JointModel`` (``encode_text``, ``encode_images``, ``needs_grid``, ``plain_logit_scale``, ``name``,
``metadata``) and the same numbers. The first use of a model builds its graphs from the weights with NumPy
(``joint_graphs``; about a second, no torch) into ``$VISTEXT_HOME/onnx/joint-<hash>/``, keyed by the model's
config and weights and the MiniLM weights file, so a retrained model never reuses stale graphs; every later
process loads that directory in a fraction of a second. The text graph holds the MiniLM weights (~90 MB), so it
is built where it runs, not shipped next to the 23 MB default model.

Models whose text encoder has no graph (the GloVe RNNs) load as the PyTorch ``JointModel`` (the ``[train]``
extra).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vistext.encoders.base import ImageFeatures
from vistext.encoders.minilm_graph import TOKENIZER_FILE, minilm_path
from vistext.encoders.onnx import building, open_session
from vistext.errors import ModelError
from vistext.models.card import WEIGHTS_FILE, read_card, resolve_model_dir
from vistext.models.joint_graphs import has_graphs, image_graph, text_graph
from vistext.paths import cache_dir

if TYPE_CHECKING:
    import onnxruntime as ort

    from vistext.models.joint import JointModel

log = logging.getLogger(__name__)

GRAPH_VERSION = "4"  # bump when the built graphs or files change
TEXT_GRAPH = "text.onnx"
IMAGE_GRAPH = "image.onnx"
BANKS_FILE = "banks.npz"
GRAPHS_CARD = "graphs.json"
MAX_TOKENS = {"minilm": 64, "minilm-gpo": 32}  # MiniLMEncoder.max_length, MiniLMTokenPoolingEncoder.max_tokens
BULK_TEXTS = 64  # from this many texts in one call (a caption bank), the optimised session pays for its load
# from this many images in one call (an indexing batch), the optimised image session: measured 0.23 against 0.43 ms
# of CPU per image on batches of 16, for 60 ms more to open it once
BULK_IMAGES = 8
_lock = threading.Lock()


def joint_directory(path: str | Path | None = None) -> Path:
    """A saved joint model's directory, by directory or name; ``None`` is the default model shipped with vistext."""
    return resolve_model_dir(path, "joint")


def joint_card(directory: Path) -> dict[str, Any]:
    """The model card exactly as ``load_joint_model`` sets it as ``JointModel.metadata``."""
    card = read_card(directory, "joint")
    args = dict(card.get("text_encoder_args", {}))
    if (directory / "vocab.txt").is_file():
        args["assets"] = str(directory)
    card["text_encoder_args"] = args
    return card


def graph_directory(directory: Path) -> Path:
    """Where the graphs of the model in ``directory`` are cached: keyed by its config's and weights' content
    and by the installed MiniLM weights file (its path, size and modification time)."""
    digest = hashlib.sha1(GRAPH_VERSION.encode())
    for name in ("config.json", WEIGHTS_FILE, "vocab.txt"):
        file = directory / name
        if file.is_file():
            digest.update(name.encode())
            with file.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 22), b""):
                    digest.update(block)
    minilm = minilm_path() / "model.safetensors"
    if minilm.is_file():
        stat = minilm.stat()
        digest.update(f"{minilm.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return cache_dir("onnx") / f"joint-{digest.hexdigest()[:16]}"


def _joint_weights(directory: Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    file = directory / WEIGHTS_FILE
    try:
        state = load_file(str(file))
    except (OSError, SafetensorError) as error:
        raise ModelError(f"{file}: unreadable weights ({error})") from None
    return {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in state.items()}


def _settings(card: dict[str, Any], weights: dict[str, np.ndarray]) -> dict[str, Any]:
    """What ``OnnxJointModel`` needs besides the graphs, as ``JointModel`` computes it from the same weights."""
    reducer = weights.get("reducer", np.zeros((0, 0), np.float32))
    joined = reducer.shape[1] if reducer.size else int(card["dim"]) * int(card.get("branches", 1))
    scale = np.minimum(np.exp(np.float32(weights["log_scale"])), np.float32(100.0))
    return {
        "graph_version": GRAPH_VERSION,
        "max_tokens": MAX_TOKENS[card["text_encoder"]],
        "joined_dim": int(joined),
        "needs_grid": card["image_head"] != "pooled-mlp",
        "hubness_k": int((card.get("hubness") or {}).get("k", 10)),
        "hubness_norm": float(weights.get("hubness_norm", np.float32(1.0))),
        "plain_logit_scale": float(scale),
    }


def build_joint_graphs(directory: Path, out: Path) -> Path:
    """Build the text graph, the image graph, the tokenizer and the hubness banks of the joint model saved in
    ``directory`` into the directory ``out`` (written beside it, then renamed: a half-built one is never seen)."""
    card = joint_card(directory)
    if not has_graphs(card):
        raise ModelError(f"{directory}: no ONNX graphs for text encoder {card.get('text_encoder')!r}")
    weights = _joint_weights(directory)
    with building(out) as tmp:
        text_graph(card, weights).save(tmp / TEXT_GRAPH, external=True)
        image_graph(card, weights).save(tmp / IMAGE_GRAPH, external=True)
        shutil.copyfile(minilm_path() / TOKENIZER_FILE, tmp / TOKENIZER_FILE)
        joined = _settings(card, weights)["joined_dim"]
        empty = np.zeros((0, joined), np.float32)
        np.savez(
            tmp / BANKS_FILE,
            image_bank=weights.get("image_bank", empty),
            caption_bank=weights.get("caption_bank", empty),
        )
        (tmp / GRAPHS_CARD).write_text(json.dumps(_settings(card, weights), indent=2) + "\n")
    return out


def _session(path: Path, bulk: bool = False) -> ort.InferenceSession:
    # a query runs the graph once or twice: repacking MiniLM's weights for faster matrix products and graph
    # rewrites cost more at load (measured ~0.5 s of a cold search) than they save on a handful of texts
    return open_session(path, spinning=False, optimise=bulk)


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class OnnxTextEncoder:
    """Texts -> joined, uncorrected joint-space embeddings: MiniLM's tokenizer (``tokenizers``) + the text graph."""

    def __init__(self, graphs: Path, max_tokens: int) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(graphs / TOKENIZER_FILE))
        self.tokenizer.enable_truncation(max_length=max_tokens)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the batch's longest text
        self._path = graphs / TEXT_GRAPH
        self._sessions: dict[bool, ort.InferenceSession] = {}  # quick to load / fast on many texts

    def session(self, bulk: bool) -> ort.InferenceSession:
        if bulk not in self._sessions:
            self._sessions[bulk] = _session(self._path, bulk)
        return self._sessions[bulk]

    def tokenize(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        return ids, mask

    def __call__(self, texts: list[str]) -> np.ndarray:
        return self.both(texts)[0]

    def both(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(joined joint-space embeddings, plain MiniLM sentence embeddings) of ``texts``: one transformer pass."""
        ids, mask = self.tokenize(texts)
        session = self.session(bulk=len(texts) >= BULK_TEXTS)
        joined, minilm = session.run(["joined", "minilm"], {"input_ids": ids, "attention_mask": mask})
        return joined, minilm


class OnnxJointModel:
    """A saved joint model for queries: the ``JointModel`` numpy API, run by ONNX Runtime."""

    def __init__(self, graphs: Path, card: dict[str, Any]) -> None:
        self.graphs = graphs
        self.metadata = card
        self.config = card
        self.name: str = str(card.get("name", "joint"))
        settings = json.loads((graphs / GRAPHS_CARD).read_text(encoding="utf-8"))
        self.needs_grid = bool(settings["needs_grid"])
        self.joined_dim = int(settings["joined_dim"])
        self.hubness_k = int(settings["hubness_k"])
        self.plain_logit_scale = float(settings["plain_logit_scale"])
        self.logit_scale = self.plain_logit_scale * float(settings["hubness_norm"])
        self._max_tokens = int(settings["max_tokens"])
        with np.load(graphs / BANKS_FILE) as banks:
            self.image_bank = banks["image_bank"]
            self.caption_bank = banks["caption_bank"]
        self._text: OnnxTextEncoder | None = None
        self._images: dict[bool, ort.InferenceSession] = {}  # quick to load / fast on indexing batches

    @property
    def corrected(self) -> bool:
        return self.caption_bank.shape[0] > 0

    @property
    def output_dim(self) -> int:
        return self.joined_dim + (2 if self.corrected else 0)

    @property
    def text_encoder(self) -> OnnxTextEncoder:
        if self._text is None:
            self._text = OnnxTextEncoder(self.graphs, self._max_tokens)
        return self._text

    def _penalty(self, x: np.ndarray, bank: np.ndarray) -> np.ndarray:
        k = min(self.hubness_k, bank.shape[0])
        sims = x @ bank.T
        return -np.partition(-sims, k - 1, axis=1)[:, :k].mean(axis=1, keepdims=True)

    def correct_texts(self, joined: np.ndarray) -> np.ndarray:
        if not self.corrected:
            return joined
        ones = np.ones_like(joined[:, :1])
        return _normalise(np.concatenate([joined, ones, -0.5 * self._penalty(joined, self.image_bank)], axis=1))

    def correct_images(self, joined: np.ndarray) -> np.ndarray:
        if not self.corrected:
            return joined
        ones = np.ones_like(joined[:, :1])
        return _normalise(np.concatenate([joined, -0.5 * self._penalty(joined, self.caption_bank), ones], axis=1))

    def _dim(self, corrected: bool) -> int:
        return self.output_dim if corrected else self.joined_dim

    def encode_text(self, texts: list[str], batch_size: int = 256, corrected: bool = True) -> np.ndarray:
        """(N, d) L2-normalised embeddings of N texts, as ``JointModel.encode_text``."""
        texts = [str(t) for t in texts]
        out = []
        for s in range(0, len(texts), batch_size):
            joined = self.text_encoder(texts[s : s + batch_size])
            out.append(self.correct_texts(joined) if corrected else joined)
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self._dim(corrected)), np.float32)

    def encode_text_and_minilm(
        self, texts: list[str], batch_size: int = 256, corrected: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """``encode_text``'s embeddings and the plain MiniLM sentence embeddings (N, 384) of the same texts,
        from one pass of the text graph (the concept space meets texts in MiniLM's space)."""
        texts = [str(t) for t in texts]
        joint, plain = [], []
        for s in range(0, len(texts), batch_size):
            joined, minilm = self.text_encoder.both(texts[s : s + batch_size])
            joint.append(self.correct_texts(joined) if corrected else joined)
            plain.append(minilm)
        if not joint:
            return np.zeros((0, self._dim(corrected)), np.float32), np.zeros((0, 384), np.float32)
        return np.concatenate(joint).astype(np.float32), np.concatenate(plain).astype(np.float32)

    def encode_images(self, features: ImageFeatures, batch_size: int = 256, corrected: bool = True) -> np.ndarray:
        """(N, d) L2-normalised embeddings from the bundled image encoder's output, as ``JointModel.encode_images``."""
        if self.needs_grid and features.grid is None:
            raise ModelError(f"joint model {self.name!r} needs the feature grid: encode images with grid=True")
        pooled = np.asarray(features.pooled)
        bulk = len(pooled) >= BULK_IMAGES
        if bulk not in self._images:
            self._images[bulk] = _session(self.graphs / IMAGE_GRAPH, bulk)
        session = self._images[bulk]
        out = []
        for s in range(0, len(pooled), batch_size):
            feed = {"pooled": np.ascontiguousarray(pooled[s : s + batch_size], dtype=np.float32)}
            if self.needs_grid:
                feed["grid"] = np.ascontiguousarray(features.grid[s : s + batch_size], dtype=np.float32)  # type: ignore[index]
            joined = session.run(["joined"], feed)[0]
            out.append(self.correct_images(joined) if corrected else joined)
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self._dim(corrected)), np.float32)


def joint_graphs(path: str | Path | None = None) -> Path:
    """The cached graphs of the joint model at ``path`` (``None``: the shipped default), built on first use. A
    ModelError when the model's text encoder has no graph."""
    directory = joint_directory(path)
    out = graph_directory(directory)
    if (out / GRAPHS_CARD).is_file():
        return out
    with _lock:
        if not (out / GRAPHS_CARD).is_file():
            log.info("building the ONNX graphs of joint model %s at %s (once)", directory, out)
            build_joint_graphs(directory, out)
    return out


def load_query_model(path: str | Path | None = None) -> OnnxJointModel | JointModel:
    """The joint model at ``path`` (``None``: the shipped default) for queries: ONNX Runtime when its graphs
    can be built (built on first use, then cached), else the PyTorch model (needs the ``[train]`` extra)."""
    directory = joint_directory(path)
    card = joint_card(directory)
    if not has_graphs(card):
        from vistext.models.joint import load_joint_model

        return load_joint_model(directory)
    return OnnxJointModel(joint_graphs(directory), card)
