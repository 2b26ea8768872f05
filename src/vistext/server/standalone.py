"""``vistext map --out map.html``: the web map as one self-contained HTML file (no server needed to open it)."""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any

from vistext.errors import UsageError, VistextError
from vistext.paths import atomic_write
from vistext.server.app import WEB_DIR
from vistext.service import Service
from vistext.service.results import json_text

log = logging.getLogger(__name__)

EMBED_SIZE = 128
EMBED_SIZE_LARGE = 64  # above EMBED_LIMIT images: 10k embedded 128-px thumbnails make an 80 MB file
EMBED_LIMIT = 2000
MAP_SCRIPTS = ("api.js", "filters.js", "map.js", "map-select.js")  # in map.html's order


def _script_json(document: Any) -> str:
    # "</" inside a <script> block would end it early; "<\/" means the same to JSON.parse
    return json_text(document, compact=True).replace("</", "<\\/")


def map_page(data: dict[str, Any]) -> str:
    """The map page with its CSS, scripts and ``data`` (a ``map_points()`` answer) inlined."""
    page = (WEB_DIR / "map.html").read_text(encoding="utf-8")
    css = (WEB_DIR / "style.css").read_text(encoding="utf-8")
    scripts = "\n".join((WEB_DIR / name).read_text(encoding="utf-8") for name in MAP_SCRIPTS)
    page = page.replace('<link rel="stylesheet" href="/static/style.css">', f"<style>\n{css}</style>")
    page = page.replace('<nav id="map-nav"><a href="/">Search</a></nav>', "")
    return page.replace(
        "\n".join(f'<script src="/static/{name}"></script>' for name in MAP_SCRIPTS),
        f"<script>window.VISTEXT_MAP_DATA = {_script_json(data)};</script>\n<script>\n{scripts}\n</script>",
    )


def write_map_html(
    service: Service,
    out_path: str | Path,
    *,
    method: str = "tsne",
    embed_thumbnails: bool = True,
    neighbours: int = 9,
    model: str | Path | None = None,
) -> Path:
    """Write the interactive map of ``service``'s collection to ``out_path``.

    With ``embed_thumbnails`` the file carries JPEG thumbnails (portable; 128 px, or 64 px above 2,000 images,
    so 10k images make ~30 MB); without,
    it links to the original files by ``file://`` URL (small, but only works on this machine).
    """
    out = Path(out_path)
    if out.suffix.lower() not in {".html", ".htm"}:
        raise UsageError(f"{out}: the map file must end in .html")
    data: dict[str, Any] = service.map_points(method, model=model).to_dict()
    ids = data["points"]["id"]
    data["neighbours"] = service.neighbour_table(neighbours, model=model).to_dict()
    size = EMBED_SIZE if len(ids) <= EMBED_LIMIT else EMBED_SIZE_LARGE
    files: dict[str, str] = {}
    thumbs: dict[str, str] = {}
    for image_id in ids:
        try:  # a file deleted since indexing loses its picture, not the whole map
            files[str(image_id)] = service.image_file(image_id).resolve().as_uri()
            if embed_thumbnails:
                jpeg = service.thumbnail(image_id, size)
                thumbs[str(image_id)] = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
        except VistextError as error:
            log.warning("map: %s", error)
    data["files"], data["thumbs"] = files, thumbs
    page = map_page(data)
    out.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(out, page)
