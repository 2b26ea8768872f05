"""Entry point: assembles the sub-commands of each command group and maps errors to one-line messages."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from vistext import __version__
from vistext.cli import collection, serving, training, understand
from vistext.cli.output import emit_json
from vistext.errors import VistextError

GROUPS = (collection, understand, training, serving)


def common_options() -> argparse.ArgumentParser:
    """Flags every command accepts."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print exactly one JSON document on stdout")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars or log lines")
    common.add_argument("-v", "--verbose", action="store_true", help="log what happens (to stderr)")
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vistext", description="Understand images through words: tag, search, match and explore photos."
    )
    parser.add_argument("--version", action="version", version=f"vistext {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = common_options()
    for group in GROUPS:
        group.register(commands, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (0 ok, 1 partly failed, 2 error)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="vistext: %(message)s", stream=sys.stderr)
    try:
        return int(args.run(args) or 0)
    except VistextError as error:
        if args.json:
            emit_json({"error": str(error)})
        print(f"vistext: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vistext: interrupted (what was written is kept; run the command again to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
