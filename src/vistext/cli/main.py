"""Entry point: assembles the sub-commands of each command group and maps errors to one-line messages.

With ``--json`` every failure, a command line argparse refuses included, prints ``{"error": ...}`` on stdout
and exits 2. A reader that stops early (``vistext info | head -3``) ends the command quietly, as it ends any
Unix tool: exit status 141 (128 + SIGPIPE), no traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from vistext import __version__
from vistext.cli import collection, duplicates, listing, serving, training, understand
from vistext.cli.output import emit_json
from vistext.errors import VistextError

GROUPS = (collection, listing, duplicates, understand, training, serving)
BROKEN_PIPE = 141  # what a shell reports for a tool that SIGPIPE ended


class CommandLineError(Exception):
    """argparse refused the command line (raised instead of printing usage and exiting)."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser (and, through ``add_subparsers``, sub-parsers) whose errors ``main`` formats."""

    def error(self, message: str) -> NoReturn:
        raise CommandLineError(self, message)


def common_options() -> argparse.ArgumentParser:
    """Flags every command accepts."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print exactly one JSON document on stdout")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars or log lines")
    common.add_argument("-v", "--verbose", action="store_true", help="log what happens (to stderr)")
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vistext", description="Understand images through words: tag, search, match and explore photos."
    )
    parser.add_argument("--version", action="version", version=f"vistext {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = common_options()
    for group in GROUPS:
        group.register(commands, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (0 ok, 1 partly failed, 2 error, 141 output closed early)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    argv = list(sys.argv[1:] if argv is None else argv)
    # a file name that is not valid UTF-8 is printed as its bytes, as `ls` prints it (JSON escapes it instead)
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="surrogateescape")
    try:
        code = _run(argv)
        sys.stdout.flush()  # here, not at interpreter exit, where a closed pipe could not be handled
        return code
    except BrokenPipeError:
        _silence_stdout()
        return BROKEN_PIPE


def _run(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except CommandLineError as error:
        if "--json" in argv:
            emit_json({"error": str(error)})
            print(f"vistext: error: {error}", file=sys.stderr)
        else:
            error.parser.print_usage(sys.stderr)
            print(f"{error.parser.prog}: error: {error}", file=sys.stderr)
        return 2
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


def _silence_stdout() -> None:
    """Point stdout at /dev/null: the reader has gone, and Python's final flush of what is still buffered
    must not fail a second time (that would print "Exception ignored ... BrokenPipeError")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is not a real file (captured by a test harness)
        pass


if __name__ == "__main__":
    sys.exit(main())
