"""Commands over a collection: index, info, similar, search, demo."""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vistext.cli.options import (
    add_clip_model,
    add_db,
    add_filters,
    add_paging,
    filter_from,
    service_for,
    whole,
    words,
)
from vistext.cli.output import emit_json, say, say_failures
from vistext.errors import UsageError
from vistext.service import SearchResult, Service

if TYPE_CHECKING:
    from vistext.service.watching import IndexReport

log = logging.getLogger(__name__)


def print_hits(result: SearchResult, as_json: bool) -> None:
    if as_json:
        emit_json(result.to_dict())
        return
    if not result.results:
        say(f"no results for {result.query}")
    for rank, hit in enumerate(result.results, start=result.offset + 1):
        say(f"{rank:3d}. {hit.score:6.3f}  {hit.path}")
        if hit.text_match and hit.text:  # found by the words in it: say which
            say(f"             text: {hit.text if len(hit.text) <= 100 else hit.text[:99] + '…'}")


def run_index(args: argparse.Namespace) -> int:
    if args.watch:
        from vistext.cli.watching import run_watch

        return run_watch(args, index_summary, say_index)
    with service_for(args) as service:
        report = service.index(
            args.folder,
            text_search=not args.no_text,
            tagger=args.tagger,
            engine=args.engine,
            address=args.address,
            ocr=args.ocr,
            model=args.model,
        )
    summary = index_summary(args, report)
    if args.json:
        emit_json(summary)
    else:
        say_index(args, report, summary)
    return 0


def index_summary(args: argparse.Namespace, report: IndexReport) -> dict[str, Any]:
    """The JSON of an index pass: the report, and how many images it found (a typo'd folder finds none)."""
    summary: dict[str, Any] = report.to_dict()
    # an empty folder (or a typo'd one with no photos) is not an error, since its index is correctly empty,
    # but it must not look like a successful run over photos: say so in text and as "images_found" in JSON
    found = report.added + report.updated + report.unchanged + report.failed
    summary["images_found"] = found
    if not found:
        summary["message"] = f"no images found in {args.folder} (looked for {_suffixes()}, in subfolders too)"
    return summary


def say_index(args: argparse.Namespace, report: IndexReport, summary: dict[str, Any]) -> None:
    say(
        f"indexed {args.folder}: {report.added} added, {report.updated} updated, {report.removed} removed, "
        f"{report.unchanged} unchanged, {report.failed} failed ({report.seconds:.1f} s)"
    )
    if "message" in summary:
        say(summary["message"])
    if report.meta_filled:
        say(f"read the metadata of {report.meta_filled} photos indexed before metadata existed")
    if report.default_tags and report.default_tags["scored"]:
        tagged = report.default_tags
        say(f"default tags: {tagged['tagged']} of {tagged['scored']} photos newly scored got at least one")
    if report.model_space is not None:
        space = report.model_space
        say(f"model {space['model']}: {space['added']} photos added to space {space['space']}")
    if report.tags is not None:
        say(f"tagged {report.tags['tagged']} of {report.tags['images']} photos with {report.tags['tagger']}")
    if report.text is not None:
        text = report.text
        say(f"read the text of {text['read']} photos: {text['with_text']} hold text ({text['seconds']:.1f} s)")
    say_failures(report.failures)


def _suffixes() -> str:
    from vistext.images import IMAGE_SUFFIXES

    return " ".join(sorted(IMAGE_SUFFIXES))


def run_info(args: argparse.Namespace) -> int:
    with service_for(args, read_only=True) as service:
        info = service.info().to_dict()
    if args.json:
        emit_json(info)
    else:
        for line in info_lines(info):
            say(line)
    return 0


def info_lines(info: dict[str, Any]) -> list[str]:
    """``info``'s JSON as a short readable summary: where, how many, which models and search spaces, size."""
    if not info.get("exists"):
        lines = [f"catalogue: {info['db']} (does not exist yet: run `vistext index DIR` or pass --db)"]
        if info.get("indexes_below"):
            lines.append("indexed folders below this one (pass one with --db):")
            lines.extend(f"  {folder}" for folder in info["indexes_below"])
        return lines
    lines = [f"catalogue: {info['db']} ({info.get('backend', '?')}, schema {info.get('schema_version', '?')})"]
    lines.append(f"images:    {info.get('ok', 0)} indexed, {info.get('failed', 0)} failed to read")
    models = info.get("models") or {}
    if models:
        lines.append("features:  " + ", ".join(f"{name} ({count} images)" for name, count in models.items()))
    for space, about in (info.get("space_models") or {}).items():
        lines.append(
            f"model:     {about.get('name')} ({about.get('dim')}-d, space {space}, from {about.get('source')})"
        )
    spaces = info.get("spaces") or {}
    if spaces:
        lines.append("spaces:")
        width = max(len(name) for name in spaces)
        for name, space in spaces.items():
            lines.append(_space_line(name, space, width))
    lines += metadata_lines(info.get("metadata") or {})
    if "db_bytes" in info:
        catalogue, vectors = _size(info["db_bytes"]), _size(info.get("index_bytes", 0))
        lines.append(f"on disk:   {catalogue} catalogue + {vectors} vector index")
    return lines


def _space_line(name: str, space: dict[str, Any], width: int) -> str:
    """One search space of ``info``: a space without vectors yet (every photo failed) has no dimension."""
    use = "similar images" if name == "image" else "text search" if name.startswith("joint:") else ""
    dim = "?" if space.get("dim") is None else space["dim"]
    index, size = space.get("index") or "?", space.get("size") or 0
    if index == "pending":  # a PostgreSQL load was interrupted before it built the index
        use = f"{use}; searched exactly until the next `vistext index` builds its index".lstrip("; ")
    return f"  {name:<{width}}  {dim:>5}-d  {index:<7} {size:>8} vectors  {use}".rstrip()


def metadata_lines(meta: dict[str, Any]) -> list[str]:
    """``info``'s metadata summary: dates, cameras, GPS, folders and collection tags."""
    if not meta:
        return []
    lines = []
    if meta.get("first"):
        lines.append(f"taken:     {meta['first'][:10]} to {meta['last'][:10]}")
    read = meta.get("with_meta", 0)
    lines.append(f"metadata:  {read} photos read, {meta.get('has_gps', 0)} with GPS position")
    cameras = meta.get("cameras") or {}
    if cameras:
        shown = ", ".join(f"{name} ({n})" for name, n in list(cameras.items())[:5])
        lines.append(f"cameras:   {shown}" + (f" and {len(cameras) - 5} more" if len(cameras) > 5 else ""))
    folders = meta.get("folders") or {}
    if folders:
        shown = ", ".join(f"{name} ({n})" for name, n in list(folders.items())[:5])
        lines.append(f"folders:   {shown}" + (f" and {len(folders) - 5} more" if len(folders) > 5 else ""))
    tags = meta.get("tags") or {}
    if tags:
        shown = ", ".join(f"{name} ({n})" for name, n in list(tags.items())[:8])
        lines.append(f"tags:      {shown}" + (f" and {len(tags) - 8} more" if len(tags) > 8 else ""))
    text = meta.get("text") or {}
    if text.get("ocr") or text.get("with_text"):
        waiting = f", {text['unread']} not read yet (run `vistext index DIR --ocr`)" if text.get("unread") else ""
        state = "read at index time" if text.get("ocr") else "not read any more (--no-ocr)"
        lines.append(f"text:      {state}; {text.get('with_text', 0)} photos hold text{waiting}")
    for name, done in (meta.get("unfinished_tagging") or {}).items():
        lines.append(f"tagging:   {name} is incomplete: its pass stopped after {done['images']} of {done['total']} "
                     "photos (run `vistext tag --collection` with that tagger again to finish)")  # fmt: skip
    return lines


def _size(count: int) -> str:
    value = count / 1024
    for unit in ("KB", "MB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def _answer(
    args: argparse.Namespace,
    ask: Callable[[Service], SearchResult],
    what: str,
    query_file: Callable[[Service], Path] | None = None,
) -> int:
    """Run a paged query, print it, and draw it as a contact sheet when ``--grid`` is given, led by the query
    photo (``query_file``) unless it is among the results. ``what`` is ``"search"`` (the joint text-image space)
    or ``"similar"`` (the image space), for the -v log line."""
    with service_for(args, read_only=True) as service:
        started = time.perf_counter()
        result = ask(service)
        seconds = time.perf_counter() - started
        if log.isEnabledFor(logging.INFO):
            _log_query(service, result, what, seconds, args.model)
        if args.grid:
            query = query_file(service).resolve() if query_file is not None else None
            if query is not None and any(Path(hit.path).resolve() == query for hit in result.results):
                query = None  # --include-self already shows it, first at 1.000
            service.grid(result, args.grid, query_image=query)
    print_hits(result, args.json)
    if args.grid and not args.json:
        say(f"wrote {args.grid}")
    return 0


def _log_query(service: Service, result: SearchResult, what: str, seconds: float, model: str | None) -> None:
    """With -v: which model and space answered, the kind and size of the vector index searched, and how long."""
    answering, space = service.answering_model(text=what == "search", model=model)
    index = (service.info().details.get("spaces") or {}).get(space, {})
    log.info(
        "%s %r: %s, space %s (%s-d), %s index of %s vectors searched, %d results, %.3f s",
        what,
        result.query,
        answering,
        space,
        index.get("dim", "?"),
        index.get("index", "?"),
        index.get("size", "?"),
        len(result.results),
        seconds,
    )


def run_similar(args: argparse.Namespace) -> int:
    query: Any = int(args.image) if args.image.isdigit() and not Path(args.image).exists() else args.image
    if isinstance(query, int) and not 1 <= query < 2**63:  # catalogue ids are SQLite integers
        raise UsageError(f"no indexed image with id {query} (ids are whole numbers from 1 to {2**63 - 1})")
    return _answer(
        args,
        lambda service: service.similar(
            query,
            args.k,
            offset=args.offset,
            min_score=args.min_score,
            include_self=args.include_self,
            filter=filter_from(args),
            model=args.model,
        ),
        "similar",
        lambda service: service.image_file(query) if isinstance(query, int) else Path(query),
    )


def run_search(args: argparse.Namespace) -> int:
    return _answer(
        args,
        lambda service: service.search(
            args.text,
            args.k,
            offset=args.offset,
            min_score=args.min_score,
            filter=filter_from(args),
            sort=args.sort,
            model=args.model,
        ),
        "search",
    )


def run_demo(args: argparse.Namespace) -> int:
    from vistext.cli.demo import run_demo as demo

    with service_for(args) as service:
        report = demo(service, args.folder)
    if args.json:
        emit_json(report)
        return 0
    index = report["index"]
    say(f"indexed {report['folder']}: {index['added']} added, {index['unchanged']} unchanged, {index['failed']} failed")
    say(f"catalogue: {report['db']}")
    say()
    say(f"tags for {report['tags']['image']}:")
    for tag in report["tags"]["tags"]:
        say(f"  {tag['score']:6.3f}  {tag['tag']}")
    say()
    say(f"images similar to {report['similar']['query']}:")
    for hit in report["similar"]["results"]:
        say(f"  {hit['score']:6.3f}  {hit['path']}")
    for search in report.get("searches", []):
        say()
        say(f"text search {search['query']!r}:")
        for hit in search["results"]:
            say(f"  {hit['score']:6.3f}  {hit['path']}")
    return 0


def run_topics(args: argparse.Namespace) -> int:
    with service_for(args, read_only=True) as service:
        result = service.topics(args.n, model=args.model)
        sheets = service.topic_grids(result, args.grid) if args.grid else []
    topics = result.to_dict()
    if sheets:
        topics["grids"] = [str(sheet) for sheet in sheets]
    if args.json:
        emit_json(topics)
        return 0
    for topic in topics["topics"]:
        classes = ", ".join(w["word"] for w in topic["words"][:6])
        if topic.get("label_words"):  # the label says what the photos show; the ImageNet classes are the detail
            say(f"topic {topic['topic']:2d} ({topic['weight']:.1%}): {topic['label']}")
            say(f"          ImageNet classes: {classes}")
        else:  # an index without text-search embeddings: the classes are all there is
            say(f"topic {topic['topic']:2d} ({topic['weight']:.1%}): {classes}")
        say("          typical images:")
        for image, path in list(zip(topic["images"], topic["paths"], strict=False))[:5]:
            say(f"            {path or f'#{image}'}")
    for sheet in sheets:
        say(f"wrote {sheet}")
    return 0


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    index = commands.add_parser("index", parents=[common], help="index a folder of images (incremental)")
    index.add_argument("folder", help="a folder, or s3://bucket/prefix with --engine ray")
    index.add_argument("--no-text", action="store_true", help="skip the text-search embeddings")
    index.add_argument(
        "--tagger",
        metavar="DIR",
        help="also store this trained tagger's tags of every photo (see list --tag)",
    )
    index.add_argument(
        "--engine", choices=["local", "ray"], default="local", help="local threads (default) or a Ray cluster"
    )
    index.add_argument("--address", help="Ray cluster HOST:PORT to join (default: start a local one for the run)")
    index.add_argument(
        "--watch",
        action="store_true",
        help="after indexing, keep watching the folder and index photos as they are added, changed, moved or "
        "deleted (Ctrl-C to stop)",
    )
    index.add_argument(
        "--ocr",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="read the text in photos (signs, screenshots, documents) so search finds it; remembered by the "
        "catalogue: later runs keep doing it until --no-ocr (needs the [ocr] extra; off by default)",
    )
    add_clip_model(index, "also store every photo in")
    add_db(index)
    index.set_defaults(run=run_index)

    info = commands.add_parser("info", parents=[common], help="what is in the catalogue")
    add_db(info)
    info.set_defaults(run=run_info)

    similar = commands.add_parser("similar", parents=[common], help="indexed images similar to an image")
    similar.add_argument("image", help="an image file, or the id of an indexed image")
    add_paging(similar, 10)
    similar.add_argument(
        "--include-self",
        action="store_true",
        help="keep the query image in its own results when it is indexed (left out by default)",
    )
    add_filters(similar)
    add_clip_model(similar, "compare in")
    add_db(similar)
    similar.set_defaults(run=run_similar)

    search = commands.add_parser("search", parents=[common], help="indexed images matching a text")
    search.add_argument("text", type=words, help="what to look for, in words")
    add_paging(search, 10)
    search.add_argument(
        "--sort", choices=("relevance", "date"), default="relevance", help="best first, or strong matches newest first"
    )
    add_filters(search)
    add_clip_model(search, "search in")
    add_db(search)
    search.set_defaults(run=run_search)

    demo = commands.add_parser("demo", parents=[common], help="index sample photos, then tag, compare and search")
    demo.add_argument("folder", nargs="?", type=Path, help="your own folder (default: bundled sample photos)")
    add_db(demo)
    demo.set_defaults(run=run_demo)

    topics = commands.add_parser("topics", parents=[common], help="NMF topics over the collection's tag scores")
    topics.add_argument("--n", type=whole(1), default=20, help="how many topics (default 20)")
    topics.add_argument(
        "--grid", type=Path, metavar="DIR", help="also draw each topic's typical images as a contact sheet in DIR"
    )
    add_clip_model(topics, "label topics in words by")
    add_db(topics)
    topics.set_defaults(run=run_topics)
