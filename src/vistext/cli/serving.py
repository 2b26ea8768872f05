"""Commands that serve the collection: serve (HTTP API + web page), bot (Telegram), map (standalone HTML)."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vistext.cli.options import add_clip_model, add_db, number, service_for, whole
from vistext.cli.output import emit_json, say
from vistext.errors import MissingExtraError, UsageError


@contextmanager
def needs_extra(extra: str) -> Iterator[None]:
    """Imports of an optional part: a third-party package missing is one line naming the extra to install."""
    try:
        yield
    except ModuleNotFoundError as error:
        if (error.name or "vistext").split(".")[0] == "vistext":
            raise
        raise MissingExtraError(extra, f"vistext {extra}", [error.name or "?"]) from None


def parse_taggers(values: list[str] | None) -> dict[str, str]:
    """``--tagger NAME=DIR`` (repeatable): trained taggers HTTP clients may pick by name."""
    taggers: dict[str, str] = {}
    for value in values or []:
        name, sep, path = value.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise UsageError(f"--tagger {value!r}: expected NAME=DIR")
        taggers[name.strip()] = path.strip()
    return taggers


def parse_allow(value: str | None) -> frozenset[int] | None:
    """``--allow 123,456``: Telegram user ids to answer."""
    if value is None:
        return None
    try:
        ids = frozenset(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"--allow {value!r}: expected comma-separated numeric Telegram user ids") from None
    if not ids:
        raise UsageError("--allow is empty: give at least one user id, or leave it out to answer everyone")
    return ids


def secret_from_env(variable: str, what: str) -> str:
    value = os.environ.get(variable, "").strip()
    if not value:
        raise UsageError(f"{what}: environment variable {variable} is not set or empty")
    return value


def run_serve(args: argparse.Namespace) -> int:
    with needs_extra("serve"):
        from vistext.server import ServerSettings, run_server
    from vistext.service import Service

    token = args.token
    if args.token_env:
        token = secret_from_env(args.token_env, "--token-env")
    settings = ServerSettings(
        db=args.db,
        host=args.host,
        port=args.port,
        token=token,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        request_timeout=args.timeout,
        captions=args.captions,
        taggers=parse_taggers(args.tagger),
        map_method=args.map_method,
        allowed_hosts=frozenset(args.allow_host),
        watch=_watched(args.watch),
    )
    settings.check()
    if not args.quiet:
        say(f"vistext: serving http://{args.host}:{args.port}/ (API docs at /docs){' with a token' if token else ''}")
        if settings.watch is not None:  # the watcher's lines: the first pass, then each batch of changes
            logging.getLogger("vistext.server.watching").setLevel(logging.INFO)
    run_server(settings, Service)
    return 0


def _watched(folder: str | None) -> Path | None:
    if folder is None:
        return None
    if not Path(folder).is_dir():
        raise UsageError(f"--watch {folder}: not a folder")
    return Path(folder).resolve()


def run_bot_command(args: argparse.Namespace) -> int:
    with needs_extra("bot"):
        from vistext.bot import BotSettings, run_bot

    settings = BotSettings(
        token=secret_from_env(args.token_env, "--token-env"),
        allow=parse_allow(args.allow),
        captions=args.captions,
        k=args.k,
        base_url=args.base_url,
        base_file_url=args.base_file_url,
        model=args.model,
    )
    with service_for(args, read_only=True) as service:  # the bot only reads: searches, tags, captions, thumbnails
        if args.model is not None:
            service.catalogue_model(args.model)  # a model the catalogue has a space for, or stop now
        if not args.quiet:
            say("vistext: bot running (Ctrl-C to stop)")
        run_bot(service, settings)
    return 0


def run_map(args: argparse.Namespace) -> int:
    with needs_extra("serve"):
        from vistext.server.standalone import write_map_html

    with service_for(args, read_only=True) as service:
        out = write_map_html(service, args.out, method=args.method, embed_thumbnails=not args.link, model=args.model)
    if args.json:
        emit_json({"map": str(out), "bytes": out.stat().st_size})
    else:
        say(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB); open it in a browser")
    return 0


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    serve = commands.add_parser("serve", parents=[common], help="HTTP API and web page over the collection")
    add_db(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    serve.add_argument("--port", type=whole(1, 65535, "a port"), default=8000, help="port to listen on (default 8000)")
    serve.add_argument("--token", help="require `Authorization: Bearer TOKEN` on every API request")
    serve.add_argument("--token-env", metavar="VAR", help="read the token from this environment variable")
    serve.add_argument(
        "--allow-host",
        action="append",
        metavar="NAME",
        default=[],
        help="also answer requests for this Host name (default: loopback names and the --host address only)",
    )
    serve.add_argument(
        "--captions", help="caption bank for /api/caption: FORMAT:PATH or a text file (default: composed captions)"
    )
    serve.add_argument("--tagger", action="append", metavar="NAME=DIR", help="a trained tagger clients may use")
    serve.add_argument(
        "--max-upload-mb",
        type=number(0.001, 1e6, "megabytes"),
        default=20.0,
        help="largest upload accepted (default 20)",
    )
    serve.add_argument(
        "--timeout", type=number(0.1, 86400, "seconds"), default=30.0, help="seconds before a request gets 504"
    )
    serve.add_argument(
        "--map-method", choices=("tsne", "pca"), default="tsne", help="layout of the web page's map (default tsne)"
    )
    serve.add_argument(
        "--watch",
        metavar="DIR",
        help="index DIR (into --db, else DIR's own catalogue), then index its photos as they are added, changed, "
        "moved or deleted while serving",
    )
    serve.set_defaults(run=run_serve)

    bot = commands.add_parser("bot", parents=[common], help="a Telegram bot over the collection")
    add_db(bot)
    bot.add_argument("--token-env", metavar="VAR", required=True, help="environment variable holding the bot token")
    bot.add_argument("--allow", metavar="USER_ID,...", help="answer only these Telegram user ids")
    bot.add_argument("--captions", help="caption bank for photos: FORMAT:PATH or a text file (default: composed)")
    bot.add_argument(
        "-k", type=whole(1, 10), default=4, help="pictures per answer (default 4; a Telegram album holds 10)"
    )
    bot.add_argument("--base-url", help="Bot API URL (a self-hosted Bot API server)")
    bot.add_argument("--base-file-url", help="Bot API file URL (with --base-url)")
    add_clip_model(bot, "answer in")
    bot.set_defaults(run=run_bot_command)

    map_ = commands.add_parser("map", parents=[common], help="write an interactive 2-D map of the collection")
    add_db(map_)
    map_.add_argument("--out", type=Path, required=True, help="the .html file to write")
    map_.add_argument("--method", choices=("tsne", "pca"), default="tsne", help="2-D layout: tsne (default) or pca")
    map_.add_argument("--link", action="store_true", help="link to the image files instead of embedding thumbnails")
    add_clip_model(map_, "lay out by")
    map_.set_defaults(run=run_map)
