"""The service facade on real Flickr8k photos: what loads when, its result objects, the loaded-model cache, and
one tag-set parser behind the CLI, the HTTP server and the bot."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from conftest import run_async  # asyncio.run in a thread of its own (see conftest)
from fastapi.testclient import TestClient

from vistext.bot import BotSettings, VistextBot
from vistext.cli import main
from vistext.errors import StoreError, UsageError
from vistext.models import matcher_numpy
from vistext.models import tagger as tagger_module
from vistext.models.tagger import TaggerModel
from vistext.server.app import create_app
from vistext.server.settings import ServerSettings
from vistext.service import (
    InfoResult,
    MapResult,
    Service,
    StatusResult,
    TopicsResult,
    UnknownImageError,
    locate,
    parse_tag_sets,
)
from vistext.service.loaded_models import LoadedModels


def _captions(flickr8k: Path) -> dict[str, list[str]]:
    captions: dict[str, list[str]] = {}
    for line in (flickr8k / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines():
        key, _, text = line.partition("\t")
        captions.setdefault(key.split("#")[0], []).append(text.lower())
    return captions


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory, flickr8k: Path) -> dict[str, list[Path]]:
    """8 photos every caption calls a dog, 8 whose captions name no animal at all, copied to one folder."""
    captions = _captions(flickr8k)
    animals = ("dog", "puppy", "cat", "horse", "animal", "bird", "cow", "sheep")
    names = sorted(name for name in captions if (flickr8k / "images" / name).is_file())
    dogs = [n for n in names if all("dog" in c for c in captions[n])][:8]
    others = [n for n in names if not any(a in c for c in captions[n] for a in animals)][:8]
    folder = tmp_path_factory.mktemp("service") / "photos"
    folder.mkdir()
    for name in dogs + others:
        shutil.copy(flickr8k / "images" / name, folder / name)
    return {"dogs": [folder / n for n in dogs], "others": [folder / n for n in others]}


@pytest.fixture(scope="module")
def indexed(photos: dict[str, list[Path]]) -> Path:
    """The 16 photos indexed with text-search embeddings; returns the catalogue path."""
    db = photos["dogs"][0].parent.parent / "db" / "catalogue.sqlite"
    with Service(db=db, progress=False) as service:
        report = service.index(photos["dogs"][0].parent)
    assert report.added == 16 and report.failed == 0
    return db


# ---- what loads when ----------------------------------------------------------------------------------------------
def test_info_loads_no_model_and_tag_opens_no_database(tmp_path: Path, photos: dict[str, list[Path]]) -> None:
    db = tmp_path / "nowhere" / "catalogue.sqlite"
    service = Service(db=db, progress=False)
    info = service.info()
    assert isinstance(info, InfoResult) and info.to_dict() == {"db": str(db), "exists": False}
    assert not service.image_encoder_loaded and not service.text_model_loaded
    [tagged] = service.tag([photos["dogs"][0]], k=3)
    assert len(tagged.tags) == 3 and tagged.error is None
    assert service.image_encoder_loaded and not service.text_model_loaded  # ImageNet tags need no text model
    assert not db.parent.exists()  # tagging never creates (or opens) a catalogue
    with pytest.raises(StoreError, match="no index here yet"):
        service.store()


# ---- where the catalogue is ----------------------------------------------------------------------------------------
def test_two_folders_through_one_service_get_two_catalogues(
    tmp_path: Path, photos: dict[str, list[Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./.vistext above: the default catalogue is the home's until a folder is indexed
    first, second = tmp_path / "first", tmp_path / "second"
    for folder, chosen in ((first, photos["dogs"][:3]), (second, photos["others"][:2])):
        folder.mkdir()
        for photo in chosen:
            shutil.copy(photo, folder / photo.name)
    with Service(progress=False) as service:
        assert service.index(first, text_search=False).added == 3
        assert service.info().db == str(first.resolve() / ".vistext" / "catalogue.sqlite")
        assert service.index(second, text_search=False).added == 2
        info = service.info()
        assert info.db == str(second.resolve() / ".vistext" / "catalogue.sqlite") and info.details["count"] == 2
        assert {Path(r.path).name for r in service.store().records()} == {p.name for p in photos["others"][:2]}
    for folder, chosen in ((first, photos["dogs"][:3]), (second, photos["others"][:2])):
        with Service(db=folder, progress=False) as alone:
            assert {Path(r.path).name for r in alone.store().records()} == {p.name for p in chosen}
            assert alone.location.collection_folder == folder.resolve()


def test_one_answer_to_which_catalogue(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    (folder / ".vistext").mkdir(parents=True)
    file = folder / ".vistext" / "catalogue.sqlite"
    # the folder, its .vistext/, the file and a sqlite:// URL all name the same catalogue
    for given in (folder, folder / ".vistext", file, f"sqlite://{file}"):
        assert locate(given).file == file and not locate(given).remote
    server = locate("postgresql://user:secret@db.example:5433/photos")
    assert server.remote and server.uri == "postgresql://user:secret@db.example:5433/photos"
    assert "secret" not in str(server.file) and server.collection_folder is None
    assert locate(None, folder) == locate(folder)  # indexing a folder with no --db: the folder's own
    assert locate(file, tmp_path / "elsewhere") == locate(file)  # an explicit --db wins over the folder


# ---- the collection ------------------------------------------------------------------------------------------------
def test_search_similar_and_images_by_id(indexed: Path, photos: dict[str, list[Path]]) -> None:
    dogs = {p.name for p in photos["dogs"]}
    with Service(db=indexed, progress=False) as service:
        assert service.info().to_dict()["exists"] is True
        found = service.search("a dog running on the grass", k=5)
        assert Path(found.results[0].path).name in dogs
        assert sum(Path(hit.path).name in dogs for hit in found.results) >= 4
        first = found.results[0].id
        assert first is not None
        near = service.similar(first, k=3, include_self=True)
        assert near.results[0].id == first and near.results[0].score == pytest.approx(1.0, abs=1e-4)
        page = service.similar(first, k=2, offset=1, include_self=True)
        assert [h.id for h in page.results] == [h.id for h in near.results[1:3]]
        # by default an indexed query image is left out of its own answer (it is always first at 1.000)
        others = service.similar(first, k=2)
        assert [h.id for h in others.results] == [h.id for h in near.results[1:3]]
        by_path = service.similar(Path(found.results[0].path), k=2)
        assert by_path.to_dict()["results"] == others.to_dict()["results"]
        assert service.image_file(first).name == Path(found.results[0].path).name
        jpeg = service.thumbnail(first, 128)
        assert jpeg[:2] == b"\xff\xd8" and service.thumbnail(first, 128) == jpeg
        with pytest.raises(UnknownImageError, match="99999"):
            service.image_file(99999)
        with pytest.raises(UsageError, match="thumbnail size"):
            service.thumbnail(first, 100)


def test_every_answer_is_a_result_object_with_to_dict(
    indexed: Path, photos: dict[str, list[Path]], flickr8k: Path
) -> None:
    dog = photos["dogs"][0]
    captions = _captions(flickr8k)
    bank = indexed.parent / "captions.txt"  # the 80 captions of the 16 photos: 40 about dogs, 40 without animals
    bank.write_text("\n".join(c for p in photos["dogs"] + photos["others"] for c in captions[p.name]))
    with Service(db=indexed, progress=False) as service:
        status = service.status()
        assert isinstance(status, StatusResult) and status.images == 16 and status.text_search
        assert status.map_ready is False and status.to_dict()["map_ready"] is False
        topics = service.topics(3)
        assert isinstance(topics, TopicsResult) and len(topics.topics) == 3
        assert set(topics.image_topics.values()) <= {0, 1, 2} and len(topics.image_topics) == 16
        assert TopicsResult.from_dict(json.loads(json.dumps(topics.to_dict()))) == topics
        assert service.topics(3) == topics  # the second call reads the cache beside the catalogue
        drawn = service.map_points("pca", topics=3)
        assert isinstance(drawn, MapResult) and drawn.count == 16 and set(drawn.points["topic"]) <= {0, 1, 2}
        assert service.map_points("pca", topics=3) == drawn
        assert service.status().maps_cached == ["pca"] and service.status().map_ready
        table = service.neighbour_table(2)
        assert len(table.neighbours) == 16 and all(len(near) == 2 for near in table.neighbours.values())
        for photo in photos["dogs"] + photos["others"]:  # indexed photos reuse their stored joint vectors
            top = service.caption(photo, str(bank), k=1).captions[0].text
            assert ("dog" in top) == (photo in photos["dogs"]), (photo.name, top)
        caption = service.caption(dog, str(bank), k=3)
        assert len(caption.captions) == 3 and caption.captions[0].score >= caption.captions[2].score
        matched = service.match(dog, [["man", "bicycle"], ["dog"], ["kitchen", "food"]], model="joint")
        assert matched.best == 1 and matched.method == "joint"
        answers = [status, topics, drawn, table, caption, matched, service.info(), service.search("dog", k=2)]
        answers += service.tag([dog], k=2)
        for answer in answers:
            json.dumps(answer.to_dict())  # every surface renders the same JSON-ready dict


# ---- loaded models are cached ----------------------------------------------------------------------------------
def _dog_tagger(service: Service, photos: dict[str, list[Path]], out: Path) -> Path:
    """A real linear tagger ("dog" / "no dog") fitted on the photos' pooled features, saved as a model card."""
    features = LoadedModels().encode_images(photos["dogs"] + photos["others"]).pooled.astype(np.float32)
    mean, std = features.mean(axis=0), features.std(axis=0) + 1e-6
    scaled = (features - mean) / std
    direction = scaled[:8].mean(axis=0) - scaled[8:].mean(axis=0)
    direction /= np.linalg.norm(direction)
    weights = {
        "mean": mean,
        "std": std,
        "classifier.weight": np.stack([direction, -direction]),
        "classifier.bias": np.zeros(2, np.float32),
    }
    head = {"kind": "linear", "in_dim": int(features.shape[1]), "feature": "pooled"}
    return TaggerModel(labels=["dog", "no dog"], weights=weights, head=head).save(out)


def test_two_tag_calls_with_the_same_tagger_load_it_once(
    tmp_path: Path, photos: dict[str, list[Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[Path] = []
    real = tagger_module.load_tagger
    monkeypatch.setattr(tagger_module, "load_tagger", lambda d: loads.append(Path(d)) or real(d))
    service = Service(db=tmp_path / "none.sqlite", progress=False, model_cache=2)
    model = _dog_tagger(service, photos, tmp_path / "tagger")
    first = service.tag([photos["dogs"][2]], k=1, model=model)[0]
    second = service.tag([photos["dogs"][2]], k=1, model=str(model))[0]
    assert first.tags[0].tag == "dog" and first == second
    assert loads == [model.resolve()]
    card = model / "config.json"  # retrained in place: the new card is read, the stale copy dropped
    os.utime(card, ns=(card.stat().st_atime_ns, card.stat().st_mtime_ns + 10**9))
    service.tag([photos["others"][0]], k=1, model=model)
    assert len(loads) == 2 and service.cached_models == 1
    for copy in ("b", "c"):  # bounded: only the 2 most recently used stay loaded
        shutil.copytree(model, tmp_path / copy)
        service.tag([photos["others"][0]], k=1, model=tmp_path / copy)
    assert service.cached_models == 2
    service.tag([photos["others"][0]], k=1, model=tmp_path / "c")
    assert len(loads) == 4


def test_many_images_are_tagged_a_chunk_at_a_time_with_the_same_answers(
    tmp_path: Path, photos: dict[str, list[Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from vistext.service import understanding

    monkeypatch.setattr(understanding, "TAG_CHUNK", 3)
    batches: list[int] = []
    real = LoadedModels.features
    monkeypatch.setattr(
        LoadedModels,
        "features",
        lambda self, pictures, grid=False: batches.append(len(pictures)) or real(self, pictures, grid),
    )
    from vistext.models.open_domain import OpenDomainModel

    embedded: list[tuple[str, ...]] = []
    embed = OpenDomainModel.tag_vectors
    monkeypatch.setattr(
        OpenDomainModel,
        "tag_vectors",
        lambda self, words, **kw: embedded.append(tuple(words)) or embed(self, words, **kw),
    )
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a picture")
    images = [*photos["dogs"][:3], broken, *photos["others"][:3]]
    service = Service(db=tmp_path / "none.sqlite", progress=False)
    vocab = ["dog", "beach", "street"]
    together = service.tag(iter(images), k=3, vocab=vocab)  # any iterable, not only a list
    assert max(batches) <= 3 and sum(batches) == 6  # seven inputs in chunks of three; the broken one is not encoded
    assert embedded == [("dog", "beach", "street")]  # the words are embedded once, not once a chunk
    assert [result.image for result in together] == [str(image) for image in images]
    assert together[3].error and "broken.jpg" in together[3].error and not together[3].tags
    for image, result in zip(images, together, strict=True):
        if image != broken:  # a photo's tags do not depend on which others it was tagged with
            [alone] = service.tag([image], k=3, vocab=vocab)
            assert [t.tag for t in alone.tags] == [t.tag for t in result.tags]
            assert np.allclose([t.score for t in alone.tags], [t.score for t in result.tags], atol=1e-4)


def test_every_http_tag_request_reuses_the_loaded_tagger(
    tmp_path: Path, photos: dict[str, list[Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[Path] = []
    real = tagger_module.load_tagger
    monkeypatch.setattr(tagger_module, "load_tagger", lambda d: loads.append(Path(d)) or real(d))
    model = _dog_tagger(Service(progress=False), photos, tmp_path / "tagger")
    settings = ServerSettings(db=tmp_path / "none.sqlite", taggers={"dogs": str(model)})
    with TestClient(create_app(Service, settings), base_url="http://127.0.0.1") as client:
        for photo in photos["dogs"][:3]:
            answer = client.post(
                "/api/tag", files={"file": (photo.name, photo.read_bytes())}, params={"tagger": "dogs"}
            )
            assert answer.status_code == 200 and answer.json()["tags"][0]["tag"] == "dog"
    assert len(loads) == 1


def test_the_shipped_matcher_loads_once(photos: dict[str, list[Path]], monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[Path] = []
    real = matcher_numpy.load_numpy_matcher  # the service scores tag sets without torch
    monkeypatch.setattr(matcher_numpy, "load_numpy_matcher", lambda d=None: loads.append(Path(d)) or real(d))
    service = Service(progress=False)
    sets = [["dog"], ["man", "bicycle"], ["kitchen", "food"]]
    answers = [service.match(photo, sets, model="matcher") for photo in photos["dogs"][:3]]
    assert [a.method for a in answers] == ["matcher"] * 3 and len(loads) == 1
    assert all(a.best == 0 for a in answers)


# ---- one tag-set parser -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("typed", "sets"),
    [
        ("dog ball grass", [["dog", "ball", "grass"]]),
        ("red car, street", [["red car", "street"]]),
        ("red car,", [["red car"]]),
        ("dog, grass\ncat; sofa", [["dog", "grass"], ["cat"], ["sofa"]]),
        ("  dog ,, ball \n\n;", [["dog", "ball"]]),
        ('[["dog", " grass "], [], ["red car"]]', [["dog", "grass"], ["red car"]]),
        (["surfer wave ocean", "dog, red ball"], [["surfer", "wave", "ocean"], ["dog", "red ball"]]),
    ],
)
def test_parse_tag_sets_rules(typed: str | list[str], sets: list[list[str]]) -> None:
    assert parse_tag_sets(typed) == sets


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("", "at least one tag set"),
        (" ;\n, ", "at least one tag set"),
        ("[[1, 2]]", "list of lists of strings"),
        ("[oops", "not valid JSON"),
        ("a;" * 51, "too many tag sets (51; limit 50)"),
        ("x" * 201, "longer than 200"),
    ],
)
def test_parse_tag_sets_errors(typed: str, reason: str) -> None:
    with pytest.raises(UsageError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        parse_tag_sets(typed)


def test_cli_http_and_bot_give_the_same_tag_sets_and_answer(
    tmp_path: Path,
    photos: dict[str, list[Path]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One request typed the way each surface takes it reaches ``Service.match`` as the same sets and gets the
    same scores back."""
    seen: list[list[list[str]]] = []
    real_match = Service.match

    def recording(self: Service, image: Any, tag_sets: Any, **options: Any) -> Any:
        seen.append([list(tags) for tags in tag_sets])
        return real_match(self, image, tag_sets, **options)

    monkeypatch.setattr(Service, "match", recording)
    dog = photos["dogs"][3]
    expected = [["man", "bicycle"], ["dog", "grass"], ["red car"]]

    assert main(["match", str(dog), "man bicycle", "dog, grass", "red car,", "--json", "--quiet"]) == 0
    cli = json.loads(capsys.readouterr().out)

    settings = ServerSettings(db=tmp_path / "none.sqlite")
    with TestClient(create_app(Service, settings), base_url="http://127.0.0.1") as client:
        answer = client.post(
            "/api/match",
            files={"file": (dog.name, dog.read_bytes())},
            data={"tag_sets": "man bicycle\ndog, grass\nred car,"},
        )
    assert answer.status_code == 200, answer.text
    http = answer.json()

    replies: list[str] = []

    async def reply_text(text: str) -> None:
        replies.append(text)

    async def download() -> bytearray:
        return bytearray(dog.read_bytes())

    async def get_file(file_id: str) -> SimpleNamespace:
        return SimpleNamespace(download_as_bytearray=download)

    photo = SimpleNamespace(file_id="f1", file_unique_id="u1", file_size=None)
    original = SimpleNamespace(photo=[photo], document=None)
    message = SimpleNamespace(text="/match man bicycle; dog, grass; red car,", reply_to_message=original)
    message.reply_text = reply_text
    update = SimpleNamespace(effective_message=message)
    bot = VistextBot(Service(progress=False), BotSettings(token="123:x"))
    run_async(bot.on_match(update, SimpleNamespace(bot=SimpleNamespace(get_file=get_file))))

    assert seen == [expected, expected, expected]
    # the surfaces agree; which set wins is the scorer's business (on this photo the fused default, right 9 times
    # in 10 in bench/matching.py, prefers "man bicycle" by 0.53 to 0.46)
    assert cli["candidates"] == http["candidates"] and cli["best"] == http["best"]
    assert replies == [
        "\n".join(
            f"{'*' if i == http['best'] else ' '} {c['score']:.3f}  {', '.join(c['tags'])}"
            for i, c in enumerate(http["candidates"])
        )
    ]


def test_one_vocabulary_parser_for_every_surface(tmp_path: Path) -> None:
    from vistext.cli.understand import parse_vocab
    from vistext.service import parse_vocabulary

    typed = " dog, red car,,\nbeach \n"
    assert parse_vocabulary(typed) == ["dog", "red car", "beach"]
    listed = tmp_path / "words.txt"
    listed.write_text("dog\nred car\n\nbeach\n", encoding="utf-8")
    assert parse_vocab(str(listed)) == parse_vocab("dog,red car,beach") == parse_vocabulary(typed)  # CLI: file or list
    with pytest.raises(UsageError, match="empty"):
        parse_vocabulary(" , \n")
    with pytest.raises(UsageError, match="too many entries in the vocabulary \\(3; limit 2\\)"):
        parse_vocabulary("a,b,c", limit=2)


# ---- library warnings never reach the terminal ---------------------------------------------------------------
def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (1-bit grey) and whose data is cut short."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def test_no_decompression_bomb_or_read_only_array_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], recwarn: pytest.WarningsRecorder
) -> None:
    import warnings

    from vistext.models.loading import load_model

    warnings.simplefilter("always")
    huge = tmp_path / "huge.png"
    huge.write_bytes(_png_header(30_000, 20_000))  # 600 megapixels: over our limit, under Pillow's error
    assert main(["tag", str(huge), "--json", "--quiet"]) == 1
    [result] = json.loads(capsys.readouterr().out)
    assert "30000x20000" in result["error"] and "huge.png" in result["error"]
    matcher = load_model("matcher-default")
    features = np.broadcast_to(np.ones(matcher.settings.image_dim, np.float32), (1, matcher.settings.image_dim))
    assert not features.flags.writeable  # what a single tag set or a stored vector gives the model
    assert matcher.score(features, [["dog", "grass"]]).shape == (1,)
    names = [type(w.message).__name__ + ": " + str(w.message) for w in recwarn]
    assert not [n for n in names if "DecompressionBomb" in n or "not writable" in n], names


# ---- serving costs -------------------------------------------------------------------------------------------------
def test_a_search_page_is_read_from_the_catalogue_outside_the_batch_thread(
    indexed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vistext.service import ordering  # where a result page is put together

    readers: list[str] = []
    real = ordering.describe
    monkeypatch.setattr(
        ordering,
        "describe",
        lambda store, ids: readers.append(threading.current_thread().name) or real(store, ids),
    )
    with Service(db=indexed, progress=False) as service:
        found = [service.search_later(text, 3) for text in ("a dog", "a street", "people", "a dog on grass")]
        assert all(len(future.result(timeout=120).results) == 3 for future in found)
        assert len(service.similar(1, 2).results) == 2
    # the one batch worker ("vistext-searches") only runs FAISS; the page's names and tags are read beside it
    assert len(readers) == 5 and all(name.startswith("search-page") for name in readers), readers


def test_a_map_is_computed_once_per_catalogue_version(indexed: Path, tmp_path: Path) -> None:
    db = tmp_path / "catalogue.sqlite"
    for suffix in ("", "-wal"):  # a closed catalogue has no write-ahead log left; copied if it has one
        if Path(f"{indexed}{suffix}").exists():
            shutil.copy(f"{indexed}{suffix}", f"{db}{suffix}")
    with Service(db=db, progress=False) as service:
        store = service.store()
        reads: list[str] = []
        original = store.vectors
        store.vectors = lambda space: reads.append(space) or original(space)  # type: ignore[method-assign]
        first = service.map_points("pca", topics=0)
        assert service.map_points("pca", topics=0) is first and reads == ["image"]  # no second read or fingerprint
        record = store.get(1)
        assert record is not None
        store.remove([record.path])
        again = service.map_points("pca", topics=0)
        assert reads == ["image", "image"] and len(again.points["id"]) == len(first.points["id"]) - 1


def test_a_search_asked_again_is_answered_from_its_page_until_the_catalogue_changes(
    indexed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vistext.service import ordering  # where a result page is put together

    db = tmp_path / "catalogue.sqlite"
    for suffix in ("", "-wal"):
        if Path(f"{indexed}{suffix}").exists():
            shutil.copy(f"{indexed}{suffix}", f"{db}{suffix}")
    pages: list[int] = []
    real = ordering.describe
    monkeypatch.setattr(ordering, "describe", lambda store, ids: pages.append(len(ids)) or real(store, ids))
    with Service(db=db, progress=False) as service:
        first = service.search("a dog", k=3)
        assert service.search("a dog", k=3) is first and len(pages) == 1  # no search, no catalogue read
        assert service.search("a dog", k=4) is not first and len(pages) == 2  # another request, another page
        assert service.search("a dog -grass", k=3).results  # a composed query is kept too
        assert service.search("a dog -grass", k=3) is service.search("a dog -grass", k=3)
        top = first.results[0].id
        assert top is not None
        service.edit_tags(top, add=["best friend"])  # any write moves the catalogue's version
        again = service.search("a dog", k=3)
        assert again is not first and {"tag": "best friend"}.items() <= again.results[0].tags[0].items()
        record = service.store().get(top)
        assert record is not None
        service.store().remove([record.path])
        assert top not in {hit.id for hit in service.search("a dog", k=3).results}
