"""The vector index files beside a SQLite catalogue: caches that prove what they hold before they are used.

``<db stem>.<space>.faiss`` is a plain FAISS index followed by one line, ``vistext-vector-index 1 {json}``: the id
of the catalogue it was made from, the catalogue generation the index reflects, the index's length and its CRC-32. A
file made from another catalogue (one deleted and made again at the same path) is never used, and a file is used
only when the index bytes match that checksum: a flipped float (a bad sector, a stray write, a copy cut short) makes
it a miss, and the index is rebuilt from the catalogue, which is the truth. Nothing about the file's size, mtime or
inode is trusted. (CRC-32 catches every burst of up to 32 flipped bits and misses random damage once in 4 billion;
the threat is damage, not forgery: whoever can write the cache can write the catalogue. Verifying a 10k x 1280-d
index, 51 MB, costs about 0.1 s on this project's 2-core machine.) The file is written whole and renamed into place,
so a reader sees the old file or the new one; the stamp lives in the file, so a read-only catalogue can still keep
its caches (where its folder is writable).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import zlib
from pathlib import Path
from typing import Any, BinaryIO

from vistext.errors import StoreError
from vistext.paths import atomic_path
from vistext.store.sqlite.vectors import VectorIndex

log = logging.getLogger(__name__)

MARK = b"vistext-vector-index 1 "  # starts the stamp line that ends the file
_TAIL = 4096  # the stamp line is far shorter
_CHUNK = 1 << 20


class IndexFiles:
    """Load and save the verified index file of each space of the catalogue at ``catalogue``."""

    def __init__(self, catalogue: Path, *, ef_search: int) -> None:
        self.catalogue = catalogue
        self.ef_search = ef_search

    def file(self, space: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", space)
        if safe != space:  # keep distinct spaces in distinct files ("a:b" vs "a_b")
            safe += "-" + hashlib.sha1(space.encode()).hexdigest()[:8]
        return self.catalogue.with_name(f"{self.catalogue.stem}.{safe}.faiss")

    def total_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.catalogue.parent.glob(f"{self.catalogue.stem}.*.faiss"))

    def load(self, space: str, catalogue_id: str | None) -> tuple[VectorIndex, int] | None:
        """(index, catalogue generation it reflects) from the space's file, or None (missing, another format,
        damaged, made from another catalogue than ``catalogue_id``: the caller rebuilds)."""
        file = self.file(space)
        try:
            with open(file, "rb") as handle:
                stamp = _verified(handle)
                if stamp is None:
                    log.warning("%s: the vector index is damaged or of another format; rebuilding it", file)
                    return None
                if stamp.get("catalogue") != catalogue_id:
                    log.info("%s: the vector index was made from another catalogue; rebuilding it", file)
                    return None
                generation = int(stamp["generation"])
                index = VectorIndex.load(file, ef_search=self.ef_search)
                if os.fstat(handle.fileno()).st_ino != os.stat(file).st_ino:
                    return None  # replaced while we read it: what was loaded was not what was checked
        except FileNotFoundError:
            return None
        except OSError as error:
            log.warning("%s: cannot read the vector index (%s); rebuilding it", file, error.strerror or error)
            return None
        except StoreError as error:
            log.warning("%s; rebuilding it", error)
            return None
        return index, generation

    def save(self, space: str, index: VectorIndex, generation: int, catalogue_id: str | None) -> None:
        """Write the space's file (checksummed, atomically); a cache, so no fsync."""
        payload = index.serialize().tobytes()
        stamp = {
            "catalogue": catalogue_id,
            "generation": int(generation),
            "bytes": len(payload),
            "crc32": zlib.crc32(payload),
        }
        with atomic_path(self.file(space), fsync=False) as temporary, open(temporary, "wb") as out:
            out.write(payload)
            out.write(b"\n" + MARK + json.dumps(stamp).encode() + b"\n")


def _verified(handle: BinaryIO) -> dict[str, Any] | None:
    """An index file's stamp, if its index bytes match it; else None."""
    size = os.fstat(handle.fileno()).st_size
    handle.seek(max(0, size - _TAIL))
    tail = handle.read()
    at = tail.rfind(b"\n" + MARK)
    if at < 0 or not tail.endswith(b"\n"):
        return None
    try:
        stamp = json.loads(tail[at + 1 + len(MARK) :])
    except ValueError:
        return None
    length = size - len(tail) + at
    if not isinstance(stamp, dict) or stamp.get("bytes") != length or not isinstance(stamp.get("generation"), int):
        return None
    handle.seek(0)
    crc, left = 0, length
    while left > 0:
        chunk = handle.read(min(_CHUNK, left))
        if not chunk:
            return None
        crc, left = zlib.crc32(chunk, crc), left - len(chunk)
    return stamp if crc == stamp.get("crc32") else None
