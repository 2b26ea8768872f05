"""Commands about single images: tag, caption."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from pathlib import Path

from vistext.cli.options import add_clip_model, add_db, service_for, words
from vistext.cli.output import JsonList, emit_json, say
from vistext.errors import UsageError
from vistext.images import iter_image_files
from vistext.service import parse_tag_sets, parse_vocabulary
from vistext.service.results import TagResult

TAG_BATCH = 16  # images decoded and tagged at a time by `tag`
VOCAB_FILE_SUFFIXES = (".txt", ".csv", ".tsv", ".list")


def parse_vocab(value: str) -> list[str]:
    """``--vocab`` is a file (one tag per line) or a comma-separated list. A value that looks like a path (no
    comma, and a ``/`` in it or a file suffix) but names no file is an error, not a one-word vocabulary."""
    path = Path(value)
    if not value.strip():
        raise UsageError('--vocab is empty: give a file with one tag per line, or "word1,word2,..."')
    if path.is_file():
        try:
            return parse_vocabulary(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise UsageError(f"--vocab {value}: not UTF-8 text (give one tag per line)") from None
        except UsageError as error:
            raise UsageError(f"--vocab {value}: {error}") from None
    looks_like_path = "," not in value and (
        "/" in value or os.sep in value or path.suffix.lower() in VOCAB_FILE_SUFFIXES
    )
    if path.is_dir() or looks_like_path:
        reason = "is a folder" if path.is_dir() else "no such file"
        raise UsageError(f'--vocab {value}: {reason} (give a file with one tag per line, or "word1,word2,...")')
    try:
        return parse_vocabulary(words(value))
    except argparse.ArgumentTypeError as error:
        raise UsageError(f"--vocab: {error}") from None
    except UsageError as error:
        raise UsageError(f"--vocab {value!r}: {error}") from None


def run_tag(args: argparse.Namespace) -> int:
    if args.collection:
        from vistext.cli.listing import run_tag_collection

        return run_tag_collection(args)
    if not args.images:
        raise UsageError("tag needs image files or folders (or --collection --model DIR for the indexed photos)")
    vocab = parse_vocab(args.vocab) if args.vocab is not None else None
    json_out = JsonList() if args.json else None
    failed = False

    def show(result: TagResult) -> None:
        nonlocal failed
        failed = failed or result.error is not None
        if json_out is not None:
            json_out.add(result.to_dict())
        elif result.error:
            # the error names the file already (as --json gives it); the line names it once
            say(f"{result.image}: error: {result.error.removeprefix(f'{result.image}: ')}")
        else:
            say(f"{result.image}:")
            for tag in result.tags:
                say(f"  {tag.score:6.3f}  {tag.tag}")

    with service_for(args, read_only=True) as service:
        # a batch at a time, printed as it is tagged: memory stays flat however many photos a folder holds
        batch: list[str] = []
        for item in tag_inputs(args.images):
            if isinstance(item, str):
                batch.append(item)
            if batch and (len(batch) == TAG_BATCH or not isinstance(item, str)):
                for result in service.tag(batch, args.k, model=args.model, vocab=vocab, threshold=args.threshold):
                    show(result)
                batch = []
            if not isinstance(item, str):
                show(item)
        if batch:
            for result in service.tag(batch, args.k, model=args.model, vocab=vocab, threshold=args.threshold):
                show(result)
    if json_out is not None:
        json_out.close()
    return 1 if failed else 0


def tag_inputs(names: list[str]) -> Iterator[str | TagResult]:
    """Each named image, and the images in each named folder (recursively, as ``index`` finds them); a folder
    with none is an error result in its place."""
    for name in names:
        if not os.path.isdir(name):
            yield name
            continue
        found = False
        for path in iter_image_files(name):
            found = True
            yield str(path)
        if not found:
            yield TagResult(name, [], error=f"{name}: no images found in this folder")


def run_caption(args: argparse.Namespace) -> int:
    with service_for(args, read_only=True) as service:
        result = service.caption(args.image, args.captions, args.k, model=args.model)
    if args.json:
        emit_json(result.to_dict())
    else:
        say(f"{result.image}{' (composed captions)' if result.source == 'composed' else ''}:")
        for caption in result.captions:
            say(f"  {caption.score:6.3f}  {caption.text}")
    return 0


def run_match(args: argparse.Namespace) -> int:
    sets = parse_tag_sets(args.tag_sets)
    with service_for(args, read_only=True) as service:
        result = service.match(args.image, sets, model=args.model)
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
    tag.add_argument("images", nargs="*", help="image files, or folders (their images are tagged, recursively)")
    tag.add_argument("-k", type=int, default=5, help="how many tags per image (default 5)")
    tag.add_argument(
        "--model",
        help="a tagger trained with `vistext train tagger`; with --vocab, a CLIP-family model that scores the words "
        "(its cosines, each word as a prompt ensemble)",
    )
    tag.add_argument("--vocab", help='open vocabulary: a file with one tag per line, or "word1,word2,..."')
    tag.add_argument(
        "--threshold", action="store_true", help="with --model: only tags above their calibrated threshold"
    )
    tag.add_argument(
        "--collection",
        action="store_true",
        help="with --model: store the tagger's tags of every indexed photo (from stored features; see --db)",
    )
    add_db(tag)
    tag.set_defaults(run=run_tag)

    caption = commands.add_parser(
        "caption", parents=[common], help="captions for an image: composed from the models' words, or from a bank"
    )
    caption.add_argument("image")
    caption.add_argument("-k", type=int, default=5, help="how many captions (default 5)")
    caption.add_argument(
        "--captions",
        help="a caption bank to pick from: FORMAT:PATH of a caption dataset, or a text file (default: none; "
        "captions are composed from the shipped models' words)",
    )
    add_clip_model(caption, "compare in (needs --captions)")
    add_db(caption)
    caption.set_defaults(run=run_caption)

    match = commands.add_parser("match", parents=[common], help="which tag set fits an image best")
    match.add_argument("image")
    match.add_argument("tag_sets", nargs="+", type=words, help='tag sets, e.g. "dog ball grass" "red car, street"')
    match.add_argument(
        "--model",
        help='"fused" (the default: the open-domain space, 0-1 relevance), "matcher" (the shipped match classifier, '
        '0-1 probabilities), a match classifier directory, "joint", or a CLIP-family model folder or name (its '
        "cosines)",
    )
    match.set_defaults(run=run_match)
