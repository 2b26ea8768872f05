"""``vistext duplicates``: copies (with the one to keep) and similar shots in the collection, as text, JSON or
contact sheets."""

from __future__ import annotations

import argparse
from pathlib import Path

from vistext.cli.options import add_clip_model, add_db, add_filters, filter_from, service_for
from vistext.cli.output import emit_json, say
from vistext.service import DuplicatesResult, Hit, SearchResult, Service
from vistext.service.duplicates import KEEP_RULE

KIND_NAMES = {"copies": "copies", "similar": "similar shots"}
HELP = (
    "groups of copies (the same photo re-encoded, resized, cropped a little, rotated or with changed metadata: "
    "found by perceptual hash, one suggested to keep) and of similar shots (bursts, the same scene: found by image "
    f"features; nothing suggested to keep, review them). Keep rule: {KEEP_RULE}."
)

SHEET_COLUMNS = 6


def draw_groups(service: Service, result: DuplicatesResult, folder: Path) -> list[Path]:
    """One contact sheet per group in ``folder`` (``group-001-copies.png``, ``group-002-similar.png``...)."""
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
    # not read-only: the first run caches each photo's perceptual hashes in the catalogue (by content hash; the
    # photos' rows are never changed), so the next run decodes nothing. A catalogue it cannot write is read as is.
    with service_for(args) as service:
        result = service.duplicates(args.threshold, filter=filter_from(args), model=args.model)
        sheets = draw_groups(service, result, args.grid) if args.grid else []
    if args.json:
        emit_json(result.to_dict())
        return 0
    for skipped in result.skipped:
        say(f"skipped {skipped.path}: {skipped.reason}")
    if not result.groups:
        say(f"no duplicates (similar shots at similarity {result.threshold:.3f})")
    for number, group in enumerate(result.groups, start=1):
        say(f"group {number}: {KIND_NAMES.get(group.kind, group.kind)}, {len(group.images)} images")
        for image in group.images:
            say(f"  {image.match or 'shot':5s}  {image.score:6.3f}  {image.path}")
    copies = [group for group in result.groups if group.kind == "copies"]
    spare = sum(len(group.images) - 1 for group in copies)
    say(
        f"{len(copies)} groups of copies ({spare} files could go), {len(result.groups) - len(copies)} groups of "
        f"similar shots (similarity {result.threshold:.3f})"
    )
    if sheets:
        say(f"wrote {len(sheets)} contact sheets to {args.grid}")
    return 0


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    duplicates = commands.add_parser("duplicates", parents=[common], help=HELP, description=HELP)
    duplicates.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="image-feature similarity at or above which two photos are similar shots (default: the measured one)",
    )
    duplicates.add_argument("--grid", type=Path, help="write one contact sheet per group into this folder")
    add_filters(duplicates)
    add_clip_model(duplicates, "tell similar shots in")
    add_db(duplicates)
    duplicates.set_defaults(run=run_duplicates)
