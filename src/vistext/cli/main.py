"""Entry point: assembles the sub-commands of each command group and maps errors to one-line messages.

Every failure is one line on stderr and a non-zero exit status, never a traceback: a typed vistext error or an
operating-system error (a file, a permission) exits 2, Ctrl-C 130, and anything unexpected exits 2 with its
type named and a pointer to ``VISTEXT_DEBUG=1``, which lets it through with its traceback. With ``--json`` every
failure, a command line argparse refuses included, also prints ``{"error": ...}`` on stdout (closing a JSON
list already begun, so stdout stays one valid document). A reader that stops early (``vistext info | head -3``)
ends the command quietly, as it ends any Unix tool: exit status 141 (128 + SIGPIPE), no traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from vistext import __version__
from vistext.cli import collection, database, duplicates, listing, models, serving, tags, training, understand
from vistext.cli.output import emit_error, terminal_safe, warn
from vistext.errors import VistextError

GROUPS = (collection, listing, tags, duplicates, understand, models, training, serving, database)
BROKEN_PIPE = 141  # what a shell reports for a tool that SIGPIPE ended
INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
INTERRUPTED_MESSAGE = "interrupted (what was written is kept; run the command again to resume)"
DEBUG_VARIABLE = "VISTEXT_DEBUG"
DEBUG_HINT = f"a bug in vistext; {DEBUG_VARIABLE}=1 shows the traceback"
EPILOG = (
    "Exit status: 0 ok, 1 some inputs failed, 2 error, 130 interrupted, 141 output closed early. Every error is "
    f'one line on stderr (with --json also {{"error": ...}} on stdout); set {DEBUG_VARIABLE}=1 to see the '
    "traceback of an unexpected one."
)


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
        prog="vistext",
        description="Understand images through words: tag, search, match and explore photos.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"vistext {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = common_options()
    for group in GROUPS:
        group.register(commands, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (0 ok, 1 partly failed, 2 error, 130 interrupted, 141 output
    closed early). Whatever goes wrong ends as one line on stderr (and ``{"error": ...}`` with ``--json``);
    ``VISTEXT_DEBUG=1`` lets an unexpected error through with its traceback."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    argv = list(sys.argv[1:] if argv is None else argv)
    # a file name that is not valid UTF-8 is printed as its bytes, as `ls` prints it (JSON escapes it instead)
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="surrogateescape")
    try:
        code = _guarded(argv)
        sys.stdout.flush()  # here, not at interpreter exit, where a closed pipe could not be handled
        return code
    except BrokenPipeError:
        _silence_stdout()
        return BROKEN_PIPE


def _guarded(argv: list[str]) -> int:
    """``_run``, with every exception but a closed pipe turned into one line and an exit status."""
    as_json = "--json" in argv
    try:
        return _run(argv)
    except BrokenPipeError:
        raise
    except SystemExit as done:  # a library that exits (uvicorn when its port is taken): its status, no traceback
        if done.code is None or isinstance(done.code, int):
            return done.code or 0
        _fail(as_json, f"error: {done.code}")
        return 2
    except KeyboardInterrupt as stop:  # a long run may say what it had done (its totals) in the interrupt
        _fail(as_json, f"interrupted: {stop}" if str(stop) else INTERRUPTED_MESSAGE)
        return INTERRUPTED
    except VistextError as error:
        _fail(as_json, f"error: {error}")
        return 2
    except OSError as error:  # the user's environment: a file, a folder, a disk, a permission
        _fail(as_json, f"error: {_os_message(error)}")
        return 2
    except Exception as error:
        if os.environ.get(DEBUG_VARIABLE, "") not in ("", "0"):
            raise
        _fail(as_json, f"internal error: {type(error).__name__}: {error} ({DEBUG_HINT})")
        return 2


def _run(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help and --version end here
        return done.code if isinstance(done.code, int) else 0
    except CommandLineError as error:
        if "--json" in argv:
            _fail(True, f"error: {error}")
        else:
            error.parser.print_usage(sys.stderr)
            warn(f"{error.parser.prog}: error: {error}")
        return 2
    _log_to_stderr(logging.INFO if args.verbose else logging.WARNING)
    return int(args.run(args) or 0)


def _fail(as_json: bool, message: str) -> None:
    """The one line of a failed command, on stderr; with ``--json`` also the JSON answer on stdout."""
    line = message.strip()  # a line break left inside is shown as an escape by ``warn``: one line still
    if as_json:
        emit_error(line.removeprefix("error: "))
    warn(f"vistext: {line}")


def _os_message(error: OSError) -> str:
    """``path: reason`` of an operating-system error (``[Errno 2] ...`` is for programmers)."""
    reason = error.strerror or str(error) or type(error).__name__
    names = [name for name in (error.filename, error.filename2) if name is not None]
    return ": ".join([*(str(name) for name in names), reason])


class _SafeFormatter(logging.Formatter):
    """Log lines (to stderr) with the same escapes as printed ones: messages name files."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        record.message = terminal_safe(record.message)
        return super().formatMessage(record)


def _log_to_stderr(level: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_SafeFormatter("vistext: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


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
