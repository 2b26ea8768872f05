"""``vistext serve --watch DIR``: the server keeps its catalogue current with a folder while it serves.

The service's watcher (``Service.watch``) runs in a thread of the server's process, on the same service, so a
photo it stores is in the very store the searches read: the next search catches its vector index up with the
catalogue's new version, and nothing has to be reloaded. Each batch is one log line (``vistext.server.watching``,
shown unless ``--quiet``); a watcher that cannot run (another ``vistext index`` holds the catalogue) logs why,
and the server goes on serving what is indexed.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from vistext.errors import VistextError
from vistext.service import Service

log = logging.getLogger(__name__)

STOP_WAIT = 10.0  # seconds shutdown waits for the watcher to finish the batch it is encoding (~1 s)


class FolderWatch:
    """The watcher's thread: ``start`` it with the server, ``stop`` it at shutdown."""

    def __init__(self, service: Service, folder: str | Path) -> None:
        self.service = service
        self.folder = folder
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._run, name="vistext-watch", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        try:
            for number, report in enumerate(self.service.watch(self.folder, stop=self.halt)):
                what = "indexed" if number == 0 else "changes in"
                log.info("%s %s: %s", what, self.folder, report.summary())
                for path, error in report.failures[:20]:
                    log.info("  failed: %s: %s", path, error)
                if number == 0:
                    log.info("watching %s for changes", self.folder)
        except VistextError as error:
            log.error("not watching %s: %s", self.folder, error)
        except Exception:  # the server keeps serving what is indexed; the trace goes to its log
            log.exception("the watcher of %s stopped", self.folder)

    def stop(self) -> None:
        self.halt.set()
        self.thread.join(STOP_WAIT)
