"""What a CLIP-family model costs on this machine: indexing throughput, and the time and peak memory of a cold
``vistext search --model`` (a new process, as a user runs it) on a 10,000-photo catalogue, per model size.

Models (random weights, Immich's layout, built by tests/clip_builder.py with transformers + torch.onnx.export and
kept under ``--work``): ``tiny`` (the tests' model) and ``vit-b-32`` (ViT-B/32's shapes: a 12-layer 768-wide image
tower on 32-px patches at 224 px, a 12-layer 512-wide text tower, 512-d embeddings). Its BPE vocabulary is
trained on Flickr8k captions, so it is smaller than CLIP's 49,408 tokens: only the size of the token-embedding
table differs (the real one is ~100 MB larger on disk), not the work per query or per photo.

Indexing: ``--photos`` Flickr8k photos indexed with ``vistext index --model`` (the bundled pass first, then the
model's pass, each timed). The 10k-photo catalogue for the cold search is written directly (random unit vectors
in the model's space and in the image-feature space, the model recorded as its maker), because encoding 10,000
photos with ViT-B/32 on this machine would take far longer than the figure is worth; a search reads the same
files either way. Cold search: wall time of the whole process and its peak RSS, best and worst of ``--runs``.

    .venv/bin/python bench/clip_cost.py                      # tiny and vit-b-32, 100 photos, 10k catalogue
    .venv/bin/python bench/clip_cost.py --models tiny --photos 50 --catalogue 2000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FLICKR8K = ROOT.parent / "shared" / "datasets" / "flickr8k"
sys.path.insert(0, str(ROOT / "tests"))  # clip_builder: the tests' model builder

from clip_builder import TINY, VIT_B_32, build_clip  # noqa: E402

from vistext.models.clip import ClipModel  # noqa: E402
from vistext.service import Service  # noqa: E402
from vistext.store import ImageRecord, open_store  # noqa: E402

SIZES = {"tiny": TINY, "vit-b-32": VIT_B_32}


def model_folder(name: str, work: Path) -> Path:
    folder = work / f"{name}-random"
    if not (folder / "textual" / "tokenizer_config.json").is_file():
        lines = (FLICKR8K / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines()
        started = time.perf_counter()
        build_clip(folder, [line.split("\t", 1)[1] for line in lines[:20000]], SIZES[name])
        print(f"  built {name} in {time.perf_counter() - started:.0f} s")
    return folder


def indexing(folder: Path, work: Path, photos: int) -> dict[str, float]:
    images = sorted((FLICKR8K / "images").glob("*.jpg"))[:photos]
    target = work / f"index-{folder.name}-{photos}"
    if target.exists():
        subprocess.run(["rm", "-rf", str(target)], check=True)
    target.mkdir(parents=True)
    for image in images:
        os.symlink(image, target / image.name)
    with Service(db=target / "catalogue.sqlite", progress=False) as service:
        started = time.perf_counter()
        service.index(target)
        bundled = time.perf_counter() - started
        started = time.perf_counter()
        service.index(target, model=folder)
        clip = time.perf_counter() - started
    return {"photos": photos, "bundled_s": bundled, "model_s": clip, "model_photos_per_s": photos / clip}


def catalogue(folder: Path, work: Path, size: int) -> Path:
    model = ClipModel(folder)
    db = work / f"catalogue-{folder.name}-{size}.sqlite"
    if db.is_file():
        return db
    rng = np.random.default_rng(0)
    with open_store(str(db)) as store:
        for start in range(0, size, 1000):
            rows = range(start, min(size, start + 1000))
            pooled = np.abs(rng.normal(size=(len(rows), 1280))).astype(np.float32)
            vectors = rng.normal(size=(len(rows), model.dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            store.add(
                [
                    ImageRecord(
                        path=f"/photos/{i:06d}.jpg",
                        size=1000 + i,
                        mtime=1.7e9 + i,
                        sha=f"sha-{i}",
                        model="efficientnet-lite0",
                        status="ok",
                        error=None,
                        pooled=pooled[k],
                        logits=None,
                        embeddings={model.space: vectors[k]},
                    )  # fmt: skip
                    for k, i in enumerate(rows)
                ]
            )
        store.record_space_model(model.space, model.describe())
    return db


def cold_search(db: Path, name: str, runs: int) -> dict[str, float]:
    # the peak from /proc (VmHWM, reset by exec): getrusage's ru_maxrss in a child starts at the parent's size
    code = (
        "import sys; from vistext.cli import main; code = main(sys.argv[1:]); "
        "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')), file=sys.stderr); "
        "sys.exit(code)"
    )
    walls, peaks = [], []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", code, "search", "a dog jumping into a lake", "--db", str(db), "--model", name,
             "--json", "--quiet"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        walls.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(done.stderr[-2000:])
        assert len(json.loads(done.stdout)["results"]) == 10
        peaks.append(int(done.stderr.strip().splitlines()[-1]) / 1024)
    return {"best_s": min(walls), "worst_s": max(walls), "peak_rss_mb": max(peaks)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=sorted(SIZES), default=["tiny", "vit-b-32"])
    parser.add_argument("--photos", type=int, default=100, help="Flickr8k photos indexed per model")
    parser.add_argument("--catalogue", type=int, default=10_000, help="photos in the cold-search catalogue")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "vistext-clip-cost")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("VISTEXT_HOME", str(args.work / "home"))
    print(f"cores: {os.cpu_count()}, {args.photos} photos indexed, {args.catalogue}-photo catalogue")
    for name in args.models:
        folder = model_folder(name, args.work)
        graphs = sum(f.stat().st_size for f in folder.rglob("*.onnx")) / 1e6
        index = indexing(folder, args.work, args.photos)
        search = cold_search(catalogue(folder, args.work, args.catalogue), folder.name, args.runs)
        print(
            f"{name:9s} graphs {graphs:6.1f} MB | index: bundled {index['bundled_s']:5.1f} s, model "
            f"{index['model_s']:5.1f} s ({index['model_photos_per_s']:5.1f} photos/s) | cold search on "
            f"{args.catalogue}: {search['best_s']:.2f}-{search['worst_s']:.2f} s, "
            f"peak RSS {search['peak_rss_mb']:.0f} MB"
        )
    print(f"(self: peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")


if __name__ == "__main__":
    main()
