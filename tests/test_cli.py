"""The CLI end to end on real Flickr8k photos: through main(argv), and once as a real subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vistext.cli import main

DOG = "1001773457_577c3a7d70.jpg"  # "A black dog and a spotted dog are fighting"
DOG_CLASSES = range(151, 269)  # ImageNet-1k indices 151-268 are dog breeds


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory: pytest.TempPathFactory, flickr8k_images: list[Path]) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    chosen = [p for p in flickr8k_images[:40] if p.name != DOG] + [p for p in flickr8k_images if p.name == DOG]
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
    assert summary["unchanged"] == 41 and summary["added"] == 0 and summary["failed"] == 0
    assert (indexed / ".vistext" / "catalogue.sqlite").is_file()


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


def test_similar_returns_the_query_first(indexed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    query = indexed / DOG
    code, result = run_json(
        capsys, "similar", str(query), "-k", "3", "--db", str(indexed / ".vistext/catalogue.sqlite")
    )
    assert code == 0
    assert result["query"] == str(query)
    first = result["results"][0]
    assert Path(first["path"]).name == DOG and first["score"] == pytest.approx(1.0, abs=1e-3)
    assert len(result["results"]) == 3


def test_similar_pages_and_cuts_by_score(indexed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(indexed / ".vistext/catalogue.sqlite")
    _, full = run_json(capsys, "similar", str(indexed / DOG), "-k", "6", "--db", db)
    _, page = run_json(capsys, "similar", str(indexed / DOG), "-k", "3", "--offset", "3", "--db", db)
    assert [h["path"] for h in page["results"]] == [h["path"] for h in full["results"][3:6]]
    cut = full["results"][2]["score"]
    _, high = run_json(capsys, "similar", str(indexed / DOG), "-k", "6", "--min-score", str(cut), "--db", db)
    assert all(h["score"] >= cut for h in high["results"]) and len(high["results"]) == 3


def test_info_counts(indexed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, info = run_json(capsys, "info", "--db", str(indexed / ".vistext/catalogue.sqlite"))
    assert code == 0 and info["exists"] is True
    assert json.dumps(info)  # JSON-able all the way down


def test_missing_index_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = run_json(capsys, "similar", "x.jpg", "--db", str(tmp_path / "none.sqlite"))
    assert code == 2
    assert "none.sqlite" in doc["error"] and "vistext index" in doc["error"]


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
    assert Path(result["results"][0]["path"]).name == DOG
