"""Model cards: the ``config.json`` every saved model directory carries, read and checked in one place."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vistext.errors import ModelError

CARD_FILE = "config.json"


def _load(directory: Path, what: str) -> tuple[Path, dict[str, Any]]:
    file = directory / CARD_FILE
    if not file.is_file():
        raise ModelError(f"{directory}: not a {what} directory (no {CARD_FILE})")
    try:
        card = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelError(f"{file}: unreadable {what} config ({error})") from None
    if not isinstance(card, dict):
        raise ModelError(f"{file}: unreadable {what} config (not a JSON object)")
    return file, card


def card_format(directory: str | Path) -> str:
    """The declared ``format`` of a saved model directory (e.g. ``vistext-joint``), to dispatch on."""
    _, card = _load(Path(directory), "vistext model")
    return str(card.get("format", ""))


def read_card(
    directory: str | Path, *, fmt: str, version: int, version_key: str, what: str, retrain: str
) -> dict[str, Any]:
    """The card of a model of format ``fmt``; a wrong format or an unsupported version is a ModelError that
    names the file and says what to do (``retrain``)."""
    file, card = _load(Path(directory), what)
    if card.get("format") != fmt:
        raise ModelError(f"{file}: not a vistext {what} (format {card.get('format')!r})")
    if card.get(version_key) != version:
        raise ModelError(
            f"{file}: {what} format version {card.get(version_key)!r} is not supported "
            f"(this vistext reads version {version}); {retrain}"
        )
    return card
