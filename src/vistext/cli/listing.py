"""``vistext list`` and ``vistext export``: the collection's photos under filters, with metadata and tags; the
filter options every collection command shares; ``vistext tag --collection``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from vistext.cli.output import emit_json, say
from vistext.errors import UsageError
from vistext.paths import atomic_path
from vistext.service import ImageFilter
from vistext.service.filters import parse_filter


def add_filters(parser: argparse.ArgumentParser) -> None:
    """``--after --before --camera --near --folder --tag``: only photos passing all of them."""
    group = parser.add_argument_group("filters (only photos passing all of them)")
    group.add_argument("--after", metavar="DATE", help="taken on or after this date (YYYY-MM-DD, EXIF time)")
    group.add_argument("--before", metavar="DATE", help="taken before this date (YYYY-MM-DD)")
    group.add_argument("--camera", help="camera make or model contains this (case-insensitive)")
    group.add_argument("--near", metavar="LAT,LON,KM", help="GPS position within KM km of LAT,LON")
    group.add_argument("--folder", help="in this folder or below (relative to the indexed folder, or absolute)")
    group.add_argument("--tag", help="has this collection tag (stored by `index --tagger` / `tag --collection`)")


def filter_from(args: argparse.Namespace) -> ImageFilter | None:
    """The filter the options give, or None when none was given."""
    found = parse_filter(
        *(getattr(args, name, None) for name in ("after", "before", "camera", "near", "folder", "tag"))
    )
    return None if found.empty else found


def _summary(item: dict[str, Any]) -> str:
    meta = item.get("meta") or {}
    parts = []
    if meta.get("taken"):
        parts.append(meta["taken"].replace("T", " "))
    camera = " ".join(p for p in (meta.get("camera_make"), meta.get("camera_model")) if p)
    if camera:
        parts.append(camera)
    if meta.get("latitude") is not None:
        parts.append(f"{meta['latitude']:.4f},{meta['longitude']:.4f}")
    if item.get("tags"):
        parts.append(", ".join(f"{t['tag']} {t['score']:.2f}" for t in item["tags"][:5]))
    return "  ".join(parts)


def run_list(args: argparse.Namespace) -> int:
    from vistext.cli.collection import service_for

    with service_for(args) as service:
        result = service.list_images(filter_from(args), args.k, args.offset).to_dict()
    if args.json:
        emit_json(result)
        return 0
    if not result["results"]:
        say("no photos match" if result["filter"] else "no photos indexed")
    for item in result["results"]:
        details = _summary(item)
        say(f"{item['id']:6d}  {item['path']}" + (f"\n        {details}" if details else ""))
    shown = len(result["results"])
    if result["total"] > shown:
        say(f"{shown} of {result['total']} photos (from {args.offset}; see -k and --offset)")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from vistext.cli.collection import service_for

    with service_for(args) as service:
        lines = service.export_lines(filter_from(args), args.format)
        count = -1 if args.format == "csv" else 0  # the CSV header is not a photo
        if args.out is None:
            for line in lines:
                sys.stdout.write(line)
                count += 1
            return 0
        if args.out.is_dir():
            raise UsageError(f"{args.out}: is a folder; give a file name (e.g. {args.out / ('photos.' + args.format)})")
        with atomic_path(args.out) as temporary, temporary.open("w", encoding="utf-8", newline="") as out:
            for line in lines:
                out.write(line)
                count += 1
    say(f"wrote {max(count, 0)} photos to {args.out}")
    return 0


def run_tag_collection(args: argparse.Namespace) -> int:
    """``vistext tag --collection --model DIR``: store the tagger's tags of every indexed photo."""
    from vistext.cli.collection import service_for

    if not args.model:
        raise UsageError("tag --collection needs --model DIR (a tagger trained with `vistext train tagger`)")
    if args.images:
        raise UsageError("tag --collection tags the indexed collection (pass --db); do not list images")
    with service_for(args) as service:
        report = service.tag_collection(args.model).to_dict()
    if args.json:
        emit_json(report)
        return 0
    say(f"tagged {report['tagged']} of {report['images']} photos with {report['tagger']}")
    for tag, count in list(report["tags"].items())[:20]:
        say(f"  {count:6d}  {tag}")
    return 0


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from vistext.cli.collection import add_db

    listing = commands.add_parser("list", parents=[common], help="indexed photos with metadata and tags (filterable)")
    listing.add_argument("-k", type=int, default=50, help="how many photos (default 50)")
    listing.add_argument("--offset", type=int, default=0, help="skip this many (paging)")
    add_filters(listing)
    add_db(listing)
    listing.set_defaults(run=run_list)

    export = commands.add_parser("export", parents=[common], help="write the photos' paths, tags and metadata")
    export.add_argument("--format", choices=("csv", "jsonl"), default="csv", help="csv (default) or jsonl")
    export.add_argument("--out", type=Path, help="write to this file (default: standard output)")
    add_filters(export)
    add_db(export)
    export.set_defaults(run=run_export)
