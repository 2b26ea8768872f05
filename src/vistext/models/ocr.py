"""Reading the text in a photo (signs, screenshots, documents) with RapidOCR: PaddleOCR's PP-OCRv4 detection and
recognition models (Chinese and English, so Latin letters and digits too) as ONNX graphs that ship inside the
``rapidocr-onnxruntime`` wheel (the ``[ocr]`` extra): nothing is downloaded, and it runs on ONNX Runtime like the
rest of the runtime. The engine loads on first use (about a second) and is reused.

What a photo yields is its lines, top to bottom then left to right, each with the recogniser's confidence; lines
below ``MIN_CONFIDENCE`` or holding no letter or digit are dropped: on photos without text the engine reads
leaves and bricks as short low-confidence "words" (bench/ocr.py measures both sides of the cut).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
from PIL import Image

from vistext.errors import MissingExtraError, ModelError

log = logging.getLogger(__name__)

ENGINE = "rapidocr-ppocrv4"  # what the catalogue says read the text
MIN_CONFIDENCE = 0.8  # lines the recogniser is less sure of are dropped (bench/ocr.py)
MAX_SIDE = 2000  # a larger photo is shrunk first: the detector works at this size anyway (RapidOCR's max_side_len)


class TextReader:
    """The lines of text in a picture with their confidence; thread-safe (one picture at a time)."""

    name = ENGINE

    def __init__(self, min_confidence: float = MIN_CONFIDENCE) -> None:
        self.min_confidence = min_confidence
        self._engine: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if self._engine is None:
            try:
                from rapidocr_onnxruntime import RapidOCR
            except ImportError as error:
                raise MissingExtraError("ocr", "reading text in photos (--ocr)", [error.name or "rapidocr"]) from None
            try:
                self._engine = RapidOCR()
            except Exception as error:  # a damaged install: its models or config missing
                raise ModelError(f"the OCR engine ({ENGINE}) did not load: {error}") from None
        return self._engine

    def load(self) -> None:
        """Load the engine now (a missing extra fails here, before any photo is read)."""
        with self._lock:
            self._load()

    def read(self, picture: Image.Image) -> list[tuple[str, float]]:
        """The confident lines of text in ``picture`` (RGB), in reading order, each with its confidence 0-1."""
        if max(picture.size) > MAX_SIDE:
            picture = picture.copy()
            picture.thumbnail((MAX_SIDE, MAX_SIDE))
        pixels = np.ascontiguousarray(np.asarray(picture.convert("RGB"))[:, :, ::-1])  # the engine takes BGR
        with self._lock:
            found, _ = self._load()(pixels)
        return self.confident(found or [])

    def confident(self, found: list[Any]) -> list[tuple[str, float]]:
        """RapidOCR's ``[box, text, score]`` results -> the confident lines, top to bottom, left to right."""
        lines = []
        for box, text, score in found:
            text = " ".join(str(text).split())
            if float(score) >= self.min_confidence and any(ch.isalnum() for ch in text):
                top, left = min(point[1] for point in box), min(point[0] for point in box)
                lines.append((round(top / 16), left, text, float(score)))
        return [(text, score) for _, _, text, score in sorted(lines)]
