"""``--model SPEC`` -> a CLIP model folder in the runtime's (Immich) layout, ready for ``vistext.models.clip``.

This version accepts a folder already in that layout (what Immich downloads, or what an earlier export made).
"""

from __future__ import annotations

from pathlib import Path

from vistext.errors import ModelError

RUNTIME_FILES = ("config.json", "visual/model.onnx", "visual/preprocess_cfg.json", "textual/model.onnx")


def prepare_clip_model(spec: str, home: Path) -> Path:
    """The ready folder for ``spec``: a folder path, or a name under ``home/models/``."""
    candidates = [Path(spec).expanduser(), home / "models" / spec]
    for folder in candidates:
        if folder.is_dir():
            missing = [name for name in RUNTIME_FILES if not (folder / name).is_file()]
            if missing:
                raise ModelError(f"{folder}: not a CLIP model folder in Immich's layout ({', '.join(missing)} missing)")
            return folder.resolve()
    looked = ", ".join(dict.fromkeys(str(folder) for folder in candidates))
    raise ModelError(f"{spec}: no such model here (looked in {looked}); pass a CLIP model folder")
