"""``vistext info``: what a catalogue holds, as a short readable summary (or its JSON)."""

from __future__ import annotations

import argparse
from typing import Any

from vistext.cli.options import service_for
from vistext.cli.output import emit_json, say


def run_info(args: argparse.Namespace) -> int:
    with service_for(args, read_only=True) as service:
        info = service.info().to_dict()
    if args.json:
        emit_json(info)
    else:
        for line in info_lines(info):
            say(line)
    return 0


def info_lines(info: dict[str, Any]) -> list[str]:
    """``info``'s JSON as a short readable summary: where, how many, which models and search spaces, size."""
    if not info.get("exists"):
        lines = [f"catalogue: {info['db']} (does not exist yet: run `vistext index DIR` or pass --db)"]
        if info.get("indexes_below"):
            lines.append("indexed folders below this one (pass one with --db):")
            lines.extend(f"  {folder}" for folder in info["indexes_below"])
        return lines
    lines = [f"catalogue: {info['db']} ({info.get('backend', '?')}, schema {info.get('schema_version', '?')})"]
    lines.append(f"images:    {info.get('ok', 0)} indexed, {info.get('failed', 0)} failed to read")
    models = info.get("models") or {}
    if models:
        lines.append("features:  " + ", ".join(f"{name} ({count} images)" for name, count in models.items()))
    for space, about in (info.get("space_models") or {}).items():
        lines.append(
            f"model:     {about.get('name')} ({about.get('dim')}-d, space {space}, from {about.get('source')})"
        )
    spaces = info.get("spaces") or {}
    if spaces:
        lines.append("spaces:")
        width = max(len(name) for name in spaces)
        for name, space in spaces.items():
            lines.append(_space_line(name, space, width))
    lines += metadata_lines(info.get("metadata") or {})
    if "db_bytes" in info:
        catalogue, vectors = _size(info["db_bytes"]), _size(info.get("index_bytes", 0))
        lines.append(f"on disk:   {catalogue} catalogue + {vectors} vector index")
    return lines


def _space_line(name: str, space: dict[str, Any], width: int) -> str:
    """One search space of ``info``: a space without vectors yet (every photo failed) has no dimension."""
    uses = {"image": "similar images", "fused": "text search", "joint": "text search (joint model part)",
            "attributes": "colour and light words"}  # fmt: skip
    use = uses.get(name.split(":")[0], "")
    dim = "?" if space.get("dim") is None else space["dim"]
    index, size = space.get("index") or "?", space.get("size") or 0
    if index == "pending":  # a PostgreSQL load was interrupted before it built the index
        use = f"{use}; searched exactly until the next `vistext index` builds its index".lstrip("; ")
    if space.get("lead"):  # a PostgreSQL index over the vectors' leading directions
        use = f"{use}; index over {space['lead']}-d leads".lstrip("; ")
    return f"  {name:<{width}}  {dim:>5}-d  {index:<7} {size:>8} vectors  {use}".rstrip()


def metadata_lines(meta: dict[str, Any]) -> list[str]:
    """``info``'s metadata summary: dates, cameras, GPS, folders and collection tags."""
    if not meta:
        return []
    lines = []
    if meta.get("first"):
        lines.append(f"taken:     {meta['first'][:10]} to {meta['last'][:10]}")
    read = meta.get("with_meta", 0)
    lines.append(f"metadata:  {read} photos read, {meta.get('has_gps', 0)} with GPS position")
    cameras = meta.get("cameras") or {}
    if cameras:
        shown = ", ".join(f"{name} ({n})" for name, n in list(cameras.items())[:5])
        lines.append(f"cameras:   {shown}" + (f" and {len(cameras) - 5} more" if len(cameras) > 5 else ""))
    folders = meta.get("folders") or {}
    if folders:
        shown = ", ".join(f"{name} ({n})" for name, n in list(folders.items())[:5])
        lines.append(f"folders:   {shown}" + (f" and {len(folders) - 5} more" if len(folders) > 5 else ""))
    tags = meta.get("tags") or {}
    if tags:
        shown = ", ".join(f"{name} ({n})" for name, n in list(tags.items())[:8])
        lines.append(f"tags:      {shown}" + (f" and {len(tags) - 8} more" if len(tags) > 8 else ""))
    text = meta.get("text") or {}
    if text.get("ocr") or text.get("with_text"):
        waiting = f", {text['unread']} not read yet (run `vistext index DIR --ocr`)" if text.get("unread") else ""
        state = "read at index time" if text.get("ocr") else "not read any more (--no-ocr)"
        lines.append(f"text:      {state}; {text.get('with_text', 0)} photos hold text{waiting}")
    for name, done in (meta.get("unfinished_tagging") or {}).items():
        lines.append(f"tagging:   {name} is incomplete: its pass stopped after {done['images']} of {done['total']} "
                     "photos (run `vistext tag --collection` with that tagger again to finish)")  # fmt: skip
    return lines


def _size(count: int) -> str:
    value = count / 1024
    for unit in ("KB", "MB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"
