"""Dataset readers, one module per format, opened by a ``FORMAT:PATH[?option=value&...]`` spec.

Caption formats: flickr8k, coco, csv, jsonl, folder. Tagged formats: csv, jsonl, folder, classes, unsplash, esp.
``tags_from_captions`` turns a caption dataset into a tagged one.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from vistext.datasets import classes, coco, esp, flickr8k, folder, tabular, unsplash  # noqa: F401  (registers formats)
from vistext.datasets.base import (
    CAPTION_FORMATS,
    TAGGED_FORMATS,
    Caption,
    CaptionDataset,
    TaggedDataset,
    TaggedImage,
    hash_split,
)
from vistext.datasets.caption_tags import CaptionTags, tags_from_captions
from vistext.errors import UsageError
from vistext.registry import Registry

__all__ = [
    "Caption",
    "CaptionDataset",
    "CaptionTags",
    "TaggedDataset",
    "TaggedImage",
    "caption_formats",
    "hash_split",
    "open_caption_dataset",
    "open_tagged_dataset",
    "parse_spec",
    "tagged_formats",
    "tags_from_captions",
]


def _value(text: str) -> object:
    lowered = text.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_spec(spec: str) -> tuple[str, Path, dict[str, object]]:
    """``"unsplash:DIR?min_confidence=30"`` -> ``("unsplash", Path("/abs/DIR"), {"min_confidence": 30})``."""
    fmt, sep, rest = spec.partition(":")
    if not sep or not fmt or not rest:
        raise UsageError(f"{spec!r}: expected FORMAT:PATH, e.g. flickr8k:DIR or csv:FILE")
    path, _, query = rest.partition("?")
    options: dict[str, object] = {}
    for pair in filter(None, query.split("&")):
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise UsageError(f"{spec!r}: option {pair!r} is not key=value")
        options[key.strip()] = _value(value.strip())
    # absolute, so image paths stay valid whatever the caller's working directory later becomes
    return fmt.strip().lower(), Path(path).expanduser().absolute(), options


def _open(spec: str, registry: Registry, kind: str):  # type: ignore[type-arg]
    fmt, path, options = parse_spec(spec)
    if fmt not in registry:
        raise UsageError(f"unknown {kind} dataset format {fmt!r}; known: {', '.join(registry.names())}")
    maker = registry.get(fmt)
    accepted = set(inspect.signature(maker).parameters) - {"path"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        known = ", ".join(sorted(accepted)) or "none"
        raise UsageError(f"{spec!r}: unknown option(s) {', '.join(unknown)} for {fmt}; known: {known}")
    return maker(path, **options)


def open_caption_dataset(spec: str) -> CaptionDataset:
    """Open a caption dataset, e.g. ``flickr8k:../shared/datasets/flickr8k``, ``coco:DIR``, ``csv:FILE``."""
    return _open(spec, CAPTION_FORMATS, "caption")


def open_tagged_dataset(spec: str) -> TaggedDataset:
    """Open a tagged dataset, e.g. ``csv:tags.csv``, ``folder:DIR``, ``unsplash:DIR?min_confidence=30``."""
    return _open(spec, TAGGED_FORMATS, "tagged")


def caption_formats() -> list[str]:
    return CAPTION_FORMATS.names()


def tagged_formats() -> list[str]:
    return TAGGED_FORMATS.names()
