"""Thumbnails of indexed images: JPEGs kept in memory (most recently served) and on disk by content hash, so a
page of results or a chat album is drawn from the originals once."""

from __future__ import annotations

import io
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from vistext.errors import VistextError
from vistext.paths import atomic_write, cache_dir

log = logging.getLogger(__name__)

THUMBNAIL_SIZES = (64, 128, 256, 512)
THUMBNAIL_MEMORY = 2048  # recently served thumbnails kept in memory (~5 KB each at 128 px)


class Thumbnails:
    """JPEG thumbnails by ``(key, size)``: memory first, then the disk cache, then drawn from the original."""

    def __init__(self, memory: int = THUMBNAIL_MEMORY) -> None:
        self.memory = memory
        self._kept: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, size: int, original: Callable[[], Path]) -> bytes:
        """The thumbnail of the image whose content is ``key`` (its hash), whose longer side is ``size``;
        ``original()`` gives its file when it has to be drawn (an unreadable one raises ``ImageDecodeError``)."""
        with self._lock:
            if (key, size) in self._kept:
                self._kept.move_to_end((key, size))
                return self._kept[(key, size)]
        disk, data = self._from_disk(key, size)
        if data is None:
            data = _draw(original(), size)
            if disk is not None:
                try:
                    atomic_write(disk, data, fsync=False)
                except VistextError as error:
                    log.warning("thumbnail not cached: %s", error)
        with self._lock:
            self._kept[(key, size)] = data
            while len(self._kept) > self.memory:
                self._kept.popitem(last=False)
        return data

    @staticmethod
    def _from_disk(key: str, size: int) -> tuple[Path | None, bytes | None]:
        """The disk cache's file for this thumbnail and its bytes when there; ``(None, None)`` when the cache
        cannot be used (it is only a cache: an unwritable home or a full disk still serves the thumbnail)."""
        try:
            disk = cache_dir("thumbnails", str(size)) / f"{key.replace('/', '_')[:80]}.jpg"
            return disk, (disk.read_bytes() if disk.is_file() else None)
        except (OSError, VistextError) as error:
            log.warning("%s", error)
            return None, None


def _draw(path: Path, size: int) -> bytes:
    from vistext.images import thumbnail

    buffer = io.BytesIO()
    thumbnail(path, size).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()
