"""The CLI end to end on real Flickr8k photos: through main(argv), and once as a real subprocess."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vistext.cli import main
from vistext.service import Service

DOG = "1001773457_577c3a7d70.jpg"  # "A black dog and a spotted dog are fighting"
DOG_CLASSES = range(151, 269)  # ImageNet-1k indices 151-268 are dog breeds


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory: pytest.TempPathFactory, flickr8k_images: list[Path]) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    chosen = flickr8k_images[:40]
    assert DOG in {p.name for p in chosen}
    for path in chosen:
        shutil.copy(path, folder / path.name)
    return folder


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, object]:
    code = main([*argv, "--json", "--quiet"])
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected exactly one JSON document, got: {out!r}"
    return code, json.loads(lines[0])


@pytest.fixture(scope="module")
def indexed(photo_dir: Path) -> Path:
    assert main(["index", str(photo_dir), "--quiet", "--json"]) == 0
    return photo_dir


def test_index_summary_then_incremental(indexed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, summary = run_json(capsys, "index", str(indexed))
    assert code == 0
    assert summary["unchanged"] == 40 and summary["added"] == 0 and summary["failed"] == 0
    assert summary["images_found"] == 40 and "message" not in summary
    assert (indexed / ".vistext" / "catalogue.sqlite").is_file()


def test_index_of_a_folder_without_images_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "notes.txt").write_text("not a photo")
    code, summary = run_json(capsys, "index", str(empty))
    assert code == 0 and summary["images_found"] == 0 and summary["added"] == 0
    assert "no images found" in summary["message"] and ".jpg" in summary["message"]
    assert main(["index", str(empty), "--quiet"]) == 0
    assert f"no images found in {empty}" in capsys.readouterr().out


def test_tag_finds_a_dog_breed(capsys: pytest.CaptureFixture[str], flickr8k: Path) -> None:
    from vistext.encoders.efficientnet import imagenet_labels

    dog_names = {imagenet_labels()[i] for i in DOG_CLASSES}
    code, results = run_json(capsys, "tag", str(flickr8k / "images" / DOG), "-k", "5")
    assert code == 0
    [result] = results
    assert result["image"].endswith(DOG)
    assert len(result["tags"]) == 5
    assert any(tag["tag"] in dog_names for tag in result["tags"])
    scores = [tag["score"] for tag in result["tags"]]
    assert scores == sorted(scores, reverse=True) and 0 < scores[0] <= 1


def test_tag_reports_a_bad_file_and_still_tags_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flickr8k: Path
) -> None:
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a photo")
    code, results = run_json(capsys, "tag", str(bad), str(flickr8k / "images" / DOG))
    assert code == 1
    assert "notes.jpg" in results[0]["error"] and results[0]["tags"] == []
    assert len(results[1]["tags"]) == 5
    assert main(["tag", str(bad)]) == 1
    assert capsys.readouterr().out.strip() == f"{bad}: error: not an image file (or not a supported format)"


def test_tag_a_folder_recursively_in_batches(
    photo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from vistext.cli import understand

    folder = tmp_path / "photos"
    for position, path in enumerate(sorted(photo_dir.glob("*.jpg"))[:9]):
        target = folder / ("sub" if position % 2 else "") / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    (tmp_path / "none").mkdir()
    batches: list[int] = []
    real_tag = Service.tag

    def counting_tag(self: Service, images: list[str], *args: object, **kwargs: object) -> object:
        batches.append(len(images))
        return real_tag(self, images, *args, **kwargs)

    monkeypatch.setattr(understand, "TAG_BATCH", 4)
    monkeypatch.setattr(Service, "tag", counting_tag)
    code, results = run_json(capsys, "tag", str(folder), str(photo_dir / DOG), "-k", "3")
    assert code == 0 and batches == [4, 4, 2]  # never more than a batch of photos in memory
    assert len(results) == 10 and all(len(r["tags"]) == 3 for r in results)
    assert sum("/sub/" in r["image"] for r in results) == 4
    _, [alone] = run_json(capsys, "tag", str(photo_dir / DOG), "-k", "3")
    assert results[-1] == alone  # a photo tags the same alone or in a folder's batch
    code, results = run_json(capsys, "tag", str(tmp_path / "none"))
    assert code == 1 and "no images found" in results[0]["error"]
    assert main(["tag", str(folder), "-k", "1", "--quiet"]) == 0
    assert capsys.readouterr().out.count(f"{folder}/") == 9


def test_similar_leaves_the_indexed_query_out_unless_asked(indexed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    query = indexed / DOG
    db = str(indexed / ".vistext/catalogue.sqlite")
    code, result = run_json(capsys, "similar", str(query), "-k", "3", "--db", db)
    assert code == 0
    assert result["query"] == str(query)
    assert len(result["results"]) == 3 and all(Path(h["path"]).name != DOG for h in result["results"])
    assert all(h["score"] < 0.99 for h in result["results"])
    code, kept = run_json(capsys, "similar", str(query), "-k", "3", "--include-self", "--db", db)
    first = kept["results"][0]
    assert code == 0 and Path(first["path"]).name == DOG and first["score"] == pytest.approx(1.0, abs=1e-3)
    assert kept["results"][1:] == result["results"][:2]
    # by id too, and through the Service the HTTP server and the bot call
    code, by_id = run_json(capsys, "similar", str(first["id"]), "-k", "3", "--db", db)
    assert code == 0 and by_id["results"] == result["results"]
    with Service(db=db, progress=False) as service:
        assert service.similar(first["id"], 3).to_dict()["results"] == result["results"]
        assert service.similar(first["id"], 3, include_self=True).results[0].id == first["id"]


def test_similar_pages_and_cuts_by_score(indexed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(indexed / ".vistext/catalogue.sqlite")
    _, full = run_json(capsys, "similar", str(indexed / DOG), "-k", "6", "--db", db)
    _, page = run_json(capsys, "similar", str(indexed / DOG), "-k", "3", "--offset", "3", "--db", db)
    assert [h["path"] for h in page["results"]] == [h["path"] for h in full["results"][3:6]]
    cut = full["results"][2]["score"] - 1e-5  # scores are printed rounded to 6 places
    _, high = run_json(capsys, "similar", str(indexed / DOG), "-k", "6", "--min-score", str(cut), "--db", db)
    assert all(h["score"] >= cut for h in high["results"]) and len(high["results"]) == 3


def test_info_counts(indexed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, info = run_json(capsys, "info", "--db", str(indexed / ".vistext/catalogue.sqlite"))
    assert code == 0 and info["exists"] is True
    assert json.dumps(info)  # JSON-able all the way down


def test_info_prints_a_readable_summary(indexed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = indexed / ".vistext/catalogue.sqlite"
    assert main(["info", "--db", str(db), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "{" not in out and "'" not in out  # no Python dictionaries
    assert f"catalogue: {db}" in out and "40 indexed, 0 failed" in out
    assert "efficientnet-lite0 (40 images)" in out
    assert re.search(r"image\s+1280-d\s+flat\s+40 vectors\s+similar images", out)
    assert re.search(r"joint:\S+\s+514-d .* text search", out)
    assert main(["info", "--db", str(indexed / "none.sqlite"), "--quiet"]) == 0
    assert "does not exist yet" in capsys.readouterr().out


def test_missing_index_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = run_json(capsys, "similar", "x.jpg", "--db", str(tmp_path / "none.sqlite"))
    assert code == 2
    assert "none.sqlite" in doc["error"] and "vistext index" in doc["error"]


def test_db_may_name_the_indexed_folder(indexed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = indexed / ".vistext" / "catalogue.sqlite"
    code, expected = run_json(capsys, "similar", str(indexed / DOG), "-k", "3", "--db", str(db))
    assert code == 0 and len(expected["results"]) == 3
    for folder in (indexed, indexed / ".vistext"):
        code, result = run_json(capsys, "similar", str(indexed / DOG), "-k", "3", "--db", str(folder))
        assert code == 0 and result == expected
        code, info = run_json(capsys, "info", "--db", str(folder))
        assert code == 0 and info["db"] == str(db) and info["ok"] == 40


def test_from_a_parent_folder_the_indexes_below_are_named(
    indexed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = tmp_path / "parent"
    shutil.copytree(indexed, parent / "trips" / "2024")
    (parent / "empty").mkdir()
    monkeypatch.chdir(parent)
    monkeypatch.setenv("VISTEXT_HOME", str(tmp_path / "home"))
    code, doc = run_json(capsys, "similar", "trips/2024/" + DOG)
    assert code == 2 and "trips/2024" in doc["error"] and "--db trips/2024" in doc["error"]
    assert "no index here yet" not in doc["error"]
    code, info = run_json(capsys, "info")
    assert code == 0 and info["exists"] is False and info["indexes_below"] == ["trips/2024"]
    assert main(["info", "--quiet"]) == 0 and "  trips/2024" in capsys.readouterr().out
    code, result = run_json(capsys, "similar", "trips/2024/" + DOG, "-k", "2", "--db", "trips/2024")
    assert code == 0 and len(result["results"]) == 2


def test_cli_as_a_real_subprocess(indexed: Path) -> None:
    env = dict(os.environ)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "vistext.cli.main",
            "similar",
            str(indexed / DOG),
            "-k",
            "2",
            "--json",
            "-q",
            "--db",
            str(indexed / ".vistext/catalogue.sqlite"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert len(result["results"]) == 2 and DOG not in {Path(hit["path"]).name for hit in result["results"]}


def _captions_of(flickr8k: Path) -> dict[str, str]:
    by_image: dict[str, str] = {}
    for line in (flickr8k / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines():
        name, _, text = line.partition("\t")
        by_image[name.split("#")[0]] = by_image.get(name.split("#")[0], "") + " " + text.lower()
    return by_image


@pytest.mark.parametrize("query, noun", [("a dog running on the grass", "dog"), ("a child playing", "child")])
def test_search_puts_a_matching_photo_first(
    indexed: Path, capsys: pytest.CaptureFixture[str], flickr8k: Path, query: str, noun: str
) -> None:
    code, result = run_json(capsys, "search", query, "-k", "5", "--db", str(indexed / ".vistext/catalogue.sqlite"))
    assert code == 0 and result["query"] == query and len(result["results"]) == 5
    first = Path(result["results"][0]["path"]).name
    captions = _captions_of(flickr8k)[first]
    assert noun in captions or (noun == "child" and any(w in captions for w in ("boy", "girl", "kid"))), captions


def test_caption_retrieves_fitting_captions(tmp_path: Path, capsys: pytest.CaptureFixture[str], flickr8k: Path) -> None:
    bank = tmp_path / "bank.txt"
    bank.write_text(
        "A black dog and a spotted dog are fighting\nA plate of food on a table\nA man surfing a big wave\n"
        "Two dogs play on a road\nA city skyline at night\n",
        encoding="utf-8",
    )
    code, result = run_json(capsys, "caption", str(flickr8k / "images" / DOG), "--captions", str(bank), "-k", "2")
    assert code == 0 and len(result["captions"]) == 2
    assert all("dog" in c["text"].lower() for c in result["captions"])


def test_open_vocabulary_tags(capsys: pytest.CaptureFixture[str], flickr8k: Path) -> None:
    # words the training captions use: a word they hardly know ("pizza": 10 of 40,455 captions) ranks unreliably
    code, [result] = run_json(
        capsys, "tag", str(flickr8k / "images" / DOG), "--vocab", "dog,car,ocean,mountain,snow", "-k", "3"
    )
    assert code == 0 and result["tags"][0]["tag"] == "dog" and len(result["tags"]) == 3


def test_match_picks_the_right_tag_set(capsys: pytest.CaptureFixture[str], flickr8k: Path) -> None:
    for model in ([], ["--model", "joint"]):
        code, result = run_json(
            capsys, "match", str(flickr8k / "images" / DOG), "surfer wave ocean", "dog dog road", *model
        )
        assert code == 0 and result["best"] == 1, result
        assert [c["tags"] for c in result["candidates"]] == [["surfer", "wave", "ocean"], ["dog", "dog", "road"]]


def test_topics_describe_the_collection(indexed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, result = run_json(capsys, "topics", "--n", "4", "--db", str(indexed / ".vistext/catalogue.sqlite"))
    assert code == 0 and result["n_topics"] == 4 and len(result["topics"]) == 4
    assert all(topic["words"] and topic["images"] for topic in result["topics"])
    assert len(result["image_topics"]) == 40
    for topic in result["topics"]:  # the typical images' files beside their ids, in the same order
        assert len(topic["paths"]) == len(topic["images"])
        assert all(Path(path).parent == indexed and Path(path).is_file() for path in topic["paths"])
        assert len(topic["label_words"]) == 3 and topic["label"]


def test_topics_print_labels_and_paths_and_draw_a_sheet_per_topic(
    indexed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(indexed / ".vistext/catalogue.sqlite")
    code, result = run_json(capsys, "topics", "--n", "3", "--db", db, "--grid", str(tmp_path / "sheets"))
    assert code == 0 and result["grids"] == [str(tmp_path / "sheets" / f"topic-0{t}.png") for t in range(3)]
    assert all(Path(sheet).stat().st_size > 10_000 for sheet in result["grids"])
    assert main(["topics", "--n", "3", "--db", db, "--quiet"]) == 0
    out = capsys.readouterr().out
    for topic in result["topics"]:
        assert f"({topic['weight']:.1%}): {topic['label']}" in out
        assert all(path in out for path in topic["paths"][:5])
    assert "ImageNet classes: " in out and "typical images: " not in out  # no bare list of ids any more
    # an index without text-search embeddings labels its topics by their ImageNet classes
    plain = tmp_path / "plain"
    plain.mkdir()
    for path in sorted(indexed.glob("*.jpg"))[:6]:
        shutil.copy(path, plain / path.name)
    assert main(["index", str(plain), "--no-text", "--quiet"]) == 0
    capsys.readouterr()
    code, bare = run_json(capsys, "topics", "--n", "2", "--db", str(plain))
    assert code == 0 and all(not t["label_words"] and t["words"] and t["paths"] for t in bare["topics"])
    assert main(["topics", "--n", "2", "--db", str(plain), "--quiet"]) == 0
    first = bare["topics"][0]
    assert f"({first['weight']:.1%}): {', '.join(w['word'] for w in first['words'][:6])}" in capsys.readouterr().out
    (tmp_path / "file.png").write_bytes(b"")
    assert main(["topics", "--n", "3", "--db", db, "--quiet", "--grid", str(tmp_path / "file.png")]) == 2
    assert "not a file" in capsys.readouterr().err


def test_demo_runs_on_bundled_photos(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = run_json(capsys, "demo")
    assert code == 0 and report["index"]["failed"] == 0
    assert report["index"]["added"] + report["index"]["unchanged"] >= 9
    tags = [t["tag"].lower() for t in report["tags"]["tags"]]
    assert any("cat" in t or "tabby" in t or "mau" in t for t in tags), tags
    similar = report["similar"]["results"]  # the query photo itself is left out of its own answer
    assert len(similar) == 5 and not any(hit["path"].endswith("chelsea.jpg") for hit in similar)
    cat_search = report["searches"][0]
    assert cat_search["query"] == "a cat" and cat_search["results"][0]["path"].endswith("chelsea.jpg")


def test_search_and_similar_draw_contact_sheets(indexed: Path, tmp_path: Path) -> None:
    from PIL import Image

    db = str(indexed / ".vistext/catalogue.sqlite")
    assert main(["search", "a dog", "-k", "4", "--grid", str(tmp_path / "s.png"), "--db", db, "-q"]) == 0
    assert main(["similar", str(indexed / DOG), "-k", "6", "--grid", str(tmp_path / "n.jpg"), "--db", db, "-q"]) == 0
    for name in ("s.png", "n.jpg"):
        with Image.open(tmp_path / name) as sheet:
            assert sheet.width >= 300 and sheet.height >= 200


def test_similar_sheet_leads_with_the_query_photo(indexed: Path, tmp_path: Path, flickr8k_images: list[Path]) -> None:
    from PIL import Image

    from vistext.images import thumbnail

    db = str(indexed / ".vistext/catalogue.sqlite")
    outside = flickr8k_images[100]  # not among the 40 indexed photos
    assert not (indexed / outside.name).exists()

    def cell(
        sheet: Path, position: int
    ) -> tuple[np.ndarray, int, int]:  # the default layout: 192-px cells, 8-px pad, a title
        with Image.open(sheet) as picture:
            x, y = 8 + position * 200, 34 + 8
            return np.asarray(picture.convert("RGB"), dtype=np.float64), x, y

    def looks_like(sheet: Path, position: int, photo: Path) -> bool:
        pixels, x, y = cell(sheet, position)
        small = np.asarray(thumbnail(photo, 192).convert("RGB"), dtype=np.float64)
        h, w = small.shape[:2]
        x0, y0 = x + (192 - w) // 2, y + (192 - h) // 2
        return float(np.abs(pixels[y0 : y0 + h, x0 : x0 + w] - small).mean()) < 4.0

    def framed(sheet: Path, position: int) -> bool:
        pixels, x, y = cell(sheet, position)
        return bool(np.abs(pixels[y + 96, x - 2] - (214, 96, 22)).max() < 30)

    sheet = tmp_path / "outside.png"
    assert main(["similar", str(outside), "-k", "3", "--grid", str(sheet), "--db", db, "-q"]) == 0
    assert looks_like(sheet, 0, outside) and framed(sheet, 0)  # the query first, framed as the query
    assert not framed(sheet, 1) and not looks_like(sheet, 1, outside)
    # an indexed query shown by --include-self is not drawn twice: its rank-1 cell is the only one
    kept = tmp_path / "kept.png"
    assert (
        main(["similar", str(indexed / DOG), "-k", "3", "--include-self", "--grid", str(kept), "--db", db, "-q"]) == 0
    )
    assert looks_like(kept, 0, indexed / DOG) and not framed(kept, 0) and not looks_like(kept, 1, indexed / DOG)


def test_unknown_id_is_not_found(indexed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = run_json(capsys, "similar", "99999", "--db", str(indexed / ".vistext/catalogue.sqlite"))
    assert code == 2 and "99999" in doc["error"]


@pytest.mark.slow
def test_tagger_train_eval_and_tag_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flickr8k: Path
) -> None:
    import csv

    code, summary = run_json(
        capsys,
        "tags-from-captions",
        f"flickr8k:{flickr8k}",
        "--top",
        "40",
        "--out",
        str(tmp_path / "all.csv"),
    )
    assert code == 0 and summary["n_tags"] == 40 and "dog" in summary["top_tags"][:5]
    with (tmp_path / "all.csv").open(encoding="utf-8") as src:
        rows = list(csv.DictReader(src))
    keep = [r for r in rows if r["split"] == "train"][:240] + [r for r in rows if r["split"] == "test"][:80]
    small = tmp_path / "small.csv"
    with small.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=["image", "tags", "split"])
        writer.writeheader()
        writer.writerows(keep)
    model = tmp_path / "tagger"
    code, trained = run_json(capsys, "train", "tagger", "--data", f"csv:{small}", "--out", str(model), "--epochs", "8")
    assert code == 0 and (model / "config.json").is_file()
    code, metrics = run_json(capsys, "eval", "--model", str(model), "--data", f"csv:{small}", "--split", "test")
    assert code == 0 and metrics["n_images"] == 80
    assert 0 < metrics["map"] <= 1 and 0 <= metrics["micro_f1"] <= 1
    dog = [r["image"] for r in keep if r["split"] == "test" and "dog" in r["tags"].split("|")][0]
    code, [tagged] = run_json(
        capsys, "tag", dog if Path(dog).is_absolute() else str(tmp_path / dog), "--model", str(model), "-k", "3"
    )
    assert code == 0 and len(tagged["tags"]) == 3


# ---- the sample photos installed packages ship: end to end without the research data -----------------------
def test_index_search_similar_tag_and_info_on_sample_photos(
    sample_photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = shutil.copytree(sample_photos, tmp_path / "photos")
    code, summary = run_json(capsys, "index", str(photos))
    assert code == 0 and summary["added"] == 17 and summary["failed"] == 0
    db = str(photos / ".vistext" / "catalogue.sqlite")
    code, info = run_json(capsys, "info", "--db", db)
    assert code == 0 and info["ok"] == 17 and info["failed"] == 0
    for query, expected in [
        ("a cat", "chelsea.png"),
        ("flowers", "flower.jpg"),
        ("a motorcycle", "motorcycle_left.png"),
    ]:
        code, result = run_json(capsys, "search", query, "-k", "3", "--db", db)
        assert code == 0 and Path(result["results"][0]["path"]).name == expected, (query, result)
    code, result = run_json(capsys, "similar", str(photos / "chelsea.png"), "-k", "4", "--db", db)
    hits = result["results"]
    others = [h for h in hits if Path(h["path"]).name != "chelsea.png"]
    assert code == 0 and others and all(Path(h["path"]).parent == photos for h in hits)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert all(h["score"] < 0.99 for h in others)  # only the photo itself is (nearly) identical
    code, [tagged] = run_json(capsys, "tag", str(photos / "chelsea.png"), "-k", "3")
    assert code == 0 and any("cat" in t["tag"].lower() or "tabby" in t["tag"].lower() for t in tagged["tags"])
    vocab = "cat,motorcycle,coffee,flower,man"
    for name, word in [("chelsea.png", "cat"), ("flower.jpg", "flower"), ("motorcycle_left.png", "motorcycle")]:
        code, [tagged] = run_json(capsys, "tag", str(photos / name), "--vocab", vocab, "-k", "1")
        assert code == 0 and tagged["tags"][0]["tag"] == word, (name, tagged)


# ---- failures are one line (or one JSON document), whatever went wrong ----------------------------------------
def test_every_option_has_help() -> None:
    import argparse

    from vistext.cli import collection, training, understand
    from vistext.cli.main import common_options

    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command")
    for group in (collection, understand, training):  # serve/map/bot (cli/serving.py) are checked by their owner
        group.register(commands, common_options())
    for name, command in commands.choices.items():
        for action in command._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"vistext {name} {action.option_strings[0]} has no help text"


def test_eval_progress_counts_images(tmp_path: Path, photo_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photos = sorted(photo_dir.glob("*.jpg"))[:12]
    table = tmp_path / "captions.csv"
    table.write_text("image,caption,split\n" + "".join(f"{p},a photo {i},test\n" for i, p in enumerate(photos)))
    assert main(["eval", "--data", f"csv:{table}", "--split", "test"]) == 0
    bars = capsys.readouterr().err.replace("\r", "\n")
    assert "images" in bars and "12/12" in bars and ("img/s" in bars or "s/img" in bars), bars[-500:]


def test_a_refused_command_line_is_json_with_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = run_json(capsys, "search", "dog", "--bogus")
    assert code == 2 and "--bogus" in doc["error"]
    assert main(["search", "dog", "--bogus"]) == 2  # without --json: argparse's usage and message on stderr
    captured = capsys.readouterr()
    assert captured.out == "" and "usage:" in captured.err and "--bogus" in captured.err
    code, doc = run_json(capsys, "similar", "1", "-k", "many")
    assert code == 2 and "-k" in doc["error"]


def test_a_vocabulary_path_that_names_no_file_is_an_error(
    capsys: pytest.CaptureFixture[str], flickr8k_images: list[Path], tmp_path: Path
) -> None:
    photo = str(flickr8k_images[0])
    for missing in ("/no/such/file.txt", "labels.csv", str(tmp_path)):
        code, doc = run_json(capsys, "tag", photo, "--vocab", missing)
        assert code == 2 and missing in doc["error"], doc
        assert "no such file" in doc["error"] or "is a folder" in doc["error"]


def test_k_is_refused_past_the_documented_limit(indexed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(indexed / ".vistext/catalogue.sqlite")
    code, result = run_json(capsys, "similar", str(indexed / DOG), "-k", "1000", "--db", db)
    assert code == 0 and len(result["results"]) == 39  # every other photo: 1,000 is allowed, not capped lower
    code, doc = run_json(capsys, "similar", str(indexed / DOG), "-k", "1001", "--db", db)
    assert code == 2 and "k must be between 1 and 1000" in doc["error"]


def test_an_id_beyond_64_bit_is_a_one_line_error(indexed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(indexed / ".vistext" / "catalogue.sqlite")
    code, doc = run_json(capsys, "similar", "99999999999999999999", "--db", db)
    assert code == 2 and "no indexed image with id 99999999999999999999" in doc["error"]
    assert main(["similar", "99999999999999999999", "--db", db, "-q"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("argv", [["info"], ["similar", "1", "-k", "20", "--json"], ["similar", "1", "-k", "20"]])
def test_output_closed_early_ends_quietly(indexed: Path, argv: list[str]) -> None:
    """`vistext ... | head -c 200`: the reader has gone before the command prints; no traceback, and the exit
    status a shell reports for a tool that SIGPIPE ended."""
    db = str(indexed / ".vistext" / "catalogue.sqlite")
    script = "import sys\nfrom vistext.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    process = subprocess.Popen(
        [sys.executable, "-c", script, *argv, "--db", db],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ),
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # like `head` exiting before the first line is written
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=300) == 141, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr and "Exception ignored" not in stderr


def test_a_file_name_that_is_not_utf8_prints_and_round_trips(real_jpegs: list[Path], tmp_path: Path) -> None:
    """A Latin-1 byte in a file name: JSON carries its escape (exact bytes back), text prints the bytes, as `ls`
    does, even where stdout is strict UTF-8 (PYTHONIOENCODING=utf-8)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    name = os.fsencode(photos) + b"/caf\xe9.jpg"
    shutil.copy(real_jpegs[0], name)
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}

    def vistext(*argv: str) -> subprocess.CompletedProcess[bytes]:
        script = "import sys\nfrom vistext.cli import main\nsys.exit(main(sys.argv[1:]))\n"
        return subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, env=env, timeout=300)

    assert vistext("index", str(photos), "-q").returncode == 0
    db = str(photos / ".vistext" / "catalogue.sqlite")
    found = vistext("similar", "1", "--include-self", "--db", db, "--json", "-k", "1")
    assert found.returncode == 0, found.stderr.decode()
    document = json.loads(found.stdout)  # valid JSON: the byte travels as "\udce9"
    assert b"\\udce9" in found.stdout and os.fsencode(document["results"][0]["path"]) == name
    shown = vistext("similar", "1", "--include-self", "--db", db, "-k", "1")
    assert shown.returncode == 0 and b"Traceback" not in shown.stderr
    assert name in shown.stdout


def test_search_and_similar_log_what_they_did_with_v(indexed: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = str(indexed / ".vistext/catalogue.sqlite")
    with caplog.at_level("INFO", logger="vistext.cli.collection"):
        assert main(["search", "a dog running", "-k", "3", "--db", db, "-v"]) == 0
        assert main(["similar", str(indexed / DOG), "-k", "2", "--db", db, "-v"]) == 0
    [search, similar] = [r for r in caplog.records if r.name == "vistext.cli.collection"]
    assert search.levelname == "INFO" and similar.levelname == "INFO"
    text = search.getMessage()
    pattern = r"search 'a dog running': joint model \S+, space (joint|fused):\S+ \(\d+-d\), (flat|hnsw) index"
    assert re.search(pattern, text)
    assert "of 40 vectors searched, 3 results" in text and re.search(r"\d+\.\d{3} s$", text)
    pattern = r"image encoder efficientnet-lite0, space image \(1280-d\), \w+ index of 40 vectors"
    assert re.search(pattern, similar.getMessage())
    caplog.clear()
    with caplog.at_level("WARNING"):  # without -v, nothing is logged
        assert main(["search", "a dog running", "-k", "3", "--db", db, "--quiet"]) == 0
    assert not [r for r in caplog.records if r.name == "vistext.cli.collection"]
