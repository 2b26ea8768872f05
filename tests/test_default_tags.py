"""Tags with no training: `vistext index` stores the default vocabulary's tags of real photos; tags are edited by
hand from the CLI and over HTTP; hand edits survive re-indexing; an older catalogue gains tags from its stored
logits; a trained tagger's tags sit beside them."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from vistext.cli import main
from vistext.errors import UsageError
from vistext.models.default_tags import load_default_tags
from vistext.server import ServerSettings
from vistext.service import Service

CLASSES = {"dog": 4, "pizza": 3, "airplane": 3}


@pytest.fixture
def photos(tmp_path: Path, opendomain_classes: Path, copy_photos: Callable[..., Path]) -> Path:
    """Ten real photos: dogs, pizzas and airplanes from opendomain-classes, copied into one folder."""
    folder = tmp_path / "photos"
    for name, n in CLASSES.items():
        copy_photos(sorted((opendomain_classes / name).glob("*.jpg"))[:n], folder)
    return folder


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert main([*argv, "--json", "-q"]) == 0
    return json.loads(capsys.readouterr().out)


def _tags_by_name(listing: dict[str, Any]) -> dict[str, list[str]]:
    return {Path(item["path"]).name: [t["tag"] for t in item["tags"]] for item in listing["results"]}


def test_index_tags_real_photos_and_hand_edits_survive_reindexing(
    photos: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(photos / ".vistext" / "catalogue.sqlite")
    report = _cli(capsys, "index", str(photos), "--no-text")
    assert report["default_tags"]["scored"] == 10 and report["default_tags"]["tagged"] >= 8
    tags = _tags_by_name(_cli(capsys, "list", "--db", db))
    assert sum("dog" in t for name, t in tags.items() if name.startswith("dog")) >= 3
    assert sum("pizza" in t for name, t in tags.items() if name.startswith("pizza")) >= 2
    assert not any("dog" in t for name, t in tags.items() if not name.startswith("dog"))
    dog = next(name for name, t in tags.items() if "dog" in t)
    with sqlite3.connect(db) as conn:  # stored with their source and a 0-1 score at or above the threshold
        rows = conn.execute("SELECT tagger, min(score), max(score) FROM tags GROUP BY tagger").fetchall()
    assert [row[0] for row in rows] == ["default"] and load_default_tags().threshold <= rows[0][1] <= rows[0][2] <= 1

    edited = _cli(capsys, "tags", "add", str(photos / dog), "Rex", "garden party", "--db", db)
    assert [t["tag"] for t in edited["tags"]][:2] == ["Rex", "garden party"]
    edited = _cli(capsys, "tags", "remove", str(edited["id"]), "DOG", "--db", db)
    assert "dog" not in [t["tag"] for t in edited["tags"]]
    _cli(capsys, "index", str(photos), "--no-text")  # nothing changed: the pass is skipped, edits kept
    with Service(db) as service:  # a new vocabulary re-tags every photo: the removal still holds
        service.store().set_meta("default_tags", {"fingerprint": "older", "complete": True})
    assert _cli(capsys, "index", str(photos), "--no-text")["default_tags"]["scored"] == 10
    tags = _tags_by_name(_cli(capsys, "list", "--db", db))
    assert tags[dog][:2] == ["Rex", "garden party"] and "dog" not in tags[dog]
    assert [Path(i["path"]).name for i in _cli(capsys, "list", "--db", db, "--tag", "rex")["results"]] == [dog]
    facets = _cli(capsys, "info", "--db", db)["metadata"]["tags"]
    assert facets["Rex"] == 1 and facets["pizza"] >= 2
    assert main(["export", "--db", db, "--tag", "pizza", "-q"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header, rows_ = lines[0].split(","), [line.split(",") for line in lines[1:]]
    column = header.index("tags")
    assert rows_ and all("pizza" in row[column].split(";") for row in rows_)
    assert all(0.0 < float(s) <= 1.0 for row in rows_ for s in row[header.index("scores")].split(";"))
    assert main(["tags", "add", "999", "x", "--db", db, "-q"]) == 2
    assert "no indexed image with id 999" in capsys.readouterr().err
    assert main(["tags", "add", "1", " ", "--db", db, "-q"]) == 2
    assert "a tag is empty" in capsys.readouterr().err


def test_an_older_catalogue_gains_default_tags_from_stored_logits(
    photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = photos / ".vistext" / "catalogue.sqlite"
    with Service(db, progress=False) as service:
        service.index(photos, text_search=False)
    with sqlite3.connect(db) as conn:  # as the previous release left it: schema v6, no tags, no removals
        conn.execute("DROP TABLE removed_tags")
        conn.execute("DROP TABLE photo_text_words")  # and no text table (v8), nor its full-text index
        conn.execute("DROP TABLE photo_text")
        conn.execute("DELETE FROM tags")
        conn.execute("DELETE FROM meta WHERE key = 'user:default_tags'")
        conn.execute("UPDATE meta SET value = '6' WHERE key = 'schema_version'")
    with Service(db, progress=False, read_only=True) as service:  # a v6 catalogue reads as it is
        assert service.list_images().to_dict()["total"] == 10 and service.tag_counts() == {}

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("a photo was decoded again")

    monkeypatch.setattr("vistext.features.open_image", no_decoding)  # the tags can only come from what is stored
    with Service(db, progress=False) as service:
        report = service.index(photos, text_search=False)
        assert report.unchanged == 10 and report.default_tags is not None and report.default_tags["scored"] == 10
        assert service.tag_counts().get("dog", 0) >= 3
        assert service.store().info()["schema_version"] == 8


def test_a_trained_taggers_tags_sit_beside_the_default_ones(photos: Path, tmp_path: Path) -> None:
    from vistext.models.tagger import TaggerModel

    db = photos / ".vistext" / "catalogue.sqlite"
    with Service(db, progress=False) as service:
        service.index(photos, text_search=False)
        before = service.store().tags_for(service.matching_ids(_everything()))
        weights = {
            "mean": np.zeros(1280, np.float32),
            "std": np.ones(1280, np.float32),
            "classifier.weight": np.zeros((2, 1280), np.float32),
            "classifier.bias": np.ones(2, np.float32),
        }
        head = {"kind": "linear", "in_dim": 1280, "feature": "pooled"}
        # every photo gets both (sigmoid(1) >= 0.5): enough to see them sit beside the default ones
        tagger = TaggerModel(["indoor", "outdoor"], weights, head, backbone="efficientnet-lite0",
                             thresholds=np.full(2, 0.5, np.float32))  # fmt: skip
        tagger.save(tmp_path / "scenes")
        service.tag_collection(tmp_path / "scenes")
        after = service.store().tags_for(before)
        tagger.save(tmp_path / "user")
        with pytest.raises(UsageError, match="'user' is the source of the hand-added tags"):
            service.tag_collection(tmp_path / "user")
    with sqlite3.connect(db) as conn:
        sources = {row[0] for row in conn.execute("SELECT DISTINCT tagger FROM tags")}
    assert sources == {"default", "scenes"}
    for image_id, pairs in before.items():
        assert set(pairs) <= set(after[image_id]) and {"indoor", "outdoor"} <= {t for t, _ in after[image_id]}


def _everything() -> Any:
    from vistext.store.records import ImageFilter

    return ImageFilter()


def test_tags_are_edited_over_http(
    photos: Path, running_server: Callable[..., AbstractContextManager[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    db = photos / ".vistext" / "catalogue.sqlite"
    with Service(db, progress=False) as service:
        service.index(photos, text_search=False)
    with running_server(ServerSettings(db=db, token="t0ken")) as url, httpx.Client(base_url=url, timeout=60) as http:
        assert http.post("/api/images/1/tags", json={"tags": ["x"]}).status_code == 401
        http.headers["Authorization"] = "Bearer t0ken"
        added = http.post("/api/images/1/tags", json={"tags": ["Holiday", "beach"]})
        assert added.status_code == 200 and [t["tag"] for t in added.json()["tags"]][:2] == ["Holiday", "beach"]
        assert http.get("/api/tags").json()["tags"]["Holiday"] == 1
        listed = http.get("/api/list", params={"tag": "holiday"}).json()
        assert [item["id"] for item in listed["results"]] == [1]
        first = added.json()["tags"][2]["tag"] if len(added.json()["tags"]) > 2 else "beach"
        removed = http.delete(f"/api/images/1/tags/{first}")
        assert removed.status_code == 200 and first not in [t["tag"] for t in removed.json()["tags"]]
        assert http.post("/api/images/999/tags", json={"tags": ["x"]}).status_code == 404
        assert http.post("/api/images/1/tags", json={"tags": []}).status_code == 400
        assert http.post("/api/images/1/tags", json={"tags": ["x" * 65]}).status_code == 400
        assert http.post("/api/images/1/tags", content=b'{"tags": ["x"]}', headers={"Content-Type": "text/plain"}
                         ).status_code in (400, 415, 422)  # fmt: skip
    assert _cli(capsys, "list", "--db", str(db), "--tag", "Holiday")["total"] == 1


def test_word_scores_sum_their_classes_then_calibrate_and_cut() -> None:
    from vistext.errors import ModelError
    from vistext.models.default_tags import DefaultTagVocabulary

    vocabulary = DefaultTagVocabulary({"dog": [0, 1], "cat": [2], "animal": [0, 1, 2]}, n_classes=4, threshold=0.3)
    logits = np.log(np.array([[0.5, 0.2, 0.2, 0.1], [0.05, 0.05, 0.1, 0.8]]))
    np.testing.assert_allclose(vocabulary.raw_scores(logits), [[0.7, 0.2, 0.9], [0.1, 0.1, 0.2]], atol=1e-9)
    np.testing.assert_allclose(vocabulary.scores(logits), vocabulary.raw_scores(logits), atol=1e-6)  # identity fit
    assert vocabulary.tags(logits) == [[("animal", 0.9), ("dog", 0.7)], []]
    vocabulary.calibration = (1.0, np.log(3.0))  # odds x 3: 0.1 -> 0.25, 0.2 -> 0.4286
    assert [t for t, _ in vocabulary.tags(logits)[1]] == ["animal"] and vocabulary.fingerprint != "x"
    with pytest.raises(ModelError, match=r"expected \(N, 4\) classifier logits"):
        vocabulary.scores(np.zeros((1, 5)))
    with pytest.raises(ModelError, match="class indices must lie in 0..3"):
        DefaultTagVocabulary({"dog": [4]}, n_classes=4)


def test_a_word_with_its_own_calibration_is_read_by_it(tmp_path: Path) -> None:
    from vistext.errors import ModelError
    from vistext.models.default_tags import DefaultTagVocabulary, load_default_tags

    shared = DefaultTagVocabulary({"dog": [0, 1], "cat": [2]}, n_classes=4, threshold=0.3)
    own = DefaultTagVocabulary({"dog": [0, 1], "cat": [2]}, n_classes=4, threshold=0.3,
                               word_calibration={"dog": (1.0, -np.log(3.0))})  # fmt: skip
    logits = np.log(np.array([[0.5, 0.2, 0.2, 0.1]]))
    np.testing.assert_allclose(own.scores(logits), [[0.7 / (0.7 + 0.3 * 3), 0.2]], atol=1e-6)  # dog's odds / 3
    assert own.fingerprint != shared.fingerprint
    loaded = load_default_tags(own.save(tmp_path / "tags"))
    assert loaded.word_calibration == {"dog": (1.0, -np.log(3.0))} and loaded.fingerprint == own.fingerprint
    with pytest.raises(ModelError, match="not in the vocabulary: bird"):
        DefaultTagVocabulary({"dog": [0]}, n_classes=4, word_calibration={"bird": (1.0, 0.0)})


def test_hand_given_tags_are_cleaned_or_refused() -> None:
    from vistext.service.default_tags import clean_tags

    assert clean_tags(["  garden   party ", "Rex", "rex", "GARDEN party"]) == ["garden party", "Rex"]
    for bad, reason in (("", "a tag is empty"), ("x" * 65, "at most 64"), ("a\x1bb", "printable")):
        with pytest.raises(UsageError, match=reason):
            clean_tags([bad])


def test_wordnet_is_read_from_its_database_files(tmp_path: Path) -> None:
    from vistext.training.wordnet import WordNet

    (tmp_path / "data.noun").write_text(
        "  1 This software and database is being provided to you, the LICENSEE, by Princeton University\n"
        "00000001 03 n 01 entity 0 001 ~ 00000002 n 0000 | that which exists\n"
        "00000002 05 n 01 animal 0 002 @ 00000001 n 0000 ~ 00000003 n 0000 | a living organism\n"
        "00000003 05 n 02 dog 0 domestic_dog 0 002 @ 00000002 n 0000 ~ 00000004 n 0000 | a member of the genus Canis\n"
        "00000004 05 n 01 poodle 0 001 @ 00000003 n 0000 | an intelligent dog\n"
    )
    (tmp_path / "index.noun").write_text(
        "  1 This software and database is being provided to you\n"
        "animal n 1 2 @ ~ 1 0 00000002  \ndog n 1 2 @ ~ 1 0 00000003  \nentity n 1 1 ~ 1 0 00000001  \n"
        "poodle n 1 1 @ 1 0 00000004  \n"
    )
    (tmp_path / "noun.exc").write_text("poodlen poodle\n")
    wordnet = WordNet(tmp_path)
    assert wordnet.sense("dog.n.01") == wordnet.sense("n00000003") == "n00000003"
    assert wordnet.synsets["n00000003"].lemmas == ["dog", "domestic dog"]
    assert wordnet.ancestors("n00000004") == {"n00000001", "n00000002", "n00000003", "n00000004"}
    assert set(wordnet.descendants("n00000002")) == {"n00000002", "n00000003", "n00000004"}
    assert [wordnet.singular(w) for w in ("dogs", "poodlen", "animals", "cats")] == ["dog", "poodle", "animal", "cats"]
    with pytest.raises(UsageError, match="WordNet has 1 noun senses of 'dog'"):
        wordnet.sense("dog.n.02")
    with pytest.raises(UsageError, match="no WordNet database here"):
        WordNet(tmp_path / "nowhere")
