"""Which image-text model a ``--model`` spec names, and what format its files are in (no torch, nothing loaded).

A spec is the bundled default (``None``, ``"default"``), a folder (open_clip's checkpoint layout, an Immich-style
ONNX folder, a Hugging Face ``CLIPModel`` folder), a folder name under ``$VISTEXT_HOME/models/``, or a published
name (``hf-hub:org/name`` or ``org/name``) that Hugging Face Hub's own client fetches into its usual cache when
online and finds there when offline. ``identify`` answers with a ``ClipSource``; ``available_models`` lists what this
machine holds. Turning a source into the runnable ONNX folder is ``service.clip_models``'s job.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vistext.errors import ModelError
from vistext.models.card import shipped_dir
from vistext.paths import atomic_write

BUNDLED = "bundled"
OPEN_CLIP = "open_clip"
IMMICH = "immich"
HUGGING_FACE = "huggingface"

DEFAULT_NAMES = ("", "default", BUNDLED)
HUB_PREFIX = "hf-hub:"
OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = (("tokenizer.json",), ("vocab.json", "merges.txt"))
ONNX_CONFIG = "config.json"
VISUAL_ONNX = Path("visual", "model.onnx")
TEXTUAL_ONNX = Path("textual", "model.onnx")
PREPROCESS_CFG = Path("visual", "preprocess_cfg.json")
# files of published repositories no format here reads: other frameworks' weights, Immich's NPU builds
HUB_SKIPPED = ["*.msgpack", "*.h5", "*.ot", "flax_model*", "tf_model*", "*.armnn", "*.rknn", "*/fp16/*", "*/rk*/*"]
PROVENANCE = "vistext-clip.json"  # written by vistext's exporter beside an Immich-layout folder it made


@dataclass(frozen=True)
class ClipSource:
    """One image-text model found on disk: its format (``kind``), folder, dimensions and where it came from."""

    spec: str
    kind: str
    name: str
    path: Path
    dims: int | None
    origin: str
    weights: tuple[Path, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "dims": self.dims,
            "path": str(self.path),
            "origin": self.origin,
            "spec": self.spec,
        }


def read_json_object(file: Path) -> dict[str, Any]:
    """A CLIP folder's JSON file (config, preprocessing, tokenizer config) as a dict; one-line ModelError else."""
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ModelError(f"{file}: cannot read ({error})") from None
    except json.JSONDecodeError as error:
        raise ModelError(f"{file}: not valid JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(data, dict):
        raise ModelError(f"{file}: expected a JSON object")
    return data


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _first_file(folder: Path, names: tuple[str, ...]) -> Path | None:
    return next((folder / name for name in names if (folder / name).is_file()), None)


def _has_tokenizer(folder: Path) -> bool:
    return any(all((folder / name).is_file() for name in group) for group in TOKENIZER_FILES)


def _immich(folder: Path, spec: str, origin: str, name: str) -> ClipSource:
    missing = [str(part) for part in (ONNX_CONFIG, VISUAL_ONNX, TEXTUAL_ONNX) if not (folder / part).is_file()]
    if missing:
        raise ModelError(f"{folder}: an Immich-style ONNX CLIP folder, but {', '.join(missing)} missing")
    dims = _int(read_json_object(folder / ONNX_CONFIG).get("embed_dim"))
    return ClipSource(spec, IMMICH, name, folder, dims, origin, (folder / VISUAL_ONNX, folder / TEXTUAL_ONNX))


def _open_clip(folder: Path, spec: str, origin: str, name: str) -> ClipSource:
    weights = _first_file(folder, OPEN_CLIP_WEIGHTS)
    if weights is None:
        raise ModelError(f"{folder}: has {OPEN_CLIP_CONFIG} but no weights ({' or '.join(OPEN_CLIP_WEIGHTS)})")
    config = read_json_object(folder / OPEN_CLIP_CONFIG)
    model_cfg = config.get("model_cfg", config)
    dims = _int(model_cfg.get("embed_dim")) if isinstance(model_cfg, dict) else None
    return ClipSource(spec, OPEN_CLIP, name, folder, dims, origin, (weights,))


def _hf_shards(folder: Path) -> tuple[Path, ...]:
    """The weight files a sharded Hugging Face checkpoint's index names (none when there is no index)."""
    index = _first_file(folder, tuple(f"{name}.index.json" for name in HF_WEIGHTS))
    if index is None:
        return ()
    shards = sorted(set(read_json_object(index).get("weight_map", {}).values()))
    missing = [shard for shard in shards if not (folder / shard).is_file()]
    if missing or not shards:
        raise ModelError(f"{index}: weight shards missing ({', '.join(missing[:3]) or 'none listed'})")
    return tuple(folder / shard for shard in shards)


def _hugging_face(folder: Path, config: dict[str, Any], spec: str, origin: str, name: str) -> ClipSource:
    single = _first_file(folder, HF_WEIGHTS)
    weights = (single,) if single is not None else _hf_shards(folder)
    if not weights:
        raise ModelError(f"{folder}: a Hugging Face CLIP folder without weights ({' or '.join(HF_WEIGHTS)})")
    if not _has_tokenizer(folder):
        raise ModelError(f"{folder}: a Hugging Face CLIP folder without tokenizer.json (or vocab.json + merges.txt)")
    return ClipSource(spec, HUGGING_FACE, name, folder, _int(config.get("projection_dim")), origin, weights)


def folder_format(folder: Path) -> str | None:
    """The format ``folder``'s files say a CLIP model is in (``IMMICH``, ``OPEN_CLIP``, ``HUGGING_FACE``), from
    their names and a Hugging Face config's model type only, nothing loaded; None when none fits."""
    if (folder / VISUAL_ONNX).is_file() or (folder / TEXTUAL_ONNX).is_file():
        return IMMICH
    if (folder / OPEN_CLIP_CONFIG).is_file():
        return OPEN_CLIP
    try:
        config = read_json_object(folder / ONNX_CONFIG) if (folder / ONNX_CONFIG).is_file() else {}
    except ModelError:
        return None
    if config.get("model_type") == "clip" or "CLIPModel" in (config.get("architectures") or ()):
        return HUGGING_FACE
    return None


def identify_folder(folder: Path, spec: str | None = None, origin: str = "path", name: str | None = None) -> ClipSource:
    """The format of the model in ``folder``; a ModelError names the folder and what is missing or unknown."""
    folder = folder.expanduser()
    spec = spec if spec is not None else str(folder)
    name = name or folder.resolve().name
    if not folder.is_dir():
        raise ModelError(
            f"{folder}: {'not a folder' if folder.exists() else 'no such folder'} (give the model's folder)"
        )
    kind = folder_format(folder)
    if kind == IMMICH:
        return _immich(folder, spec, origin, name)
    if kind == OPEN_CLIP:
        return _open_clip(folder, spec, origin, name)
    if (folder / ONNX_CONFIG).is_file():
        config = read_json_object(folder / ONNX_CONFIG)  # one that cannot be read is named as such
        if kind == HUGGING_FACE:
            return _hugging_face(folder, config, spec, origin, name)
    raise ModelError(
        f"{folder}: not a CLIP model folder (expected {OPEN_CLIP_CONFIG} + weights, visual/ and textual/ "
        "model.onnx + config.json, or a Hugging Face config.json with model_type clip)"
    )


def bundled_source() -> ClipSource:
    """The model that ships with vistext (the default of every command)."""
    folder = shipped_dir("joint-default")
    dims = _int(read_json_object(folder / ONNX_CONFIG).get("output_dim")) if (folder / ONNX_CONFIG).is_file() else None
    return ClipSource(BUNDLED, BUNDLED, "joint-default", folder, dims, "shipped with vistext")


def hub_cache() -> Path:
    """Hugging Face Hub's cache folder, as its own client works it out from the environment."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface"
    return Path(home) / "hub"


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _published(spec: str, repo: str, also: str = "") -> ClipSource:
    """``repo`` from Hugging Face Hub: its client fetches it into its cache when online, else finds it there."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    except ImportError:
        raise ModelError(
            f"{spec}: fetching a published model needs huggingface_hub (pip install huggingface_hub)"
        ) from None
    offline = _offline()
    try:
        folder = snapshot_download(
            repo, cache_dir=hub_cache(), local_files_only=offline, etag_timeout=10, ignore_patterns=HUB_SKIPPED
        )
    except LocalEntryNotFoundError:
        why = "offline (HF_HUB_OFFLINE=1)" if offline else "the Hub cannot be reached"
        raise ModelError(
            f"{spec}: {also}not in the Hugging Face cache ({hub_cache()}) and {why}; copy the model folder onto this "
            "machine and pass its path to --model"
        ) from None
    except (HfHubHTTPError, ValueError, OSError) as error:
        raise ModelError(f"{spec}: cannot fetch {repo} from Hugging Face Hub ({error})") from None
    return identify_folder(Path(folder), spec, f"Hugging Face Hub {repo}", repo.replace("/", "--"))


def identify(spec: str | None, home: Path | None = None) -> ClipSource:
    """The model ``spec`` names: bundled default, a folder, a name under ``home/models/``, or a published name."""
    text = (spec or "").strip()
    if text in DEFAULT_NAMES:
        return bundled_source()
    if text.startswith(HUB_PREFIX):
        return _published(text, text[len(HUB_PREFIX) :])
    path = Path(text).expanduser()
    if path.exists():
        return identify_folder(path, text)
    looked = [str(path)]
    if home is not None and path.name == text:
        local = home / "models" / text
        if local.is_dir():
            return identify_folder(local, text, "$VISTEXT_HOME/models")
        looked.append(str(local))
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):
        return _published(text, text, f"no such folder ({', '.join(looked)}) and ")
    raise ModelError(f"model {text!r} not found (looked in: {', '.join(looked)}); see `vistext models`")


def _candidates(folder: Path) -> list[Path]:
    """The sub-folders of ``folder``; none when it is absent or unreadable (a cache of another user's)."""
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    except OSError:
        return []


def _hub_snapshots() -> list[tuple[str, Path]]:
    """(repo id, newest snapshot folder) of each model repository in the Hugging Face cache."""
    found = []
    for repo in _candidates(hub_cache()):
        if not repo.name.startswith("models--"):
            continue
        snapshots = _candidates(repo / "snapshots")
        if snapshots:
            newest = max(snapshots, key=lambda p: p.stat().st_mtime)
            found.append((repo.name.removeprefix("models--").replace("--", "/"), newest))
    return found


def _immich_caches() -> list[Path]:
    roots = [os.environ.get("MACHINE_LEARNING_CACHE_FOLDER"), "/cache", str(Path.home() / ".cache" / "immich")]
    return [Path(root) / "clip" for root in roots if root]


def model_places(home: Path) -> list[Path]:
    """The folders ``available_models`` looks through, in its order."""
    return [home / "models", hub_cache(), Path.home() / ".cache" / "clip", *_immich_caches()]


def available_models(home: Path) -> list[ClipSource]:
    """Every image-text model this machine holds: bundled, under ``home/models/`` (the ONNX exports vistext made
    itself in ``home/models/onnx/`` excepted), in the Hugging Face cache, open_clip's and Immich's caches.
    Folders that are not a CLIP model are passed over."""
    found = [bundled_source()]
    places: list[tuple[Path, str, str, str]] = [
        (folder, folder.name, "$VISTEXT_HOME/models", folder.name)
        for folder in _candidates(home / "models")
        if folder.name != "onnx"
    ]
    places += [(folder, f"hf-hub:{repo}", "Hugging Face cache", repo) for repo, folder in _hub_snapshots()]
    for cache, origin in [(Path.home() / ".cache" / "clip", "open_clip cache")] + [
        (c, "Immich cache") for c in _immich_caches()
    ]:
        places += [(folder, str(folder), origin, folder.name) for folder in _candidates(cache)]
    for folder, spec, origin, name in places:
        try:
            found.append(identify_folder(folder, spec, origin, name))
        except (ModelError, OSError):
            continue
    return found


def weights_digest(source: ClipSource, memo: Path | None = None) -> str:
    """SHA-256 over the source's weight files (see ``files_digest``)."""
    return files_digest(source.weights, memo)


def files_digest(files: Sequence[Path], memo: Path | None = None) -> str:
    """SHA-256 over ``files``' bytes, in order; with ``memo`` (a JSON file), remembered by path, size and mtime
    so a 600 MB checkpoint is read once, not at every query (a memo that cannot be written costs a re-read)."""
    known: dict[str, str] = {}
    if memo is not None and memo.is_file():
        try:
            loaded = json.loads(memo.read_text(encoding="utf-8"))
            known = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            known = {}
    keys = []
    for file in files:
        stat = file.stat()
        keys.append(f"{file.resolve()}|{stat.st_size}|{stat.st_mtime_ns}")
    key = ";".join(keys)
    if key in known:
        return known[key]
    digest = hashlib.sha256()
    for file in files:
        with file.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    value = digest.hexdigest()
    if memo is not None:
        known[key] = value
        try:
            atomic_write(memo, json.dumps(known, indent=1), fsync=False)
        except OSError:
            pass  # a read-only home only costs the next run another hash
    return value
