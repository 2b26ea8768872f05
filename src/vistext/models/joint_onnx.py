"""The joint model at query time without torch: two ONNX graphs, the ``tokenizers`` library and NumPy.

``load_query_model(path)`` gives an ``OnnxJointModel`` with the numpy API the service uses from a
``JointModel`` (``encode_text``, ``encode_images``, ``needs_grid``, ``plain_logit_scale``, ``name``,
``metadata``) and the same numbers (to 1e-4). The first use of a model exports it (torch and transformers, once,
see ``joint_export``) into ``$VISTEXT_HOME/onnx/joint-<hash>/``, keyed by a hash of the model's config and
weights so a retrained model never reuses a stale export; every later process loads that directory in a
fraction of a second and never imports torch. The export holds the MiniLM weights (~90 MB), so it is cached,
not shipped inside the package next to the 23 MB default model.

Models whose text encoder has no ONNX export (the GloVe RNNs) load as the PyTorch ``JointModel``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vistext.encoders.base import ImageFeatures
from vistext.errors import ModelError
from vistext.models.card import read_card, resolve_model_dir
from vistext.paths import cache_dir

if TYPE_CHECKING:
    import onnxruntime as ort

    from vistext.models.joint import JointModel

log = logging.getLogger(__name__)

EXPORT_VERSION = "3"  # bump when the exported graphs or files change
TEXT_GRAPH = "text.onnx"
IMAGE_GRAPH = "image.onnx"
TOKENIZER_FILE = "tokenizer.json"
BANKS_FILE = "banks.npz"
EXPORT_CARD = "export.json"
BULK_TEXTS = 64  # from this many texts in one call (a caption bank), the optimised session pays for its load
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


def joint_key(card: dict[str, Any]) -> str:
    """The model's name plus a fingerprint of its card: index spaces and caption caches are keyed by it."""
    digest = hashlib.sha1(json.dumps(card, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"{card.get('name', 'joint')}@{digest}"


def export_directory(directory: Path) -> Path:
    """Where the export of the model in ``directory`` is cached: keyed by its config and weights' content."""
    digest = hashlib.sha1(EXPORT_VERSION.encode())
    for name in ("config.json", "model.safetensors", "vocab.txt"):
        file = directory / name
        if file.is_file():
            digest.update(name.encode())
            with file.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 22), b""):
                    digest.update(block)
    return cache_dir("onnx") / f"joint-{digest.hexdigest()[:16]}"


def export_joint(model: JointModel, out: Path) -> Path:
    """Export ``model``'s text graph, image graph, tokenizer and hubness banks into the directory ``out``
    (written beside it, then renamed: a half-written export is never seen). Needs torch and transformers."""
    from vistext.encoders.text_encoders import MiniLMEncoder, minilm_path
    from vistext.models.joint_export import export_image_graph, export_text_graph

    encoder = model.text_encoder
    if not isinstance(encoder, MiniLMEncoder):
        raise ModelError(f"no ONNX export for text encoder {encoder.name!r} (only MiniLM-based ones)")
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        export_text_graph(model, tmp / TEXT_GRAPH)
        export_image_graph(model, tmp / IMAGE_GRAPH)
        shutil.copyfile(minilm_path() / TOKENIZER_FILE, tmp / TOKENIZER_FILE)
        np.savez(
            tmp / BANKS_FILE,
            image_bank=model.image_bank.detach().float().numpy(),
            caption_bank=model.caption_bank.detach().float().numpy(),
        )
        card = {
            "export_version": EXPORT_VERSION,
            "max_tokens": int(getattr(encoder, "max_tokens", encoder.max_length)),
            "joined_dim": model.joined_dim,
            "needs_grid": model.needs_grid,
            "hubness_k": model.hubness_k,
            "hubness_norm": float(model.hubness_norm),
            "plain_logit_scale": model.plain_logit_scale,
        }
        (tmp / EXPORT_CARD).write_text(json.dumps(card, indent=2) + "\n")
        try:
            tmp.rename(out)
        except OSError:  # another process finished the same export first: theirs is as good
            if not (out / EXPORT_CARD).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _session(path: Path, bulk: bool = False) -> ort.InferenceSession:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not bulk:
        # a query runs the graph once or twice: repacking MiniLM's weights for faster matrix products and graph
        # rewrites cost more at load (measured ~0.5 s of a cold search) than they save on a handful of texts
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.add_session_config_entry("session.disable_prepacking", "1")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own untyped errors
        raise ModelError(f"{path}: cannot load the exported graph ({error}); delete it to export again") from None


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class OnnxTextEncoder:
    """Texts -> joined, uncorrected joint-space embeddings: MiniLM's tokenizer (``tokenizers``) + the text graph."""

    def __init__(self, export: Path, max_tokens: int) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(export / TOKENIZER_FILE))
        self.tokenizer.enable_truncation(max_length=max_tokens)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the batch's longest text
        self._path = export / TEXT_GRAPH
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

    def __init__(self, export: Path, card: dict[str, Any]) -> None:
        self.export = export
        self.metadata = card
        self.config = card
        self.name: str = str(card.get("name", "joint"))
        settings = json.loads((export / EXPORT_CARD).read_text(encoding="utf-8"))
        self.needs_grid = bool(settings["needs_grid"])
        self.joined_dim = int(settings["joined_dim"])
        self.hubness_k = int(settings["hubness_k"])
        self.plain_logit_scale = float(settings["plain_logit_scale"])
        self.logit_scale = self.plain_logit_scale * float(settings["hubness_norm"])
        self._max_tokens = int(settings["max_tokens"])
        with np.load(export / BANKS_FILE) as banks:
            self.image_bank = banks["image_bank"]
            self.caption_bank = banks["caption_bank"]
        self._text: OnnxTextEncoder | None = None
        self._image: ort.InferenceSession | None = None

    @property
    def corrected(self) -> bool:
        return self.caption_bank.shape[0] > 0

    @property
    def output_dim(self) -> int:
        return self.joined_dim + (2 if self.corrected else 0)

    @property
    def text_encoder(self) -> OnnxTextEncoder:
        if self._text is None:
            self._text = OnnxTextEncoder(self.export, self._max_tokens)
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
        if self._image is None:
            self._image = _session(self.export / IMAGE_GRAPH)
        pooled = np.asarray(features.pooled)
        out = []
        for s in range(0, len(pooled), batch_size):
            feed = {"pooled": np.ascontiguousarray(pooled[s : s + batch_size], dtype=np.float32)}
            if self.needs_grid:
                feed["grid"] = np.ascontiguousarray(features.grid[s : s + batch_size], dtype=np.float32)  # type: ignore[index]
            joined = self._image.run(["joined"], feed)[0]
            out.append(self.correct_images(joined) if corrected else joined)
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self._dim(corrected)), np.float32)


def exported_joint(path: str | Path | None = None) -> Path:
    """The cached export of the joint model at ``path`` (``None``: the shipped default), exporting it on first
    use. A ModelError when the model's text encoder has no ONNX export."""
    directory = joint_directory(path)
    out = export_directory(directory)
    if (out / EXPORT_CARD).is_file():
        return out
    with _lock:
        if not (out / EXPORT_CARD).is_file():
            from vistext.models.joint import load_joint_model

            log.info("exporting joint model %s to ONNX at %s (once)", directory, out)
            export_joint(load_joint_model(directory), out)
    return out


def load_query_model(path: str | Path | None = None) -> OnnxJointModel | JointModel:
    """The joint model at ``path`` (``None``: the shipped default) for queries: ONNX Runtime when it exports
    (exported on first use, then cached), else the PyTorch model."""
    directory = joint_directory(path)
    card = joint_card(directory)
    if card.get("text_encoder") not in ("minilm", "minilm-gpo"):
        from vistext.models.joint import load_joint_model

        return load_joint_model(directory)
    return OnnxJointModel(exported_joint(directory), card)
