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

# Real photographs that ship with vistext (cli/demo_photos/, CC0 or public domain: see its README.md) and with
# scikit-learn, a runtime dependency (CC BY 2.0, attributed in its README.txt): no download, no extra package.
SAMPLE_PHOTOS = {
    "vistext.cli": [
        "demo_photos/chelsea.jpg",
        "demo_photos/coffee.jpg",
        "demo_photos/camera.jpg",
        "demo_photos/astronaut.jpg",
        "demo_photos/rocket.jpg",
        "demo_photos/hubble_deep_field.jpg",
        "demo_photos/brick.jpg",
    ],
    "sklearn.datasets.images": ["china.jpg", "flower.jpg"],
}
DEMO_QUERY = "chelsea.jpg"
DEMO_SEARCHES = ("a cat", "a man holding a camera", "flowers")


def sample_folder() -> Path:
    """Copy the sample photos into ``$VISTEXT_HOME/demo/photos`` once and return that folder."""
    target = cache_dir("demo", "photos")
    for package, names in SAMPLE_PHOTOS.items():
        for name in names:
            destination = target / Path(name).name
            if destination.exists():
                continue
            try:
                source = files(package).joinpath(name)
            except ModuleNotFoundError:
                source = None
            if source is None or not source.is_file():
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
