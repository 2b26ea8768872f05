"""The options several commands share (``--db``, paging, filters) and the argparse types that check a value
where it is typed, so a bad one is refused in one line naming the option (``--min-score nan``, ``--port 0``)
instead of flowing on into a silent empty answer or a traceback."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from vistext.service import Service
from vistext.service.filters import FILTER_NAMES, is_text, parse_filter

if TYPE_CHECKING:
    from vistext.service import ImageFilter


def service_for(args: argparse.Namespace, *, read_only: bool = False) -> Service:
    """The service over the catalogue ``--db`` names (or the default one), with progress bars unless ``-q``;
    ``read_only`` for commands that only read the catalogue (it is opened read-only and never written)."""
    return Service(db=getattr(args, "db", None), progress=not args.quiet, read_only=read_only)


def number(low: float, high: float, what: str = "a number") -> Callable[[str], float]:
    """An argparse type: a finite float in ``[low, high]`` (``nan`` and ``inf`` are refused, not compared)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not math.isfinite(value) or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r}: expected {what} from {low:g} to {high:g}")
        return value

    parse.__name__ = what  # argparse names the type in its own messages
    parse.numeric = float  # type: ignore[attr-defined]  # what it parses, for tests that generate values
    return parse


def whole(low: int, high: int | None = None, what: str = "a whole number") -> Callable[[str], int]:
    """An argparse type: an int from ``low`` up to ``high`` (None: no upper bound)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if value < low or (high is not None and value > high):
            bound = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"{text!r}: expected {what} {bound}")
        return value

    parse.__name__ = what
    parse.numeric = int  # type: ignore[attr-defined]
    return parse


def words(value: str) -> str:
    """An argparse type: words (a query, a tag set), which must be valid UTF-8 (a file name need not be)."""
    if not is_text(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not valid UTF-8 text")
    return value


def add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        help="catalogue file, or an indexed folder (default: DIR/.vistext/ for index; "
        "else ./.vistext upward, then $VISTEXT_HOME/default)",
    )


def add_clip_model(parser: argparse.ArgumentParser, what: str = "answer in") -> None:
    parser.add_argument(
        "--model",
        metavar="SPEC",
        help=f"{what} the space of this CLIP-family model (a model folder, or the name `vistext info` lists for "
        "an indexed one); default: the bundled models",
    )


def add_paging(parser: argparse.ArgumentParser, k: int) -> None:
    parser.add_argument("-k", type=int, default=k, help=f"how many results (default {k})")
    parser.add_argument("--offset", type=whole(0), default=0, help="skip this many results (paging)")
    parser.add_argument(
        "--min-score", type=number(-1, 1, "a score"), default=None, help="drop results scoring below this (0-1)"
    )
    parser.add_argument("--grid", type=Path, help="also draw the results as a contact sheet (.png/.jpg/.webp)")


def add_filters(parser: argparse.ArgumentParser) -> None:
    """``--after --before --camera --near --folder --tag --has-text``: only photos passing all of them."""
    group = parser.add_argument_group("filters (only photos passing all of them)")
    group.add_argument("--after", metavar="DATE", help="taken on or after this date (YYYY-MM-DD, EXIF time)")
    group.add_argument("--before", metavar="DATE", help="taken before this date (YYYY-MM-DD)")
    group.add_argument("--camera", help="camera make or model contains this (case-insensitive)")
    group.add_argument("--near", metavar="LAT,LON,KM", help="GPS position within KM km of LAT,LON")
    group.add_argument("--folder", help="in this folder or below (relative to the indexed folder, or absolute)")
    group.add_argument("--tag", help="has this collection tag (stored by `index --tagger` / `tag --collection`)")
    group.add_argument(
        "--has-text",
        action="store_const",
        const=True,
        default=None,
        help="holds text (signs, screenshots, documents) read by `index --ocr`",
    )


def filter_from(args: argparse.Namespace) -> ImageFilter | None:
    """The filter the options give, or None when none was given."""
    found = parse_filter(*(getattr(args, name, None) for name in FILTER_NAMES))
    return None if found.empty else found
