"""``Service.watch``: the collection kept current with a folder as photos are added, changed, moved or deleted.

The collection's store and models handed to ``vistext.indexing.watch.FolderWatcher``: the first report is the
ordinary pass over the folder (as ``Service.index``), then one per batch of changes, until ``stop`` is set or
the caller stops iterating (which releases the store's writer lock and the file watch at once).
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING

from vistext.errors import UsageError
from vistext.service.default_tags import tags_after_pass

if TYPE_CHECKING:
    from vistext.indexing.plan import IndexReport
    from vistext.service.collection import Collection


def watch_folder(
    collection: Collection, folder: str | Path, *, text_search: bool = True, stop: threading.Event | None = None
) -> Generator[IndexReport, None, None]:
    """Index ``folder`` into ``collection`` (its own catalogue unless ``db`` names one), then follow its changes."""
    from vistext.indexing.watch import FolderWatcher

    if not Path(folder).is_dir():
        raise UsageError(f"{folder}: not a folder")
    models = collection.models
    projectors = models.text_projectors() if text_search else None
    derived = models.derived_spaces() if text_search else None
    store = collection.store_for(folder)
    with FolderWatcher(folder, store, models.encoder, projectors=projectors, stop=stop) as watcher:
        first = watcher.index_all(derived, progress=collection.progress)
        tags_after_pass(store, models, first)
        yield first
        for batch in watcher.changes():
            tags_after_pass(store, models, batch)
            yield batch
