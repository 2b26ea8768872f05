"""``Collection.index(..., engine="ray")``: the collection's store and models handed to the Ray engine.

Workers open the store themselves, so they get where it is rather than the open store (``for_workers``: a
server's URL, or the embedded catalogue's absolute path); and they build the models from names (the image
encoder's registered name, the joint model's folder) because an ONNX session cannot travel between processes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from vistext.errors import UsageError

if TYPE_CHECKING:
    from vistext.indexing.local import IndexReport
    from vistext.service.loaded_models import LoadedModels
    from vistext.service.location import CatalogueLocation
    from vistext.store import Store


def check_engine(engine: str, address: str | None, folder: str | Path) -> None:
    """Refuse, in one line, an unknown indexing engine, ``address`` without Ray, or a local folder that is not one."""
    if engine not in ("local", "ray"):
        raise UsageError(f"unknown indexing engine {engine!r}; known: local, ray")
    if address is not None and engine != "ray":
        raise UsageError(f"--address {address} is for --engine ray; the local engine runs on this machine")
    if engine == "local" and not Path(folder).is_dir():
        raise UsageError(f"{folder}: not a folder")


def index_location_on_ray(
    location: str,
    db: object,
    store_for: Callable[[str | None], Store],
    catalogue: CatalogueLocation,
    models: LoadedModels,
    *,
    text_search: bool,
    address: str | None,
    progress: bool,
) -> IndexReport:
    """A collection's ``index(location, engine="ray")``: a folder every node can read, or ``s3://bucket/prefix``
    (which needs a catalogue named by ``db``); ``store_for(folder)`` opens the collection's store for it."""
    from vistext.indexing.ray_engine import index_with_ray
    from vistext.indexing.ray_stages import FusedProjection, JointProjection, ModelSpec
    from vistext.indexing.sources import is_object_url

    in_object_storage = is_object_url(location)
    if in_object_storage and db is None:
        raise UsageError(f"{location}: photos in object storage need a catalogue: pass --db")
    if not in_object_storage and not Path(location).is_dir():
        raise UsageError(f"{location}: not a folder")
    store = store_for(None if in_object_storage else location)
    joint = None if models.joint_path is None else str(models.joint_path)
    spaces: dict = {models.joint_space: JointProjection(joint)} if text_search else {}
    fused = models.open_domain if text_search else None
    if fused is not None and fused.needs_grid:  # region evidence: computed by the actors from each photo's grid
        spaces[fused.space] = FusedProjection(joint, models.joint_key)
    spec = ModelSpec(models.encoder_name, spaces)
    report = index_with_ray(location, store, catalogue.for_workers(), spec, address=address, progress=progress)
    if text_search:
        # without region evidence the open-domain (fused) space is derived from the stored logits and joint
        # vectors, as an upgraded catalogue's is: cheap on the driver, and the actors need not load the concept space
        from vistext.indexing.local import derive_spaces

        derive_spaces(store, models.derived_spaces())
    return report
