"""The JSON API, one router per concern: admin (health, info, status), search, understanding uploads, the
collection as a list, the collection as a whole (topics, duplicates, map), and images by id.

Every handler parses, calls the service (in a worker thread or a work queue; see ``server.context``), and
returns its ``to_dict()``. The OpenAPI schema states the real limits (k, offset, ids, thumbnail sizes,
topics), so a request the schema allows is accepted, and one it does not gets a 4xx ``{"error": ...}``.
"""

from __future__ import annotations

from fastapi import APIRouter

from vistext.server.routers.admin import build_admin_router
from vistext.server.routers.collection import build_collection_router
from vistext.server.routers.explore import build_explore_router
from vistext.server.routers.images import build_images_router
from vistext.server.routers.search import build_search_router
from vistext.server.routers.understand import build_understand_router
from vistext.server.settings import ServerSettings


def build_routers(settings: ServerSettings) -> list[APIRouter]:
    """Every API router, each under ``/api``."""
    return [
        build_admin_router(),
        build_search_router(settings),
        build_understand_router(settings),
        build_explore_router(settings),
        build_images_router(),
        build_collection_router(settings),
    ]
