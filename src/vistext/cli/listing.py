"""``vistext list`` and ``vistext export``: the collection's photos under filters, with metadata and tags;
``vistext tag --collection``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from vistext.cli.options import add_db, add_filters, filter_from, service_for, whole
from vistext.cli.output import emit_json, say
from vistext.errors import UsageError
from vistext.paths import atomic_path


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
    if item.get("text"):
        parts.append(f"text: {item['text'] if len(item['text']) <= 60 else item['text'][:59] + '…'}")
    return "  ".join(parts)


def run_list(args: argparse.Namespace) -> int:
    with service_for(args, read_only=True) as service:
        result = service.list_images(filter_from(args), args.k, args.offset, args.cursor).to_dict()
    if args.json:
        emit_json(result)
        return 0
    if not result["results"] and result["total"]:
        say(f"no photos from {args.offset} on ({result['total']} in all)")
    elif not result["results"]:
        say("no photos match" if result["filter"] else "no photos indexed")
    for item in result["results"]:
        say(f"{item['id']:6d}  {item['path']}")
        details = _summary(item)
        if details:
            say(f"        {details}")
    shown = len(result["results"])
    if result["total"] is not None and result["total"] > shown and shown:
        say(f"{shown} of {result['total']} photos (from {args.offset}; see -k and --offset)")
    if result["next_cursor"] and args.cursor is not None:
        say(f"next page: --cursor {result['next_cursor']}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    with service_for(args, read_only=True) as service:
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
    if not args.model:
        raise UsageError("tag --collection needs --model DIR (a tagger trained with `vistext train tagger`)")
    if args.images:
        raise UsageError("tag --collection tags the indexed collection (pass --db); do not list images")
    with service_for(args) as service:
        report = service.tag_collection(args.model).to_dict()
    if args.json:
        emit_json(report)
        return 0
    if report.get("resumed"):
        say(f"resumed an interrupted pass after the {report['resumed']} photos it had tagged")
    say(f"tagged {report['tagged']} of {report['images']} photos with {report['tagger']}")
    for tag, count in list(report["tags"].items())[:20]:
        say(f"  {count:6d}  {tag}")
    return 0


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    listing = commands.add_parser(
        "list", parents=[common], help="indexed photos newest first, with metadata and tags (filterable)"
    )
    listing.add_argument("-k", type=int, default=50, help="how many photos (default 50)")
    listing.add_argument("--offset", type=whole(0), default=0, help="skip this many (paging)")
    listing.add_argument("--cursor", help="start after this next_cursor of a previous --json page")
    add_filters(listing)
    add_db(listing)
    listing.set_defaults(run=run_list)

    export = commands.add_parser("export", parents=[common], help="write the photos' paths, tags and metadata")
    export.add_argument("--format", choices=("csv", "jsonl"), default="csv", help="csv (default) or jsonl")
    export.add_argument("--out", type=Path, help="write to this file (default: standard output)")
    add_filters(export)
    add_db(export)
    export.set_defaults(run=run_export)
