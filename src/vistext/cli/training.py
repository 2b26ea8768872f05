"""Commands that prepare data, train and evaluate models: tags-from-captions, train, eval."""

from __future__ import annotations

import argparse
from pathlib import Path

from vistext.cli.output import emit_json, say


def run_tags_from_captions(args: argparse.Namespace) -> int:
    from vistext.datasets import open_caption_dataset, tags_from_captions

    tagged = tags_from_captions(
        open_caption_dataset(args.data), top_n=args.top, min_captions=args.min_captions, progress=not args.quiet
    )
    out = tagged.write_csv(args.out)
    items = tagged.items()
    vocabulary = tagged.vocabulary()
    summary = {
        "out": str(out),
        "n_images": len(items),
        "n_tagged": sum(1 for item in items if item.tags),
        "n_tags": len(vocabulary),
        "top_tags": vocabulary[:20],
    }
    if args.json:
        emit_json(summary)
    else:
        say(f"wrote {out}: {summary['n_tags']} tags on {summary['n_tagged']} of {summary['n_images']} images")
        say("most frequent: " + ", ".join(vocabulary[:20]))
    return 0


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    tfc = commands.add_parser(
        "tags-from-captions", parents=[common], help="build a multi-label tag set (CSV) from a caption dataset"
    )
    tfc.add_argument("data", help="caption dataset as FORMAT:PATH, e.g. flickr8k:../shared/datasets/flickr8k")
    tfc.add_argument("--top", type=int, default=300, help="keep the N most frequent tags (default 300)")
    tfc.add_argument("--min-captions", type=int, default=2, help="a word must be in this many of an image's captions")
    tfc.add_argument("--out", type=Path, default=Path("tags.csv"), help="the CSV to write (default tags.csv)")
    tfc.set_defaults(run=run_tags_from_captions)
