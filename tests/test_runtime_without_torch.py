"""The runtime needs no torch: on a fresh ``$VISTEXT_HOME`` (no cached graphs), with ``import torch`` failing,
``vistext index``, ``search``, ``tag``, ``similar``, ``match``, ``caption`` and ``duplicates`` run through the
console entry point in subprocesses and give real answers on real Flickr8k photos."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
DOG = "1001773457_577c3a7d70.jpg"  # "A black dog and a spotted dog are fighting"


def _vistext(env: dict[str, str], cwd: Path, *argv: str) -> Any:
    code = "import sys; from vistext.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run(
        [sys.executable, "-c", code, *argv, "--json", "--quiet"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, (argv, done.stderr[-2000:])
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def without_torch(tmp_path_factory: pytest.TempPathFactory, flickr8k_images: list[Path]) -> tuple[dict, Path]:
    """(environment, photo folder): torch blocked, a fresh home, 19 photos and an exact copy of the dog photo."""
    root = tmp_path_factory.mktemp("no-torch")
    blocker = root / "blocker" / "torch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text('raise ImportError("torch is blocked: the runtime must not need it")\n')
    photos = root / "photos"
    photos.mkdir()
    for path in flickr8k_images[:19]:
        shutil.copy(path, photos / path.name)
    shutil.copy(photos / DOG, photos / f"copy-of-{DOG}")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=f"{root / 'blocker'}{os.pathsep}{SRC}", VISTEXT_HOME=str(root / "home"), HF_HUB_OFFLINE="1")
    return env, photos


def test_the_blocker_blocks(without_torch: tuple[dict, Path]) -> None:
    env, photos = without_torch
    done = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert done.returncode != 0 and "torch is blocked" in done.stderr


def test_index_and_queries_run_without_torch(without_torch: tuple[dict, Path], flickr8k: Path) -> None:
    env, photos = without_torch
    dog, copy = str(photos / DOG), str(photos / f"copy-of-{DOG}")
    indexed = _vistext(env, photos, "index", str(photos))  # builds every graph on this fresh home
    assert (indexed["added"], indexed["failed"]) == (20, 0)

    found = _vistext(env, photos, "search", "a dog", "-k", "3")["results"]
    assert {found[0]["path"], found[1]["path"]} == {dog, copy}  # the dog photo and its copy come first

    tags = _vistext(env, photos, "tag", dog)[0]["tags"]
    assert tags and all(0 < t["score"] <= 1 for t in tags)
    assert [t["score"] for t in tags] == sorted((t["score"] for t in tags), reverse=True)

    similar = _vistext(env, photos, "similar", dog, "-k", "3")["results"]
    assert similar[0]["path"] == copy and similar[0]["score"] > 0.99

    match = _vistext(env, photos, "match", dog, "dog,grass", "man,bike")
    assert match["best"] == 0 and match["candidates"][0]["tags"] == ["dog", "grass"]

    # a bank of real captions: one per photo of 40 others, and one of the dog photo's own
    lines = (flickr8k / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines()
    firsts = [line.split("\t", 1)[1] for line in lines if line.split("\t", 1)[0].endswith("#0")]
    own = next(line.split("\t", 1)[1] for line in lines if line.startswith(f"{DOG}#0"))
    bank = photos.parent / "captions.txt"
    bank.write_text("\n".join([*firsts[100:140], own]) + "\n", encoding="utf-8")
    captions = _vistext(env, photos, "caption", "--captions", str(bank), dog)["captions"]
    assert captions[0]["text"] == own
    composed = _vistext(env, photos, "caption", dog, "-k", "2")  # no bank: composed, still without torch
    assert composed["source"] == "composed" and "dog" in composed["captions"][0]["text"].split()

    groups = _vistext(env, photos, "duplicates")["groups"]
    assert len(groups) == 1 and {dog, copy} <= set(json.dumps(groups[0]).replace('"', " ").split())
