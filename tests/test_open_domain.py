"""The open-domain default wired in: the fused space stored by indexing (and added to old catalogues from their
stored features, without reading a photo), 0-1 relevance scores with one --min-score meaning in the CLI and over
HTTP, open-vocabulary tags, matching, and ``vistext eval --data classes:DIR`` on the real opendomain photos."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import numpy as np
import pytest

from vistext.cli import main
from vistext.errors import StoreError
from vistext.indexing.local import index_folder
from vistext.server.settings import ServerSettings
from vistext.service import Service
from vistext.service.loaded_models import LoadedModels
from vistext.store import open_store

CLASSES = ("pizza", "airplane", "umbrella", "laptop")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory, opendomain_classes: Path, flickr8k_images: list[Path]) -> Path:
    """Three photos each of four everyday classes and six Flickr8k photos (two of dogs) in one folder."""
    folder = tmp_path_factory.mktemp("open-domain") / "photos"
    folder.mkdir()
    for name in CLASSES:
        for photo in sorted((opendomain_classes / name).glob("*.jpg"))[:3]:
            shutil.copy(photo, folder / photo.name)
    for photo in flickr8k_images[:6]:
        shutil.copy(photo, folder / photo.name)
    return folder


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main([*argv, "--json", "--quiet"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_an_old_catalogue_gains_the_fused_space_from_its_stored_features(photos: Path, tmp_path: Path) -> None:
    db = tmp_path / "old" / "catalogue.sqlite"
    service = Service(db=db, progress=False)
    models = LoadedModels()  # the service's own models are private; these are the same ones
    fused = models.open_domain
    assert fused is not None and fused.space in models.text_projectors()
    # a catalogue as the previous release built it: the joint space only
    with open_store(db) as store:
        report = index_folder(photos, store, models.encoder, projectors={models.joint_space: models.joint_projector()},
                              progress=False)  # fmt: skip
        assert report.added == 18 and fused.space not in store.spaces()
    with pytest.raises(StoreError, match=r"re-run `vistext index DIR`"):
        service.search("a photo of a pizza")  # never a silent mix of spaces
    service.close()
    # the next index adds the space from stored logits + joint vectors: every file unchanged, none re-encoded;
    # a concept space with region evidence needs each photo's grid, which a catalogue does not keep: read again
    with Service(db=db, progress=False) as upgraded:
        report = upgraded.index(photos)
        expected = (0, 18, 0) if fused.needs_grid else (18, 0, 0)
        assert (report.unchanged, report.updated, report.added) == expected
        derived = dict(zip(*upgraded.store().vectors(fused.space), strict=True))
        hits = [hit.path.split("/")[-1] for hit in upgraded.search("a photo of a pizza", k=3).results]
        assert sum(name.startswith("pizza") for name in hits) >= 2, hits
    # the same vectors a fresh index computes from the pixels
    with Service(db=tmp_path / "fresh" / "catalogue.sqlite", progress=False) as fresh:
        fresh.index(photos)
        store = fresh.store()
        by_path = {r.path: r.id for r in store.records()}
        ids, vectors = store.vectors(fused.space)
        fresh_by_path = {path: vectors[list(ids).index(i)] for path, i in by_path.items()}
    with open_store(db, readonly=True) as old:
        for record in old.records():
            assert np.abs(derived[record.id] - fresh_by_path[record.path]).max() < 1e-4


def test_scores_are_relevance_and_min_score_means_the_same_in_cli_and_http(
    photos: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    running_server: Callable[..., AbstractContextManager[str]],
) -> None:
    db = tmp_path / "db" / "catalogue.sqlite"
    with Service(db=db, progress=False) as service:
        service.index(photos)
        everything = service.search("an airplane", k=18).results
    scores = [hit.score for hit in everything]
    assert all(0.0 <= s <= 1.0 for s in scores) and scores == sorted(scores, reverse=True)
    assert all(hit.path.split("/")[-1].startswith("airplane") for hit in everything[:3])
    assert scores[0] > 0.5 > scores[-1]  # a readable scale: the airplanes are likely relevant, the rest are not
    cut = float(np.round((scores[2] + scores[3]) / 2, 4))
    cli = _json(capsys, "search", "an airplane", "-k", "18", "--min-score", str(cut), "--db", str(db))
    with running_server(ServerSettings(db=db)) as url, httpx.Client(base_url=url, timeout=60) as http:
        api = http.get("/api/search", params={"q": "an airplane", "k": 18, "min_score": cut}).json()
        similar = http.get("/api/similar/1", params={"k": 5}).json()["results"]
        assert http.get("/api/search", params={"q": "an airplane", "min_score": -0.5}).status_code == 400
    assert [h["id"] for h in cli["results"]] == [h["id"] for h in api["results"]]
    assert len(api["results"]) == 3 and all(h["score"] >= cut for h in api["results"])
    assert all(0.0 <= h["score"] <= 1.0 for h in similar)


def test_tags_match_and_eval_use_the_fused_default(
    photos: Path, opendomain_classes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pizza = sorted(photos.glob("pizza_*.jpg"))[0]
    service = Service(progress=False)
    [tags] = service.tag([pizza], k=3, vocab=["dog", "pizza", "airplane", "bicycle"])
    assert tags.tags[0].tag == "pizza" and all(0.0 <= t.score <= 1.0 for t in tags.tags)
    matched = service.match(pizza, [["dog", "grass"], ["pizza"], ["airplane"]], model="fused")
    assert matched.method == "fused" and matched.best == 1
    assert all(0.0 <= c.score <= 1.0 for c in matched.candidates)
    # a small real folder-per-class set: 4 classes x 4 photos, through the CLI as a user runs it
    root = tmp_path / "classes"
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for photo in sorted((opendomain_classes / name).glob("*.jpg"))[3:7]:
            shutil.copy(photo, root / name / photo.name)
    metrics = _json(capsys, "eval", "--data", f"classes:{root}", "--split", "all", "--template", "a photo of the {}")
    assert metrics["primary"] == "mean" and metrics["images"] == 16 and metrics["template"] == "a photo of the {}"
    assert metrics["top1"] >= 0.75 and metrics["p@10"] >= 0.3 and metrics["map"] >= 0.75
