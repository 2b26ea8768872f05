"""``vistext duplicates``: exact copies and near-duplicates in the collection, as text, JSON or contact sheets."""

from __future__ import annotations

import argparse
from pathlib import Path

from vistext.cli.options import add_db, add_filters, filter_from, service_for
from vistext.cli.output import emit_json, say
from vistext.service import DuplicatesResult, Hit, SearchResult, Service

SHEET_COLUMNS = 6


def draw_groups(service: Service, result: DuplicatesResult, folder: Path) -> list[Path]:
    """One contact sheet per group in ``folder`` (``group-001-exact.png``, ``group-002-near.png``...)."""
    folder.mkdir(parents=True, exist_ok=True)
    sheets = []
    for number, group in enumerate(result.groups, start=1):
        hits = [Hit(image.path, image.score, image.id) for image in group.images]
        title = f"group {number}: {group.kind} ({len(hits)} images)"
        out = folder / f"group-{number:03d}-{group.kind}.png"
        # side by side, so the copies are compared at a glance (rows of at most SHEET_COLUMNS)
        sheets.append(service.grid(SearchResult(title, hits), out, columns=min(len(hits), SHEET_COLUMNS)))
    return sheets


def run_duplicates(args: argparse.Namespace) -> int:
    with service_for(args) as service:
        result = service.duplicates(args.threshold, filter=filter_from(args))
        sheets = draw_groups(service, result, args.grid) if args.grid else []
    if args.json:
        emit_json(result.to_dict())
        return 0
    if not result.groups:
        say(f"no duplicates (near-duplicate threshold {result.threshold:.3f})")
    for number, group in enumerate(result.groups, start=1):
        say(f"group {number}: {group.kind}, {len(group.images)} images")
        for image in group.images:
            say(f"  {image.score:6.3f}  {image.path}")
    exact = sum(group.kind == "exact" for group in result.groups)
    say(f"{exact} exact, {len(result.groups) - exact} near groups (threshold {result.threshold:.3f})")
    if sheets:
        say(f"wrote {len(sheets)} contact sheets to {args.grid}")
    return 0


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    duplicates = commands.add_parser(
        "duplicates", parents=[common], help="groups of exact copies and near-duplicates (resized, re-encoded, cropped)"
    )
    duplicates.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="cosine similarity at or above which two photos are near-duplicates (default: the measured one)",
    )
    duplicates.add_argument("--grid", type=Path, help="write one contact sheet per group into this folder")
    add_filters(duplicates)
    add_db(duplicates)
    duplicates.set_defaults(run=run_duplicates)
