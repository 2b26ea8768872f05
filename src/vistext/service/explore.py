"""Looking at a collection as a whole: its status, its 2-D map coloured by topic, neighbour tables, contact
sheets of results.

Maps and topics are computed once per collection state and cached beside the catalogue.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vistext.errors import UsageError, VistextError
from vistext.paths import atomic_write
from vistext.service.collection import Collection, UnknownImageError
from vistext.service.collection_topics import CollectionTopics
from vistext.service.filters import meta_dict
from vistext.service.loaded_models import LoadedModels
from vistext.service.results import MapResult, NeighbourTable, SearchResult, StatusResult, TopicsResult

if TYPE_CHECKING:
    from vistext.store import Store
    from vistext.store.records import ImageFilter

log = logging.getLogger(__name__)
ROOT_FOLDER = "."  # the folder name of photos directly in the collection folder
MAPS_KEPT = 4  # map answers kept in memory


class Explore:
    """The explore surfaces' view of ``collection``: status, maps (coloured by ``topics``), neighbours, grids."""

    def __init__(self, collection: Collection, models: LoadedModels, topics: CollectionTopics) -> None:
        self.collection = collection
        self.models = models
        self.topics = topics
        # (store version, image count, map method -> cache file) for the collection as last seen
        self._map_files: tuple[int, int, dict[str, Path]] | None = None
        self._map_files_lock = threading.Lock()
        # map answers of the collection as last seen, by (store version, method, topics, seed): a map request
        # must not read and fingerprint every vector again while nothing changed
        self._maps: dict[tuple[int, str, int, int, str], MapResult] = {}

    # ---- the collection -------------------------------------------------------------------------------------
    def status(self) -> StatusResult:
        """``info()`` plus what the explore surfaces need: is there a map already, can text search run."""
        info = self.collection.info()
        if not info.exists:
            return StatusResult(info, images=0)
        status = StatusResult(info)
        spaces = list(self.collection.store().spaces())
        try:  # the current joint model's space: one left by an older model cannot answer text queries
            status.text_search = self.models.text_space in spaces
        except VistextError:
            status.text_search = False
        try:
            status.images, files = self._current_map_files()
            status.maps_cached = [method for method, file in files.items() if file.is_file()]
            status.map_ready = bool(status.maps_cached)
        except VistextError as error:
            log.warning("status: %s", error)
            status.map_ready = False
        return status

    def _current_map_files(self) -> tuple[int, dict[str, Path]]:
        """The image count and each map method's cache file for the collection as it is now. Naming the files
        needs a fingerprint of every vector, so it is remembered until the store's version changes: a polled
        status must not read 10k vectors each time (it took ~0.4 s)."""
        from vistext.analysis.maps import METHODS, cache_file

        store = self.collection.store()
        version = store.version()
        with self._map_files_lock:
            known = self._map_files
            if known is None or known[0] != version:
                ids, matrix = store.vectors("image")
                files = {m: cache_file(ids, matrix, self.map_folder(), m) for m in METHODS} if len(ids) else {}
                known = self._map_files = (version, int(len(ids)), files)
        return known[1], known[2]

    def map_folder(self) -> Path:
        return self.collection.location.cache_folder / "maps"

    def map_points(
        self, method: str = "tsne", topics: int = 8, seed: int = 0, model: str | Path | None = None
    ) -> MapResult:
        """2-D positions of every indexed image (computed once per collection state and cached beside the db),
        each coloured by its strongest of ``topics`` NMF topics (-1 without topics); laid out by the image
        features, or by ``model``'s vectors (a CLIP-family model the catalogue has a space for)."""
        store = self.collection.store()
        space = "image" if model is None else self.collection.clip_model(model).space
        key = (store.version(), method, topics, seed, space)
        with self._map_files_lock:
            if key in self._maps:
                return self._maps[key]
        result = self._compute_map(store, method, topics, seed, space)
        with self._map_files_lock:
            self._maps[key] = result
            while len(self._maps) > MAPS_KEPT:
                self._maps.pop(next(iter(self._maps)))
        return result

    def _compute_map(self, store: Store, method: str, topics: int, seed: int, space: str = "image") -> MapResult:
        from vistext.analysis.maps import cached_layout

        ids, matrix = store.vectors(space)
        if len(ids) == 0:
            raise UsageError(f"{self.collection.location}: the index is empty; nothing to map")
        folder = self.map_folder()
        layout = cached_layout(ids, matrix, folder, method=method, seed=seed)
        cache = folder / f"points-{layout.method}-{layout.key}-t{topics}.json"
        if cache.is_file():
            try:
                return MapResult.from_dict(json.loads(cache.read_text(encoding="utf-8")))
            except (OSError, ValueError, KeyError) as error:
                log.warning("%s: unreadable map cache (%s); recomputing", cache, error)
        name_of = {record.id: Path(record.path).name for record in store.records()}
        topic_of, topic_list = self._topic_colours(layout.ids, topics)
        result = MapResult(
            method=layout.method,
            key=layout.key,
            points={
                "id": layout.ids.tolist(),
                "x": [round(float(v), 5) for v in layout.xy[:, 0]],
                "y": [round(float(v), 5) for v in layout.xy[:, 1]],
                "name": [name_of.get(int(i), str(i)) for i in layout.ids.tolist()],
                "topic": topic_of,
            },
            topics=topic_list,
        )
        try:  # a read-only collection or a full disk: the map is served, only not cached
            for old in folder.glob(f"points-{layout.method}-*.json"):
                old.unlink(missing_ok=True)
            atomic_write(cache, json.dumps(result.to_dict()), fsync=False)
        except (OSError, VistextError) as error:
            log.warning("map not cached: %s", error)
        return result

    def _topic_colours(self, ids: np.ndarray, n_topics: int) -> tuple[list[int], list[dict[str, object]]]:
        """Each image's strongest NMF topic and each topic's top words; -1 everywhere when there are none."""
        if n_topics <= 0:
            return [-1] * len(ids), []
        try:
            return _colours(self.topics.topics(n_topics), ids)
        except (VistextError, ValueError, KeyError) as error:
            log.warning("map drawn without topic colours: %s", error)
            return [-1] * len(ids), []

    def attributes(self, filter: ImageFilter | None) -> dict[str, Any]:
        """Each photo passing ``filter`` as columns: id, path, folder, tags, date taken, camera, GPS position."""
        store = self.collection.store()
        wanted = None if filter is None or filter.empty else [int(i) for i in store.ids_matching(filter)]
        records = sorted((r for r in store.records(wanted) if r.id is not None), key=lambda r: int(r.id or 0))
        ids = [int(r.id or 0) for r in records]
        folders = image_folders({int(r.id or 0): r.path for r in records}, self.collection.location.collection_folder)
        tags = store.tags_for(ids)
        metas = [meta_dict(r.meta) or {} for r in records]
        return {
            "id": ids,
            "path": [r.path for r in records],
            "folder": [folders[i] for i in ids],
            "tags": [[tag for tag, _ in tags.get(i, [])] for i in ids],
            "taken": [meta.get("taken") for meta in metas],
            "camera": [
                " ".join(str(v) for v in (m.get("camera_make"), m.get("camera_model")) if v) or None for m in metas
            ],
            "latitude": [meta.get("latitude") for meta in metas],
            "longitude": [meta.get("longitude") for meta in metas],
        }

    def neighbour_table(self, k: int = 8, model: str | Path | None = None) -> NeighbourTable:
        """Every indexed image's ``k`` most similar images (for maps that work without a server), by the image
        features or in ``model``'s space."""
        from vistext.analysis.maps import nearest_neighbours

        space = "image" if model is None else self.collection.clip_model(model).space
        ids, matrix = self.collection.store().vectors(space)
        indices, scores = nearest_neighbours(matrix, k)
        ids = np.asarray(ids)
        return NeighbourTable(
            {
                int(ids[row]): [
                    (int(ids[j]), round(float(s), 4)) for j, s in zip(indices[row], scores[row], strict=True)
                ]
                for row in range(len(ids))
            }
        )

    # ---- pictures of results ----------------------------------------------------------------------------------
    def grid(
        self,
        result: SearchResult,
        out_path: str | Path,
        *,
        columns: int | None = None,
        thumb: int = 192,
        query_image: str | Path | None = None,
    ) -> Path:
        """Draw ``result`` as a contact sheet (rank, score and file name under each thumbnail); ``query_image``
        (the photo a "similar" search was asked about) comes first, framed and labelled "query"."""
        from vistext.analysis.grid import SheetItem, render_contact_sheet

        items = [
            SheetItem(hit.path, f"{rank}. {hit.score:.3f}", Path(hit.path).name)
            for rank, hit in enumerate(result.results, start=result.offset + 1)
        ]
        if not items:
            raise UsageError(f"no results for {result.query}: nothing to draw")
        if query_image is not None:
            items.insert(0, SheetItem(query_image, "query", Path(query_image).name, marked=True))
        return render_contact_sheet(items, out_path, title=result.query, columns=columns, thumb=thumb)


__all__ = ["Explore", "UnknownImageError"]


def image_folders(paths: dict[int, str], collection: Path | None) -> dict[int, str]:
    """Each image's folder relative to ``collection`` (or, for a catalogue kept elsewhere, to the folder all
    the images share), POSIX-style; ``"."`` for the top folder itself."""
    if not paths:
        return {}
    parents = {image_id: os.path.dirname(path) for image_id, path in paths.items()}
    if collection is not None:
        base = str(collection)
    else:
        try:
            base = os.path.commonpath(list(parents.values()))
        except ValueError:  # paths on different drives: keep them as they are
            base = ""
    folders = {}
    for image_id, parent in parents.items():
        relative = os.path.relpath(parent, base) if base else parent
        folders[image_id] = ROOT_FOLDER if relative.startswith("..") else Path(relative).as_posix()
    return folders


def _colours(result: TopicsResult, ids: np.ndarray) -> tuple[list[int], list[dict[str, object]]]:
    """Each image's dominant topic (-1 for images the topics left out) and each topic's id, top words and label."""
    topic_list: list[dict[str, object]] = [
        {"id": topic.topic, "words": [word for word, _ in topic.words[:6]], "label": topic.label}
        for topic in result.topics
    ]
    return [result.image_topics.get(int(i), -1) for i in ids.tolist()], topic_list
