"""Service operations for looking at a collection: its map, thumbnails, original files, status, contact sheets.

Images are only ever addressed by their catalogue id, so no caller (HTTP client, chat user) can make the
service read a path of its choosing.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vistext.errors import ImageDecodeError, UsageError, VistextError
from vistext.paths import cache_dir

if TYPE_CHECKING:
    from vistext.service.results import SearchResult
    from vistext.store import ImageRecord, Store

log = logging.getLogger(__name__)

THUMBNAIL_SIZES = (64, 128, 256, 512)
_THUMB_MEMORY = 2048  # recently served thumbnails kept in memory (~5 KB each at 128 px)


class UnknownImageError(UsageError):
    """No indexed, readable image has this id."""


class ExploreMixin:
    """Mixed into ``Service``: needs its ``store()``, ``db_path()`` and (for colours) ``topics()``."""

    _thumb_cache: OrderedDict[tuple[str, int], bytes]
    _explore_lock: threading.Lock

    if TYPE_CHECKING:  # provided by Service; declared for type checkers only, so the MRO keeps Service's

        def store(self, create: bool = False, folder: str | Path | None = None) -> Store: ...

        def db_path(self, folder: str | Path | None = None) -> Path: ...

        def info(self) -> dict[str, Any]: ...

    def _explore_state(self) -> tuple[OrderedDict[tuple[str, int], bytes], threading.Lock]:
        # set lazily: Service.__init__ is not ours to extend
        if not hasattr(self, "_explore_lock"):
            self._explore_lock = threading.Lock()
            self._thumb_cache = OrderedDict()
        return self._thumb_cache, self._explore_lock

    # ---- single images, by id only ------------------------------------------------------------------------
    def image_record(self, image_id: int) -> ImageRecord:
        """The catalogue record of an indexed, readable image; ``UnknownImageError`` otherwise."""
        if isinstance(image_id, bool) or not isinstance(image_id, int | np.integer):
            raise UsageError(f"an image id is a whole number, got {image_id!r}")
        record = self.store().get(int(image_id))
        if record is None or record.status != "ok":
            raise UnknownImageError(f"no indexed image with id {image_id}")
        return record

    def image_file(self, image_id: int) -> Path:
        """The file of indexed image ``image_id`` (never a caller-given path)."""
        path = Path(self.image_record(image_id).path)
        if not path.is_file():
            raise UnknownImageError(f"indexed image {image_id}: {path} no longer exists (re-run `vistext index`)")
        return path

    def thumbnail(self, image_id: int, size: int = 256) -> bytes:
        """A JPEG thumbnail of indexed image ``image_id`` whose longer side is ``size`` (one of THUMBNAIL_SIZES)."""
        from vistext.images import thumbnail

        if size not in THUMBNAIL_SIZES:
            raise UsageError(f"thumbnail size must be one of {', '.join(map(str, THUMBNAIL_SIZES))}, got {size}")
        record = self.image_record(image_id)
        key = (record.sha or f"{record.path}:{record.mtime}", size)
        memory, lock = self._explore_state()
        with lock:
            if key in memory:
                memory.move_to_end(key)
                return memory[key]
        try:
            disk: Path | None = cache_dir("thumbnails", str(size)) / f"{key[0].replace('/', '_')[:80]}.jpg"
        except OSError as error:  # an unwritable cache home: thumbnails are still made, just not kept on disk
            log.warning("thumbnail cache unavailable: %s", error.strerror or error)
            disk = None
        if disk is not None and disk.is_file():
            data = disk.read_bytes()
        else:
            path = self.image_file(image_id)
            try:
                picture = thumbnail(path, size)
            except ImageDecodeError as error:
                raise UnknownImageError(f"indexed image {image_id}: {error.reason}") from None
            buffer = io.BytesIO()
            picture.save(buffer, format="JPEG", quality=85)
            data = buffer.getvalue()
            if disk is not None:
                _keep_thumbnail(disk, data)
        with lock:
            memory[key] = data
            while len(memory) > _THUMB_MEMORY:
                memory.popitem(last=False)
        return data

    # ---- the collection -------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """``info()`` plus what the explore surfaces need: is there a map already, can text search run."""
        status = dict(self.info())
        if not status.get("exists"):
            status.update(images=0, map_ready=False, text_search=False)
            return status
        store = self.store()
        spaces = list(store.spaces())
        try:  # the current joint model's space: one left by an older model cannot answer text queries
            status["text_search"] = getattr(self, "joint_space", None) in spaces
        except VistextError:
            status["text_search"] = False
        try:
            count, files = self._map_files()
            status["images"] = count
            cached = [method for method, file in files.items() if file.is_file()]
            status["maps_cached"] = cached
            status["map_ready"] = bool(cached)
        except VistextError as error:
            log.warning("status: %s", error)
            status["map_ready"] = False
        return status

    def _map_files(self) -> tuple[int, dict[str, Path]]:
        """The image count and each map method's cache file for the collection as it is now. Naming the files
        needs a fingerprint of every vector, so it is remembered until the store's version changes: a polled
        status must not read 10k vectors each time (it took ~0.4 s)."""
        from vistext.analysis.maps import METHODS, cache_file

        store = self.store()
        version = store.version()
        memo = self.__dict__.get("_map_files_memo")
        if memo is None or memo[0] != version:
            ids, matrix = store.vectors("image")
            files = {m: cache_file(ids, matrix, self._map_folder(), m) for m in METHODS} if len(ids) else {}
            memo = self.__dict__["_map_files_memo"] = (version, int(len(ids)), files)
        return memo[1], memo[2]

    def _map_folder(self) -> Path:
        return self.db_path().parent / "maps"

    def map_points(self, method: str = "tsne", topics: int = 8, seed: int = 0) -> dict[str, Any]:
        """2-D positions of every indexed image (computed once per collection state and cached beside the db).

        Returns columns ``id``, ``x``, ``y``, ``name`` and ``topic`` (the image's strongest NMF topic, or -1),
        plus ``topics`` (id and top words of each topic).
        """
        from vistext.analysis.maps import cached_layout

        ids, matrix = self.store().vectors("image")
        if len(ids) == 0:
            raise UsageError(f"{self.db_path()}: the index is empty; nothing to map")
        folder = self._map_folder()
        layout = cached_layout(ids, matrix, folder, method=method, seed=seed)
        cache = folder / f"points-{layout.method}-{layout.key}-t{topics}.json"
        if cache.is_file():
            try:
                return dict(json.loads(cache.read_text(encoding="utf-8")))
            except (OSError, ValueError) as error:
                log.warning("%s: unreadable map cache (%s); recomputing", cache, error)
        name_of = {record.id: Path(record.path).name for record in self.store().records()}
        topic_of, topic_list = self._topic_colours(layout.ids, topics)
        payload = {
            "method": layout.method,
            "key": layout.key,
            "count": int(len(layout.ids)),
            "points": {
                "id": layout.ids.tolist(),
                "x": [round(float(v), 5) for v in layout.xy[:, 0]],
                "y": [round(float(v), 5) for v in layout.xy[:, 1]],
                "name": [name_of.get(int(i), str(i)) for i in layout.ids.tolist()],
                "topic": topic_of,
            },
            "topics": topic_list,
        }
        for old in folder.glob(f"points-{layout.method}-*.json"):
            old.unlink(missing_ok=True)
        tmp = folder / f".{cache.name}.{threading.get_ident()}.tmp"
        tmp.write_text(json.dumps(payload), encoding="utf-8")
        tmp.replace(cache)
        return payload

    def _topic_colours(self, ids: np.ndarray, n_topics: int) -> tuple[list[int], list[dict[str, Any]]]:
        """Each image's strongest NMF topic and each topic's top words; -1 everywhere when there are none."""
        none: tuple[list[int], list[dict[str, Any]]] = ([-1] * len(ids), [])
        if n_topics <= 0:
            return none
        topics_of = getattr(self, "topics", None)  # Service.topics (TopicsMixin)
        if topics_of is None:
            return none
        try:
            return _read_topics(topics_of(n_topics), ids)
        except (VistextError, ValueError, KeyError, TypeError) as error:
            log.warning("map drawn without topic colours: %s", error)
            return none

    def neighbour_table(self, k: int = 8) -> dict[int, list[tuple[int, float]]]:
        """Every indexed image's ``k`` most similar images (for maps that work without a server)."""
        from vistext.analysis.maps import nearest_neighbours

        ids, matrix = self.store().vectors("image")
        indices, scores = nearest_neighbours(matrix, k)
        ids = np.asarray(ids)
        return {
            int(ids[row]): [(int(ids[j]), round(float(s), 4)) for j, s in zip(indices[row], scores[row], strict=True)]
            for row in range(len(ids))
        }

    # ---- pictures of results ----------------------------------------------------------------------------------
    def grid(self, result: SearchResult, out_path: str | Path, *, columns: int | None = None, thumb: int = 192) -> Path:
        """Draw ``result`` as a contact sheet (rank, score and file name under each thumbnail)."""
        from vistext.analysis.grid import SheetItem, render_contact_sheet

        items = [
            SheetItem(hit.path, f"{rank}. {hit.score:.3f}", Path(hit.path).name)
            for rank, hit in enumerate(result.results, start=result.offset + 1)
        ]
        if not items:
            raise UsageError(f"no results for {result.query}: nothing to draw")
        return render_contact_sheet(items, out_path, title=result.query, columns=columns, thumb=thumb)


__all__ = ["THUMBNAIL_SIZES", "ExploreMixin", "UnknownImageError"]


def _keep_thumbnail(disk: Path, data: bytes) -> None:
    """Write a thumbnail to the disk cache; a full or read-only disk only costs the caching."""
    tmp = disk.with_name(f".{disk.name}.{threading.get_ident()}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(disk)
    except OSError as error:
        log.warning("thumbnail cache not written (%s): %s", disk.parent, error.strerror or error)
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def _read_topics(result: dict[str, Any], ids: np.ndarray) -> tuple[list[int], list[dict[str, Any]]]:
    """Topic colours from ``Service.topics()``: ``topics`` (``topic``/``id``, ``words``) and ``image_topics``
    (image id -> dominant topic, or -> topic weights)."""
    topic_list = []
    for position, topic in enumerate(result.get("topics", [])):
        words = [w["word"] if isinstance(w, dict) else str(w) for w in topic.get("words", [])][:6]
        topic_list.append({"id": int(topic.get("topic", topic.get("id", position))), "words": words})
    assigned = result.get("image_topics", {})
    best: dict[int, int] = {}
    for key, value in assigned.items() if isinstance(assigned, dict) else []:
        best[int(key)] = int(np.argmax(value)) if isinstance(value, list | tuple) else int(value)
    return [best.get(int(i), -1) for i in ids.tolist()], topic_list
