"""Hostile requests and clients against a real server on loopback: generated requests over every route,
idle and slow connections, bursts, malformed HTTP, ids out of range, swapped files, expensive endpoints.
Everything here is bounded in count and time and talks to 127.0.0.1 only."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import run_async  # asyncio.run in a thread of its own (see conftest)

from vistext.server import ServerSettings
from vistext.service import Service
from vistext.service.results import TopicsResult

schemathesis = pytest.importorskip("schemathesis")
# imported at collection, not inside the test: pytest rewrites the modules of packages that ship a pytest plugin
# as they are first imported, and once, 500 tests into a full run, CPython 3.11's ast.parse failed doing that
# ("SystemError: AST constructor recursion depth mismatch")
from hypothesis import HealthCheck, given, settings  # noqa: E402 - hypothesis comes with schemathesis
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)


@pytest.fixture(scope="module")
def photos(
    tmp_path_factory: pytest.TempPathFactory, flickr8k_images: list[Path], copy_photos: Callable
) -> dict[str, Path]:
    """12 indexed photos with text-search embeddings, a small caption bank, and one photo kept aside."""
    root = tmp_path_factory.mktemp("hostile")
    folder = copy_photos(flickr8k_images[100:112], root / "photos")
    db = folder / ".vistext" / "catalogue.sqlite"  # the catalogue inside the collection, as `vistext index` puts it
    with Service(db=db, progress=False) as service:
        service.index(folder, text_search=True)
    captions = root / "captions.txt"
    captions.write_text("a dog runs on the grass\na child plays in the water\na man rides a bike\n", encoding="utf-8")
    return {"db": db, "folder": folder, "captions": captions, "aside": flickr8k_images[200]}


def fast_settings(photos: dict[str, Path], **overrides: object) -> ServerSettings:
    base = {"db": photos["db"], "captions": str(photos["captions"]), "header_timeout": 1.0, "body_timeout": 1.0}
    return ServerSettings(**{**base, **overrides})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def url(photos: dict[str, Path], running_server: Callable) -> Iterator[str]:
    with running_server(fast_settings(photos)) as base:
        yield base


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def raw_exchange(port: int, data: bytes, wait: float = 5.0) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it (at most ``wait`` seconds)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(data)
        answer = b""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            answer += chunk
        return answer


def json_error(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"application/json" in head.lower(), answer[:300]
    return status, json.loads(body)["error"]


# ---- generated requests over every route ---------------------------------------------------------------------
def test_generated_requests_over_every_route(url: str) -> None:
    """Requests generated from the OpenAPI schema, those it allows and those it does not, for every route: a
    documented status with the documented shape and never a 5xx (the collection has text embeddings and a
    caption bank, so even 503 "not available" cannot happen); a GET the schema allows is accepted (2xx, or
    404 for an id that names no image). Bounded: a fixed number of examples per route, derandomised."""

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    api = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) == 22  # every route under /api

    for operation in operations:
        cases = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(GenerationMode.NEGATIVE)

        @given(case=cases)
        @settings(
            max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None
        )
        def check(case: Any) -> None:
            response = case.call_and_validate(checks=checks, timeout=60)
            if response.status_code >= 400:
                assert "error" in response.json(), response.text
            if case.meta.generation.mode is GenerationMode.POSITIVE and case.method == "GET":
                assert response.status_code in (200, 202, 404), (case.path, response.status_code, response.text)

        check()


# ---- connections that send nothing, or almost nothing ---------------------------------------------------------
def test_idle_and_slow_connections_do_not_starve_anyone(url: str) -> None:
    """150 connections that send nothing and 3 that send a header byte every 0.3 s: requests keep being
    answered, the slow heads get 408 once their deadline passes, and the idle ones are closed."""
    port = port_of(url)
    idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(150)]
    slow = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
    try:
        for sock in slow:
            sock.sendall(b"GET /api/health HTTP/1.1\r\n")
        started = time.monotonic()
        answers = []
        with httpx.Client(base_url=url, timeout=10) as http:
            for _ in range(10):
                answers.append(http.get("/api/similar/1", params={"k": 3}).status_code)
                for sock in slow:
                    try:
                        sock.sendall(b"X")
                    except OSError:
                        pass  # already answered and closed
                time.sleep(0.05)
        assert answers == [200] * 10
        time.sleep(max(0.0, started + 1.5 - time.monotonic()))  # past the 1 s head deadline
        for sock in slow:
            status, error = json_error(sock.recv(4096))
            assert status == 408 and "request head" in error
        for sock in idle[:20]:
            assert sock.recv(10) == b""  # closed by the server
    finally:
        for sock in idle + slow:
            sock.close()


def test_a_body_that_never_arrives_gets_408(url: str) -> None:
    head = (
        b"POST /api/tag HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        b"Content-Length: 5000\r\n\r\n--b\r\n"
    )
    started = time.monotonic()
    status, error = json_error(raw_exchange(port_of(url), head))
    assert status == 408 and "body" in error and time.monotonic() - started < 4


def test_a_burst_beyond_128_connections_is_answered_in_full(photos: dict[str, Path], running_server: Callable) -> None:
    """250 connections at once (the old limit was 128 connections, and the rest got 503): all answered."""

    async def burst(url: str) -> list[int]:
        limits = httpx.Limits(max_connections=300, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
            answers = await asyncio.gather(*(http.get("/api/similar/2", params={"k": 2}) for _ in range(250)))
        return [a.status_code for a in answers]

    # default head deadline: this client shares the test process (and its GIL) with the server, so its 250
    # connections may sit a second or more before sending their requests
    with running_server(ServerSettings(db=photos["db"], warm_up=False)) as url:
        assert run_async(burst(url)) == [200] * 250


def test_requests_beyond_the_queue_get_503_json(photos: dict[str, Path], running_server: Callable) -> None:
    class SlowInfo(Service):
        def info(self) -> dict:
            time.sleep(0.5)
            return super().info()

    settings_ = fast_settings(photos, max_in_flight=2, max_queued=2, warm_up=False)
    with running_server(settings_, SlowInfo) as base, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: httpx.get(f"{base}/api/info", timeout=30), range(8)))
    codes = sorted(a.status_code for a in answers)
    assert codes.count(200) >= 4 and set(codes) <= {200, 503}, codes
    busy = [a for a in answers if a.status_code == 503]
    assert busy and all("busy" in a.json()["error"] and a.headers["retry-after"] for a in busy)


# ---- malformed HTTP --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"POST /api/tag HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
        (b"GET /api/health HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
        (b"NONSENSE\r\n\r\n", 400),
        (b"GET /api/search?q=" + b"x" * 1_000_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 431),
        (b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 200_000 + b"\r\n\r\n", 431),
    ],
    ids=["content-length-text", "content-length-negative", "not-http", "1mb-query", "200kb-header"],
)
def test_malformed_http_gets_a_json_4xx(url: str, request_bytes: bytes, status: int) -> None:
    got, error = json_error(raw_exchange(port_of(url), request_bytes))
    assert got == status and error
    assert httpx.get(f"{url}/api/health").status_code == 200


# ---- ids, names and payloads that used to be 500s ----------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "/api/similar/99999999999999999999",
        "/api/images/99999999999999999999",
        "/api/images/9223372036854775808/thumbnail",
    ],
)
def test_ids_beyond_64_bit_are_a_4xx(url: str, path: str) -> None:
    answer = httpx.get(f"{url}{path}")
    assert answer.status_code in (400, 404) and "image_id" in answer.json()["error"]


def test_an_upload_name_with_a_nul_byte_is_cleaned(url: str, photos: dict[str, Path]) -> None:
    photo = photos["aside"].read_bytes()
    for endpoint in ("/api/similar", "/api/tag"):
        body = (
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="photo.jp\x00g"\r\n'
            b"Content-Type: image/jpeg\r\n\r\n" + photo + b"\r\n--b--\r\n"
        )
        headers = {"content-type": "multipart/form-data; boundary=b"}
        answer = httpx.post(f"{url}{endpoint}", content=body, headers=headers, timeout=60)
        assert answer.status_code == 200, answer.text
        assert "\x00" not in answer.text and "photo.jpg" in answer.text


def test_tag_sets_nested_100000_deep_are_a_400(url: str, photos: dict[str, Path]) -> None:
    nested = "[" * 100_000 + "]" * 100_000
    answer = httpx.post(
        f"{url}/api/match",
        files={"file": ("a.jpg", photos["aside"].read_bytes(), "image/jpeg")},
        data={"tag_sets": nested},
        timeout=60,
    )
    assert answer.status_code == 400 and "nested too deeply" in answer.json()["error"]


def test_a_thumbnail_is_served_when_its_cache_cannot_be_written(
    url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real_write = Path.write_bytes

    def disk_full(self: Path, data: bytes) -> int:
        if "thumbnails" in self.parts:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", disk_full)
    answer = httpx.get(f"{url}/api/images/7/thumbnail", params={"size": 512}, timeout=60)
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/jpeg"
    thumbs = Path(os.environ["VISTEXT_HOME"]) / "thumbnails" / "512"
    assert not list(thumbs.glob(".*.tmp*"))  # no half-written leftovers
    # an unusable cache home (its folder is a file) costs the caching only, too
    monkeypatch.setenv("VISTEXT_HOME", str(tmp_path))
    (tmp_path / "thumbnails").write_text("not a folder")
    answer = httpx.get(f"{url}/api/images/8/thumbnail", params={"size": 64}, timeout=60)
    assert answer.status_code == 200 and answer.content[:2] == b"\xff\xd8"


# ---- originals swapped after indexing ---------------------------------------------------------------------------
def test_originals_swapped_for_links_or_fifos_are_not_served(
    tmp_path: Path,
    flickr8k_images: list[Path],
    monkeypatch: pytest.MonkeyPatch,
    copy_photos: Callable,
    running_server: Callable,
) -> None:
    # a cold thumbnail cache: a cached thumbnail of the indexed photo may be served after its file is gone
    monkeypatch.setenv("VISTEXT_HOME", str(tmp_path / "home"))
    folder = copy_photos(flickr8k_images[300:304], tmp_path / "photos")
    (folder / "album").mkdir()
    os.replace(folder / flickr8k_images[303].name, folder / "album" / flickr8k_images[303].name)
    db = folder / ".vistext" / "catalogue.sqlite"
    with Service(db=db, progress=False) as service:
        service.index(folder, text_search=False)
        ids = {Path(r.path).name: r.id for r in service.store().records()}
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0 private notes\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / flickr8k_images[303].name).write_bytes(b"not the indexed photo")
    kept, linked, fifo, in_album = (image.name for image in flickr8k_images[300:304])
    (folder / linked).unlink()
    (folder / linked).symlink_to(secret)
    (folder / fifo).unlink()
    os.mkfifo(folder / fifo)
    os.rename(folder / "album", folder / "album-moved")
    (folder / "album").symlink_to(elsewhere)  # a folder on the way swapped for a link
    with running_server(ServerSettings(db=db, warm_up=False)) as base, httpx.Client(base_url=base, timeout=10) as http:
        original = http.get(f"/api/images/{ids[kept]}")
        assert original.status_code == 200 and original.content == (folder / kept).read_bytes()
        assert original.headers["content-type"] == "image/jpeg"
        for name in (linked, fifo, in_album):
            answer = http.get(f"/api/images/{ids[name]}")
            assert answer.status_code == 404, (name, answer.status_code)
            assert b"private" not in answer.content and b"not the indexed" not in answer.content
            assert "no longer" in answer.json()["error"]
            thumbnail = http.get(f"/api/images/{ids[name]}/thumbnail", params={"size": 128})
            assert thumbnail.status_code == 404, (name, thumbnail.status_code)
        assert http.get(f"/api/images/{ids[kept]}/thumbnail", params={"size": 128}).status_code == 200


# ---- expensive endpoints --------------------------------------------------------------------------------------
class CountingTopics(Service):
    calls: list[int] = []

    def topics(self, n: int = 20, **kwargs: object) -> TopicsResult:
        CountingTopics.calls.append(n)
        time.sleep(0.6)
        return super().topics(n, **kwargs)  # type: ignore[arg-type]


def test_topics_are_capped_cached_per_n_and_queued(photos: dict[str, Path], running_server: Callable) -> None:
    CountingTopics.calls = []
    settings_ = fast_settings(photos, request_timeout=0.3, max_waiting_work=1, warm_up=False)
    with running_server(settings_, CountingTopics) as base:

        def topics(n: int) -> httpx.Response:
            return httpx.get(f"{base}/api/topics", params={"n": n}, timeout=30)

        def until_ready(n: int) -> None:
            deadline = time.monotonic() + 60
            while (answer := topics(n)).status_code == 504:  # asking again joins the running fit
                assert time.monotonic() < deadline
            assert answer.status_code == 200, answer.text

        assert topics(21).status_code == 400  # capped (was 50)
        assert topics(3).status_code == 504  # the fit goes on; its result is kept for the next request
        until_ready(3)
        until_ready(4)
        assert [topics(n).status_code for n in (3, 4, 3)] == [200, 200, 200]
        assert sorted(CountingTopics.calls) == [3, 4]  # one fit per n, however often asked

        with ThreadPoolExecutor(4) as pool:  # four new n at once: one runs, one waits, the rest are told to retry
            answers = list(pool.map(topics, (5, 6, 7, 8)))
            search = httpx.get(f"{base}/api/similar/1", params={"k": 3}, timeout=30)
        assert search.status_code == 200
        busy = [a for a in answers if a.status_code == 503]
        assert busy and all("busy" in a.json()["error"] for a in busy)
        assert all(a.status_code in (503, 504) for a in answers)


def test_a_vocabulary_over_the_limit_is_a_400(url: str, photos: dict[str, Path]) -> None:
    words = ",".join(f"word{i}" for i in range(201))
    answer = httpx.post(
        f"{url}/api/tag",
        files={"file": ("a.jpg", photos["aside"].read_bytes(), "image/jpeg")},
        data={"vocab": words},
        timeout=60,
    )
    assert answer.status_code == 400 and "limit 200" in answer.json()["error"]
