"""The HTTP API over real HTTP on loopback: answers, paging, limits, auth, path safety, concurrency, restart."""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest
from answers import assert_same_answer
from PIL import Image

from vistext.server import ServerSettings
from vistext.service import InfoResult, Service


@pytest.fixture(scope="module")
def collection(
    tmp_path_factory: pytest.TempPathFactory, flickr8k_images: list[Path], copy_photos: Callable[..., Path]
) -> dict[str, Path]:
    """24 indexed Flickr8k photos (image features only: fast), plus 8 more photos kept aside for later."""
    root = tmp_path_factory.mktemp("served")
    photos = copy_photos(flickr8k_images[:24], root / "photos")
    extra = copy_photos(flickr8k_images[24:32], root / "extra")
    db = root / "db" / "catalogue.sqlite"
    with Service(db=db, progress=False) as service:
        service.index(photos, text_search=False)
    return {"db": db, "photos": photos, "extra": extra}


@pytest.fixture(scope="module")
def server(collection: dict[str, Path], running_server: Callable[..., AbstractContextManager[str]]) -> Iterator[str]:
    settings = ServerSettings(db=collection["db"], max_upload_bytes=300_000, max_pixels=4_000_000)
    with running_server(settings) as url:
        yield url


@pytest.fixture(scope="module")
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=60) as http:
        yield http


def jpeg_bytes(path: Path) -> bytes:
    return path.read_bytes()


def png_of_size(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height), 128).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


# ---- answers -----------------------------------------------------------------------------------------------
def test_health_info_status_and_openapi(client: httpx.Client) -> None:
    assert client.get("/api/health").json()["status"] == "ok"
    info = client.get("/api/info").json()
    assert info["exists"] and info["ok"] == 24
    status = client.get("/api/status").json()
    assert status["images"] == 24 and status["text_search"] is False
    assert status["captions"] is True  # no caption bank, but captions are composed: the page shows the panel
    assert {"warming", "text_model_ready", "image_encoder_ready"} <= set(status)
    paths = client.get("/openapi.json").json()["paths"]
    for endpoint in (
        "/api/search",
        "/api/similar",
        "/api/similar/{image_id}",
        "/api/tag",
        "/api/caption",
        "/api/match",
        "/api/topics",
        "/api/map",
        "/api/images/{image_id}/thumbnail",
    ):
        assert endpoint in paths, endpoint


def test_similar_by_id_scores_paging_and_min_score(client: httpx.Client, collection: dict[str, Path]) -> None:
    first = client.get("/api/similar/1", params={"k": 6}).json()
    hits = first["results"]
    assert len(hits) == 6 and 1 not in [h["id"] for h in hits]  # the query image itself is left out
    kept = client.get("/api/similar/1", params={"k": 6, "include_self": "true"}).json()["results"]
    assert kept[0]["id"] == 1 and [h["id"] for h in kept[1:]] == [h["id"] for h in hits[:5]]
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    page = client.get("/api/similar/1", params={"k": 3, "offset": 2}).json()
    assert page["offset"] == 2 and [h["id"] for h in page["results"]] == [h["id"] for h in hits[2:5]]
    cut = hits[3]["score"] - 1e-6  # answers are rounded to 6 digits
    above = client.get("/api/similar/1", params={"k": 20, "min_score": cut}).json()["results"]
    assert above and all(h["score"] >= cut for h in above) and len(above) == 4
    # the same answer as the service gives the CLI
    with Service(db=collection["db"], progress=False) as service:
        assert service.similar(1, 6).to_dict() == first


def test_similar_to_an_upload_finds_the_same_photo(client: httpx.Client, collection: dict[str, Path]) -> None:
    photo = sorted(collection["photos"].glob("*.jpg"))[5]
    answer = client.post(
        "/api/similar", files={"file": ("query.jpg", jpeg_bytes(photo), "image/jpeg")}, params={"k": 3}
    )
    assert answer.status_code == 200, answer.text
    top = answer.json()["results"][0]
    assert Path(top["path"]).name == photo.name and top["score"] > 0.99
    assert answer.json()["query"] == "query.jpg"


def test_tag_an_upload_with_imagenet_labels(client: httpx.Client, collection: dict[str, Path]) -> None:
    photo = sorted(collection["photos"].glob("*.jpg"))[0]
    answer = client.post("/api/tag", files={"file": ("a.jpg", jpeg_bytes(photo), "image/jpeg")}, params={"k": 3})
    assert answer.status_code == 200, answer.text
    tags = answer.json()["tags"]
    assert len(tags) == 3 and all(0 <= t["score"] <= 1 for t in tags) and tags[0]["score"] >= tags[-1]["score"]


def test_captions_need_no_bank_and_an_unknown_tagger_is_a_clear_400(
    client: httpx.Client, collection: dict[str, Path]
) -> None:
    photo = jpeg_bytes(sorted(collection["photos"].glob("*.jpg"))[0])
    caption = client.post("/api/caption", files={"file": ("a.jpg", photo, "image/jpeg")}, params={"k": 2})
    assert caption.status_code == 200 and caption.json()["source"] == "composed"
    assert len(caption.json()["captions"]) == 2
    tagger = client.post("/api/tag", files={"file": ("a.jpg", photo, "image/jpeg")}, params={"tagger": "x"})
    assert tagger.status_code == 400 and "unknown tagger" in tagger.json()["error"]


def test_thumbnails_and_originals_by_id_only(client: httpx.Client, collection: dict[str, Path]) -> None:
    thumb = client.get("/api/images/2/thumbnail", params={"size": 128})
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumb.content)).size) == 128
    original = client.get("/api/images/2")
    hits = client.get("/api/similar/1", params={"k": 100}).json()["results"]
    hit = next(h for h in hits if h["id"] == 2)
    assert original.status_code == 200 and original.content == Path(hit["path"]).read_bytes()
    assert client.get("/api/images/999999").status_code == 404
    assert client.get("/api/images/2/thumbnail", params={"size": 100}).status_code == 400


def test_map_coordinates(client: httpx.Client) -> None:
    deadline = time.monotonic() + 120
    while (answer := client.get("/api/map", params={"method": "pca"})).status_code == 202:
        assert answer.json()["status"] == "computing" and time.monotonic() < deadline
        time.sleep(0.5)
    assert answer.status_code == 200, answer.text
    points = answer.json()["points"]
    assert len(points["id"]) == 24 and all(0 <= v <= 1 for v in points["x"] + points["y"])
    assert client.get("/api/map", params={"method": "umapx"}).status_code == 400


def test_topics(client: httpx.Client) -> None:
    answer = client.get("/api/topics", params={"n": 3})
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["topics"]) == 3
    assert client.get("/api/topics", params={"n": 0}).status_code == 400


def test_match_parses_tag_sets_and_answers_or_says_why(client: httpx.Client, collection: dict[str, Path]) -> None:
    photo = jpeg_bytes(sorted(collection["photos"].glob("*.jpg"))[0])
    file = {"file": ("a.jpg", photo, "image/jpeg")}
    for bad, reason in (("", "tag_sets"), ("[[1, 2]]", "list of lists of strings"), ("[oops", "not valid JSON")):
        answer = client.post("/api/match", files=file, data={"tag_sets": bad})
        assert answer.status_code == 400 and reason in answer.json()["error"], answer.text
    answer = client.post("/api/match", files=file, data={"tag_sets": "dog, grass\nkitchen, cooking"})
    if answer.status_code == 200:
        body = answer.json()
        assert [c["tags"] for c in body["candidates"]] == [["dog", "grass"], ["kitchen", "cooking"]]
        assert body["best"] in (0, 1)
    else:  # no match model in this checkout yet: a clear 503, never a 500
        assert answer.status_code == 503 and "model" in answer.json()["error"]


def test_text_search_without_embeddings_says_what_to_do(client: httpx.Client) -> None:
    answer = client.get("/api/search", params={"q": "a dog on the grass"})
    assert answer.status_code == 503
    assert "index" in answer.json()["error"] or "model" in answer.json()["error"]


def test_text_search_scores_paging_and_min_score(
    tmp_path: Path,
    flickr8k_images: list[Path],
    copy_photos: Callable[..., Path],
    running_server: Callable[..., AbstractContextManager[str]],
    text_search_available: Callable[[], bool],
) -> None:
    if not text_search_available():
        pytest.skip("no joint model installed yet (vistext.model.load_joint_model fails)")
    photos = copy_photos(flickr8k_images[40:64], tmp_path / "photos")
    db = tmp_path / "db" / "catalogue.sqlite"
    with Service(db=db, progress=False) as service:
        service.index(photos, text_search=True)
        expected = service.search("a dog in the snow", 8).to_dict()
    with running_server(ServerSettings(db=db)) as url, httpx.Client(base_url=url, timeout=60) as http:
        first = http.get("/api/search", params={"q": "a dog in the snow", "k": 8}).json()
        assert_same_answer(first, expected)  # the same answer as the CLI's
        scores = [h["score"] for h in first["results"]]
        assert len(scores) == 8 and scores == sorted(scores, reverse=True)
        page = http.get("/api/search", params={"q": "a dog in the snow", "k": 3, "offset": 3}).json()
        assert [h["id"] for h in page["results"]] == [h["id"] for h in first["results"][3:6]]
        cut = http.get("/api/search", params={"q": "a dog in the snow", "k": 8, "min_score": scores[2] - 1e-6}).json()
        assert len(cut["results"]) == 3


class SlowWarmUpService(Service):
    """A service whose warm-up search takes 2 s longer, so a test can see the server while it warms."""

    def search(self, *args: object, **kwargs: object) -> object:  # type: ignore[override]
        time.sleep(2)
        return super().search(*args, **kwargs)  # type: ignore[arg-type]


def test_models_warm_in_the_background_and_status_says_so(
    tmp_path: Path, sample_photos: Path, running_server: Callable[..., AbstractContextManager[str]]
) -> None:
    photos = shutil.copytree(sample_photos, tmp_path / "photos")
    db = tmp_path / "db" / "catalogue.sqlite"
    with Service(db=db, progress=False) as service:
        service.index(photos, text_search=True)
    slow = running_server(ServerSettings(db=db), SlowWarmUpService)
    with slow as url, httpx.Client(base_url=url, timeout=60) as http:
        status = http.get("/api/status").json()  # the server answers at once; the models load behind it
        assert status["warming"] is True and status["text_model_ready"] is False
        deadline = time.monotonic() + 120
        while status["warming"]:
            assert time.monotonic() < deadline, "warm-up did not finish"
            time.sleep(0.2)
            status = http.get("/api/status").json()
        assert status["text_model_ready"] is True and status["image_encoder_ready"] is True
        assert "warm_up_error" not in status and status["captions"] is True  # composed without a bank
        started = time.monotonic()
        assert http.get("/api/search", params={"q": "a cat", "k": 3}).status_code == 200
        print(f"first search after warm-up: {1000 * (time.monotonic() - started):.0f} ms")
    with running_server(ServerSettings(db=db, warm_up=False)) as url, httpx.Client(base_url=url, timeout=60) as http:
        status = http.get("/api/status").json()
        assert status["warming"] is False and status["text_model_ready"] is False  # opened by the first search
        assert http.get("/api/search", params={"q": "a cat", "k": 3}).status_code == 200
        assert http.get("/api/status").json()["text_model_ready"] is True


def test_a_query_of_only_spaces_is_a_clear_400(client: httpx.Client) -> None:
    for blank in ("   ", "\t \n"):
        answer = client.get("/api/search", params={"q": blank})
        assert answer.status_code == 400
        assert answer.json() == {"error": "invalid request: q: needs words, not only spaces"}


def test_favicon_is_a_small_icon(client: httpx.Client) -> None:
    answer = client.get("/favicon.ico")
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/x-icon"
    icon = Image.open(io.BytesIO(answer.content))
    assert icon.format == "ICO" and {(16, 16), (32, 32)} <= set(icon.info["sizes"])
    assert len(answer.content) < 20_000


# ---- bad requests ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "/api/images/..%2F..%2F..%2Fetc%2Fpasswd",
        "/api/images/%2Fetc%2Fpasswd/thumbnail",
        "/api/images/1%2F..%2F..%2Fetc%2Fpasswd",
        "/static/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/static/../../../../etc/passwd",
        "/api/images/-1",
        "/api/similar/..%2Fcatalogue.sqlite",
    ],
)
def test_path_traversal_is_refused(client: httpx.Client, url: str) -> None:
    answer = client.get(url)
    assert answer.status_code in (400, 404), (url, answer.status_code)
    assert b"root:" not in answer.content and b"SQLite format" not in answer.content


def test_oversized_uploads_get_413(server: str, client: httpx.Client) -> None:
    big = b"\xff\xd8" + b"\0" * 400_000
    answer = client.post("/api/tag", files={"file": ("big.jpg", big, "image/jpeg")})
    assert answer.status_code == 413 and "too large" in answer.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit must hold while streaming
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.jpg"\r\n\r\n'
        for _ in range(50):
            yield b"x" * 20_000

    multipart = {"content-type": "multipart/form-data; boundary=b"}
    streamed = httpx.post(f"{server}/api/tag", content=chunks(), headers=multipart)
    assert streamed.status_code == 413
    many_pixels = png_of_size(3000, 2000)  # small file, 6 MP > 4 MP limit
    answer = client.post("/api/tag", files={"file": ("wide.png", many_pixels, "image/png")})
    assert answer.status_code == 413 and "pixels" in answer.json()["error"]


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("notes.jpg", b"this is a text file, not a photo", "not an image"),
        ("empty.jpg", b"", "empty"),
        ("cut.jpg", None, "truncated"),
    ],
)
def test_malformed_uploads_get_400(
    client: httpx.Client, collection: dict[str, Path], name: str, data: bytes | None, message: str
) -> None:
    if data is None:
        data = jpeg_bytes(sorted(collection["photos"].glob("*.jpg"))[0])[:3000]
    for endpoint in ("/api/tag", "/api/similar"):
        answer = client.post(endpoint, files={"file": (name, data, "image/jpeg")})
        assert answer.status_code == 400, (endpoint, answer.text)
        error = answer.json()["error"]
        assert message in error and name in error and "Traceback" not in error


def test_missing_upload_and_bad_paging_are_400(client: httpx.Client) -> None:
    assert client.post("/api/tag").status_code == 400
    assert client.get("/api/similar/1", params={"k": 1000}).status_code == 400
    assert client.get("/api/similar/1", params={"k": 0}).status_code == 400
    assert client.get("/api/similar/1", params={"offset": -1}).status_code == 400
    assert client.get("/api/similar/abc").status_code == 400
    assert client.get("/api/search").status_code == 400
    assert client.get("/api/search", params={"q": ""}).status_code == 400
    only_excluded = client.get("/api/search", params={"q": "-people"})  # nothing to rank by: said, not guessed
    assert only_excluded.status_code == 400 and "only says what to leave out" in only_excluded.json()["error"]


def test_slow_requests_time_out_with_504(
    collection: dict[str, Path], running_server: Callable[..., AbstractContextManager[str]]
) -> None:
    class SlowService(Service):
        def info(self) -> InfoResult:
            time.sleep(1.0)
            return super().info()

    settings = ServerSettings(db=collection["db"], request_timeout=0.2)
    with running_server(settings, SlowService) as url:
        started = time.monotonic()
        answer = httpx.get(f"{url}/api/info", timeout=10)
        assert answer.status_code == 504 and time.monotonic() - started < 0.9
        assert httpx.get(f"{url}/api/health").status_code == 200


# ---- auth ------------------------------------------------------------------------------------------------------
def test_token_is_required_on_every_api_request(
    collection: dict[str, Path], running_server: Callable[..., AbstractContextManager[str]]
) -> None:
    settings = ServerSettings(db=collection["db"], token="s3cret-token")
    with running_server(settings) as url:
        assert httpx.get(f"{url}/api/health").status_code == 401
        assert httpx.get(f"{url}/api/images/1").status_code == 401
        assert httpx.get(f"{url}/openapi.json").status_code == 401
        wrong = httpx.get(f"{url}/api/info", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "wrong token" in wrong.json()["error"]
        assert wrong.headers["www-authenticate"].startswith("Bearer")
        basic = httpx.get(f"{url}/api/info", headers={"Authorization": "Basic czNjcmV0LXRva2Vu"})
        assert basic.status_code == 401
        ok = httpx.get(f"{url}/api/similar/1", headers={"Authorization": "Bearer s3cret-token"})
        assert ok.status_code == 200 and ok.json()["results"]
        page = httpx.get(f"{url}/")  # the page shell holds no data; it asks for the token
        assert page.status_code == 200 and "vistext" in page.text


# ---- reliability ---------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_concurrent_searches_while_indexing_then_restart(
    tmp_path: Path, collection: dict[str, Path], running_server: Callable[..., AbstractContextManager[str]]
) -> None:
    folder = tmp_path / "photos"
    shutil.copytree(collection["photos"], folder)
    db = tmp_path / "db" / "catalogue.sqlite"
    with Service(db=db, progress=False) as service:
        service.index(folder, text_search=False)
    errors: list[str] = []
    settings = ServerSettings(db=db)
    with running_server(settings) as url:
        before = httpx.get(f"{url}/api/similar/3", params={"k": 5}).json()
        for photo in collection["extra"].glob("*.jpg"):
            shutil.copy(photo, folder / photo.name)
        done = threading.Event()

        def index_more() -> None:
            try:
                with Service(db=db, progress=False) as writer:  # another writer, like `vistext index`
                    writer.index(folder, text_search=False)
            finally:
                done.set()

        def search_until_done() -> int:
            count = 0
            with httpx.Client(base_url=url, timeout=30) as http:
                while not done.is_set() or count < 5:
                    answer = http.get("/api/similar/3", params={"k": 5})
                    if answer.status_code != 200:
                        errors.append(f"{answer.status_code} {answer.text}")
                    count += 1
            return count

        with ThreadPoolExecutor(5) as pool:
            writer = pool.submit(index_more)
            searches = [pool.submit(search_until_done) for _ in range(4)]
            writer.result()
            total = sum(s.result() for s in searches)
        assert not errors and total >= 20
        assert httpx.get(f"{url}/api/status").json()["images"] == 32
        ids = {h["id"] for h in httpx.get(f"{url}/api/similar/3", params={"k": 40}).json()["results"]}
        assert len(ids) == 31  # the new images are searchable without a restart (all but the query itself)
    with running_server(settings) as url:  # restart: same index, same answers
        assert httpx.get(f"{url}/api/status").json()["images"] == 32
        again = httpx.get(f"{url}/api/similar/3", params={"k": 5}).json()
        assert [h["id"] for h in again["results"]][:1] == [h["id"] for h in before["results"]][:1]
        assert len({h["id"] for h in httpx.get(f"{url}/api/similar/3", params={"k": 40}).json()["results"]}) == 31


SERVE_CLI = (
    "import argparse, sys\n"
    "from vistext.cli import serving\n"
    "from vistext.cli.main import common_options\n"
    "parser = argparse.ArgumentParser()\n"
    "serving.register(parser.add_subparsers(), common_options())\n"
    "args = parser.parse_args(sys.argv[1:])\n"
    "sys.exit(args.run(args))\n"
)


@pytest.mark.slow
def test_serve_command_in_its_own_process_survives_a_restart(collection: dict[str, Path]) -> None:
    """`vistext serve` as a real process: token from the environment, clean stop on SIGTERM, same index after."""
    answers = []
    for _ in range(2):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        argv = ["serve", "--db", str(collection["db"]), "--port", str(port), "--token-env", "VT_TOKEN", "-q"]
        env = {**os.environ, "VT_TOKEN": "from-env"}
        process = subprocess.Popen([sys.executable, "-c", SERVE_CLI, *argv], env=env)
        url, auth = f"http://127.0.0.1:{port}", {"Authorization": "Bearer from-env"}
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/api/health", headers=auth, timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline and process.poll() is None, "serve did not start"
                time.sleep(0.1)
            assert httpx.get(f"{url}/api/health").status_code == 401
            answers.append(httpx.get(f"{url}/api/similar/4", params={"k": 5}, headers=auth).json())
        finally:
            process.send_signal(signal.SIGTERM)
            # uvicorn shuts down gracefully (lifespan closes the store), then re-raises the signal it caught
            assert process.wait(timeout=30) in (0, -signal.SIGTERM)
    assert answers[0] == answers[1] and len(answers[0]["results"]) == 5


# ---- the sample photos installed packages ship: end to end without the research data ------------------------
def test_search_similar_and_tag_over_http_on_sample_photos(
    tmp_path: Path,
    sample_photos: Path,
    running_server: Callable[..., AbstractContextManager[str]],
) -> None:
    photos = shutil.copytree(sample_photos, tmp_path / "photos")
    db = tmp_path / "db" / "catalogue.sqlite"
    with Service(db=db, progress=False) as service:
        service.index(photos, text_search=True)
        expected = service.search("a cat", 5).to_dict()
    with running_server(ServerSettings(db=db)) as url, httpx.Client(base_url=url, timeout=60) as http:
        assert http.get("/api/status").json()["images"] == 17
        found = http.get("/api/search", params={"q": "a cat", "k": 5}).json()
        assert_same_answer(found, expected)  # the same answer as the service gives the CLI
        assert Path(found["results"][0]["path"]).name == "chelsea.png"
        flowers = http.get("/api/search", params={"q": "flowers", "k": 3}).json()["results"]
        assert Path(flowers[0]["path"]).name == "flower.jpg"
        cat_id = found["results"][0]["id"]
        similar = http.get(f"/api/similar/{cat_id}", params={"k": 4}).json()["results"]
        assert similar and [h["score"] for h in similar] == sorted((h["score"] for h in similar), reverse=True)
        upload = (photos / "coffee.png").read_bytes()
        answer = http.post("/api/tag", files={"file": ("coffee.png", upload, "image/png")}, params={"k": 3})
        assert answer.status_code == 200, answer.text
        assert any(t["tag"] in {"espresso", "cup", "coffee mug"} for t in answer.json()["tags"])


def test_a_file_name_that_is_not_utf8_is_answered_as_json(
    real_jpegs: list[Path], tmp_path: Path, running_server: Callable
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    name = os.fsencode(photos) + b"/caf\xe9.jpg"
    shutil.copy(real_jpegs[0], name)
    shutil.copy(real_jpegs[1], photos / "plain.jpg")
    with Service(progress=False) as service:
        service.index(photos, text_search=False)
    settings = ServerSettings(db=photos / ".vistext" / "catalogue.sqlite", warm_up=False)
    with running_server(settings) as url:
        answers = [httpx.get(f"{url}/api/similar/{i}", params={"k": 2}, timeout=60) for i in (1, 2)]
    assert all(answer.status_code == 200 for answer in answers), [answer.text for answer in answers]
    paths = [os.fsencode(hit["path"]) for answer in answers for hit in answer.json()["results"]]
    assert name in paths  # the exact bytes come back through the JSON escape
