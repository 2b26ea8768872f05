"""The server against hostile files and pages, over real HTTP on loopback: a FIFO where an indexed photo was
cannot wedge its queue (every job has a deadline), and a foreign ``Host:`` (DNS rebinding) gets nothing."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest
from conftest import run_async  # asyncio.run in a thread of its own (see conftest)
from PIL import Image

from vistext.cli import main
from vistext.errors import UsageError
from vistext.server import ServerSettings
from vistext.server.limits import ServerBusy
from vistext.server.work import JobOverdue, WorkQueue
from vistext.service import Service


def _stuck_threads(prefix: str) -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith(prefix) and thread.is_alive()]


def _until(condition: Callable[[], bool], what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _unblock(fifo: Path) -> None:
    """Let a reader blocked opening ``fifo`` go: open its writing end (it then reads end-of-file)."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:  # no reader is waiting (any more)
        pass


# ---- a job that hangs ---------------------------------------------------------------------------------------------
@pytest.fixture()
def fifo_collection(tmp_path: Path, flickr8k_images: list[Path]) -> Iterator[dict[str, Path]]:
    """Four indexed photos, one a half-size copy of another, that copy then replaced by a FIFO."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for image in flickr8k_images[40:43]:
        (folder / image.name).write_bytes(image.read_bytes())
    original = folder / flickr8k_images[40].name
    with Image.open(original) as picture:
        picture.resize((picture.width // 2, picture.height // 2)).save(folder / "copy.jpg", quality=90)
    db = tmp_path / "db" / "catalogue.sqlite"
    with Service(db=db, progress=False) as service:
        assert service.index(folder, text_search=False).added == 4
        service.topics(3)  # the models topics need are exported and cached once, before any deadline runs
    fifo = folder / "copy.jpg"
    fifo.unlink()
    os.mkfifo(fifo)
    yield {"db": db, "fifo": fifo}
    _unblock(fifo)


def test_a_fifo_in_the_collection_neither_wedges_the_server_nor_keeps_its_thread(
    fifo_collection: dict[str, Path], running_server: Callable[..., AbstractContextManager[str]]
) -> None:
    settings = ServerSettings(db=fifo_collection["db"], request_timeout=60, job_deadline=10, warm_up=False)
    with running_server(settings) as url, httpx.Client(base_url=url, timeout=60) as http:
        duplicates = http.get("/api/duplicates")  # answered: a result, or an error saying the job was abandoned
        assert duplicates.status_code in (200, 504), duplicates.text
        assert list(duplicates.json()) in (["groups", "threshold", "copy_distance", "skipped"], ["error"])
        topics = http.get("/api/topics", params={"n": 2})
        assert topics.status_code == 200, topics.text
        assert len(topics.json()["topics"]) == 2
        assert http.get("/api/topics", params={"n": 2}).json() == topics.json()  # kept: the queue is alive
        _unblock(fifo_collection["fifo"])
        # the abandoned job's thread ends once the call it was stuck in returns: no thread is kept
        _until(lambda: not _stuck_threads("analysis-job"), "the abandoned analysis thread never ended")


def test_a_job_past_its_deadline_is_abandoned_replaced_and_its_thread_ends() -> None:
    queue = WorkQueue("test", 1, 4, deadline=0.3, keep=4, max_overdue=2)
    release = threading.Event()
    stuck = queue.submit(release.wait, key="stuck")
    with pytest.raises(JobOverdue, match="deadline"):
        stuck.result(timeout=30)
    assert queue.submit(lambda: 42).result(timeout=30) == 42  # a fresh worker took the stuck one's place
    assert queue.overdue == 1 and len(_stuck_threads("test-job")) == 1
    second = queue.submit(threading.Event().wait)  # a second stuck job: the queue's tolerance is reached
    with pytest.raises(JobOverdue):
        second.result(timeout=30)
    with pytest.raises(ServerBusy, match="stuck past their 0.3 s deadline"):
        queue.submit(lambda: 1)
    release.set()  # the first job's call returns: its thread ends, its result is kept, the queue takes work
    _until(lambda: queue.overdue == 1, "the released job's thread did not end")
    assert queue.cached("stuck") is True and queue.submit(lambda: 7).result(timeout=30) == 7
    queue.shutdown()


# ---- DNS rebinding ----------------------------------------------------------------------------------------------
def _raw_get(url: str, host: str, path: str = "/api/info") -> tuple[str, bytes]:
    """A hand-written HTTP request carrying ``Host: host`` (as a page on a rebinding DNS name would send)."""
    address = httpx.URL(url)
    with socket.create_connection((address.host, address.port), timeout=30) as connection:
        connection.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(), body


@pytest.fixture(scope="module")
def tiny_db(tmp_path_factory: pytest.TempPathFactory, flickr8k_images: list[Path]) -> Path:
    folder = tmp_path_factory.mktemp("hosts") / "photos"
    folder.mkdir()
    for image in flickr8k_images[50:52]:
        (folder / image.name).write_bytes(image.read_bytes())
    with Service(db=folder, progress=False) as service:
        service.index(folder, text_search=False)
    return folder


def test_a_foreign_host_gets_421_and_loopback_names_are_answered(
    tiny_db: Path, running_server: Callable[..., AbstractContextManager[str]]
) -> None:
    settings = ServerSettings(db=tiny_db, warm_up=False, allowed_hosts=frozenset({"photos.lan"}))
    with running_server(settings) as url:
        port = httpx.URL(url).port
        status, body = _raw_get(url, "attacker.example")
        assert status.split()[1] == "421" and b"Host attacker.example" in body and b"\n" not in body.strip()
        assert b"catalogue" not in body and str(tiny_db).encode() not in body
        assert _raw_get(url, f"attacker.example:{port}", "/api/images/1")[0].split()[1] == "421"
        for name in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}", f"photos.lan:{port}"):
            status, body = _raw_get(url, name)
            assert status.split()[1] == "200", (name, body)


def test_a_non_loopback_address_without_a_token_is_refused_at_start(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UsageError, match="without --token"):
        ServerSettings(host="0.0.0.0").check()
    ServerSettings(host="0.0.0.0", token="s3cret").check()  # with a token it may serve the network
    assert main(["serve", "--host", "0.0.0.0", "--port", "8765"]) == 2
    err = capsys.readouterr().err.strip()
    assert "without --token" in err and len(err.splitlines()) == 1


def test_a_client_that_never_reads_its_answer_is_dropped_at_the_deadline() -> None:
    """``BodyLimits`` gives each part of an answer ``timeout`` seconds to be taken. Driven through its ASGI calls:
    over loopback the kernel's socket buffers take megabytes, so no answer a test catalogue makes would block."""
    import asyncio

    from starlette.types import Message, Receive, Scope, Send

    from vistext.server.limits import BodyLimits

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    taken: list[str] = []

    async def never_read(message: Message) -> None:
        taken.append(str(message["type"]))
        if message["type"] == "http.response.body":
            await asyncio.sleep(60)

    async def nothing() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    started = time.monotonic()
    run_async(BodyLimits(app, limit=100, timeout=0.5)({"type": "http", "headers": []}, nothing, never_read))
    assert taken == ["http.response.start", "http.response.body"]
    assert 0.4 < time.monotonic() - started < 5
