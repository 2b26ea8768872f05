"""The CPU cost a user pays for a CLIP-family model: a ViT-B/32-sized CLIP (the architecture of OpenAI's and LAION's
ViT-B-32; random weights, since none can be downloaded here) exported once by vistext, then run as the runtime runs
it (ONNX Runtime, ``tokenizers``, NumPy/PIL preprocessing; no torch in the timing process).

    .venv/bin/python bench/clip_export_cost.py                 # build + export the ViT-B/32-sized model, then time it
    .venv/bin/python bench/clip_export_cost.py --model DIR     # time any CLIP folder vistext reads instead

Printed: the export's time and size, then medians over ``--runs`` runs, as wall ms and (in brackets) the CPU ms the
process used, of: preprocessing one photo (decode, resize, crop, normalise; Flickr8k originals, about 500x375),
the image tower per photo at batch 1 and batch 16, one text query (tokenize + text tower); then the wall time of
the first query of a fresh process (text graph loaded, cold) and the peak resident memory with both towers loaded.
Wall times carry whatever else the machine runs (the load average is printed); CPU times much less so.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
sys.path.insert(0, str(SRC))
FLICKR8K = HERE.parents[1] / "shared" / "datasets" / "flickr8k"
VIT_B_32 = {
    "projection_dim": 512,
    "vision_config": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                      "num_attention_heads": 12, "image_size": 224, "patch_size": 32, "hidden_act": "quick_gelu"},
    "text_config": {"hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12, "num_attention_heads": 8,
                    "max_position_embeddings": 77, "vocab_size": 49408, "hidden_act": "quick_gelu",
                    "eos_token_id": 49407, "bos_token_id": 49406, "pad_token_id": 49407},
}  # fmt: skip
BUILD = """
import json, sys
from pathlib import Path
from transformers import CLIPConfig, CLIPModel, CLIPTokenizer
from vistext.training.clip_tokenizer import byte_stand_ins
folder = Path(sys.argv[1]); config = json.loads(sys.argv[2])
alphabet = list(byte_stand_ins().values())
words = alphabet + [w + "</w>" for w in alphabet]
words += [f"filler{i}</w>" for i in range(49406 - len(words))] + ["<|startoftext|>", "<|endoftext|>"]
CLIPModel(CLIPConfig(**config)).save_pretrained(str(folder))
CLIPTokenizer(vocab={w: i for i, w in enumerate(words)}, merges=[]).save_pretrained(str(folder))
"""
EXPORT = "import sys; from pathlib import Path; from vistext.service.clip_models import prepare_clip_model; " + (
    "print(prepare_clip_model(sys.argv[1], Path(sys.argv[2])))"
)


def _prepare(work: Path) -> tuple[Path, float]:
    """A ViT-B/32-sized CLIP saved as a Hugging Face folder (a byte-level vocabulary of CLIP's size: the cost does
    not depend on which words it holds) and exported; (ONNX folder, export seconds)."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1"}
    source = work / "vit-b-32-random"
    if not (source / "config.json").is_file():
        subprocess.run([sys.executable, "-c", BUILD, str(source), json.dumps(VIT_B_32)], env=env, check=True)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", EXPORT, str(source), str(work / "home")], env=env, check=True,
                          capture_output=True, text=True)  # fmt: skip
    return Path(done.stdout.strip().splitlines()[-1]), time.perf_counter() - started


def _median_ms(action, runs: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Median (wall ms, CPU ms of this process) over ``runs`` calls: on a shared machine the wall time carries
    other people's load, the CPU time is what the work itself costs (summed over ONNX Runtime's threads)."""
    wall, cpu = [], []
    for _ in range(runs):
        started, started_cpu = time.perf_counter(), time.process_time()
        action()
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return statistics.median(wall) * 1000, statistics.median(cpu) * 1000


def _cold_query(folder: Path) -> float:
    code = (
        "import time; t = time.perf_counter(); import numpy as np, onnxruntime; from tokenizers import Tokenizer; "
        f"f = {str(folder)!r}; tok = Tokenizer.from_file(f + '/textual/tokenizer.json'); "
        "s = onnxruntime.InferenceSession(f + '/textual/model.onnx', providers=['CPUExecutionProvider']); "
        "ids = np.array([tok.encode('a dog on the beach').ids], dtype=np.int32); s.run(None, {'text': ids}); "
        "print(time.perf_counter() - t)"
    )
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="an ONNX CLIP folder (or any folder vistext reads) instead of building one")
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("VISTEXT_HOME", "/tmp")) / "bench-clip")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    if args.model:
        started = time.perf_counter()
        from vistext.service.clip_models import prepare_clip_model

        folder, took = prepare_clip_model(args.model, args.work / "home"), time.perf_counter() - started
    else:
        folder, took = _prepare(args.work)
    size = sum(p.stat().st_size for p in (folder / "visual" / "model.onnx", folder / "textual" / "model.onnx"))
    print(f"export: {took:.0f} s (0 when reused); ONNX graphs {size / 1e6:.0f} MB; {folder}")

    import numpy as np
    import onnxruntime
    from PIL import Image
    from tokenizers import Tokenizer

    from vistext.models.clip_preprocess import ClipPreprocess

    assert "torch" not in sys.modules, "the timing process must run as the runtime does, without torch"
    cold = statistics.median(_cold_query(folder) for _ in range(3))
    preprocess = ClipPreprocess.from_folder(folder)
    tokenizer = Tokenizer.from_file(str(folder / "textual" / "tokenizer.json"))
    image = onnxruntime.InferenceSession(str(folder / "visual" / "model.onnx"), providers=["CPUExecutionProvider"])
    text = onnxruntime.InferenceSession(str(folder / "textual" / "model.onnx"), providers=["CPUExecutionProvider"])
    photos = sorted((FLICKR8K / "originals").glob("*.jpg"))[:16]
    batch = preprocess.batch([Image.open(p) for p in photos]).astype(np.float32)
    prep = _median_ms(lambda: preprocess(Image.open(photos[0])), args.runs)
    one = _median_ms(lambda: image.run(None, {"image": batch[:1]}), args.runs)
    sixteen = tuple(ms / len(batch) for ms in _median_ms(lambda: image.run(None, {"image": batch}), args.runs))

    def query() -> None:
        ids = np.array([tokenizer.encode("two dogs playing in the snow").ids], dtype=np.int32)
        text.run(None, {"text": ids})

    per_query = _median_ms(query, args.runs)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load = os.getloadavg()[0]
    print(f"threads: ONNX Runtime default ({os.cpu_count()} cores seen, load average {load:.1f}); "
          f"median of {args.runs} runs, wall ms (CPU ms of the process)")  # fmt: skip
    print("| preprocess / photo | image tower / photo, batch 1 | image tower / photo, batch 16 | text query (warm) |"
          " first query, fresh process | peak RSS, both towers |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- |")
    cells = [f"{wall:.0f} ({cpu:.0f})" for wall, cpu in (prep, one, sixteen, per_query)]
    print(f"| {' | '.join(cells)} | {cold * 1000:.0f} | {peak:.0f} MB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
