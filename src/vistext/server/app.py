"""The FastAPI application: the JSON API, the web page, auth and limits around one shared service."""

from __future__ import annotations

import functools
import inspect
import io
import logging
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from vistext import __version__
from vistext.errors import ImageDecodeError, ModelError, StoreError, UsageError, VistextError
from vistext.server.auth import BearerAuth, HostCheck, answered_hosts
from vistext.server.context import ServerContext
from vistext.server.limits import (
    BodyLimits,
    InFlightLimit,
    PayloadTooLarge,
    RequestTimedOut,
    RequestTimeout,
    ServerBusy,
)
from vistext.server.protocol import uvicorn_config
from vistext.server.responses import JSONResponse
from vistext.server.routers import build_routers
from vistext.server.schemas import NOT_BLANK
from vistext.server.settings import ServerSettings
from vistext.server.watching import FolderWatch
from vistext.service import ImageTooLargeError, Service, UnknownImageError, UnknownModelError
from vistext.service.filters import PATTERN_MESSAGES

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

ServiceFactory = Callable[..., Service]
SWITCH_INTERVAL = 0.0002  # seconds; see run_server
WARM_UP_WAIT = 60.0  # seconds shutdown waits for a warm-up still loading models


def status_for(error: VistextError) -> int:
    """HTTP status of a service error: the client's fault (4xx) or the server's state (503)."""
    if isinstance(error, UnknownImageError | UnknownModelError):
        return 404
    if isinstance(error, ImageTooLargeError):
        return 413
    if isinstance(error, UsageError | ImageDecodeError):
        return 400
    if isinstance(error, StoreError | ModelError):
        return 503
    return 500


def _one_line(errors: list[dict[str, Any]]) -> str:
    parts = []
    for error in errors[:3]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path"))
        message = str(error.get("msg", "invalid"))
        pattern = error.get("ctx", {}).get("pattern") if error.get("type") == "string_pattern_mismatch" else None
        if pattern == NOT_BLANK:
            message = "needs words, not only spaces"
        elif pattern in PATTERN_MESSAGES:
            message = PATTERN_MESSAGES[pattern]
        parts.append(f"{where}: {message}" if where else message)
    return "invalid request: " + "; ".join(parts)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(VistextError)
    async def vistext_error(request: Request, error: VistextError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=status_for(error))

    @app.exception_handler(PayloadTooLarge)
    async def too_large(request: Request, error: PayloadTooLarge) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=413)

    @app.exception_handler(RequestTimeout)
    async def timeout(request: Request, error: RequestTimeout) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=504)

    @app.exception_handler(RequestTimedOut)
    async def client_too_slow(request: Request, error: RequestTimedOut) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=408, headers={"Connection": "close"})

    @app.exception_handler(ServerBusy)
    async def busy(request: Request, error: ServerBusy) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=503, headers={"Retry-After": "2"})

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": _one_line(list(error.errors()))}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        # the trace goes to the server log; the client gets one line and never a stack trace
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal server error (see the server log)"}, status_code=500)


def _install_pages(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def index_page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html")

    @app.get("/map", include_in_schema=False)
    async def map_page() -> FileResponse:
        return FileResponse(WEB_DIR / "map.html")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        # the pages name their icon inline; this answers browsers and tools that ask for /favicon.ico anyway
        return Response(favicon_ico(), media_type="image/x-icon", headers={"Cache-Control": "public, max-age=86400"})


@functools.cache
def favicon_ico() -> bytes:
    """The page icon (a white "v" on the page's blue, as the pages' inline SVG) as a 16+32+48 px ICO."""
    from PIL import Image, ImageDraw

    size = 192
    picture = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(picture)
    draw.rounded_rectangle((0, 0, size - 1, size - 1), radius=36, fill=(37, 99, 235, 255))
    draw.line([(48, 54), (96, 144), (144, 54)], fill="white", width=24, joint="curve")
    buffer = io.BytesIO()
    picture.save(buffer, format="ICO", sizes=[(16, 16), (32, 32), (48, 48)])
    return buffer.getvalue()


def _no_telemetry() -> dict[str, Any]:
    """FastAPI >= 0.16x asks OpenTelemetry for a tracer on every request (env lookups: ~6% of a busy server's
    event loop); vistext configures no tracing, so it is switched off where the option exists."""
    if "telemetry" in inspect.signature(FastAPI).parameters:
        return {"telemetry": {"tracing": False, "metrics": False}}
    return {}


def create_app(service_factory: ServiceFactory = Service, settings: ServerSettings | None = None) -> FastAPI:
    """The server app over ``service_factory(db=settings.catalogue, progress=False)`` (one instance, shared);
    with ``settings.watch`` it also keeps the catalogue current with that folder (``server.watching``)."""
    settings = settings or ServerSettings()
    service = service_factory(db=settings.catalogue, progress=False)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # open the catalogue before the first request, so concurrent first requests do not race to open it
        exists = await anyio.to_thread.run_sync(service.open)
        if settings.warm_up and exists:
            app.state.ctx.warm_up.start()  # in the background: the page polls /api/status meanwhile
        watch = FolderWatch(service, settings.watch) if settings.watch is not None else None
        if watch is not None:
            watch.start()
        try:
            yield
        finally:
            if watch is not None:
                await anyio.to_thread.run_sync(watch.stop)
            app.state.ctx.shutdown()
            # a warm-up still running must not find its store closed under it (it ends within a model load)
            await anyio.to_thread.run_sync(app.state.ctx.warm_up.wait, WARM_UP_WAIT)
            service.close()

    app = FastAPI(
        title="vistext",
        version=__version__,
        description="Search, tag, caption and match images through words. Every answer has the same JSON shape "
        "as `vistext ... --json`. Images are addressed by catalogue id, never by a path.",
        lifespan=lifespan,
        default_response_class=JSONResponse,
        **_no_telemetry(),
    )
    app.state.ctx = ServerContext.create(service, settings)
    _install_error_handlers(app)
    for router in build_routers(settings):
        app.include_router(router)
    _install_pages(app)
    # added innermost first: body limits hold even for requests that fail auth; auth answers before queueing
    app.add_middleware(
        InFlightLimit,
        limit=settings.max_in_flight,
        max_queued=settings.max_queued,
        wait_timeout=settings.request_timeout,
    )
    if settings.token:
        app.add_middleware(BearerAuth, token=settings.token)
    hosts = answered_hosts(settings.host, settings.allowed_hosts, settings.token)
    if hosts is not None:  # a foreign Host (DNS rebinding) gets 421 before auth, inside the body limits
        app.add_middleware(HostCheck, hosts=hosts)
    app.add_middleware(BodyLimits, limit=settings.max_upload_bytes, timeout=settings.body_timeout)
    return app


def run_server(settings: ServerSettings, service_factory: ServiceFactory = Service) -> None:
    """Serve until interrupted (blocking)."""
    import uvicorn

    # The event loop thread runs Python for every request while the search worker (vistext.service.batching) drops the
    # GIL for each FAISS or SQLite call and must take it back: with the default 5 ms switch interval it waited
    # up to 5 ms each time, and 16 clients' text searches ran at 650 req/s; at 0.2 ms, ~820 req/s.
    settings.check()
    sys.setswitchinterval(SWITCH_INTERVAL)
    _raise_open_file_limit()
    server = uvicorn.Server(uvicorn_config(create_app(service_factory, settings), settings))
    server.run()
    if not server.started:  # e.g. the port is taken: uvicorn has logged why
        raise SystemExit(3)


def _raise_open_file_limit() -> None:
    """Connections are not limited (requests in flight are), so let the process hold as many as the system
    allows: the soft limit on open files is often 1,024 while the hard one is far higher."""
    try:
        import resource
    except ImportError:  # not POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as error:
            log.info("could not raise the open-file limit: %s", error)
