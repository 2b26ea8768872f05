"""Catalogues as wholes: copying one between stores (``vistext migrate``) and the PostgreSQL + pgvector server
vistext can run for them (``vistext db``). Both find a catalogue the one way (``location.locate``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vistext.errors import UsageError
from vistext.service.location import locate

if TYPE_CHECKING:
    from vistext.store.transfer import TransferReport

Progress = Callable[[int, int], None]  # (records just copied, records in all)


def migrate(source: str, target: str, *, batch: int = 256, progress: Progress | None = None) -> TransferReport:
    """Copy the collection at ``source`` into ``target`` (a store URL, a catalogue file or an indexed folder;
    created if needed) and check that both now hold the same records."""
    from vistext.models.open_domain import read_whole_spaces
    from vistext.store import open_store
    from vistext.store.transfer import copy_store

    with open_store(locate(source).uri, readonly=True) as origin, open_store(locate(target).uri) as destination:
        destination.mark_unsearched(read_whole_spaces(origin.spaces()))  # the target need not index those
        total = origin.count()
        step = None if progress is None else (lambda done: progress(done, total))
        return copy_store(origin, destination, batch=batch, progress=step)


def database_server(
    action: str, folder: Path, *, port: int | None = None, fsync: bool = True, delete: bool = False
) -> dict[str, Any]:
    """``start``, ``stop`` or describe (``status``) the PostgreSQL server kept in ``folder``; its state."""
    from vistext.store.postgres.server import PgServer

    if action == "start":
        server = PgServer.start(folder, port, fsync=fsync)
        return {"running": True, "url": server.url(), "folder": str(folder), "pid": server.pid()}
    found = PgServer.attach(folder)
    if action == "stop":
        if found is None and not delete:
            raise UsageError(f"{folder}: no vistext database server runs from this folder")
        (found or PgServer(folder.resolve(), 0)).stop(delete=delete)
        return {"running": False, "folder": str(folder), "deleted": bool(delete)}
    state: dict[str, Any] = {"running": found is not None, "folder": str(folder)}
    if found is not None:
        state.update(url=found.url(), pid=found.pid())
    return state
