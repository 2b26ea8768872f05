"""What every router's handlers share: one service (models load once), the limits, and the work queues.

Handlers parse, call the service in a worker thread (or a queue, for expensive work), and return its
``to_dict()``; this is where "in a worker thread, within the request timeout" is said once.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request

from vistext.server import schemas
from vistext.server.limits import run_blocking, wait_for
from vistext.server.settings import ServerSettings
from vistext.server.warmup import WarmUp
from vistext.server.work import WorkQueue
from vistext.service import Service

T = TypeVar("T")

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": schemas.ErrorOut, "description": "bad request or unreadable image"},
    401: {"model": schemas.ErrorOut, "description": "missing or wrong bearer token"},
    408: {"model": schemas.ErrorOut, "description": "the request head or body arrived too slowly"},
    413: {"model": schemas.ErrorOut, "description": "upload or image too large"},
    503: {"model": schemas.ErrorOut, "description": "no index yet, a model is missing, or the server is busy"},
    504: {"model": schemas.ErrorOut, "description": "the request took too long"},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": schemas.ErrorOut, "description": "no indexed, readable image has this id"}
}
UNKNOWN_MODEL: dict[int | str, dict[str, Any]] = {
    404: {"model": schemas.ErrorOut, "description": "model= names no model of this catalogue (see /api/models)"}
}
NOT_FOUND_OR_UNKNOWN_MODEL: dict[int | str, dict[str, Any]] = {
    404: {
        "model": schemas.ErrorOut,
        "description": "no indexed, readable image has this id, or model= names no model of this catalogue",
    }
}
ANALYSES_KEPT = 8  # collection-wide results (one per topic count, threshold...) kept in memory
MAPS_KEPT = 4  # map layouts (one per method and collection state) kept in memory


@dataclass
class ServerContext:
    """What the handlers share: one service, the limits, the work queues (uploads, analyses, maps)."""

    service: Service
    settings: ServerSettings
    uploads: WorkQueue
    analysis: WorkQueue
    maps: WorkQueue
    warm_up: WarmUp | None = None

    @classmethod
    def create(cls, service: Service, settings: ServerSettings) -> ServerContext:
        waiting, deadline = settings.max_waiting_work, settings.job_deadline
        uploads = WorkQueue("upload", settings.upload_concurrency, waiting, deadline=settings.request_timeout)
        analysis = WorkQueue("analysis", 1, waiting, deadline=deadline, keep=ANALYSES_KEPT)
        maps = WorkQueue("map", 1, waiting, deadline=deadline, keep=MAPS_KEPT)
        return cls(service, settings, uploads, analysis, maps, warm_up=WarmUp(service))

    def shutdown(self) -> None:
        self.uploads.shutdown()
        self.analysis.shutdown()
        self.maps.shutdown()

    async def call(self, fn: Callable[[], T]) -> T:
        """Cheap service work (catalogue look-ups, one search) in a worker thread, within the request timeout."""
        return await run_blocking(fn, self.settings.request_timeout)

    async def upload_work(self, request: Request, fn: Callable[[], T]) -> T:
        """A model run on an upload: queued behind at most ``upload_concurrency`` others (503 when full)."""
        return await self.uploads.run(fn, self.settings.request_timeout, request)

    async def per_collection_state(self, request: Request, key: tuple[Hashable, ...], fn: Callable[[], T]) -> T:
        """A collection-wide analysis (topics, duplicates), one at a time, computed once per catalogue version
        and ``key`` and kept: a repeated request costs nothing until the collection changes."""
        full_key = (*key, await self.call(self.service.version))
        cached = self.analysis.cached(full_key)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        return await self.analysis.run(fn, self.settings.request_timeout, request, key=full_key)

    async def wait(self, future: Future[T]) -> T:
        """Await a service future (e.g. a batched search) within the request timeout."""
        return await wait_for(future, self.settings.request_timeout)


def ctx(request: Request) -> ServerContext:
    return request.app.state.ctx  # type: ignore[no-any-return]
