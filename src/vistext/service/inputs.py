"""Images as the service receives them: a path on disk, or the bytes of an upload with its file name."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from vistext.errors import ImageDecodeError
from vistext.images import open_image


@dataclass(frozen=True)
class Upload:
    """An image that arrived as bytes (HTTP upload, chat photo). ``name`` is only used in messages."""

    name: str
    data: bytes


ImageInput = str | Path | Upload


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
