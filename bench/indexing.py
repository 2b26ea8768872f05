"""Indexing throughput: the whole ``vistext index`` process against the backbone alone, side by side.

    .venv/bin/python bench/indexing.py              # 1,000 500-px Flickr8k photos, 5 alternating rounds
    .venv/bin/python bench/indexing.py --quick      # 200 photos, 3 rounds

The photos are the 1,000 Flickr8k originals (longest side 500 px), copied into a temporary folder outside the
repository. Each round measures, back to back:

- the backbone alone: ONNX Runtime on uint8 batches of 16 decoded beforehand, into the graph indexing runs,
  both as the indexer runs it (``bulk_streams()`` batches at once, each on its share of the cores) and as one
  batch at a time on every core (how indexing ran it before); the faster of the two is the reference;
- the whole process: ``vistext index FOLDER --db NEW --json`` in a subprocess, wall clock from start to exit
  (interpreter start-up, model loading, listing, hashing, decoding, metadata, the backbone, the joint and
  fused spaces, SQLite writes, the default-tag pass and the vector index), into a new catalogue each round;
- optionally (``--naive-limit N``) a naive serial loop: PIL + eager PyTorch, one image at a time.

Prints img/s and CPU per photo of each, the ratio whole/backbone per round and the medians. The machine is
shared and its speed drifts within minutes, so each ratio is taken within a round. Figures only; nothing here
passes or fails on wall-clock time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from vistext.encoders import create_image_encoder
from vistext.encoders.onnx import bulk_streams
from vistext.images import open_image

FLICKR8K = Path(os.environ.get("VISTEXT_FLICKR8K", Path(__file__).resolve().parents[2] / "shared/datasets/flickr8k"))
BATCH = 16
INDEX = "import sys; from vistext.cli import main; sys.exit(main(sys.argv[1:]))"


def copy_photos(folder: Path, count: int) -> list[Path]:
    originals = sorted((FLICKR8K / "originals").glob("*.jpg"))[:count]
    if not originals:
        sys.exit(f"no Flickr8k originals under {FLICKR8K}/originals")
    folder.mkdir(parents=True)
    return [Path(shutil.copy2(path, folder / path.name)) for path in originals]


def backbone_alone(pixels: np.ndarray, streams: int) -> tuple[float, float]:
    """(img/s, CPU ms per photo) of the ONNX graph on pre-decoded uint8 batches, ``streams`` batches at once on
    a session sized for them (as the indexer opens it): what whole-process indexing is measured against."""
    encoder = create_image_encoder("efficientnet-lite0", streams=streams)
    encoder.encode_pixels(pixels[:BATCH])  # first run allocates
    starts = range(0, len(pixels), BATCH)
    started, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(streams) as pool:
        list(pool.map(lambda start: encoder.encode_pixels(pixels[start : start + BATCH]), starts))
    return len(pixels) / (time.perf_counter() - started), (time.process_time() - cpu) / len(pixels) * 1000


def whole_process(folder: Path, workdir: Path, round_: int, src: Path | None = None) -> tuple[float, float, dict]:
    """(img/s, CPU ms per photo, report) of ``vistext index`` run as a user runs it, into a new catalogue;
    ``src``: the ``src`` folder of another checkout (the previous code) to run instead of this one."""
    db = workdir / f"round{round_}.sqlite"
    env = dict(os.environ, PYTHONPATH=str(src)) if src is not None else None
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", INDEX, "index", str(folder), "--db", str(db), "--json"],
        capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"vistext index failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    report = json.loads(done.stdout)
    photos = report["added"] + report["updated"]
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    for file in workdir.glob(f"round{round_}.sqlite*"):
        shutil.rmtree(file) if file.is_dir() else file.unlink()
    return photos / seconds, cpu / photos * 1000, report


def naive(paths: list[Path]) -> float:
    """What a first attempt looks like: PIL per image, eager PyTorch, one image at a time (img/s)."""
    import torch

    torch.set_num_threads(1)
    encoder = create_image_encoder("efficientnet-lite0-torch")
    encoder.encode(np.zeros((1, 3, 224, 224), np.float32))
    started = time.perf_counter()
    for path in paths:
        img = Image.open(path).convert("RGB").resize((224, 224), Image.Resampling.BILINEAR)
        encoder.encode(encoder.preprocess(img)[None])
    return len(paths) / (time.perf_counter() - started)


def load_average() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=1000, help="500-px photos indexed (at most 1,000)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating measurement rounds")
    parser.add_argument("--naive-limit", type=int, default=0, help="photos for the (slow) naive loop; 0: skip")
    parser.add_argument("--quick", action="store_true", help="200 photos, 3 rounds")
    parser.add_argument("--previous", type=Path, help="also run the whole process of this checkout's src/ each round")
    args = parser.parse_args(argv)
    if args.quick:
        args.photos, args.rounds = 200, 3

    with tempfile.TemporaryDirectory(prefix="vistext-bench-indexing-") as tmp:
        paths = copy_photos(Path(tmp) / "photos", args.photos)
        encoder = create_image_encoder("efficientnet-lite0")
        pixels = np.stack([encoder.pixels(open_image(path)) for path in paths])
        print(
            f"{len(paths)} 500-px photos copied to {tmp}; batches of {BATCH}, indexing runs {bulk_streams()} "
            f"encode stream(s); {os.cpu_count()} cores; load average {load_average()}"
        )
        rounds: list[tuple[float, ...]] = []
        previous: list[tuple[float, float]] = []
        for round_ in range(args.rounds):
            alone = {streams: backbone_alone(pixels, streams) for streams in sorted({1, bulk_streams()})}
            best = max(alone, key=lambda streams: alone[streams][0])
            model, model_cpu = alone[best]
            whole, whole_cpu, report = whole_process(Path(tmp) / "photos", Path(tmp), round_)
            rounds.append((model, whole, whole / model, model_cpu, whole_cpu))
            if args.previous is not None:
                old, old_cpu, _ = whole_process(Path(tmp) / "photos", Path(tmp), round_, args.previous)
                previous.append((old / model, old_cpu))
                print(
                    f"  previous code: {old:6.1f} img/s ({old_cpu:5.2f} ms CPU/photo): {old / model:.2f}x the backbone"
                )
            each = ", ".join(f"{n} stream(s) {rate:6.1f} img/s ({cpu:5.2f} ms CPU)" for n, (rate, cpu) in alone.items())
            print(
                f"round {round_ + 1}: backbone alone {each}; whole process {whole:6.1f} img/s ({whole_cpu:5.2f} ms "
                f"CPU/photo; {report['added']} added, {report['failed']} failed): {whole / model:.2f}x the faster "
                f"backbone; load average {load_average()}",
                flush=True,
            )
        if args.naive_limit:
            print(f"naive serial loop        : {naive(paths[: args.naive_limit]):7.1f} img/s (PIL + eager torch)")
    model, whole, ratio, model_cpu, whole_cpu = (float(np.median([r[i] for r in rounds])) for i in range(5))
    ratios = sorted(r[2] for r in rounds)
    print(f"medians over {args.rounds} rounds:")
    print(f"backbone alone (faster)  : {model:7.1f} img/s, {model_cpu:5.2f} ms CPU per photo")
    print(f"whole vistext index      : {whole:7.1f} img/s, {whole_cpu:5.2f} ms CPU per photo")
    print(f"whole / backbone         : {ratio:5.2f}x (rounds {ratios[0]:.2f}-{ratios[-1]:.2f}x; target >= 0.75x)")
    print(f"CPU backbone / whole     : {model_cpu / whole_cpu:5.2f}x (the ratio both reach with the cores saturated)")
    if previous:
        old_ratio, old_cpu = (float(np.median([p[i] for p in previous])) for i in range(2))
        print(f"previous code            : {old_ratio:5.2f}x the backbone, {old_cpu:5.2f} ms CPU per photo")
    return 0


if __name__ == "__main__":
    sys.exit(main())
