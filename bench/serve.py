"""Load check of the HTTP server: N concurrent clients for S seconds on loopback against a 10k-image index.

    .venv/bin/python bench/serve.py                     # 10k images, 16 clients, 30 s per scenario
    .venv/bin/python bench/serve.py --quick             # 2k images, 8 clients, 5 s (CI smoke run)

The index is built once from Flickr8k (a folder of symlinks: 8,091 photos, then repeats up to --images; the
indexer reuses features of identical content, so only distinct photos are encoded) and kept in --workdir.
The server runs in its own process (as `vistext serve` would); the clients are lean asyncio connections in
this process, kept alive. Prints p50/p90/p99
latency, throughput and the error count per scenario: text search (when a joint model is installed) with
popular queries (1,618 captions drawn again and again, so mostly answered from the query cache) and with every
query a text never seen before (each costs a MiniLM pass), similar by id, similar with min_score and paging, thumbnails.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx

ROOT = Path(__file__).resolve().parents[1]
FLICKR8K = Path(os.environ.get("VISTEXT_FLICKR8K", ROOT.parent / "shared" / "datasets" / "flickr8k"))

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
        link = folder / f"{i:05d}-{images[i % len(images)].name}"
        if not link.exists():
            link.symlink_to(images[i % len(images)])
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


def start_server(db: Path | str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", SERVER, str(db), str(port)])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    sys.exit("the server did not come up within 60 s")


async def _client(
    host: str, port: int, make_path: Callable[[random.Random], str], stop: float, seed: int, budget: Iterator[int]
) -> tuple[list[float], int]:
    """One keep-alive connection asking back to back: a raw HTTP/1.1 GET, then the whole response read."""
    rng = random.Random(seed)
    latencies: list[float] = []
    errors = 0
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.monotonic() < stop and next(budget, None) is not None:
            request = f"GET {make_path(rng)} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            fields = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:] if b":" in line)
            length = {k.strip().lower(): v.strip() for k, v in fields.items()}.get(b"content-length")
            if length is None:
                raise RuntimeError("response without Content-Length (the load client reads only those)")
            await reader.readexactly(int(length))
            latencies.append(time.perf_counter() - started)
            errors += head.split(b" ", 2)[1] != b"200"
    finally:
        writer.close()
    return latencies, errors


def load(
    url: str, make_path: Callable[[random.Random], str], clients: int, seconds: float, requests: int | None = None
) -> tuple[list[float], int, int]:
    """``clients`` concurrent keep-alive connections, each requesting back to back for ``seconds``.

    The clients are coroutines writing raw HTTP/1.1 in this process (the server has its own): a lean client
    costs ~0.1 ms of CPU per request, where 16 threads of httpx cost ~1 ms and capped the whole run at ~750
    requests/s on 2 cores, whatever the server did.
    """
    host, port = url.removeprefix("http://").split(":")
    stop = time.monotonic() + seconds
    budget = iter(range(requests)) if requests is not None else itertools.count()  # shared by the clients

    async def run() -> list[tuple[list[float], int]]:
        clients_ = (_client(host, int(port), make_path, stop, seed, budget) for seed in range(clients))
        return await asyncio.gather(*clients_)

    results = asyncio.run(run())
    latencies = [t for mine, _ in results for t in mine]
    return latencies, sum(errors for _, errors in results), len(latencies)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0, help="per scenario")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/vistext-bench-serve"))
    parser.add_argument("--quick", action="store_true", help="2k images, 8 clients, 5 s per scenario")
    parser.add_argument("--db", help="serve this existing store (e.g. postgresql://...) instead of building one")
    args = parser.parse_args()
    if args.quick:
        args.images, args.clients, args.seconds = 2000, 8, 5.0
        args.workdir = args.workdir.with_name(args.workdir.name + "-quick")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    text = joint_available()
    db = args.db or build_index(args.workdir, args.images, text)
    every_caption = [
        line.split("\t", 1)[1].strip()
        for line in (FLICKR8K / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines()
        if "\t" in line
    ]
    captions = every_caption[::25]  # 1,618 queries asked again and again: popular searches
    fresh = [c for i, c in enumerate(every_caption) if i % 25]  # 38,837 texts, each asked once
    random.Random(0).shuffle(fresh)
    fresh_next = itertools.count()
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
            scenarios = {
                "text search (k=10)": lambda rng: "/api/search?" + urlencode({"q": rng.choice(captions)}),
                "text search, all new texts": lambda rng: (
                    "/api/search?" + urlencode({"q": fresh[next(fresh_next) % len(fresh)]})
                ),
                **scenarios,
            }
            # popular searches are popular because they come back: ask each once, as earlier users would have
            popular = iter(captions)
            started = time.perf_counter()
            load(url, lambda rng: "/api/search?" + urlencode({"q": next(popular)}), args.clients, 600, len(captions))
            print(f"query cache warmed with the {len(captions)} popular texts in {time.perf_counter() - started:.1f} s")
        print(f"\n{count} images, {args.clients} concurrent clients, {args.seconds:g} s per scenario, {url}")
        header = ("requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "errors")
        print(f"{'scenario':30s} " + " ".join(f"{h:>8s}" for h in header))
        for name, make in scenarios.items():
            load(url, make, args.clients, min(3.0, args.seconds))  # warm caches (SQLite pages, thumbnails)
            latencies, errors, total = load(url, make, args.clients, args.seconds)
            print(
                f"{name:30s} {total:8d} {total / args.seconds:8.1f} {percentile(latencies, 50):8.1f} "
                f"{percentile(latencies, 90):8.1f} {percentile(latencies, 99):8.1f} {errors:8d}"
            )
        first = next(iter(scenarios))
        solo, _, _ = load(url, scenarios[first], 1, min(5.0, args.seconds))
        print(f"one client alone, {first}: p50 {statistics.median(solo) * 1000:.1f} ms")
    finally:
        process.terminate()
        process.wait(timeout=20)


if __name__ == "__main__":
    main()
