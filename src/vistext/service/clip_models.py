"""The runnable ONNX folder of a CLIP-family model named by ``--model``: an Immich-style folder is used as it is;
an open_clip or Hugging Face folder is exported once (the workshop's exporter, torch) into
``$VISTEXT_HOME/models/onnx/<name>-<weights hash>/`` and reused from then on, by any process, without torch.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from vistext.errors import ModelError, require_extra
from vistext.models.clip_sources import (
    BUNDLED,
    IMMICH,
    PROVENANCE,
    TEXTUAL_ONNX,
    VISUAL_ONNX,
    ClipSource,
    available_models,
    identify,
    model_places,
    weights_digest,
)

EXPORTS = ("models", "onnx")
DIGEST_MEMO = "weights-sha256.json"


def export_dir(source: ClipSource, home: Path) -> tuple[Path, str]:
    """Where the export of ``source`` lives (whether made yet or not), and the SHA-256 of its weights."""
    folder = home.joinpath(*EXPORTS)
    folder.mkdir(parents=True, exist_ok=True)
    digest = weights_digest(source, folder / DIGEST_MEMO)
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", source.name).strip("-.") or "clip"
    return folder / f"{name}-{digest[:12]}", digest


def _complete(folder: Path) -> bool:
    return all((folder / part).is_file() for part in (PROVENANCE, VISUAL_ONNX, TEXTUAL_ONNX))


def prepare_clip_model(spec: str, home: Path) -> Path:
    """A ready ONNX CLIP folder (Immich's layout) for ``spec``: an Immich folder as it is, any other format exported
    once, keyed by its weights. The export is written to a temporary folder and renamed into place, so two processes
    starting at once both end with one whole folder. Exporting needs the ``[train]`` extra."""
    source = identify(spec, home)
    if source.kind == BUNDLED:
        raise ModelError(f"{spec or 'default'}: the bundled model is not a CLIP model and needs no export")
    if source.kind == IMMICH:
        return source.path
    target, digest = export_dir(source, home)
    if _complete(target):
        return target
    require_extra("train", f"exporting {source.path} to ONNX (once)")
    from vistext.training.clip_export import export_clip

    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        export_clip(source, scratch, digest)
        if target.exists() and not _complete(target):  # left half-made by hand: make it again
            shutil.rmtree(target, ignore_errors=True)
        try:
            scratch.rename(target)
        except OSError:
            if not _complete(target):  # not a concurrent export that finished first: a real failure
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def list_models(home: Path) -> dict[str, Any]:
    """What ``vistext models`` shows: each model this machine holds (name, kind, dims, path, origin, the spec that
    names it) and the folders looked through."""
    return {
        "models": [source.to_dict() for source in available_models(home)],
        "looked_in": [str(place) for place in model_places(home)],
    }
