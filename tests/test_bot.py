"""The Telegram bot end to end against a small local stand-in of the Bot API over HTTP on loopback:
updates go in through getUpdates, and the messages, photos and albums the bot sends are checked."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from conftest import run_async  # asyncio.run in a thread of its own (see conftest)
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vistext.bot import BotSettings, VistextBot
from vistext.service import Service

TOKEN = "123456:TEST-token"
ALLOWED, STRANGER = 4242, 9999


class FakeBotApi:
    """Just enough of the Bot API for python-telegram-bot: getMe, getUpdates (long poll), getFile + download,
    sendMessage, sendPhoto, sendMediaGroup. Sent messages are recorded with the number of photos attached."""

    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        self.files: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.update_ids = itertools.count(1)
        self.message_ids = itertools.count(1000)

    # ---- what tests do ---------------------------------------------------------------------------------------
    def push(self, user: int, **message: Any) -> int:
        message_id = next(self.message_ids)
        body = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": user, "type": "private"},
            "from": {"id": user, "is_bot": False, "first_name": "Test"},
        }
        body.update(message)
        with self.lock:
            self.updates.append({"update_id": next(self.update_ids), "message": body})
        return message_id

    def photo_message(self, file_id: str, data: bytes) -> dict[str, Any]:
        self.files[file_id] = data
        return {"photo": [{"file_id": file_id, "file_unique_id": f"u-{file_id}", "width": 224, "height": 224}]}

    @staticmethod
    def command(text: str, **extra: Any) -> dict[str, Any]:
        name = text.split()[0]
        return {"text": text, "entities": [{"type": "bot_command", "offset": 0, "length": len(name)}], **extra}

    def wait_sent(self, count: int, timeout: float = 60) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.sent) >= count:
                    return list(self.sent)
            time.sleep(0.05)
        raise AssertionError(f"expected {count} sent messages, got {self.sent}")

    # ---- the HTTP side ---------------------------------------------------------------------------------------
    def _message(self, chat_id: int, **fields: Any) -> dict[str, Any]:
        return {
            "message_id": next(self.message_ids),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private"},
            **fields,
        }

    async def api(self, request: Request) -> Response:
        token, method = request.path_params["token"], request.path_params["method"]
        if token != TOKEN:
            return JSONResponse({"ok": False, "error_code": 401, "description": "Unauthorized"}, status_code=401)
        form = await request.form()
        fields = {key: value for key, value in form.items() if isinstance(value, str)}
        uploads = [value for value in form.values() if not isinstance(value, str)]
        if method == "getMe":
            result: Any = {"id": 1, "is_bot": True, "first_name": "vistext", "username": "vistext_bot"}
        elif method in ("deleteWebhook", "setMyCommands"):
            result = True
        elif method == "getUpdates":
            offset = int(fields.get("offset") or 0)
            for _ in range(20):  # a short long-poll
                with self.lock:
                    result = [u for u in self.updates if u["update_id"] >= offset]
                if result:
                    break
                await asyncio.sleep(0.05)
        elif method == "getFile":
            file_id = fields["file_id"]
            result = {"file_id": file_id, "file_unique_id": f"u-{file_id}", "file_path": f"photos/{file_id}.jpg"}
        elif method in ("sendMessage", "sendPhoto", "sendMediaGroup"):
            chat = int(fields["chat_id"])
            media = json.loads(fields.get("media", "[]"))
            record = {
                "method": method,
                "chat_id": chat,
                "text": fields.get("text", fields.get("caption", "")),
                "photos": len(uploads),
                "captions": [m.get("caption", "") for m in media],
            }
            for upload in uploads:
                assert (await upload.read())[:2] == b"\xff\xd8"  # JPEG bytes really arrived
            with self.lock:
                self.sent.append(record)
            result = [self._message(chat) for _ in media] if method == "sendMediaGroup" else self._message(chat)
        else:
            return JSONResponse({"ok": False, "error_code": 404, "description": f"no method {method}"}, 404)
        return JSONResponse({"ok": True, "result": result})

    async def download(self, request: Request) -> Response:
        file_id = Path(request.path_params["path"]).stem
        return Response(self.files[file_id], media_type="image/jpeg")

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/bot{token}/{method}", self.api, methods=["GET", "POST"]),
                Route("/file/bot{token}/{path:path}", self.download),
            ]
        )


@pytest.fixture(scope="module")
def indexed(
    tmp_path_factory: pytest.TempPathFactory,
    flickr8k_images: list[Path],
    copy_photos: Callable[..., Path],
    text_search_available: Callable[[], bool],
) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bot")
    photos = copy_photos(flickr8k_images[200:220], root / "photos")
    db = root / "db" / "catalogue.sqlite"
    with Service(db=db, progress=False) as service:
        service.index(photos, text_search=text_search_available())
    return {"db": db, "photos": photos}


@pytest.fixture()
def fake_api(serving: Callable[..., AbstractContextManager[str]]) -> Iterator[tuple[FakeBotApi, str]]:
    fake = FakeBotApi()
    with serving(fake.app()) as url:
        yield fake, url


def run_bot_while(fake: FakeBotApi, url: str, service: Service, scenario: Any, **options: Any) -> None:
    settings = BotSettings(token=TOKEN, base_url=f"{url}/bot", base_file_url=f"{url}/file/bot", k=3, **options)

    async def main() -> None:
        app = VistextBot(service, settings).build()
        async with app:
            await app.start()
            await app.updater.start_polling(poll_interval=0.0, timeout=1)
            try:
                await asyncio.to_thread(scenario)
            finally:
                await app.updater.stop()
                await app.stop()

    run_async(main())


def test_bot_end_to_end(
    indexed: dict[str, Path], fake_api: tuple[FakeBotApi, str], text_search_available: Callable[[], bool]
) -> None:
    fake, url = fake_api
    photos = sorted(indexed["photos"].glob("*.jpg"))
    with Service(db=indexed["db"], progress=False, read_only=True) as reader:
        listed = reader.list_images(k=100).to_dict()["results"]
    indexed_tags = {Path(item["path"]).name: [t["tag"] for t in item["tags"]] for item in listed}
    assert any(indexed_tags.values())  # tags with no training

    def scenario() -> None:
        fake.push(ALLOWED, **fake.command("/help"))
        assert "Send me a photo" in fake.wait_sent(1)[0]["text"]

        photo_id = fake.push(ALLOWED, **fake.photo_message("p1", photos[2].read_bytes()))
        tags = fake.wait_sent(2)[1]
        assert tags["method"] == "sendMessage" and tags["text"].startswith("Tags: ")
        assert tags["text"].count("(") == 5 + 3  # five tags and three composed captions with scores
        assert "\nCaptions:\n1. " in tags["text"]

        original = {
            "message_id": photo_id,
            "date": int(time.time()),
            "chat": {"id": ALLOWED, "type": "private"},
            **fake.photo_message("p1", photos[2].read_bytes()),
        }
        fake.push(ALLOWED, **fake.command("/similar", reply_to_message=original))
        album = fake.wait_sent(3)[2]
        assert album["method"] == "sendMediaGroup" and album["photos"] == 3
        assert album["captions"][0].startswith("1. 1.000") and photos[2].name in album["captions"][0]
        stored = indexed_tags[photos[2].name]  # the photo's stored tags (default ones: no training) are shown
        assert all(f"#{'_'.join(tag.split())}" in album["captions"][0] for tag in stored[:3])

        fake.push(ALLOWED, **fake.command("/similar"))
        assert "Reply /similar to a photo" in fake.wait_sent(4)[3]["text"]

        fake.push(ALLOWED, **fake.photo_message("broken", photos[0].read_bytes()[:2000]))
        error = fake.wait_sent(5)[4]["text"]
        assert error.startswith("Sorry: ") and "truncated" in error and "Traceback" not in error
        assert len(error.splitlines()) == 1

        fake.push(ALLOWED, text="a dog running through the snow")
        answer = fake.wait_sent(6)[5]
        if text_search_available():
            assert answer["method"] == "sendMediaGroup" and answer["photos"] == 3
            assert answer["captions"][0].startswith("1. ")
        else:  # no text model in this checkout: the user is told so in one line, not with a stack trace
            assert answer["text"].startswith("Sorry: ") and "Traceback" not in answer["text"]

        fake.push(STRANGER, **fake.command("/help"))
        fake.push(STRANGER, **fake.photo_message("p2", photos[3].read_bytes()))
        fake.push(ALLOWED, **fake.command("/help"))  # answered after the stranger's messages were skipped
        sent = fake.wait_sent(7)
        time.sleep(0.3)
        assert [m["chat_id"] for m in fake.sent].count(STRANGER) == 0 and len(fake.sent) == 7
        assert sent[6]["chat_id"] == ALLOWED

    with Service(db=indexed["db"], progress=False) as service:
        run_bot_while(fake, url, service, scenario, allow=frozenset({ALLOWED}))


def test_bot_answers_everyone_without_an_allow_list(indexed: dict[str, Path], fake_api: tuple[FakeBotApi, str]) -> None:
    fake, url = fake_api

    def scenario() -> None:
        fake.push(STRANGER, **fake.command("/start"))
        assert fake.wait_sent(1)[0]["chat_id"] == STRANGER

    with Service(db=indexed["db"], progress=False) as service:
        run_bot_while(fake, url, service, scenario)


def test_a_huge_picture_and_a_pdf_each_get_one_line(indexed: dict[str, Path], fake_api: tuple[FakeBotApi, str]) -> None:
    fake, url = fake_api
    buffer = io.BytesIO()
    Image.new("L", (3000, 2000), 128).save(buffer, format="PNG", optimize=True)  # 6 MP in a few KB
    fake.files["huge"] = buffer.getvalue()
    fake.files["report"] = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n"
    fake.files["fake-png"] = fake.files["report"]

    def document(file_id: str, name: str, mime: str) -> dict[str, Any]:
        return {
            "document": {"file_id": file_id, "file_unique_id": f"u-{file_id}", "file_name": name, "mime_type": mime}
        }

    def scenario() -> None:
        fake.push(ALLOWED, **document("huge", "huge.png", "image/png"))
        too_large = fake.wait_sent(1)[0]["text"]
        assert too_large.startswith("Sorry: huge.png: image too large: 3000x2000 pixels (limit 1000000)")
        fake.push(ALLOWED, **fake.photo_message("huge", fake.files["huge"]))  # as a photo too (a stand-in's size)
        assert "image too large" in fake.wait_sent(2)[1]["text"]
        fake.push(ALLOWED, **document("report", "report.pdf", "application/pdf"))
        pdf = fake.wait_sent(3)[2]["text"]
        assert pdf.startswith("Sorry: report.pdf is not a picture (application/pdf)")
        fake.push(ALLOWED, **document("fake-png", "scan.png", "image/png"))  # a PDF claiming to be an image
        assert fake.wait_sent(4)[3]["text"] == "Sorry: scan.png: not an image file"
        for message in fake.sent:
            assert len(message["text"].splitlines()) == 1 and "Traceback" not in message["text"]

    with Service(db=indexed["db"], progress=False) as service:
        run_bot_while(fake, url, service, scenario, max_pixels=1_000_000)


def test_bot_answers_in_a_clip_models_space(
    tmp_path: Path,
    flickr8k_images: list[Path],
    copy_photos: Callable[..., Path],
    fake_api: tuple[FakeBotApi, str],
    tiny_clip: tuple[Path, Any],
) -> None:
    fake, url = fake_api
    photos = copy_photos(flickr8k_images[200:210], tmp_path / "photos")
    db = tmp_path / "db" / "catalogue.sqlite"
    with Service(db=db, progress=False) as service:
        service.index(photos, text_search=False, model=tiny_clip[0])
        expected = service.search("a dog in the snow", 3, model="tiny-clip").results

    def scenario() -> None:
        fake.push(ALLOWED, text="a dog in the snow")
        album = fake.wait_sent(1)[0]
        assert album["method"] == "sendMediaGroup" and album["photos"] == 3
        assert [caption.split()[2] for caption in album["captions"]] == [Path(h.path).name for h in expected]

    with Service(db=db, progress=False) as service:
        run_bot_while(fake, url, service, scenario, model="tiny-clip")
