"""Dataset readers on hand-made fixtures, their error messages, and the real Flickr8k files."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from vistext.datasets import (
    caption_formats,
    hash_split,
    open_caption_dataset,
    open_tagged_dataset,
    parse_spec,
    tagged_formats,
    tags_from_captions,
)
from vistext.errors import DatasetError, UsageError

FIXTURES = Path(__file__).parent / "fixtures"


def _image(path: Path, color: str = "red") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path)
    return path


def _copy(name: str, tmp_path: Path, images: list[str] = ()) -> Path:  # type: ignore[assignment]
    root = tmp_path / name
    shutil.copytree(FIXTURES / name, root)
    # the hand-made Flickr8k-format fixture is tracked under a neutral name, so no file in the repository
    # looks like the real (research-licensed) caption file
    tokens = root / "captions.tsv"
    if name == "flickr8k_mini" and tokens.exists():
        tokens.rename(root / "Flickr8k.token.txt")
    for image in images:
        _image(root / image)
    return root


def test_registries_and_spec_parsing() -> None:
    assert caption_formats() == ["coco", "csv", "flickr8k", "folder", "jsonl"]
    assert tagged_formats() == ["classes", "csv", "esp", "folder", "jsonl", "unsplash"]
    assert parse_spec("unsplash:some/dir?min_confidence=30&check_images=false") == (
        "unsplash", Path("some/dir").absolute(), {"min_confidence": 30, "check_images": False})  # fmt: skip
    with pytest.raises(UsageError, match="unknown caption dataset format 'nope'; known: coco, csv, flickr8k"):
        open_caption_dataset("nope:x")
    with pytest.raises(UsageError, match="expected FORMAT:PATH"):
        open_tagged_dataset("just/a/path")
    with pytest.raises(UsageError, match="unknown option.*colour"):
        open_caption_dataset("csv:x.csv?colour=red")
    assert hash_split("a.jpg") == hash_split("a.jpg")
    shares = Counter(hash_split(f"img{i}.jpg") for i in range(2000))
    assert 1450 < shares["train"] < 1750 and 120 < shares["dev"] < 280 and 120 < shares["test"] < 280


def test_flickr8k_reader_on_fixture(tmp_path: Path) -> None:
    root = _copy("flickr8k_mini", tmp_path, ["images/a.jpg", "images/b.jpg", "images/c.jpg", "images/d.jpg"])
    ds = open_caption_dataset(f"flickr8k:{root}")
    assert ds.splits() == ["train", "dev", "test"]
    assert [p.name for p in ds.images()] == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    assert ds.images("dev") == [root / "images" / "b.jpg"]
    assert [c.text for c in ds.captions("train")] == ["A dog runs on the grass .", "Two dogs running through grass ."]
    assert len(ds.captions()) == 7 and list(ds.captions_by_image("test").values()) == [
        ["Children play in the snow .", "A child plays in the snow ."]]  # fmt: skip
    with pytest.raises(DatasetError, match="no split 'val'"):
        ds.images("val")


def test_flickr8k_errors_name_file_and_line(tmp_path: Path) -> None:
    root = _copy("flickr8k_mini", tmp_path, ["images/a.jpg", "images/b.jpg"])
    with pytest.raises(DatasetError, match=r"2 referenced image file\(s\) missing, first: .*c\.jpg"):
        open_caption_dataset(f"flickr8k:{root}")
    token = root / "Flickr8k.token.txt"
    token.write_text(token.read_text() + "e.jpg#0 no tab here\n")
    with pytest.raises(DatasetError, match=r"Flickr8k.token.txt:8: expected '<image>#<n><TAB><caption>'"):
        open_caption_dataset(f"flickr8k:{root}?check_images=false")
    token.write_text("a.jpg#0\tfine\n")
    with pytest.raises(DatasetError, match=r"Flickr_8k.devImages.txt:1: image 'b.jpg' has no captions"):
        open_caption_dataset(f"flickr8k:{root}?check_images=false")
    with pytest.raises(DatasetError, match="Flickr8k folder not found"):
        open_caption_dataset(f"flickr8k:{tmp_path / 'missing'}")


def test_coco_reader_2017_and_2014_layouts(tmp_path: Path) -> None:
    root = _copy("coco_mini", tmp_path, ["train2017/000000000001.jpg", "train2017/000000000002.jpg",
                                         "val2017/000000000003.jpg"])  # fmt: skip
    ds = open_caption_dataset(f"coco:{root}")
    assert ds.splits() == ["train2017", "val2017"]
    assert ds.train_split() == "train2017"
    assert ds.captions_by_image("train2017")[root / "train2017" / "000000000001.jpg"] == [
        "A cat on a sofa.", "A sleeping cat"]  # fmt: skip
    assert [c.text for c in ds.captions("val2017")] == ["Two horses in a field."]

    old = tmp_path / "coco2014"
    (old / "annotations").mkdir(parents=True)
    (old / "annotations" / "captions_val2014.json").write_text(
        '{"images": [{"id": 7, "file_name": "COCO_val2014_000000000007.jpg"}],'
        ' "annotations": [{"id": 1, "image_id": 7, "caption": "A kite."}]}'
    )
    _image(old / "images" / "val2014" / "COCO_val2014_000000000007.jpg")
    ds14 = open_caption_dataset(f"coco:{old}")
    assert ds14.splits() == ["val2014"] and ds14.images()[0].parent == old / "images" / "val2014"


def test_coco_errors(tmp_path: Path) -> None:
    root = _copy("coco_mini", tmp_path)
    (root / "annotations" / "captions_val2017.json").write_text('{"images": [],\n "annotations": [}')
    with pytest.raises(DatasetError, match=r"captions_val2017.json:2: bad JSON"):
        open_caption_dataset(f"coco:{root}?check_images=false")
    (root / "annotations" / "captions_val2017.json").write_text('{"images": [], "annotations": [{"id": 5, '
                                                                '"image_id": 99, "caption": "x"}]}')  # fmt: skip
    with pytest.raises(DatasetError, match="unknown image id 99"):
        open_caption_dataset(f"coco:{root}?check_images=false")
    with pytest.raises(DatasetError, match="no annotations/captions_<split>.json"):
        open_caption_dataset(f"coco:{tmp_path}")


def test_csv_and_jsonl_captions(tmp_path: Path) -> None:
    root = _copy("tabular", tmp_path, ["img/a.jpg", "img/b.jpg", "img/c.jpg"])
    ds = open_caption_dataset(f"csv:{root / 'captions.csv'}")
    assert ds.splits() == ["train", "test"]
    assert ds.captions_by_image("train") == {root / "img" / "a.jpg": ["A dog, running", "A brown dog"]}
    js = open_caption_dataset(f"jsonl:{root / 'captions.jsonl'}")
    assert js.splits() == ["all", "train", "dev", "test"]
    assert len(js.images("all")) == 3 == sum(len(js.images(s)) for s in ("train", "dev", "test"))
    assert js.captions_by_image()[root / "img" / "b.jpg"] == ["Ünïcode café caption"]
    assert all(hash_split(f"img/{p.name}") in s for s in js.splits()[1:] for p in js.images(s))


def test_tabular_errors_name_file_and_line(tmp_path: Path) -> None:
    root = _copy("tabular", tmp_path, ["img/a.jpg"])
    with pytest.raises(DatasetError, match=r"bad_columns.csv:3: 3 columns, expected 2"):
        open_caption_dataset(f"csv:{root / 'bad_columns.csv'}?check_images=false")
    with pytest.raises(DatasetError, match=r"bad.jsonl:2: bad JSON"):
        open_caption_dataset(f"jsonl:{root / 'bad.jsonl'}?check_images=false")
    with pytest.raises(DatasetError, match=r"tags.csv:1: missing column\(s\) caption"):
        open_caption_dataset(f"csv:{root / 'tags.csv'}")
    with pytest.raises(DatasetError, match=r"captions.csv: 1 referenced image file\(s\) missing, first: .*b\.jpg"):
        open_caption_dataset(f"csv:{root / 'captions.csv'}")
    with pytest.raises(DatasetError, match="nothere.csv: file not found"):
        open_caption_dataset(f"csv:{root / 'nothere.csv'}")
    (root / "badtags.jsonl").write_text('{"image": "img/a.jpg", "tags": ["ok"]}\n{"image": "img/a.jpg", "tags": "x"}\n')
    with pytest.raises(DatasetError, match=r"badtags.jsonl:2: 'tags' must be a JSON list"):
        open_tagged_dataset(f"jsonl:{root / 'badtags.jsonl'}")


def test_csv_and_jsonl_tags(tmp_path: Path) -> None:
    root = _copy("tabular", tmp_path, ["img/a.jpg", "img/b.jpg", "img/c.jpg"])
    ds = open_tagged_dataset(f"csv:{root / 'tags.csv'}")
    assert ds.vocabulary() == ["dog", "car", "grass"] and not ds.single_label
    assert ds.items()[0].tags == ["dog", "grass"] and ds.splits() == ["all", "train", "dev", "test"]
    js = open_tagged_dataset(f"jsonl:{root / 'tags.jsonl'}")
    assert js.splits() == ["train", "test"] and js.items("test")[0].tags == ["car"]


def test_folder_readers(tmp_path: Path) -> None:
    caps = tmp_path / "caps"
    _image(caps / "x.jpg")
    (caps / "x.txt").write_text("first caption\n\nsecond  caption\n")
    _image(caps / "sub" / "y.png")
    (caps / "sub" / "y.txt").write_text("nested")
    _image(caps / "lonely.jpg")
    ds = open_caption_dataset(f"folder:{caps}")
    assert ds.captions_by_image() == {
        caps / "sub" / "y.png": ["nested"],
        caps / "x.jpg": ["first caption", "second caption"],
    }
    assert ds.splits()[0] == "all"

    classes = tmp_path / "classes"
    for cls, n in (("cat", 2), ("dog", 3)):
        for i in range(n):
            _image(classes / cls / f"{i}.jpg")
    (classes / "notes.txt").write_text("ignored")
    tags = open_tagged_dataset(f"folder:{classes}")
    assert tags.single_label and tags.vocabulary() == ["dog", "cat"] and len(tags.items()) == 5
    with pytest.raises(DatasetError, match="no class sub-folders"):
        open_tagged_dataset(f"folder:{caps / 'sub'}")


def test_unsplash_reader(tmp_path: Path) -> None:
    root = _copy("unsplash_mini", tmp_path, ["images/ph1.jpg", "images/ph2.jpg"])
    all_kw = open_tagged_dataset(f"unsplash:{root}")
    assert {i.image.name: i.tags for i in all_kw.items()} == {
        "ph1.jpg": ["dog", "animal", "good boy"], "ph2.jpg": ["mountain", "sky"]}  # fmt: skip
    confident = open_tagged_dataset(f"unsplash:{root / 'keywords.tsv000'}?min_confidence=30")
    assert {i.image.name: i.tags for i in confident.items()} == {
        "ph1.jpg": ["dog", "good boy"],
        "ph2.jpg": ["mountain"],
    }
    (root / "images" / "ph2.jpg").unlink()
    with pytest.raises(DatasetError, match=r"1 referenced image file\(s\) missing, first: .*ph2\.jpg"):
        open_tagged_dataset(f"unsplash:{root}")
    assert len(open_tagged_dataset(f"unsplash:{root}?skip_missing=true").items()) == 1
    (root / "keywords.tsv000").write_text("photo_id\tkeyword\tconfidence\nph1\tdog\thigh\n")
    with pytest.raises(DatasetError, match=r"keywords.tsv000:2: confidence 'high' is not a number"):
        open_tagged_dataset(f"unsplash:{root}")


def test_esp_reader(tmp_path: Path) -> None:
    root = tmp_path / "esp"
    (root / "labels").mkdir(parents=True)
    (root / "labels" / "1.jpg.desc").write_text("Dog\ngrass\n\ndog\n")
    (root / "labels" / "2.jpg.desc").write_text("sky\n")
    _image(root / "thumbnails" / "1.jpg")
    _image(root / "thumbnails" / "2.jpg")
    ds = open_tagged_dataset(f"esp:{root}")
    assert [i.tags for i in ds.items()] == [["dog", "grass"], ["sky"]]
    (root / "thumbnails" / "2.jpg").unlink()
    with pytest.raises(DatasetError, match="missing, first: .*2.jpg"):
        open_tagged_dataset(f"esp:{root}")


def test_tags_from_captions_on_fixture_round_trips_through_csv(tmp_path: Path) -> None:
    root = _copy("flickr8k_mini", tmp_path, ["images/a.jpg", "images/b.jpg", "images/c.jpg", "images/d.jpg"])
    tags = tags_from_captions(open_caption_dataset(f"flickr8k:{root}"), top_n=10, min_captions=2)
    assert tags.items("train")[0].tags == ["dog", "grass"]  # only train words are candidates for the top-n
    assert tags.items("test")[0].tags == []  # child/snow are agreed on, but never seen in train
    out = tags.write_csv(root / "tags.csv")
    back = open_tagged_dataset(f"csv:{out}")
    assert back.splits() == tags.splits()
    assert [(i.image, i.tags) for i in back.items()] == [(i.image, i.tags) for i in tags.items()]
    assert "images/a.jpg,dog|grass,train" in out.read_text()


def test_flickr8k_real_files(flickr8k: Path) -> None:
    ds = open_caption_dataset(f"flickr8k:{flickr8k}")
    assert len(ds.captions()) == 40_455
    assert [len(ds.images(s)) for s in ds.splits()] == [6000, 1000, 1000]
    by_image = ds.captions_by_image()
    assert len(by_image) == 8091 and all(len(texts) == 5 for texts in by_image.values())
    assert all(p.is_file() for p in ds.images("test"))


def test_flickr8k_benchmark_tags(flickr8k: Path, tmp_path: Path) -> None:
    tags = tags_from_captions(open_caption_dataset(f"flickr8k:{flickr8k}?check_images=false"), top_n=300)
    vocab = tags.vocabulary()
    assert len(vocab) == 300
    assert {"dog", "man", "woman", "boy", "girl", "water", "grass", "ball"} <= set(vocab[:30])
    assert sum(bool(i.tags) for i in tags.items("train")) > 5900
    out = tags.write_csv(tmp_path / "flickr8k_tags.csv")
    back = open_tagged_dataset(f"csv:{out}")
    assert back.vocabulary() == vocab and back.splits() == ["train", "dev", "test"]
    assert {i.image: i.tags for i in back.items("test")} == {i.image: i.tags for i in tags.items("test")}
    assert len(back.images()) == 8091  # the 91 images in no split are written too, with an empty split
