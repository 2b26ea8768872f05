"""A filterable, taggable collection end to end on real photos: filtered search/similar/list/export/duplicates
through the service, the CLI and real HTTP, and a real trained tagger's tags stored for every photo."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageOps
from test_photo_meta import write_exif_photo  # tests/ is on sys.path (pytest rootdir import mode)

from vistext.cli.main import main
from vistext.service import Service
from vistext.store.records import ImageFilter

CLASSES = {"cat": "chelsea.png", "coffee": "coffee.png", "rocket": "rocket.jpg", "flower": "flower.jpg"}
PARIS, TOKYO = (48.8566, 2.3522), (35.6762, 139.6503)


def _crops(source: Path, out: Path, n: int, offset: int = 0, smallest: float = 0.6) -> list[Path]:
    """n different real views of a photo: crops at several places and scales (from ``smallest`` of each side
    up), some mirrored."""
    with Image.open(source) as image:
        picture = image.convert("RGB")
    w, h = picture.size
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(offset, offset + n):
        scale = smallest + (0.95 - smallest) * (i % 7) / 6
        cw, ch = int(w * scale), int(h * scale)
        x, y = (w - cw) * ((i * 37) % 11) // 10, (h - ch) * ((i * 53) % 11) // 10
        view = picture.crop((x, y, x + cw, y + ch))
        view = ImageOps.mirror(view) if i % 2 else view
        path = out / f"{source.stem}-{i:02d}.jpg"
        view.save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def tagger_dir(sample_photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real tagger trained (cached features, seconds) on a folder-per-class set of crops of real photos."""
    from vistext.training.tagger import TaggerTrainConfig, train_tagger

    data = tmp_path_factory.mktemp("classes")
    for name, photo in CLASSES.items():
        _crops(sample_photos / photo, data / name, 12)
    out = tmp_path_factory.mktemp("models") / "scenes"
    train_tagger(TaggerTrainConfig(data=f"folder:{data}", out=out, epochs=40, threads=1, patience=None), progress=False)
    return out


@pytest.fixture(scope="module")
def collection(sample_photos: Path, tmp_path_factory: pytest.TempPathFactory, tagger_dir: Path) -> Path:
    """Photos (new crops, unseen by the tagger) with EXIF: cats in Paris 2021 (Canon), the rest in Tokyo 2023
    (Nikon) under trips/, plus two photos without EXIF; indexed with the tagger."""
    root = tmp_path_factory.mktemp("collection")
    for name, photo in CLASSES.items():
        for i, crop in enumerate(_crops(sample_photos / photo, root / "raw", 3, offset=40, smallest=0.8)):
            cat = name == "cat"
            write_exif_photo(
                crop,
                (root / ("paris" if cat else "trips/tokyo")) / f"{name}-{i}.jpg",
                taken=f"{2021 if cat else 2023}:0{i + 3}:1{i} 12:00:00",
                make="Canon" if cat else "NIKON CORPORATION",
                model="EOS 80D" if cat else "Z 6",
                gps=PARIS if cat else TOKYO,
            )
            crop.unlink()
    (root / "raw").rmdir()
    for photo in ("astronaut.png", "camera.png"):
        Image.open(sample_photos / photo).convert("RGB").save(root / photo)
    assert main(["index", str(root), "--tagger", str(tagger_dir), "--quiet", "--json"]) == 0
    with Service(db=root, progress=False) as service:  # these tests check the trained tagger's tags alone
        store = service.store()
        store.set_tags("default", {int(i): [] for i in store.ids_tagged_by("default")})
    return root


@pytest.fixture(scope="module")
def service(collection: Path) -> Iterator[Service]:
    with Service(db=collection, progress=False) as service:
        yield service


def _names(result: Any) -> list[str]:
    items = result["results"] if isinstance(result, dict) else result.to_dict()["results"]
    return [Path(item["path"]).name for item in items]


def test_the_tagger_tags_every_photo_from_stored_features(service: Service) -> None:
    counts = service.tag_counts()
    assert set(counts) <= set(CLASSES)
    store = service.store()
    tags = store.tags_for(store.ids_matching(ImageFilter()).tolist())
    carried = [  # does each class photo (a crop the tagger never saw) carry its class's tag?
        Path(record.path).name.split("-")[0] in [tag for tag, _ in tags.get(record.id or 0, [])]
        for record in store.records()
        if Path(record.path).name.split("-")[0] in CLASSES
    ]
    assert len(carried) == 12 and sum(carried) >= 10, tags
    assert all(0.0 <= score <= 1.0 for pairs in tags.values() for _, score in pairs)
    cats = service.list_images(ImageFilter(tag="cat")).to_dict()
    tagged_cat = {i for i, pairs in tags.items() if "cat" in [tag for tag, _ in pairs]}
    assert {item["id"] for item in cats["results"]} == tagged_cat and cats["total"] == counts["cat"]
    assert len([name for name in _names(cats) if name.startswith("cat")]) >= 2


def test_filtered_search_and_similar_return_k_matching_photos(service: Service, collection: Path) -> None:
    tokyo = ImageFilter(near=(*TOKYO, 20.0))
    result = service.similar(str(collection / "paris" / "cat-0.jpg"), 5, filter=tokyo)
    assert len(result.results) == 5 and all(Path(h.path).parent.name == "tokyo" for h in result.results)
    hit = result.to_dict()["results"][0]
    assert hit["meta"]["camera_model"] == "Z 6" and hit["meta"]["taken"].startswith("2023-")
    assert isinstance(hit["tags"], list)
    unfiltered = service.similar(str(collection / "paris" / "cat-0.jpg"), 2)
    assert {Path(h.path).parent.name for h in unfiltered.results} == {"paris"}  # the other cats come first
    nikon_2023 = service.list_images(ImageFilter(camera="nikon", after=1672531200.0)).to_dict()
    assert nikon_2023["total"] == 9
    assert service.list_images(ImageFilter(folder="trips")).to_dict()["total"] == 9
    assert service.list_images(ImageFilter(before=1640995200.0)).to_dict()["total"] == 3  # 2021: the cats
    assert service.list_images(k=50).to_dict()["total"] == 14


def test_export_csv_and_jsonl(service: Service) -> None:
    rows = list(csv.DictReader(io.StringIO("".join(service.export_lines(ImageFilter(folder="paris"), "csv")))))
    assert len(rows) == 3 and rows[0]["camera_make"] == "Canon" and rows[0]["taken"].startswith("2021-")
    assert float(rows[0]["latitude"]) == pytest.approx(PARIS[0], abs=1e-4)
    assert sum("cat" in row["tags"].split(";") for row in rows) >= 2
    assert all(len(row["tags"].split(";")) == len(row["scores"].split(";")) for row in rows)
    lines = [json.loads(line) for line in service.export_lines(None, "jsonl")]
    assert len(lines) == 14 and {"id", "path", "tags", "meta"} <= set(lines[0])


def test_info_summarises_metadata_and_tags(service: Service) -> None:
    meta = service.info().to_dict()["metadata"]
    assert meta["cameras"] == {"NIKON CORPORATION Z 6": 9, "Canon EOS 80D": 3}
    assert meta["has_gps"] == 12 and meta["with_meta"] == 14
    assert meta["first"].startswith("2021-03-10") and meta["last"].startswith("2023-05-12")
    assert meta["folders"] == {"trips/tokyo": 9, "paris": 3, ".": 2}
    assert meta["tags"]


def test_cli_list_export_and_filters(collection: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(collection)
    assert main(["list", "--db", db, "--near", f"{PARIS[0]},{PARIS[1]},5", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["total"] == 3 and all(n.startswith("cat") for n in _names(listed))
    assert main(["list", "--db", db, "--camera", "canon"]) == 0
    text = capsys.readouterr().out
    assert "Canon EOS 80D" in text and "2021-" in text
    out = tmp_path / "photos.csv"
    assert main(["export", "--db", db, "--format", "csv", "--out", str(out), "--folder", "trips"]) == 0
    assert "wrote 9 photos" in capsys.readouterr().out
    assert len(list(csv.DictReader(out.open()))) == 9
    assert (
        main(["similar", "--db", db, str(collection / "paris" / "cat-1.jpg"), "--after", "2023-01-01", "--json"]) == 0
    )
    assert all("tokyo" in p for p in [h["path"] for h in json.loads(capsys.readouterr().out)["results"]])
    assert main(["duplicates", "--db", db, "--folder", "paris", "--json"]) == 0
    assert "groups" in json.loads(capsys.readouterr().out)
    assert main(["list", "--db", db, "--near", "95,2,10"]) == 2
    assert "near: latitude must be in [-90, 90]" in capsys.readouterr().err
    assert main(["list", "--db", db, "--after", "2023-13-01"]) == 2
    assert "is not a date" in capsys.readouterr().err
    assert main(["info", "--db", db]) == 0
    info = capsys.readouterr().out
    assert "cameras:   NIKON CORPORATION Z 6 (9), Canon EOS 80D (3)" in info and "12 with GPS position" in info


def test_tag_collection_command_replaces_the_taggers_tags(
    collection: Path, tagger_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tag", "--collection", "--model", str(tagger_dir), "--db", str(collection), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tagger"] == "scenes" and report["images"] == 14 and report["tagged"] >= 10
    assert main(["tag", "--collection", "--db", str(collection)]) == 2
    assert "needs --model" in capsys.readouterr().err


@pytest.fixture(scope="module")
def client(collection: Path, running_server: Callable[..., AbstractContextManager[str]]) -> Iterator[httpx.Client]:
    from vistext.server import ServerSettings

    with running_server(ServerSettings(db=collection / ".vistext" / "catalogue.sqlite", warm_up=False)) as url:
        with httpx.Client(base_url=url, timeout=60) as http:
            yield http


def test_http_list_export_tags_facets_and_filters(client: httpx.Client, collection: Path) -> None:
    listed = client.get("/api/list", params={"camera": "canon", "k": 2})
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["total"] == 3 and len(body["results"]) == 2 and body["results"][0]["meta"]["camera_make"] == "Canon"
    assert client.get("/api/list", params={"after": "2023-01-01", "before": "2024-01-01"}).json()["total"] == 9
    exported = client.get("/api/export", params={"format": "csv", "folder": "paris"})
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    assert len(list(csv.DictReader(io.StringIO(exported.text)))) == 3
    jsonl = client.get("/api/export", params={"format": "jsonl"})
    assert len(jsonl.text.splitlines()) == 14
    tags = client.get("/api/tags").json()["tags"]
    assert tags and set(tags) <= set(CLASSES)
    facets = client.get("/api/facets").json()
    assert facets["has_gps"] == 12 and facets["cameras"]["Canon EOS 80D"] == 3 and facets["first"].startswith("2021")
    cat_id = next(item["id"] for item in body["results"])
    similar = client.get(f"/api/similar/{cat_id}", params={"k": 4, "near": f"{TOKYO[0]},{TOKYO[1]},10"}).json()
    assert len(similar["results"]) == 4 and all("tokyo" in h["path"] for h in similar["results"])
    assert all("meta" in h and "tags" in h for h in similar["results"])
    searched = client.get("/api/search", params={"q": "a cat", "k": 3, "folder": "trips", "camera": "nikon"})
    assert searched.status_code == 200, searched.text
    assert len(searched.json()["results"]) == 3 and all("tokyo" in h["path"] for h in searched.json()["results"])
    for params, words in (
        ({"near": "1,2"}, "near: not LAT,LON,KM"),
        ({"near": "95,2,10"}, "near: not LAT,LON,KM (latitude -90 to 90"),
        ({"after": "last week"}, "after: not a date"),
        ({"before": "2023-02-30"}, "before: not a date"),
        ({"tag": "   "}, "tag: needs words"),
        ({"camera": ""}, "camera:"),
    ):
        bad = client.get("/api/list", params=params)
        assert bad.status_code == 400 and words in bad.json()["error"], (params, bad.text)
    assert client.get("/api/export", params={"format": "xml"}).status_code == 400
    assert client.get("/api/list", params={"after": "2024-01-01", "before": "2023-01-01"}).json()["total"] == 0
    deadline = time.monotonic() + 120  # the map's layout is computed in the background: 202 until it is ready
    while (answer := client.get("/api/map", params={"method": "pca", "folder": "paris"})).status_code == 202:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert answer.status_code == 200 and answer.json()["count"] == 3
    assert {Path(name).name for name in answer.json()["points"]["name"]} == {"cat-0.jpg", "cat-1.jpg", "cat-2.jpg"}
