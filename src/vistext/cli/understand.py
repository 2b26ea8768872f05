"""Commands about single images: tag, caption."""

from __future__ import annotations

import argparse
from pathlib import Path

from vistext.cli.collection import add_db, service_for
from vistext.cli.output import emit_json, say


def parse_vocab(value: str) -> list[str]:
    """``--vocab`` is a file (one tag per line) or a comma-separated list."""
    path = Path(value)
    if path.is_file():
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [word.strip() for word in value.split(",") if word.strip()]


def run_tag(args: argparse.Namespace) -> int:
    vocab = parse_vocab(args.vocab) if args.vocab else None
    with service_for(args) as service:
        results = service.tag(args.images, args.k, model=args.model, vocab=vocab, threshold=args.threshold)
    if args.json:
        emit_json([r.to_dict() for r in results])
    else:
        for result in results:
            if result.error:
                say(f"{result.image}: error: {result.error}")
                continue
            say(f"{result.image}:")
            for tag in result.tags:
                say(f"  {tag.score:6.3f}  {tag.tag}")
    return 1 if any(r.error for r in results) else 0


def run_caption(args: argparse.Namespace) -> int:
    with service_for(args) as service:
        result = service.caption(args.image, args.captions, args.k)
    if args.json:
        emit_json(result.to_dict())
    else:
        say(f"{result.image}:")
        for caption in result.captions:
            say(f"  {caption.score:6.3f}  {caption.text}")
    return 0


def run_match(args: argparse.Namespace) -> int:
    from vistext.models.matcher_numpy import parse_tag_set  # torch-free

    with service_for(args) as service:
        result = service.match(args.image, [parse_tag_set(text) for text in args.tag_sets], model=args.model)
    if args.json:
        emit_json(result.to_dict())
    else:
        say(f"{result.image} ({result.method}):")
        for position, candidate in enumerate(result.candidates):
            mark = "*" if position == result.best else " "
            say(f" {mark} {candidate.score:6.3f}  {' '.join(candidate.tags)}")
    return 0


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    tag = commands.add_parser("tag", parents=[common], help="tag images (ImageNet, a trained tagger, or any words)")
    tag.add_argument("images", nargs="+")
    tag.add_argument("-k", type=int, default=5, help="how many tags per image (default 5)")
    tag.add_argument("--model", help="a tagger trained with `vistext train tagger`")
    tag.add_argument("--vocab", help='open vocabulary: a file with one tag per line, or "word1,word2,..."')
    tag.add_argument(
        "--threshold", action="store_true", help="with --model: only tags above their calibrated threshold"
    )
    tag.set_defaults(run=run_tag)

    caption = commands.add_parser("caption", parents=[common], help="the closest known captions for an image")
    caption.add_argument("image")
    caption.add_argument("-k", type=int, default=5)
    caption.add_argument("--captions", required=True, help="FORMAT:PATH of a caption dataset, or a text file")
    add_db(caption)
    caption.set_defaults(run=run_caption)

    match = commands.add_parser("match", parents=[common], help="which tag set fits an image best")
    match.add_argument("image")
    match.add_argument("tag_sets", nargs="+", help='tag sets, e.g. "dog ball grass" or "red car, street"')
    match.add_argument("--model", help='a match classifier directory, or "joint" (default: the shipped classifier)')
    match.set_defaults(run=run_match)
