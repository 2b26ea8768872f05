"""``vistext demo``: index real sample photos that ship inside installed packages, then tag, compare, search."""

from __future__ import annotations

import logging
import shutil
from importlib.resources import files
from pathlib import Path
from typing import Any

from vistext.errors import ModelError, StoreError
from vistext.paths import cache_dir
from vistext.service import Service

log = logging.getLogger(__name__)

# Real photographs shipped by scikit-image and scikit-learn (no download needed).
SAMPLE_PHOTOS = {
    "skimage.data": [
        "astronaut.png",
        "chelsea.png",
        "coffee.png",
        "rocket.jpg",
        "motorcycle_left.png",
        "hubble_deep_field.jpg",
        "camera.png",
        "brick.png",
        "grass.png",
        "gravel.png",
        "coins.png",
        "moon.png",
        "retina.jpg",
        "color.png",
        "text.png",
    ],
    "sklearn.datasets.images": ["china.jpg", "flower.jpg"],
}
DEMO_QUERY = "chelsea.png"
DEMO_SEARCHES = ("a cat", "a man holding a camera", "flowers")


def sample_folder() -> Path:
    """Copy the sample photos into ``$VISTEXT_HOME/demo/photos`` once and return that folder."""
    target = cache_dir("demo", "photos")
    for package, names in SAMPLE_PHOTOS.items():
        for name in names:
            destination = target / name
            if destination.exists():
                continue
            source = files(package).joinpath(name)
            if not source.is_file():
                log.warning("sample photo %s missing from %s", name, package)
                continue
            with source.open("rb") as src, destination.open("wb") as out:
                shutil.copyfileobj(src, out)
    return target


def run_demo(service: Service, folder: Path | None = None) -> dict[str, Any]:
    """Index ``folder`` (default: the bundled samples), then tag one photo, find its neighbours and search."""
    folder = folder or sample_folder()
    report = service.index(folder)
    query = folder / DEMO_QUERY
    if not query.exists():
        first = service.list_images(k=1).results
        if not first:
            raise StoreError(f"{folder}: no readable images to demonstrate with")
        query = Path(first[0].path)
    out: dict[str, Any] = {
        "folder": str(folder),
        "db": str(service.location),
        "index": report.to_dict(),
        "tags": service.tag([query], 5)[0].to_dict(),
        "similar": service.similar(query, 5).to_dict(),
    }
    try:
        out["searches"] = [service.search(text, 3).to_dict() for text in DEMO_SEARCHES]
    except ModelError as error:
        log.warning("text search unavailable: %s", error)
    return out
