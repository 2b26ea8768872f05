"""``vistext db start|stop|status`` (a PostgreSQL + pgvector server of one's own) and ``vistext migrate``."""

from __future__ import annotations

import argparse
from pathlib import Path

from vistext.cli.output import emit_json, say
from vistext.paths import vistext_home


def _folder(args: argparse.Namespace) -> Path:
    return Path(args.dir) if args.dir else vistext_home() / "postgres"


def run_db(args: argparse.Namespace) -> int:
    from vistext.service.stores import database_server

    folder = _folder(args)
    state = database_server(args.action, folder, port=args.port, fsync=not args.no_fsync, delete=args.delete)
    if args.json:
        emit_json(state)
    elif state["running"]:
        say(f"PostgreSQL + pgvector on 127.0.0.1 (pid {state['pid']}): {state['url']}")
        if args.action == "start":
            say(f"index into it with: vistext index DIR --db {state['url']}")
    else:
        say(f"no server runs from {folder}" + (" (deleted)" if state.get("deleted") else ""))
    return 0


def run_migrate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from vistext.service.stores import migrate

    bar: tqdm | None = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="img", desc="migrate", disable=args.quiet or args.json)
        bar.update(done)

    try:
        report = migrate(args.source, args.target, batch=args.batch, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        emit_json({"from": args.source, "to": args.target, **report.to_dict()})
    else:
        say(
            f"copied {report.images} images ({report.failed} failed ones among them) and the spaces "
            f"{', '.join(report.spaces)}; both stores hold the same records (digest {report.digest[:16]})"
        )
    return 0


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    db = commands.add_parser(
        "db", parents=[common], help="run a PostgreSQL + pgvector server on 127.0.0.1 for --db postgresql://..."
    )
    db.add_argument("action", choices=["start", "stop", "status"], help="start, stop or describe the server")
    db.add_argument("--dir", help="folder holding the server's data (default: $VISTEXT_HOME/postgres)")
    db.add_argument("--port", type=int, help="TCP port on 127.0.0.1 (default: a free one, kept in the folder)")
    db.add_argument(
        "--no-fsync", action="store_true", help="never flush to disk: fast, for throw-away data (a crash loses it)"
    )
    db.add_argument("--delete", action="store_true", help="with stop: delete the folder and all data in it")
    db.set_defaults(run=run_db)
    migrate = commands.add_parser(
        "migrate", parents=[common], help="copy a collection between stores (e.g. SQLite to PostgreSQL), verified"
    )
    migrate.add_argument(
        "--from", dest="source", required=True, help="source store: a catalogue path, sqlite:///... or postgresql://..."
    )
    migrate.add_argument("--to", dest="target", required=True, help="target store (created if needed)")
    migrate.add_argument("--batch", type=int, default=256, help="records per transaction (default 256)")
    migrate.set_defaults(run=run_migrate)
