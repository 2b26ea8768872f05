"""What the service receives: images (a path on disk, or the bytes of an upload with its file name) and the tag
sets people type. Every surface (CLI, HTTP, bot) parses through here, so one input gives one answer everywhere."""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from vistext.errors import ImageDecodeError, UsageError
from vistext.images import open_image


@dataclass(frozen=True)
class Upload:
    """An image that arrived as bytes (HTTP upload, chat photo). ``name`` is only used in messages."""

    name: str
    data: bytes


ImageInput = str | Path | Upload
MAX_PIXELS = 40_000_000  # the default cap on an upload's pixels (a 500 KB PNG can hold 166 MP and cost 840 MB)


class ImageTooLargeError(UsageError):
    """An upload whose image has more pixels than the surface accepts (HTTP answers 413)."""


def check_upload(upload: Upload, max_pixels: int = MAX_PIXELS) -> None:
    """Read only the image header: refuse an empty upload, a non-image and too many pixels before any pixel is
    decoded. Every surface that takes uploads (HTTP, the bot) checks them here, with its own cap."""
    if not upload.data:
        raise ImageDecodeError(upload.name, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(upload.data)) as img:
                width, height = img.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLargeError(f"{upload.name}: image too large (limit {max_pixels} pixels)") from None
    except UnidentifiedImageError:
        raise ImageDecodeError(upload.name, "not an image file") from None
    except Exception as error:  # noqa: BLE001 - any header parse failure is a bad upload, never a crash
        raise ImageDecodeError(upload.name, f"cannot open image ({type(error).__name__})") from None
    if width * height > max_pixels:
        raise ImageTooLargeError(f"{upload.name}: image too large: {width}x{height} pixels (limit {max_pixels})")


MAX_TAG_SETS = 50  # tag sets in one request
MAX_TAG_LENGTH = 200  # characters in one tag
MAX_VOCABULARY = 1000  # words in one open vocabulary (the server sets its own, lower limit)
_SET_SEPARATOR = re.compile(r"[;\n]")


def input_name(image: ImageInput) -> str:
    return image.name if isinstance(image, Upload) else str(image)


@contextmanager
def _as_file(upload: Upload) -> Iterator[Path]:
    suffix = Path(upload.name).suffix.lower() or ".img"
    handle, tmp = tempfile.mkstemp(suffix=suffix, prefix="vistext-upload-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(upload.data)
        yield Path(tmp)
    finally:
        os.unlink(tmp)


def decode(image: ImageInput, min_side: int = 224) -> Image.Image:
    """Decode with the same safe decoder as indexing; errors name the upload, not a temp file."""
    if not isinstance(image, Upload):
        return open_image(image, min_side=min_side)
    with _as_file(image) as path:
        try:
            return open_image(path, min_side=min_side)
        except ImageDecodeError as error:
            raise ImageDecodeError(image.name, error.reason) from None


def parse_tag_sets(text: str | Sequence[str], *, limit: int = MAX_TAG_SETS) -> list[list[str]]:
    """Tag sets as a person types them, parsed by one set of rules for every surface.

    - Text starting with ``[`` is JSON, a list of lists of strings: ``[["dog", "grass"], ["cat"]]``.
    - Otherwise sets are separated by new lines or ``;``. Within a set, tags are separated by commas
      (``"red car, street"`` -> ``["red car", "street"]``); a set without a comma has one tag per word
      (``"dog ball grass"`` -> ``["dog", "ball", "grass"]``), so end a lone multi-word tag with a comma.
    - A sequence of texts (command-line arguments) is parsed text by text and the sets are joined, so each
      argument is one or more sets.
    - Surrounding spaces and empty tags are dropped; a set left empty is skipped.

    Raises ``UsageError`` when there is no set, more than ``limit`` sets, or a tag over 200 characters.
    """
    texts = [text] if isinstance(text, str) else list(text)
    sets = [tags for part in texts for tags in _parse_text(part)]
    if not sets:
        raise UsageError("give at least one tag set")
    if len(sets) > limit:
        raise UsageError(f"too many tag sets ({len(sets)}; limit {limit})")
    if any(len(tag) > MAX_TAG_LENGTH for tags in sets for tag in tags):
        raise UsageError(f"a tag is longer than {MAX_TAG_LENGTH} characters")
    return sets


def parse_vocabulary(text: str, *, limit: int = MAX_VOCABULARY) -> list[str]:
    """An open vocabulary as a person types it, by one rule for every surface: words or phrases separated by
    commas or new lines (a file with one per line reads the same), surrounding spaces and empty entries dropped.

    Raises ``UsageError`` when it is empty, has more than ``limit`` entries, or one over 200 characters.
    """
    words = [word.strip() for word in text.replace("\n", ",").split(",") if word.strip()]
    if not words:
        raise UsageError("the vocabulary is empty")
    if len(words) > limit:
        raise UsageError(f"too many entries in the vocabulary ({len(words)}; limit {limit})")
    if any(len(word) > MAX_TAG_LENGTH for word in words):
        raise UsageError(f"an entry of the vocabulary is longer than {MAX_TAG_LENGTH} characters")
    return words


def _parse_text(text: str) -> list[list[str]]:
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            raw = json.loads(stripped)
        except json.JSONDecodeError as error:
            raise UsageError(f"tag_sets is not valid JSON ({error.msg})") from None
        except RecursionError:
            raise UsageError("tag_sets JSON is nested too deeply (expected a list of lists of strings)") from None
        if not isinstance(raw, list) or not all(
            isinstance(tags, list) and all(isinstance(tag, str) for tag in tags) for tags in raw
        ):
            raise UsageError("tag_sets JSON must be a list of lists of strings")
        sets = [[tag.strip() for tag in tags] for tags in raw]
    else:
        lines = _SET_SEPARATOR.split(stripped)
        sets = [[tag.strip() for tag in (line.split(",") if "," in line else line.split())] for line in lines]
    return [tags for tags in ([tag for tag in tags if tag] for tags in sets) if tags]
