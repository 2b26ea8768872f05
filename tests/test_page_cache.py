"""Search pages kept by catalogue version (``service.page_cache``): what is kept, and when it is not."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from vistext.service.page_cache import PageCache


def _made(page: str) -> Future[str]:
    done: Future[str] = Future()
    done.set_result(page)
    return done


def _gone() -> int:
    raise OSError("catalogue gone")


def test_a_page_is_kept_for_its_version_only() -> None:
    cache: PageCache[str] = PageCache(size=2)
    assert cache.get("a dog", 1) is None
    cache.put("a dog", 1, "page 1")
    assert cache.get("a dog", 1) == "page 1"
    assert cache.get("a dog", 2) is None  # a write moved the version: searched again
    cache.put("a cat", 1, "made before the write")  # a slow page of the old version is not kept
    assert cache.get("a cat", 2) is None
    cache.put("a dog", 2, "page 2")
    assert cache.get("a dog", 1) is None and cache.get("a dog", 1) is None  # a replaced catalogue counts from 0
    assert cache.get("a dog", 2) is None  # nor do its pages come back when the version is seen again


def test_the_oldest_page_goes_first_and_failures_are_not_kept() -> None:
    cache: PageCache[str] = PageCache(size=2)
    for key in ("a", "b", "c"):
        assert cache.get(key, 7) is None
        cache.put(key, 7, key.upper())
    assert cache.get("a", 7) is None and cache.get("c", 7) == "C"
    with ThreadPoolExecutor(1) as pool:
        failed: Future[str] = Future()
        failed.set_exception(ValueError("the search failed"))
        with pytest.raises(ValueError, match="the search failed"):
            cache.answer(pool, "d", lambda: 7, lambda: failed).result(timeout=10)
        assert cache.answer(pool, "d", lambda: 7, lambda: _made("D")).result(timeout=10) == "D"
        assert cache.answer(pool, "d", lambda: 7, lambda: _made("never made")).result(timeout=10) == "D"
        with pytest.raises(OSError, match="catalogue gone"):  # the version read fails: the caller is told
            cache.answer(pool, "d", _gone, lambda: _made("never made")).result(timeout=10)
