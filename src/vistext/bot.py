"""The Telegram bot (layer 6, ``vistext bot``): a thin chat surface over the service facade.

A photo gets its tags and captions (from a bank, or composed); text gets the best matching images as an album;
``/similar`` as a reply to a photo gets the closest indexed images; ``/match`` as a reply to a photo says which of
the tag sets given (parsed by ``vistext.service.parse_tag_sets``) fits it best; ``/help`` says so. With an
allow-list only those users are answered. Errors reach the user as one short line; the trace stays in the log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from telegram import InputMediaPhoto, Message, Update
from telegram.ext import Application, ApplicationBuilder, CommandHandler, ContextTypes, MessageHandler, filters

from vistext.errors import VistextError
from vistext.service import (
    MAX_PIXELS,
    Hit,
    ImageTooLargeError,
    MatchResult,
    SearchResult,
    Service,
    Upload,
    check_upload,
    parse_tag_sets,
)

log = logging.getLogger(__name__)

ALBUM_SIZE = 8  # Telegram albums hold 2..10 photos
PHOTO_SIZE = 512  # bot replies send thumbnails, never the (possibly huge) originals
CAPTION_TAGS = 3  # stored tags shown under each photo of an album (default, trained and the user's own)
HELP = (
    "Send me a photo: I tell you what is in it, in tags and in a few captions.\n"
    "Send me words (e.g. 'a dog running on the beach'): I send the best matching pictures. "
    "'beach -people' or 'beach without people' leaves out what you name; colours ('a red bus'), 'at night', "
    "'black and white' and people ('people', 'someone surfing') are read from the pictures too; \"in quotes\" "
    "searches the words as they are.\n"
    "Reply /similar to a photo: I send the most similar pictures of the collection.\n"
    "Reply /match dog, grass; cat, sofa to a photo: I say which tag set fits it best.\n"
    "/help shows this message."
)

Handler = Callable[[Update, ContextTypes.DEFAULT_TYPE], Coroutine[Any, Any, None]]


@dataclass
class BotSettings:
    """``allow``: user ids to answer (None answers everyone); ``captions``: caption bank spec for photos (None:
    captions are composed from the models' words, as ``vistext caption`` does without ``--captions``);
    ``model``: a CLIP-family model the catalogue was indexed with, which then answers searches, similar photos,
    captions from the bank and tag sets (photos are still tagged with ImageNet labels)."""

    token: str
    allow: frozenset[int] | None = None
    captions: str | None = None
    k: int = 4
    tags: int = 5
    base_url: str | None = None  # a self-hosted Bot API server (and tests' local stand-in)
    base_file_url: str | None = None
    max_pixels: int = MAX_PIXELS  # the same cap as HTTP uploads: checked from the header, before decoding
    max_bytes: int = 20 * 1024 * 1024  # a document larger than this is not downloaded
    model: str | None = None


def result_caption(rank: int, hit: Hit) -> str:
    """``1. 0.830  IMG_0042.jpg  #dog #beach``: the rank, score, file name and the photo's first stored tags; one
    found by the words in it says which (``text: ...``)."""
    tags = "  " + " ".join(f"#{'_'.join(t['tag'].split())}" for t in hit.tags[:CAPTION_TAGS]) if hit.tags else ""
    caption = f"{rank}. {hit.score:.3f}  {Path(hit.path).name}{tags}"
    if hit.text_match and hit.text:
        caption += f"\ntext: {hit.text if len(hit.text) <= 200 else hit.text[:199] + '…'}"
    return caption


def format_understanding(tags: list[tuple[str, float]], captions: list[tuple[str, float]]) -> str:
    lines = ["Tags: " + ", ".join(f"{tag} ({score:.2f})" for tag, score in tags)] if tags else []
    if captions:
        lines.append("Captions:")
        lines += [f"{i}. {text} ({score:.2f})" for i, (text, score) in enumerate(captions, start=1)]
    return "\n".join(lines) or "I could not find anything to say about this picture."


def _plain(text: str) -> str:
    """``text`` on one line, without control characters, at most 80 characters (a file name in a reply)."""
    return "".join(ch if ch.isprintable() else " " for ch in text)[:80]


def format_match(result: MatchResult) -> str:
    return "\n".join(
        f"{'*' if position == result.best else ' '} {candidate.score:.3f}  {', '.join(candidate.tags)}"
        for position, candidate in enumerate(result.candidates)
    )


def command_text(text: str) -> str:
    """What follows the command word: ``"/match@vistext_bot dog, grass; cat"`` -> ``"dog, grass; cat"``."""
    parts = text.split(maxsplit=1)
    return parts[1] if len(parts) > 1 else ""


class VistextBot:
    """Handlers bound to one service. Service calls run in worker threads so the chat loop stays responsive."""

    def __init__(self, service: Service, settings: BotSettings) -> None:
        self.service = service
        self.settings = settings

    # ---- plumbing ----------------------------------------------------------------------------------------
    def guarded(self, handler: Handler) -> Handler:
        async def run(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
            message = update.effective_message
            try:
                await handler(update, context)
            except VistextError as error:
                if message is not None:
                    await message.reply_text(f"Sorry: {error}")
            except Exception:  # noqa: BLE001 - the user gets one line; the trace goes to the log
                log.exception("bot handler failed")
                if message is not None:
                    await message.reply_text("Sorry, something went wrong on my side. Please try again later.")

        return run

    async def _photo_upload(self, message: Message, context: ContextTypes.DEFAULT_TYPE) -> Upload | None:
        """The photo (or image document) of ``message``, downloaded and checked like an HTTP upload: an image,
        within the pixel cap, before any pixel is decoded (``VistextError`` otherwise); None when it has none."""
        if message.photo:
            photo = message.photo[-1]  # the largest size Telegram offers
            file_id, name, size = photo.file_id, f"photo-{photo.file_unique_id}.jpg", photo.file_size
        elif message.document and (message.document.mime_type or "").startswith("image/"):
            document = message.document
            file_id, name, size = document.file_id, document.file_name or "image", document.file_size
        else:
            return None
        if size is not None and size > self.settings.max_bytes:
            raise ImageTooLargeError(f"{name}: file too large ({size} bytes; limit {self.settings.max_bytes})")
        telegram_file = await context.bot.get_file(file_id)
        upload = Upload(name, bytes(await telegram_file.download_as_bytearray()))
        await asyncio.to_thread(check_upload, upload, self.settings.max_pixels)
        return upload

    async def _send_album(self, message: Message, result: SearchResult, empty: str) -> None:
        hits = [hit for hit in result.results if hit.id is not None][:ALBUM_SIZE]
        ids = [int(hit.id) for hit in hits if hit.id is not None]
        if not hits:
            await message.reply_text(empty)
            return
        pictures = await asyncio.to_thread(lambda: [self.service.thumbnail(image_id, PHOTO_SIZE) for image_id in ids])
        captions = [result_caption(rank, hit) for rank, hit in enumerate(hits, start=1)]
        if len(hits) == 1:
            await message.reply_photo(pictures[0], caption=captions[0])
            return
        media = [InputMediaPhoto(data, caption=text) for data, text in zip(pictures, captions, strict=True)]
        await message.reply_media_group(media)

    # ---- handlers ----------------------------------------------------------------------------------------------
    async def on_help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if update.effective_message is not None:
            await update.effective_message.reply_text(HELP)

    async def on_photo(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None:
            return
        upload = await self._photo_upload(message, context)
        if upload is None:
            return

        def understand() -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
            result = self.service.tag([upload], self.settings.tags)[0]
            if result.error:
                raise VistextError(result.error)
            tags = [(t.tag, t.score) for t in result.tags]
            captions: list[tuple[str, float]] = []
            if self.settings.captions or self.service.can_compose_captions():
                model = self.settings.model if self.settings.captions else None  # composed: the bundled models
                found = self.service.caption(upload, self.settings.captions, 3, model=model)
                captions = [(c.text, c.score) for c in found.captions]
            return tags, captions

        tags, captions = await asyncio.to_thread(understand)
        await message.reply_text(format_understanding(tags, captions))

    async def on_other_document(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or message.document is None:
            return
        document = message.document
        kind = document.mime_type or "an unknown kind of file"
        await message.reply_text(
            f"Sorry: {_plain(document.file_name or 'this file')} is not a picture ({_plain(kind)}); "
            "send a photo or an image file."
        )

    async def on_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or not message.text:
            return
        text = message.text.strip()[:300]
        result = await asyncio.to_thread(lambda: self.service.search(text, self.settings.k, model=self.settings.model))
        await self._send_album(message, result, f"No pictures match “{text}”.")

    async def on_similar(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None:
            return
        original = message.reply_to_message
        upload = await self._photo_upload(original, context) if original is not None else None
        if upload is None:
            await message.reply_text("Reply /similar to a photo to find the most similar pictures.")
            return
        result = await asyncio.to_thread(
            lambda: self.service.similar(upload, self.settings.k, model=self.settings.model)
        )
        await self._send_album(message, result, "The collection has no pictures yet.")

    async def on_match(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None:
            return
        hint = "Reply /match dog, grass; cat, sofa to a photo to see which tag set fits it."
        original = message.reply_to_message
        if original is None:
            await message.reply_text(hint)
            return
        sets = parse_tag_sets(command_text(message.text or ""))  # before the download: a typo fails at once
        upload = await self._photo_upload(original, context)
        if upload is None:
            await message.reply_text(hint)
            return
        result = await asyncio.to_thread(lambda: self.service.match(upload, sets, model=self.settings.model))
        await message.reply_text(format_match(result))

    # ---- wiring ---------------------------------------------------------------------------------------------
    def build(self) -> Application:
        """The python-telegram-bot application with every handler registered."""
        builder: Any = ApplicationBuilder().token(self.settings.token)
        if self.settings.base_url:
            builder = builder.base_url(self.settings.base_url)
        if self.settings.base_file_url:
            builder = builder.base_file_url(self.settings.base_file_url)
        app = builder.build()
        # unknown users match no handler, so they are simply not answered
        who = filters.User(user_id=sorted(self.settings.allow)) if self.settings.allow is not None else filters.ALL
        app.add_handler(CommandHandler(["help", "start"], self.guarded(self.on_help), filters=who))
        app.add_handler(CommandHandler("similar", self.guarded(self.on_similar), filters=who))
        app.add_handler(CommandHandler("match", self.guarded(self.on_match), filters=who))
        app.add_handler(MessageHandler(who & (filters.PHOTO | filters.Document.IMAGE), self.guarded(self.on_photo)))
        app.add_handler(MessageHandler(who & filters.Document.ALL, self.guarded(self.on_other_document)))
        app.add_handler(MessageHandler(who & filters.TEXT & ~filters.COMMAND, self.guarded(self.on_text)))
        app.add_error_handler(self._on_error)
        return app

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        # network trouble and the like, outside any handler: logged, never shown as a trace
        log.warning("telegram: %s", context.error)


def run_bot(service: Service, settings: BotSettings) -> None:
    """Poll for updates until interrupted (blocking)."""
    VistextBot(service, settings).build().run_polling(allowed_updates=Update.ALL_TYPES)
