"""Safe, fast image decoding: every failure becomes one ``ImageDecodeError`` naming the file and the reason.

JPEGs are decoded at a reduced scale (``Image.draft``) when the encoder needs far fewer pixels than the photo
has, the pixel count is checked from the header before any pixel is decoded (decompression bombs), and every
mode PIL can produce (CMYK, palette, alpha, 16-bit, grayscale) ends up as plain 8-bit RGB.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vistext.errors import ImageDecodeError

try:  # HEIC/HEIF photos from phones; optional so the package still works without it
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:  # pragma: no cover - pillow-heif is installed in the project environment
    pass

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif"}
)

_HASH_CHUNK = 1 << 20
_WHITE = (255, 255, 255)


def _too_large(width: int, height: int, limit: int) -> str:
    return f"image too large: {width}x{height} pixels (limit {limit})"


def _bomb_reason(error: Exception, limit: int) -> str:
    # PIL refuses absurd sizes inside Image.open, before we can read .size; its message carries the count
    found = re.search(r"\((\d+) pixels\)", str(error))
    count = found.group(1) if found else "too many"
    return f"image too large: {count} pixels (limit {limit})"


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB; transparency is composited on white so it does not turn black."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        pixels = np.asarray(img, dtype=np.float64)
        # 16-bit sources use the full 0..65535 range; a 32-bit "I" from a 16-bit PNG does too
        scale = 257.0 if mode != "F" and pixels.max(initial=0) > 255 else 1.0
        if mode == "F" and pixels.max(initial=0) <= 1.0:
            scale = 1.0 / 255.0
        gray = np.clip(pixels / scale, 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode in ("LA", "La", "PA", "RGBa"):
        img = img.convert("RGBA")
    elif mode == "L" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        background = Image.new("RGB", img.size, _WHITE)
        background.paste(img, mask=img.getchannel("A"))
        return background
    return img.convert("RGB")


def _reduce_for(img: Image.Image, min_side: int | None) -> None:
    """Ask the JPEG decoder for a smaller DCT scale; the shorter side stays >= ``min_side``."""
    if min_side is None or img.format != "JPEG":
        return
    width, height = img.size
    if min(width, height) >= 2 * min_side:
        img.draft("RGB", (min_side, min_side))


def open_image(path: str | Path, min_side: int | None = 224, max_pixels: int = 80_000_000) -> Image.Image:
    """Decode ``path`` to an RGB image with EXIF orientation applied.

    ``min_side`` lets large JPEGs decode at a reduced scale whose shorter side is still at least that many
    pixels (``None`` decodes at full size). Raises ``ImageDecodeError`` for every failure: missing or empty
    file, not an image, truncated/corrupt data, more than ``max_pixels`` pixels.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageDecodeError(path, "file not found") from None
    except OSError as error:
        raise ImageDecodeError(path, f"cannot read file ({error.strerror or error})") from None
    if path.is_dir():
        raise ImageDecodeError(path, "is a directory, not an image file")
    if size == 0:
        raise ImageDecodeError(path, "empty file (0 bytes)")
    try:
        img = Image.open(path)
    except Image.DecompressionBombError as error:
        raise ImageDecodeError(path, _bomb_reason(error, max_pixels)) from None
    except UnidentifiedImageError:
        raise ImageDecodeError(path, "not an image file") from None
    except PermissionError:
        raise ImageDecodeError(path, "permission denied") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageDecodeError(path, f"cannot open image ({error})") from None
    try:
        with img:
            width, height = img.size
            if width * height > max_pixels:
                raise ImageDecodeError(path, _too_large(width, height, max_pixels))
            if width <= 0 or height <= 0:
                raise ImageDecodeError(path, f"invalid image size {width}x{height}")
            _reduce_for(img, min_side)
            img.load()
            try:
                oriented = ImageOps.exif_transpose(img)
            except Exception:  # noqa: BLE001 - a broken EXIF block must not lose a readable photo
                oriented = img
            return _to_rgb(oriented if oriented is not None else img)
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageDecodeError(path, _bomb_reason(error, max_pixels)) from None
    except MemoryError:
        raise ImageDecodeError(path, "image too large to decode (out of memory)") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error):
        raise ImageDecodeError(path, "truncated or corrupt image data") from None
    except Exception as error:  # noqa: BLE001 - plugins raise anything; the contract is one error type
        raise ImageDecodeError(path, f"cannot decode image ({type(error).__name__}: {error})") from None


def iter_image_files(folder: str | Path) -> Iterator[Path]:
    """Image files under ``folder`` (recursive, sorted, by suffix), skipping hidden files and folders."""
    root = Path(folder)
    for current, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            if os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES:
                yield Path(current) / name


def file_hash(path: str | Path) -> str:
    """The blake2b content hash of a file (hex), read in chunks so big files never sit in memory."""
    digest = hashlib.blake2b(digest_size=20)
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(_HASH_CHUNK):
                digest.update(chunk)
    except FileNotFoundError:
        raise ImageDecodeError(path, "file not found") from None
    except OSError as error:
        raise ImageDecodeError(path, f"cannot read file ({error.strerror or error})") from None
    return digest.hexdigest()


def thumbnail(path: str | Path, max_side: int = 256) -> Image.Image:
    """An RGB thumbnail whose longer side is at most ``max_side`` (aspect ratio kept)."""
    img = open_image(path, min_side=max_side)
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=2.0)
    return img
