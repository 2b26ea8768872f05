"""``Collection.index(..., engine="ray")``: the collection's store and models handed to the Ray engine.

Workers open the store themselves, so they get where it is rather than the open store: a server's URL, or the
embedded catalogue's absolute path; and they build the models from names (the image encoder's registered name,
the joint model's folder) because an ONNX session cannot travel between processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from vistext.errors import UsageError

if TYPE_CHECKING:
    from vistext.indexing.local import IndexReport
    from vistext.service.collection import Collection


def index_on_ray(collection: Collection, location: str, text_search: bool, address: str | None) -> IndexReport:
    """Index a folder every node can read, or ``s3://bucket/prefix``, into the collection's store on Ray."""
    from vistext.indexing.ray_engine import index_with_ray
    from vistext.indexing.ray_stages import JointProjection, ModelSpec
    from vistext.indexing.sources import is_object_url

    in_object_storage = is_object_url(location)
    if in_object_storage and collection.db is None:
        raise UsageError(f"{location}: photos in object storage need a catalogue: pass --db")
    if not in_object_storage and not Path(location).is_dir():
        raise UsageError(f"{location}: not a folder")
    folder = None if in_object_storage else Path(location)
    store = collection.store(create=True, folder=folder)
    store_uri = str(collection.db) if collection.remote else str(collection.db_path(folder).resolve())
    models = collection.models
    joint = None if models.joint_path is None else str(models.joint_path)
    spaces = {models.joint_space: JointProjection(joint)} if text_search else {}
    spec = ModelSpec(models.encoder_name, spaces)
    report = index_with_ray(location, store, store_uri, spec, address=address, progress=collection.progress)
    if text_search:
        # the open-domain (fused) space is derived from the stored logits and joint vectors, as an upgraded
        # catalogue's is: cheap on the driver, and the actors need not load the concept space
        from vistext.indexing.local import derive_spaces

        derive_spaces(store, models.derived_spaces())
    return report
