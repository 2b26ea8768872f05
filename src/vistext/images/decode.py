"""Safe, fast image decoding: every failure becomes one ``ImageDecodeError`` naming the file and the reason.

Only the formats vistext documents are tried (``FORMATS``) and files are opened through ``open_regular`` only:
a FIFO or a symlink to a device named ``x.jpg`` is refused without being read. The pixel count is checked from
the header before any pixel is decoded, and above ``MAX_PIXELS`` a file is refused (a decompression bomb).
Large JPEGs are decoded at a reduced DCT scale (``Image.draft``) when the caller needs far fewer pixels; other
formats are decoded once and shrunk at once (``Image.reduce``, or strip by strip for 16-bit and float pictures,
which never pass through a float64 copy). A picture that would need more than ``MAX_DECODE_BYTES`` once decoded
is refused, and only one large decode runs at a time, so memory stays bounded whatever a folder holds. Every
mode PIL can produce (CMYK, palette, alpha, 16-bit, float, grayscale) ends up as plain 8-bit RGB.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vistext.errors import ImageDecodeError
from vistext.file_messages import decoding
from vistext.images.files import CHANGE_TRIES, FORMATS, NOT_AN_IMAGE, PhotoFile, open_regular

log = logging.getLogger(__name__)

MAX_PIXELS = 500_000_000  # header pixel count refused outright (a 100000x100000 "photo")
MAX_DECODE_BYTES = 512 << 20  # decoded raster (after any JPEG draft) refused above this
_LARGE_DECODE = 64 << 20  # rasters above this decode one at a time
_SHRINK_ABOVE = 16_000_000  # non-JPEG pictures above this many pixels are reduced right after decoding
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "LA": 2, "La": 2, "PA": 2, "RGB": 3, "YCbCr": 3, "LAB": 3, "HSV": 3}
_HIGH_DEPTH = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_REDUCIBLE = ("L", "LA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "I", "F")

# Pillow's own bomb check runs inside Image.open; ours refuses above MAX_PIXELS, so Pillow's only has to stop
# what is beyond any doubt (it raises above twice this value).
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
# Pillow allocates rasters in 16 MB blocks by default: glibc then raises its mmap threshold past that size and
# serves later blocks from per-thread heaps it never returns, so a folder of big pictures crept towards 1 GB.
# Blocks of 64 MB are always mmap'ed and go back to the system when an image is freed (measured: 940 -> 720 MB).
if "PILLOW_BLOCK_SIZE" not in os.environ:
    Image.core.set_block_size(64 << 20)

_WHITE = (255, 255, 255)
_large = threading.Semaphore(1)


def _too_large(width: int, height: int, limit: int) -> str:
    return f"image too large: {width}x{height} pixels (limit {limit})"


def _bomb_reason(error: Exception, limit: int) -> str:
    # PIL refuses absurd sizes inside Image.open, before we can read .size; its message carries the count
    found = re.search(r"\((\d+) pixels\)", str(error))
    count = found.group(1) if found else "too many"
    return f"image too large: {count} pixels (limit {limit})"


def _decoded_bytes(img: Image.Image) -> int:
    width, height = img.size
    return width * height * _BYTES_PER_PIXEL.get(img.mode, 2 if img.mode.startswith("I;16") else 4)


# ---- conversions -----------------------------------------------------------------------------------------------
def _high_depth_gray(img: Image.Image, factor: int) -> Image.Image:
    """16-bit, 32-bit and float pictures -> 8-bit gray, box-reduced by ``factor``, in float32 strips."""
    width, height = img.size
    out_w, out_h = max(1, width // factor), max(1, height // factor)
    factor = min(factor, width, height)
    gray = np.empty((out_h, out_w), np.float32)
    peak = 0.0
    rows = max(1, (1 << 22) // max(1, width * factor))  # output rows per strip: ~16 MB of float32 at a time
    for top in range(0, out_h, rows):
        n = min(rows, out_h - top)
        strip = np.asarray(img.crop((0, top * factor, out_w * factor, (top + n) * factor)), dtype=np.float32)
        strip = np.nan_to_num(strip, nan=0.0, posinf=0.0, neginf=0.0)
        peak = max(peak, float(strip.max(initial=0)))
        gray[top : top + n] = strip.reshape(n, factor, out_w, factor).mean(axis=(1, 3))
    # 16-bit sources use the full 0..65535 range (a 32-bit "I" from a 16-bit PNG does too); floats 0..1 or 0..255
    if img.mode == "F":
        scale = 255.0 if peak <= 1.0 else 1.0
        gray *= scale
    elif peak > 255:
        gray /= 257.0
    np.clip(gray, 0, 255, out=gray)
    return Image.fromarray(gray.astype(np.uint8), "L")


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB; transparency is composited on white so it does not turn black."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in _HIGH_DEPTH:
        return _high_depth_gray(img, 1).convert("RGB")
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


def _draft_for(img: Image.Image, min_side: int | None) -> None:
    """Ask the JPEG decoder for a smaller DCT scale; the shorter side stays >= ``min_side``."""
    if min_side is None or img.format not in ("JPEG", "MPO"):
        return
    width, height = img.size
    if min(width, height) >= 2 * min_side:
        img.draft("RGB", (min_side, min_side))


def _reduce_high_depth(img: Image.Image, factor: int) -> Image.Image:
    """Box-reduce a 16-bit, 32-bit or float picture in Pillow's C code (numpy strips where Pillow cannot)."""
    if img.mode in ("I", "F"):
        return img.reduce(factor)
    width, height = img.size
    try:
        return img.resize(
            (width // factor, height // factor),
            Image.Resampling.BOX,
            box=(0, 0, width // factor * factor, height // factor * factor),
        )
    except ValueError:  # a 16-bit layout Pillow does not resample
        return _high_depth_gray(img, factor)


def _shrink(img: Image.Image, min_side: int | None) -> Image.Image:
    """Reduce a big decoded picture by a whole factor at once; the shorter side stays >= 2 * ``min_side``."""
    width, height = img.size
    factor = 1 if min_side is None else min(width, height) // (2 * min_side)
    if img.mode in _HIGH_DEPTH:
        return _high_depth_gray(_reduce_high_depth(img, factor), 1) if factor >= 2 else _high_depth_gray(img, 1)
    if factor >= 2 and width * height > _SHRINK_ABOVE and img.mode in _REDUCIBLE:
        return img.reduce(factor)
    return img


def open_image(
    source: str | Path | PhotoFile,
    min_side: int | None = 224,
    max_pixels: int = MAX_PIXELS,
    max_bytes: int = MAX_DECODE_BYTES,
) -> Image.Image:
    """Decode ``source`` (a path, or a ``PhotoFile`` already opened and hashed) to an RGB image with EXIF
    orientation applied.

    ``min_side`` lets large pictures decode (JPEG) or be reduced (others) to a size whose shorter side is still at
    least that many pixels (``None`` keeps the full size). Raises ``ImageDecodeError`` for every failure: missing,
    empty or non-regular file, unsupported format, truncated/corrupt data, more than ``max_pixels`` pixels, more
    than ``max_bytes`` once decoded; any exception a decoder raises becomes that error. A ``PhotoFile`` is decoded
    from the very bytes that were hashed; when something wrote to the file meanwhile, it is hashed and decoded
    again (its ``sha``, ``size`` and ``mtime`` then describe the bytes the picture came from).
    """
    if isinstance(source, PhotoFile):
        return _decode_photo(source, min_side, max_pixels, max_bytes)
    path = Path(source)
    with open_regular(path) as handle:
        return _decode_file(path, handle, min_side, max_pixels, max_bytes)


def _decode_photo(photo: PhotoFile, min_side: int | None, max_pixels: int, max_bytes: int) -> Image.Image:
    for _ in range(CHANGE_TRIES):
        try:
            with photo.reader() as reader:
                image = _decode_file(Path(photo.path), reader, min_side, max_pixels, max_bytes)
        except ImageDecodeError:
            if photo.unchanged():
                raise
        else:
            if photo.unchanged():
                return image
        photo.rehash()  # written to in place while decoding: what was decoded may mix two versions
    raise ImageDecodeError(photo.path, f"the file kept changing while it was read ({CHANGE_TRIES} tries)")


def _decode_file(path: Path, handle: IO[bytes], min_side: int | None, max_pixels: int, max_bytes: int) -> Image.Image:
    with decoding(path, handle.peek(4)):  # type: ignore[attr-defined]
        if os.fstat(handle.fileno()).st_size == 0:
            raise ImageDecodeError(path, "empty file (0 bytes)")
        img = _open_pillow(path, handle, max_pixels)
        try:
            slot = _large if _check(path, img, min_side, max_pixels, max_bytes) > _LARGE_DECODE else nullcontext()
            with slot, img:  # one large decode at a time, until its full-size raster is freed
                return _decode(img, min_side)
        except ImageDecodeError:
            raise
        except Image.DecompressionBombError as error:
            raise ImageDecodeError(path, _bomb_reason(error, max_pixels)) from None
        except MemoryError:
            raise ImageDecodeError(path, "image too large to decode (out of memory)") from None
        except (OSError, ValueError, SyntaxError, EOFError, IndexError) as error:
            log.debug("%s: %s", path, error)
            raise ImageDecodeError(path, "truncated or corrupt image data") from None
        except Exception as error:  # noqa: BLE001 - plugins raise anything; the contract is one error type
            raise ImageDecodeError(path, f"cannot decode image ({_one_line(error)})") from None
        finally:
            img.close()


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())[:200]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _open_pillow(path: Path, handle: IO[bytes], max_pixels: int) -> Image.Image:
    try:
        # Pillow's DecompressionBombWarning is silenced: ``_check`` right after refuses the same picture with a
        # one-line error naming the file, so the warning only repeated it on the terminal
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(handle, formats=FORMATS)
    except Image.DecompressionBombError as error:
        raise ImageDecodeError(path, _bomb_reason(error, max_pixels)) from None
    except UnidentifiedImageError:
        raise ImageDecodeError(path, NOT_AN_IMAGE) from None
    except MemoryError:
        raise ImageDecodeError(path, "image too large to decode (out of memory)") from None
    except Exception as error:  # noqa: BLE001 - a plugin may raise anything from its header parser
        raise ImageDecodeError(path, f"cannot open image ({_one_line(error)})") from None


def _check(path: Path, img: Image.Image, min_side: int | None, max_pixels: int, max_bytes: int) -> int:
    """Refuse from the header what would need absurd memory; set a JPEG's draft scale; the bytes to decode."""
    width, height = img.size
    if width <= 0 or height <= 0:
        raise ImageDecodeError(path, f"invalid image size {width}x{height}")
    if width * height > max_pixels:
        raise ImageDecodeError(path, _too_large(width, height, max_pixels))
    _draft_for(img, min_side)
    needed = _decoded_bytes(img)
    if needed > max_bytes:
        raise ImageDecodeError(
            path,
            f"image too large to decode: {width}x{height} {img.mode} needs {needed >> 20} MB "
            f"(limit {max_bytes >> 20} MB)",
        )
    return needed


def _decode(img: Image.Image, min_side: int | None) -> Image.Image:
    img.load()
    picture = _shrink(img, min_side)
    if picture is not img and "exif" not in picture.info:  # a strip-reduced copy lost the EXIF block
        return _to_rgb(_orient_like(img, picture))
    try:
        oriented = ImageOps.exif_transpose(picture)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not lose a readable photo
        oriented = picture
    return _to_rgb(oriented if oriented is not None else picture)


def _orient_like(source: Image.Image, picture: Image.Image) -> Image.Image:
    """Apply ``source``'s EXIF orientation to ``picture`` (a reduced copy that lost the EXIF block)."""
    try:
        orientation = source.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001
        return picture
    method = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }.get(orientation)
    return picture if method is None else picture.transpose(method)


def thumbnail(path: str | Path, max_side: int = 256) -> Image.Image:
    """An RGB thumbnail whose longer side is at most ``max_side`` (aspect ratio kept)."""
    img = open_image(path, min_side=max_side)
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=2.0)
    return img
