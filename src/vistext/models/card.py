"""The model card: what every saved model directory carries, and where a named model is found.

A saved model is a directory holding ``config.json`` (the card: ``format``, ``format_version``, registered
names, dims, preprocessing, training data, metrics) + ``model.safetensors`` (+ ``model.onnx`` or a vocabulary
when the model needs one). ``format`` says which kind of model it is; ``KINDS`` maps each kind to its format
name and the version this vistext reads. The card knows no model class: each kind's module reads and writes its
cards through this one, and ``vistext.models.loading.load_model``, above them all, opens whatever a card says.

Taggers and matchers saved before the key was unified carry ``version`` instead of ``format_version``; it is
still read, never written.

Weights resolve in one order (``resolve_model_dir``): an explicit directory, ``$VISTEXT_HOME/models/NAME``,
then ``NAME`` shipped inside the package under ``vistext/models/pretrained/``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from vistext.errors import ModelError
from vistext.paths import atomic_write, vistext_home

CARD_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
ONNX_FILE = "model.onnx"
VERSION_KEY = "format_version"
_LEGACY_VERSION_KEY = "version"  # what taggers and matchers wrote before VERSION_KEY: read, never written


@dataclass(frozen=True)
class ModelKind:
    """One kind of saved model: its card's ``format`` and ``format_version`` (``vistext.models.loading`` knows
    how to load it)."""

    name: str  # "joint", "tagger", "matcher", "concepts"
    format: str  # the card's ``format`` value
    version: int  # the ``format_version`` this vistext reads and writes
    what: str  # how messages call it
    retrain: str  # what a user whose model is too old or too new should do
    default: str | None = None  # the shipped model used when no name is given


KINDS: dict[str, ModelKind] = {
    kind.name: kind
    for kind in (
        ModelKind("joint", "vistext-joint", 1, "joint model", "retrain or upgrade vistext", default="joint-default"),
        ModelKind("tagger", "vistext-tagger", 1, "tagger", "retrain with `vistext train tagger`"),
        ModelKind(
            "matcher",
            "vistext-matcher",
            1,
            "match model",
            "retrain it with `vistext train matcher`",
            default="matcher-default",
        ),  # fmt: skip
        ModelKind(
            "concepts",
            "vistext-concepts",
            1,
            "concept space",
            "rebuild it with `vistext train concepts`",
            default="concepts-default",
        ),  # fmt: skip
        ModelKind(
            "default-tags",
            "vistext-default-tags",
            1,
            "default tag vocabulary",
            "rebuild it with bench/default_tags.py --write",
            default="default-tags",
        ),  # fmt: skip
        ModelKind(
            "presence",
            "vistext-presence",
            1,
            "presence model",
            "rebuild it with bench/presence.py --write",
            default="presence-person",
        ),  # fmt: skip
    )
}


def _kind(name: str) -> ModelKind:
    try:
        return KINDS[name]
    except KeyError:
        raise ModelError(f"unknown model kind {name!r}; known: {', '.join(KINDS)}") from None


def _load(directory: Path, what: str) -> tuple[Path, dict[str, Any]]:
    file = directory / CARD_FILE
    if not file.is_file():
        raise ModelError(f"{directory}: not a {what} directory (no {CARD_FILE})")
    try:
        card = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelError(f"{file}: unreadable {what} config ({error})") from None
    if not isinstance(card, dict):
        raise ModelError(f"{file}: unreadable {what} config (not a JSON object)")
    return file, card


def card_version(card: dict[str, Any]) -> Any:
    """The card's format version (``format_version``, or the older ``version`` key)."""
    return card[VERSION_KEY] if VERSION_KEY in card else card.get(_LEGACY_VERSION_KEY)


def _kind_of(file: Path, card: dict[str, Any]) -> ModelKind:
    for kind in KINDS.values():
        if card.get("format") == kind.format:
            return kind
    known = ", ".join(kind.format for kind in KINDS.values())
    raise ModelError(f"{file}: not a vistext model (format {card.get('format')!r}; known: {known})")


def read_card(directory: str | Path, kind: str | None = None) -> dict[str, Any]:
    """The checked card of a saved model: of ``kind`` when given, else of any known kind. A missing card, a
    wrong format or an unsupported version is a one-line ModelError naming the file and what to do."""
    expected = _kind(kind) if kind is not None else None
    file, card = _load(Path(directory), expected.what if expected else "vistext model")
    if expected is not None and card.get("format") != expected.format:
        raise ModelError(f"{file}: not a vistext {expected.what} (format {card.get('format')!r})")
    found = expected or _kind_of(file, card)
    version = card_version(card)
    if version != found.version:
        raise ModelError(
            f"{file}: {found.what} format version {version!r} is not supported "
            f"(this vistext reads version {found.version}); {found.retrain}"
        )
    return card


def write_card(directory: str | Path, kind: str, fields: dict[str, Any]) -> Path:
    """Write ``directory/config.json``: the kind's ``format`` and ``format_version``, then ``fields`` (any
    ``format`` or ``format_version`` among them, e.g. carried over from a loaded card, is the kind's own).

    Written atomically (a temporary file in the same directory, then renamed), so a reader never sees half a
    card and an interrupted save leaves the previous card in place."""
    spec = _kind(kind)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    carried = {k: v for k, v in fields.items() if k not in ("format", VERSION_KEY)}
    card = {"format": spec.format, VERSION_KEY: spec.version, **carried}
    target = directory / CARD_FILE
    atomic_write(target, json.dumps(card, indent=2) + "\n")
    return target


def model_kind(directory: str | Path) -> str:
    """Which kind of model (``joint``, ``tagger``, ``matcher``) a saved directory holds, from its card."""
    file, card = _load(Path(directory), "vistext model")
    return _kind_of(file, card).name


def shipped_dir(name: str) -> Path:
    """Where the package keeps the shipped model ``name`` (which may not exist)."""
    return Path(str(files("vistext.models").joinpath("pretrained", name)))


def resolve_model_dir(name_or_path: str | Path | None, kind: str | None = None) -> Path:
    """The directory of a saved model: ``name_or_path`` itself when it is a directory, else
    ``$VISTEXT_HOME/models/NAME``, else ``NAME`` shipped with vistext. ``None`` means the kind's shipped
    default (``joint-default``, ``matcher-default``). Raises a ModelError listing where it looked."""
    spec = _kind(kind) if kind is not None else None
    what = spec.what if spec is not None else "model"
    if name_or_path is None:
        if spec is None or spec.default is None:
            raise ModelError(f"no {what} given and there is no default one")
        name_or_path = spec.default
    explicit = Path(name_or_path)
    looked = [explicit]
    if explicit.is_dir():
        return explicit
    name = str(name_or_path)
    if explicit.name == name and name not in (".", ".."):  # a bare name, not a path: look it up
        looked += [vistext_home() / "models" / name, shipped_dir(name)]
        for candidate in looked[1:]:
            if candidate.is_dir():
                return candidate
    raise ModelError(f"{what} {name!r} not found (looked in: {', '.join(str(p) for p in looked)})")
