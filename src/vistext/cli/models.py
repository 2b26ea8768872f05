"""``vistext models``: the image-text models this machine holds (bundled, ``$VISTEXT_HOME/models/``, the Hugging
Face, open_clip and Immich caches), each with its kind, dimensions and where it came from."""

from __future__ import annotations

import argparse

from vistext.cli.output import emit_json, say
from vistext.paths import vistext_home
from vistext.service.clip_models import list_models


def run_models(args: argparse.Namespace) -> int:
    listing = list_models(vistext_home())
    if args.json:
        emit_json(listing)
        return 0
    rows = [(m["spec"], m["kind"], str(m["dims"] or "?"), m["origin"]) for m in listing["models"]]
    widths = [max(len(row[i]) for row in [("model", "kind", "dims", "from"), *rows]) for i in range(3)]
    for row in [("model", "kind", "dims", "from"), *rows]:
        say("  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3])
    say("looked in: " + ", ".join(listing["looked_in"]))
    say("use one with --model SPEC (a name above, or any model folder's path)")
    return 0


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    models = commands.add_parser(
        "models", parents=[common], help="the image-text models available here (bundled, copied in, cached)"
    )
    models.set_defaults(run=run_models)
