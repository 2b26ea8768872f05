"""A CLIP model's image preprocessing, read from its own ``visual/preprocess_cfg.json`` (open_clip's keys, as Immich
writes them): resize (``shortest`` edge then centre crop, ``squash`` or ``longest`` edge then pad), scale to 0-1 and
normalise with the model's mean and std. NumPy and Pillow only, so the runtime needs no torch or torchvision.

The centre crop rounds its offset as the reference did: torchvision (open_clip) rounds half to even, Hugging Face's
``CLIPImageProcessor`` floors; vistext's exporter records which in ``vistext-clip.json`` and open_clip's rounding is
the default (an Immich folder was exported from open_clip, whose preprocessing the weights were trained with).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vistext.errors import ModelError
from vistext.models.clip_sources import PREPROCESS_CFG, PROVENANCE, read_json_object

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
RESIZE_MODES = ("shortest", "squash", "longest")
CROP_ROUNDINGS = ("round", "floor")
_RESAMPLING = {mode.name.lower(): mode for mode in Image.Resampling}


def _size(value: Any, file: Path) -> int:
    size = value[0] if isinstance(value, list | tuple) and value else value
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise ModelError(f"{file}: 'size' must be a positive integer (or a square [h, w]), not {value!r}")
    if isinstance(value, list | tuple) and len(set(value)) != 1:
        raise ModelError(f"{file}: non-square input sizes {value!r} are not supported")
    return size


def _triple(value: Any, key: str, file: Path) -> tuple[float, float, float]:
    values = [value] * 3 if isinstance(value, int | float) else value
    if not isinstance(values, list | tuple) or len(values) != 3 or not all(isinstance(v, int | float) for v in values):
        raise ModelError(f"{file}: {key!r} must be three numbers, not {value!r}")
    return (float(values[0]), float(values[1]), float(values[2]))


@dataclass(frozen=True)
class ClipPreprocess:
    """Turns a PIL image into the float32 [3, size, size] array a CLIP image tower takes."""

    size: int = 224
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"
    fill_color: int = 0
    crop_rounding: str = "round"

    @classmethod
    def from_config(cls, config: dict[str, Any], file: Path, crop_rounding: str = "round") -> ClipPreprocess:
        """From a preprocess_cfg dict (``file`` only names it in errors); missing keys take open_clip's defaults."""
        interpolation = str(config.get("interpolation", "bicubic")).lower()
        resize_mode = str(config.get("resize_mode", "shortest"))
        if interpolation not in _RESAMPLING:
            raise ModelError(f"{file}: unknown interpolation {interpolation!r} (one of {', '.join(_RESAMPLING)})")
        if resize_mode not in RESIZE_MODES:
            raise ModelError(f"{file}: unknown resize_mode {resize_mode!r} (one of {', '.join(RESIZE_MODES)})")
        if crop_rounding not in CROP_ROUNDINGS:
            raise ModelError(f"{file}: unknown crop rounding {crop_rounding!r} (one of {', '.join(CROP_ROUNDINGS)})")
        fill = config.get("fill_color", 0)
        return cls(
            size=_size(config.get("size", 224), file),
            mean=_triple(config.get("mean", OPENAI_MEAN), "mean", file),
            std=_triple(config.get("std", OPENAI_STD), "std", file),
            interpolation=interpolation,
            resize_mode=resize_mode,
            fill_color=int(fill) if isinstance(fill, int | float) else 0,
            crop_rounding=crop_rounding,
        )

    @classmethod
    def from_file(cls, file: Path, crop_rounding: str = "round") -> ClipPreprocess:
        """From a ``preprocess_cfg.json`` file."""
        return cls.from_config(read_json_object(file), file, crop_rounding)

    @classmethod
    def from_folder(cls, folder: Path) -> ClipPreprocess:
        """From an ONNX CLIP folder's ``visual/preprocess_cfg.json`` (and the crop rounding vistext's exporter
        noted in ``vistext-clip.json``, when it made the folder)."""
        provenance = folder / PROVENANCE
        notes = read_json_object(provenance) if provenance.is_file() else {}
        return cls.from_file(folder / PREPROCESS_CFG, str(notes.get("crop_rounding", "round")))

    def to_config(self) -> dict[str, Any]:
        """The preprocess_cfg.json form (open_clip's keys)."""
        return {
            "size": [self.size, self.size],
            "mode": "RGB",
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "resize_mode": self.resize_mode,
            "fill_color": self.fill_color,
        }

    def _resized(self, image: Image.Image) -> Image.Image:
        resample = _RESAMPLING[self.interpolation]
        width, height = image.size
        if self.resize_mode == "squash":
            return image.resize((self.size, self.size), resample=resample)
        if self.resize_mode == "longest":
            ratio = max(width, height) / self.size
            return image.resize((round(width / ratio), round(height / ratio)), resample=resample)
        short, long = min(width, height), max(width, height)
        other = int(self.size * long / short)
        return image.resize((self.size, other) if width <= height else (other, self.size), resample=resample)

    def _offset(self, extra: int) -> int:
        return int(round(extra / 2.0)) if self.crop_rounding == "round" else extra // 2

    def _cropped(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        if width < self.size or height < self.size:
            fill = (self.fill_color,) * 3
            canvas = Image.new("RGB", (max(width, self.size), max(height, self.size)), fill)
            canvas.paste(image, ((canvas.width - width) // 2, (canvas.height - height) // 2))
            image, width, height = canvas, canvas.width, canvas.height
        left, top = self._offset(width - self.size), self._offset(height - self.size)
        return image.crop((left, top, left + self.size, top + self.size))

    def pixels(self, image: Image.Image) -> np.ndarray:
        """RGB bytes as the image tower sees them: uint8 [size, size, 3], resized and cropped (or padded)."""
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        return np.asarray(self._cropped(self._resized(rgb)), dtype=np.uint8)

    def normalise(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] (``pixels``) -> float32 [N, 3, H, W], ``(x / 255 - mean) / std`` per channel."""
        scaled = np.asarray(pixels, dtype=np.float32) / np.float32(255.0)
        normalised = (scaled - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(normalised.transpose(0, 3, 1, 2), dtype=np.float32)

    def __call__(self, image: Image.Image) -> np.ndarray:
        return self.normalise(self.pixels(image)[None])[0]

    def batch(self, images: list[Image.Image]) -> np.ndarray:
        """[N, 3, size, size] float32."""
        return np.stack([self(image) for image in images]) if images else np.zeros((0, 3, self.size, self.size))
