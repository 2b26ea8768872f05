"""Every collection feature on a CLIP-family model (``--model``), through the CLI (``main(argv)``) and HTTP on
loopback, on real Flickr8k photos indexed with a tiny random CLIP in Immich's layout (tests/clip_builder.py).

Random weights say nothing about meaning, so answers are checked against the model itself: the stored vectors
are the model's embeddings of the photos, and search, similar, tag, caption and match rank as the model's own
cosines do. The bundled default is checked to answer exactly as in a catalogue that never saw a CLIP model.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from answers import assert_same_results

from vistext.cli.main import main
from vistext.images import open_image
from vistext.models.clip import ClipModel
from vistext.server import ServerSettings
from vistext.service import Service
from vistext.service.clip_spaces import PROMPTS
from vistext.service.inputs import decode

N_PHOTOS = 16
SRC = Path(__file__).resolve().parents[1] / "src"


def cli(*argv: str) -> Any:
    """``vistext ARGV --json``, in process; the parsed JSON answer."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*argv, "--json", "--quiet"])
    assert code == 0, (argv, out.getvalue()[-2000:])
    return json.loads(out.getvalue())


def cli_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    capsys.readouterr()
    assert main([*argv, "--quiet"]) != 0
    return capsys.readouterr().err.strip()


@pytest.fixture(scope="module")
def indexed(
    tmp_path_factory: pytest.TempPathFactory,
    flickr8k_images: list[Path],
    copy_photos: Callable[..., Path],
    tiny_clip: tuple[Path, Any],
) -> dict[str, Any]:
    """16 photos (8 in a subfolder, one exact copy) indexed with the bundled models and the tiny CLIP."""
    root = tmp_path_factory.mktemp("clip-collection")
    photos = copy_photos(flickr8k_images[:8], root / "photos")
    copy_photos(flickr8k_images[8:N_PHOTOS], photos / "sub")
    shutil.copy(flickr8k_images[0], photos / "sub" / "copy.jpg")
    folder = tiny_clip[0]
    report = cli("index", str(photos), "--model", str(folder))
    plain = copy_photos(flickr8k_images[:8], root / "plain")  # the same photos, never given a CLIP model
    copy_photos(flickr8k_images[8:N_PHOTOS], plain / "sub")
    shutil.copy(flickr8k_images[0], plain / "sub" / "copy.jpg")
    cli("index", str(plain))
    model = ClipModel(folder)
    return {"photos": photos, "plain": plain, "db": str(photos), "model": model, "report": report}


def stored(indexed: dict[str, Any]) -> tuple[list[str], np.ndarray]:
    with Service(indexed["db"], progress=False, read_only=True) as service:
        store = service.store()
        ids, vectors = store.vectors(indexed["model"].space)
        paths = [store.get(int(i)).path for i in ids]  # type: ignore[union-attr]
    return paths, vectors


def test_index_stores_the_models_embeddings_and_records_the_model(indexed: dict[str, Any]) -> None:
    model: ClipModel = indexed["model"]
    assert indexed["report"]["model_space"] == {"model": "tiny-clip", "space": model.space, "added": N_PHOTOS + 1}
    paths, vectors = stored(indexed)
    assert len(paths) == N_PHOTOS + 1 and vectors.shape == (N_PHOTOS + 1, model.dim)
    size = model.preprocess.size
    own = model.encode_images([open_image(path, min_side=size) for path in paths])
    assert (own * vectors).sum(axis=1).min() >= 0.9999
    info = cli("info", "--db", indexed["db"])
    assert info["space_models"][model.space] == model.describe()
    assert {"image", model.space} <= set(info["spaces"])  # side by side with the bundled spaces
    again = cli("index", str(indexed["photos"]), "--model", str(model.folder))
    assert again["model_space"]["added"] == 0 and again["unchanged"] == N_PHOTOS + 1


def test_search_ranks_by_the_models_own_cosines(indexed: dict[str, Any]) -> None:
    model: ClipModel = indexed["model"]
    paths, vectors = stored(indexed)
    query = "a dog runs through the snow"
    cosines = vectors @ model.encode_texts([query])[0]
    found = cli("search", query, "--db", indexed["db"], "--model", "tiny-clip", "-k", "5")["results"]
    best = np.argsort(-cosines)[:5]
    assert [hit["path"] for hit in found] == [paths[i] for i in best]
    assert np.allclose([hit["score"] for hit in found], cosines[best], atol=1e-4)  # plain cosines, as they are
    sub = cli("search", query, "--db", indexed["db"], "--model", "tiny-clip", "--folder", "sub", "-k", "50")
    assert len(sub["results"]) == N_PHOTOS - 8 + 1 and all("/sub/" in hit["path"] for hit in sub["results"])


def test_without_model_the_bundled_default_answers_as_before(indexed: dict[str, Any]) -> None:
    for text in ("a dog runs through the snow", "two children playing"):
        with_clip = cli("search", text, "--db", indexed["db"], "-k", "8")["results"]
        without = cli("search", text, "--db", str(indexed["plain"]), "-k", "8")["results"]
        assert [Path(h["path"]).relative_to(indexed["photos"]) for h in with_clip] == [
            Path(h["path"]).relative_to(indexed["plain"]) for h in without
        ]
        assert [h["score"] for h in with_clip] == [h["score"] for h in without]


def test_similar_in_the_models_space(indexed: dict[str, Any]) -> None:
    photos: Path = indexed["photos"]
    original = next(p for p in sorted(photos.glob("*.jpg")) if p.read_bytes() == (photos / "sub/copy.jpg").read_bytes())
    found = cli("similar", str(original), "--db", indexed["db"], "--model", "tiny-clip", "-k", "3")["results"]
    assert found[0]["path"] == str(photos / "sub" / "copy.jpg") and found[0]["score"] > 0.9999
    paths, vectors = stored(indexed)
    row = paths.index(str(original))
    cosines = np.delete(vectors @ vectors[row], row)
    assert np.allclose([hit["score"] for hit in found], np.sort(cosines)[::-1][:3], atol=1e-4)


def test_tag_caption_and_match_score_with_the_model(indexed: dict[str, Any], tmp_path: Path) -> None:
    model: ClipModel = indexed["model"]
    photo = sorted(indexed["photos"].glob("*.jpg"))[0]
    image = model.encode_images([decode(photo)])[0]  # decoded as single-image commands decode a file
    words = ["dog", "beach", "snow", "city street"]
    ensemble = model.encode_texts([p.format(w) for w in words for p in PROMPTS]).reshape(len(words), len(PROMPTS), -1)
    ensemble = ensemble.mean(axis=1)
    expected = ensemble @ image / np.linalg.norm(ensemble, axis=1)
    tags = cli("tag", str(photo), "--vocab", ",".join(words), "--model", str(model.folder), "-k", "4")[0]["tags"]
    assert [t["tag"] for t in tags] == [words[i] for i in np.argsort(-expected)]
    assert np.allclose([t["score"] for t in tags], np.sort(expected)[::-1], atol=1e-4)

    bank = tmp_path / "captions.txt"
    texts = ["a dog on the grass", "a man rides a bike", "children at the beach", "Ein Hund im Schnee"]
    bank.write_text("\n".join(texts) + "\n", encoding="utf-8")
    captions = cli("caption", str(photo), "--captions", str(bank), "--model", "tiny-clip", "--db", indexed["db"])
    cosines = model.encode_texts(texts) @ image
    assert [c["text"] for c in captions["captions"]] == [texts[i] for i in np.argsort(-cosines)]

    match = cli("match", str(photo), "dog, grass", "red car", "--model", str(model.folder))
    assert match["method"] == "clip" and len(match["candidates"]) == 2
    scores = [c["score"] for c in match["candidates"]]
    assert match["best"] == int(np.argmax(scores))


def test_duplicates_topics_and_map_in_the_models_space(indexed: dict[str, Any], tmp_path: Path) -> None:
    found = cli("duplicates", "--db", indexed["db"], "--model", "tiny-clip")
    assert found["threshold"] == 0.99
    copies = [g for g in found["groups"] if g["kind"] == "copies"]
    assert any(str(indexed["photos"] / "sub" / "copy.jpg") in json.dumps(g) for g in copies)
    topics = cli("topics", "--db", indexed["db"], "--model", "tiny-clip", "--n", "3")
    assert len(topics["topics"]) == 3 and all(t.get("label_words") for t in topics["topics"])
    out = tmp_path / "map.html"
    assert cli("map", "--db", indexed["db"], "--model", "tiny-clip", "--out", str(out), "--method", "pca")["map"]
    assert out.stat().st_size > 1000


def test_a_model_the_catalogue_lacks_is_refused_with_what_to_do(
    indexed: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = shutil.copytree(indexed["model"].folder, tmp_path / "other-clip")
    config = other / "visual" / "preprocess_cfg.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "fill_color": 1}))  # other files, other key
    error = cli_error(capsys, "search", "a dog", "--db", indexed["db"], "--model", str(other))
    assert len(error.splitlines()) == 1
    assert "no photos indexed with model other-clip" in error and "--model tiny-clip" in error
    assert f"vistext index DIR --model {other}" in error
    error = cli_error(capsys, "search", "a dog", "--db", indexed["db"], "--model", str(tmp_path / "nowhere"))
    assert "nowhere' not found (looked in:" in error and len(error.splitlines()) == 1


def test_http_takes_model_and_refuses_a_path(
    indexed: dict[str, Any], running_server: Callable[..., AbstractContextManager[str]], tmp_path: Path
) -> None:
    model: ClipModel = indexed["model"]
    photo = sorted(indexed["photos"].glob("*.jpg"))[0]
    text = "a dog runs through the snow"
    expected = cli("search", text, "--db", indexed["db"], "--model", "tiny-clip", "-k", "4")
    bank = tmp_path / "captions.txt"
    bank.write_text("a dog on the grass\na man rides a bike\nchildren at the beach\n", encoding="utf-8")
    captioned = cli("caption", str(photo), "--captions", str(bank), "--model", "tiny-clip", "--db", indexed["db"])
    settings = ServerSettings(db=Path(indexed["db"]), captions=str(bank), map_method="pca")
    with running_server(settings) as url, httpx.Client(base_url=url, timeout=60) as http:
        models = http.get("/api/models").json()["models"]
        assert models == [{"name": "tiny-clip", "key": model.key, "dim": model.dim, "space": model.space}]
        answer = http.get("/api/search", params={"q": text, "model": "tiny-clip", "k": 4}).json()
        assert_same_results(answer["results"], expected["results"])  # the same answer as the CLI
        first = answer["results"][0]["id"]
        similar = http.get(f"/api/similar/{first}", params={"model": "tiny-clip", "k": 3}).json()["results"]
        assert len(similar) == 3 and first not in [hit["id"] for hit in similar]
        files = {"file": (photo.name, photo.read_bytes(), "image/jpeg")}
        tags = http.post("/api/tag", params={"model": "tiny-clip"}, data={"vocab": "dog,snow"}, files=files).json()
        assert {t["tag"] for t in tags["tags"]} == {"dog", "snow"}
        match = http.post("/api/match", params={"model": "tiny-clip"}, data={"tag_sets": "dog\ncar"}, files=files)
        assert match.json()["method"] == "clip"
        upload = http.post("/api/similar", params={"model": "tiny-clip", "k": 2}, files=files).json()["results"]
        copy = str(indexed["photos"] / "sub" / "copy.jpg")  # the same photo and its copy, in the model's space
        assert {hit["path"] for hit in upload} == {str(photo), copy} and min(h["score"] for h in upload) > 0.999
        caption = http.post("/api/caption", params={"model": "tiny-clip", "k": 3}, files=files).json()
        assert [c["text"] for c in caption["captions"]] == [c["text"] for c in captioned["captions"]]
        mapped = http.get("/api/map", params={"model": "tiny-clip"})
        while mapped.status_code == 202:  # the layout is computed once, in the background
            mapped = http.get("/api/map", params={"model": "tiny-clip"})
        assert mapped.status_code == 200 and len(mapped.json()["points"]["id"]) == N_PHOTOS + 1
        assert http.get("/api/topics", params={"model": "tiny-clip", "n": 2}).status_code == 200
        assert http.get("/api/duplicates", params={"model": "tiny-clip"}).json()["threshold"] == 0.99
        refused = http.get("/api/search", params={"q": text, "model": str(model.folder)})
        assert refused.status_code == 404 and "unknown model" in refused.json()["error"]


def test_clip_queries_never_load_torch(indexed: dict[str, Any], tmp_path: Path) -> None:
    blocker = tmp_path / "blocker" / "torch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text('raise ImportError("torch is blocked: the runtime must not need it")\n')
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = f"{tmp_path / 'blocker'}{os.pathsep}{SRC}"
    code = "import sys; from vistext.cli import main; sys.exit(main(sys.argv[1:]))"
    for argv in (["search", "a dog"], ["similar", "1"]):
        done = subprocess.run(
            [sys.executable, "-c", code, *argv, "--db", indexed["db"], "--model", "tiny-clip", "--json"],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        assert json.loads(done.stdout)["results"]


def test_tagging_with_a_clip_model_needs_words(indexed: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    photo = sorted(indexed["photos"].glob("*.jpg"))[0]
    error = cli_error(capsys, "tag", str(photo), "--model", str(indexed["model"].folder))
    assert error.endswith("a CLIP-family model tags with your words: give them with --vocab")


def test_the_store_records_which_model_made_a_space(tmp_path: Path, indexed: dict[str, Any]) -> None:
    from vistext.store import open_store

    about = indexed["model"].describe()
    with open_store(str(tmp_path / "c.sqlite")) as store:
        assert store.space_models() == {}
        store.record_space_model("clip:x@1", about)
        store.record_space_model("clip:y@2", {**about, "name": "y"})
    with open_store(str(tmp_path / "c.sqlite"), readonly=True) as store:
        assert store.space_models() == {"clip:x@1": about, "clip:y@2": {**about, "name": "y"}}
        store.record_space_model("clip:z@3", about)  # a read-only store keeps what it has
        assert set(store.space_models()) == {"clip:x@1", "clip:y@2"}
