"""The chance that each indexed photo shows a person, as the person head (``models.presence``) reads it from the
photo's stored pooled features: for the search syntax's people words (``service.composed_search``), read once
per catalogue version by a served collection."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from vistext.store import Store


def stored_presence(store: Store, ids: Sequence[int]) -> np.ndarray:
    """(len(ids),) chance that each photo shows a person (``models.presence``), NaN where the head cannot tell
    (no stored features, or features of another size than the head reads)."""
    from vistext.models.presence import shipped_presence
    from vistext.store.records import IMAGE_SPACE  # here: importing the store package loads FAISS

    head = shipped_presence()
    chance = np.full(len(ids), np.nan)
    row = {int(i): n for n, i in enumerate(ids)}
    found = {i: v for i, v in store.vectors_of(IMAGE_SPACE, list(row)).items() if head.fits(len(v))}
    if found:
        chance[[row[i] for i in found]] = head.probability(np.stack(list(found.values())))
    return chance


class PresenceMemo:
    """Each photo's chance of showing a person (``stored_presence``), read from the catalogue once per catalogue
    version: the head is fixed, and a photo's features change only by a write, which moves the version. Holds at
    most ``size`` photos, about 22 MB at the default (emptied when full: a served archive of millions must not
    grow a chance per photo it ever pooled). Shared by the pages of one collection, from any thread."""

    def __init__(self, size: int = 200_000) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._store: Store | None = None  # the store and its version the chances were read at (the store is
        self._version: int | None = None  # held, not its id: a replaced store's id may be reused)
        self._chance: dict[int, float] = {}

    def of(self, store: Store, ids: Sequence[int]) -> np.ndarray:
        """``stored_presence(store, ids)``, from memory where this version's chance was read before."""
        version = store.version()
        with self._lock:
            if store is not self._store or version != self._version or len(self._chance) > self._size:
                self._store, self._version, self._chance = store, version, {}
            known = {int(i): self._chance[int(i)] for i in ids if int(i) in self._chance}
        missing = [int(i) for i in ids if int(i) not in known]
        if missing:
            read = stored_presence(store, missing)
            known.update(zip(missing, read.tolist(), strict=True))
            with self._lock:
                if store is self._store and version == self._version:
                    self._chance.update(zip(missing, read.tolist(), strict=True))
        return np.array([known[int(i)] for i in ids], dtype=np.float64)
