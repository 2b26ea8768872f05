"""Search pages remembered by catalogue version: a question asked again is answered without searching again.

A served collection is asked the same things over and over (the web page's suggestions, a shop's popular
words, a user paging back). A page depends only on its request and on what the catalogue holds, and the
store's ``version()`` changes whenever that changes (photos, vectors, tags, metadata, text found in photos),
so a page kept under the version it was made at is exact until the next write, whoever makes it (this process,
a watcher, another ``vistext index``). The version is read on the caller's pool (the collection's look threads,
so a kept page never waits behind pages being made), never in the server's event loop: one small read (a SQLite
meta row, or one PostgreSQL round trip) instead of the search, its 0-1 rescoring and the page's catalogue reads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Executor, Future
from typing import Generic, TypeVar

from vistext.service.batching import run_on

PAGES_KEPT = 2048  # pages of 10 hits with their details and JSON: ~17 KB each in memory (measured), ~35 MB at most

Page = TypeVar("Page")


class PageCache(Generic[Page]):
    """Up to ``size`` pages by request key, all of the catalogue version last seen: seeing another empties it,
    so a replaced catalogue whose version counts up again from 0 never meets the old one's pages."""

    def __init__(self, size: int = PAGES_KEPT) -> None:
        self._size = size
        self._pages: OrderedDict[Hashable, Page] = OrderedDict()
        self._version: int | None = None
        self._lock = threading.Lock()

    def get(self, key: Hashable, version: int) -> Page | None:
        with self._lock:
            if version != self._version:  # any other version, newer or (a replaced catalogue) older: start again
                self._pages.clear()
                self._version = version
            page = self._pages.get(key)
            if page is not None:
                self._pages.move_to_end(key)
            return page

    def put(self, key: Hashable, version: int, page: Page) -> None:
        with self._lock:
            if version != self._version:  # made before a write that a later request has seen: not kept
                return
            self._pages[key] = page
            self._pages.move_to_end(key)
            while len(self._pages) > self._size:
                self._pages.popitem(last=False)

    def answer(
        self, pool: Executor, key: Hashable, version: Callable[[], int], make: Callable[[], Future[Page]]
    ) -> Future[Page]:
        """The page for ``key`` as a future: the one kept for the catalogue's current ``version()`` (read on
        ``pool``), else ``make()``'s, kept when it succeeds. Nothing here blocks the calling thread."""
        answer: Future[Page] = Future()

        def look() -> None:
            try:
                now = version()
                kept = self.get(key, now)
                if kept is not None:
                    answer.set_result(kept)
                    return
                made = make()
            except BaseException as error:  # noqa: BLE001 - handed to whoever waits on the answer
                answer.set_exception(error)
                return
            made.add_done_callback(lambda done: self._deliver(done, answer, key, now))

        run_on(pool, look)
        return answer

    def _deliver(self, done: Future[Page], answer: Future[Page], key: Hashable, version: int) -> None:
        error = done.exception()
        if error is not None:
            answer.set_exception(error)
            return
        page = done.result()
        self.put(key, version, page)
        answer.set_result(page)
