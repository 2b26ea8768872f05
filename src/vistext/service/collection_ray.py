"""``Collection.index(..., engine="ray")``: the collection's store and models handed to the Ray engine.

Workers open the store themselves, so they get where it is rather than the open store (``for_workers``: a
server's URL, or the embedded catalogue's absolute path); and they build the models from names (the image
encoder's registered name, the joint model's folder and fingerprint) because an ONNX session cannot travel
between processes. The fused space is one of them: the actors make it where they make the joint vectors.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vistext.errors import UsageError

if TYPE_CHECKING:
    from vistext.indexing.local import IndexReport
    from vistext.service.loaded_models import LoadedModels
    from vistext.service.location import CatalogueLocation
    from vistext.store import Store


def check_engine(engine: str, address: str | None, folder: str | Path, deadline: float | None = None) -> None:
    """Refuse, in one line, an unknown indexing engine, ``address`` or ``deadline`` without Ray, a deadline that
    is not a positive number of seconds, or a local folder that is not one."""
    if engine not in ("local", "ray"):
        raise UsageError(f"unknown indexing engine {engine!r}; known: local, ray")
    if address is not None and engine != "ray":
        raise UsageError(f"--address {address} is for --engine ray; the local engine runs on this machine")
    if deadline is not None and engine != "ray":
        raise UsageError(f"--deadline {deadline:g} is for --engine ray; the local engine cannot stall on a cluster")
    if deadline is not None and not deadline > 0:
        raise UsageError(f"--deadline {deadline:g}: must be a positive number of seconds")
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
    deadline: float | None = None,
) -> IndexReport:
    """A collection's ``index(location, engine="ray")``: a folder every node can read, or ``s3://bucket/prefix``
    (which needs a catalogue named by ``db``); ``store_for(folder)`` opens the collection's store for it.
    ``deadline``: seconds without a finished photo before the run ends (None: ``ray_watch.DEFAULT_DEADLINE``)."""
    from vistext.indexing.ray_engine import index_with_ray
    from vistext.indexing.ray_stages import ModelSpec
    from vistext.indexing.ray_watch import DEFAULT_DEADLINE
    from vistext.indexing.sources import is_object_url

    in_object_storage = is_object_url(location)
    if in_object_storage and db is None:
        raise UsageError(f"{location}: photos in object storage need a catalogue: pass --db")
    if not in_object_storage and not Path(location).is_dir():
        raise UsageError(f"{location}: not a folder")
    store = store_for(None if in_object_storage else location)
    spec = ModelSpec(models.encoder_name, *(_text_spaces(models) if text_search else ({}, {})))
    return index_with_ray(
        location, store, catalogue.for_workers(), spec, address=address, progress=progress,
        deadline=DEFAULT_DEADLINE if deadline is None else deadline,
    )  # fmt: skip


def _text_spaces(models: LoadedModels) -> tuple[dict[str, Any], dict[str, Any]]:
    """The projectors and derivations of the text-search spaces, as the model actors build them: the joint
    space, and the fused space (from the classifier's logits and the joint vector) where the models have one,
    computed in the actors where the vectors are made."""
    from vistext.indexing.ray_stages import FusedDerivation, JointProjection

    joint = None if models.joint_path is None else str(models.joint_path)
    projectors: dict[str, Any] = {models.joint_space: JointProjection(joint)}
    fused = models.open_domain
    if fused is None:
        return projectors, {}
    if fused.needs_grid:  # its evidence comes from each photo's feature grid, which the actors do not keep
        raise UsageError("the concept space reads region evidence from the feature grid, which the Ray engine "
                         "does not compute: index with the local engine")  # fmt: skip
    return projectors, {fused.space: FusedDerivation(fused.space, joint, models.joint_key)}
