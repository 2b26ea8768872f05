"""Contact sheets: the results of a search drawn as one picture, each thumbnail labelled with its rank and score."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from vistext.errors import ImageDecodeError, UsageError
from vistext.images import thumbnail
from vistext.paths import atomic_path

log = logging.getLogger(__name__)

_BACKGROUND = (250, 250, 250)
_MISSING = (210, 210, 210)
_TEXT = (20, 20, 20)
_MUTED = (110, 110, 110)
_MARK = (214, 96, 22)


@dataclass(frozen=True)
class SheetItem:
    """One cell: the image file, the big label under it (e.g. ``"0.812"``) and a smaller caption (file name);
    a ``marked`` cell (the query image of a "similar" sheet) is framed in colour so it reads apart from results."""

    path: str | Path
    label: str
    caption: str = ""
    marked: bool = False


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # PIL built without FreeType: the fixed bitmap font still draws text
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int) -> str:
    """Shorten ``text`` with an ellipsis until it fits ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _cell_image(path: str | Path, size: int) -> Image.Image | None:
    try:
        return thumbnail(path, size)
    except ImageDecodeError as error:
        # the sheet still shows the other results; the cell says the file is gone
        log.warning("contact sheet: %s", error)
        return None


def render_contact_sheet(
    items: Sequence[SheetItem],
    out_path: str | Path,
    *,
    title: str = "",
    columns: int | None = None,
    thumb: int = 192,
) -> Path:
    """Draw ``items`` as a grid of ``thumb``-pixel cells into ``out_path`` (format from its suffix: png, jpg, webp).

    Unreadable images become grey cells that keep their label, so ranks stay in place.
    """
    if not items:
        raise UsageError("nothing to draw: the result list is empty")
    if not 32 <= thumb <= 1024:
        raise UsageError(f"thumbnail size must be between 32 and 1024 pixels, got {thumb}")
    out = Path(out_path)
    if out.suffix.lower() not in {".png", ".jpg", ".jpeg", ".webp"}:
        raise UsageError(f"{out}: the grid file must end in .png, .jpg or .webp")
    columns = columns or min(len(items), max(1, math.ceil(math.sqrt(len(items) * 1.5))))
    rows = math.ceil(len(items) / columns)
    pad = max(6, thumb // 24)
    label_font, caption_font, title_font = _font(max(12, thumb // 11)), _font(max(10, thumb // 16)), _font(18)
    label_h = max(12, thumb // 11) + max(10, thumb // 16) + 3 * pad // 2
    title_h = 34 if title else 0
    cell_w, cell_h = thumb + pad, thumb + label_h
    sheet = Image.new("RGB", (pad + columns * cell_w, title_h + pad + rows * cell_h), _BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, 8), _fit(draw, title, title_font, sheet.width - 2 * pad), fill=_TEXT, font=title_font)
    for position, item in enumerate(items):
        row, col = divmod(position, columns)
        x, y = pad + col * cell_w, title_h + pad + row * cell_h
        picture = _cell_image(item.path, thumb)
        if picture is None:
            draw.rectangle((x, y, x + thumb - 1, y + thumb - 1), fill=_MISSING)
            draw.text((x + pad, y + pad), "unreadable", fill=_MUTED, font=caption_font)
        else:
            # centre non-square thumbnails in their square cell
            sheet.paste(picture, (x + (thumb - picture.width) // 2, y + (thumb - picture.height) // 2))
        if item.marked:
            frame = max(3, thumb // 48)
            draw.rectangle(
                (x - frame, y - frame, x + thumb - 1 + frame, y + thumb - 1 + frame), outline=_MARK, width=frame
            )
        text_y = y + thumb + pad // 2
        colour = _MARK if item.marked else _TEXT
        draw.text((x, text_y), _fit(draw, item.label, label_font, thumb), fill=colour, font=label_font)
        if item.caption:
            caption_y = text_y + max(12, thumb // 11) + pad // 3
            draw.text((x, caption_y), _fit(draw, item.caption, caption_font, thumb), fill=_MUTED, font=caption_font)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        if out.suffix.lower() == ".png":
            sheet.save(tmp)
        else:
            sheet.save(tmp, quality=90)
    return out
