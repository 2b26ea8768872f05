"""Caption banks for "captioning by retrieval": a dataset's captions or a text file, embedded once and cached."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vistext.errors import DatasetError, StoreError, UsageError
from vistext.paths import atomic_path, cache_dir

if TYPE_CHECKING:
    from vistext.models.joint import JointModel
    from vistext.models.joint_onnx import OnnxJointModel

log = logging.getLogger(__name__)


@dataclass
class CaptionBank:
    texts: list[str]
    vectors: np.ndarray  # (N, d) text vectors of the space captions are scored in


def read_caption_texts(spec: str) -> list[str]:
    """Captions from ``FORMAT:PATH`` (any caption dataset) or a plain text file with one caption per line."""
    path = Path(spec)
    if path.is_file():
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise DatasetError(path, "not a UTF-8 text file") from None
        texts = [line.strip() for line in lines if line.strip()]
    elif ":" in spec:
        from vistext.datasets import open_caption_dataset

        texts = [caption.text for caption in open_caption_dataset(spec).captions()]
    else:
        raise UsageError(f"{spec}: not a file, and not FORMAT:PATH (e.g. flickr8k:DIR or csv:FILE)")
    texts = list(dict.fromkeys(texts))  # the same caption twice is one candidate
    if not texts:
        raise DatasetError(spec, "no captions found")
    return texts


def load_caption_bank(
    spec: str,
    model: JointModel | OnnxJointModel | Callable[[list[str]], np.ndarray],
    model_key: str,
    batch_size: int = 256,
) -> CaptionBank:
    """Embed the bank's captions with ``model`` (a joint model, or any texts -> vectors function such as the
    fused space's ``text_vectors``), cached on disk by content and ``model_key``."""
    embed = model.encode_text if hasattr(model, "encode_text") else model  # a JointModel is callable too
    texts = read_caption_texts(spec)
    digest = hashlib.sha1("\n".join(texts).encode()).hexdigest()[:16]
    key = model_key.replace("@", "-").replace(":", "-").replace("+", "-")
    cache = cache_dir("captions") / f"{key}-{digest}.npy"
    if cache.is_file():
        vectors = np.load(cache)
        if vectors.shape[0] == len(texts):
            return CaptionBank(texts, vectors)
    log.info("embedding %d captions from %s (once; cached at %s)", len(texts), spec, cache)
    vectors = np.concatenate([embed(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]).astype(
        np.float32
    )
    try:
        with atomic_path(cache, fsync=False) as tmp:
            np.save(tmp, vectors)
    except StoreError as error:  # only the cache is lost: the bank is embedded again next time
        log.warning("caption bank not cached: %s", error)
    return CaptionBank(texts, vectors)
