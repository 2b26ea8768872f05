"""Users' photos: finding them, opening them safely, and decoding them to RGB.

**The rule for a user's file.** Every open of a user's file (a photo, by any command: indexing, hashing,
metadata, thumbnails, duplicates, serving an original, the bot) goes through ``open_regular``, which refuses
anything but a regular file (a FIFO, a device, a folder, a socket) without blocking, and turns every failure
into one ``ImageDecodeError`` naming the file and the reason. Nothing opens a user's file by name with
``open()``, ``Path.read_bytes`` or ``Image.open(path)``. Whatever is stored about a photo (its hash, features,
metadata) is computed from one opened ``PhotoFile``, never from a second open by name: the file can be
replaced between two opens, and features of one picture stored under another's hash are reused by every copy
of that content for good.

- ``files``: ``open_regular``, ``PhotoFile`` (a photo opened once, header checked, hashed), ``file_hash`` and
  ``iter_image_files`` (the folder walk, any depth, no link loops, unreadable folders reported).
- ``decode``: ``open_image`` and ``thumbnail`` (bounded memory, every mode to RGB, one error type).
"""

from __future__ import annotations

from vistext.images.decode import MAX_DECODE_BYTES, MAX_PIXELS, open_image, thumbnail
from vistext.images.files import (
    FORMATS,
    IMAGE_SUFFIXES,
    PhotoFile,
    file_hash,
    is_image_header,
    iter_image_files,
    not_regular_reason,
    open_regular,
)

__all__ = [
    "FORMATS",
    "IMAGE_SUFFIXES",
    "MAX_DECODE_BYTES",
    "MAX_PIXELS",
    "PhotoFile",
    "file_hash",
    "is_image_header",
    "iter_image_files",
    "not_regular_reason",
    "open_image",
    "open_regular",
    "thumbnail",
]
