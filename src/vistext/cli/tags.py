"""``vistext tags add|remove PHOTO TAG...``: edit an indexed photo's tags by hand."""

from __future__ import annotations

import argparse
from pathlib import Path

from vistext.cli.options import add_db, service_for
from vistext.cli.output import emit_json, say
from vistext.errors import UsageError


def photo_ref(text: str) -> int | str:
    """An indexed photo as the command line names it: its catalogue id, or its file's path."""
    if text.isdigit() and not Path(text).exists():
        value = int(text)
        if not 1 <= value < 2**63:
            raise UsageError(f"no indexed image with id {value} (ids are whole numbers from 1 to {2**63 - 1})")
        return value
    return text


def run_tags(args: argparse.Namespace) -> int:
    added = args.tags if args.action == "add" else []
    removed = args.tags if args.action == "remove" else []
    with service_for(args) as service:
        result = service.edit_tags(photo_ref(args.photo), add=added, remove=removed).to_dict()
    if args.json:
        emit_json(result)
        return 0
    say(f"{result['id']:6d}  {result['path']}")
    say("        " + (", ".join(f"{t['tag']} {t['score']:.2f}" for t in result["tags"]) or "no tags"))
    return 0


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    tags = commands.add_parser(
        "tags",
        parents=[common],
        help="add or remove an indexed photo's tags by hand",
        description="Add tags to an indexed photo (stored with the source 'user'), or remove any of its tags "
        "(a removed tag stays removed when the collection is indexed or tagged again).",
    )
    tags.add_argument("action", choices=("add", "remove"), help="add or remove")
    tags.add_argument("photo", metavar="PHOTO", help="an indexed photo: its id (see `vistext list`) or its path")
    tags.add_argument("tags", metavar="TAG", nargs="+", help="tags (quote a tag of several words)")
    add_db(tags)
    tags.set_defaults(run=run_tags)
