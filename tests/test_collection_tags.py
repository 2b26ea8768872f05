"""``tag --collection`` over a real catalogue: a pass that is interrupted says so and the next one resumes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vistext.models.tagger import TaggerModel
from vistext.service.collection_tags import PAGE, tag_collection, unfinished_tagging
from vistext.store import Store, open_store

N = 2 * PAGE + 88  # three pages


def _tagger(dim: int, seed: int = 0) -> TaggerModel:
    rng = np.random.default_rng(seed)
    weights = {
        "mean": np.zeros(dim, np.float32),
        "std": np.ones(dim, np.float32),
        "classifier.weight": rng.normal(size=(3, dim)).astype(np.float32),
        "classifier.bias": np.zeros(3, np.float32),
    }
    head = {"kind": "linear", "in_dim": dim, "feature": "pooled"}
    return TaggerModel(["red", "green", "blue"], weights, head, backbone="enc", thresholds=np.full(3, 0.5, np.float32))


def _catalogue(path: Path, make_records: Callable[..., Any]) -> Store:
    store = open_store(path)
    records, _ = make_records(N)
    store.add(records)
    return store


def _all_tags(store: Store) -> dict[str, list[tuple[str, float]]]:
    paths = {r.id: r.path for r in store.records()}
    return {paths[i]: pairs for i, pairs in store.tags_for(list(paths)).items()}


def test_an_interrupted_pass_is_reported_incomplete_and_the_next_one_resumes(
    tmp_path: Path, make_records: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _tagger(48)
    with _catalogue(tmp_path / "clean.sqlite", make_records) as clean:
        report = tag_collection(clean, model, "colours", progress=False)
        assert (report.images, report.resumed) == (N, 0) and unfinished_tagging(clean) == {}
        expected = _all_tags(clean)

    with _catalogue(tmp_path / "killed.sqlite", make_records) as store:
        calls: list[int] = []
        original = store.set_tags

        def dies_on_the_second_page(tagger: str, tags: Any) -> None:
            calls.append(len(tags))
            if len(calls) == 2:
                raise KeyboardInterrupt  # as a Ctrl-C (or a kill) between two committed pages
            original(tagger, tags)

        monkeypatch.setattr(store, "set_tags", dies_on_the_second_page)
        with pytest.raises(KeyboardInterrupt):
            tag_collection(store, model, "colours", progress=False)
        monkeypatch.undo()
        assert unfinished_tagging(store) == {"colours": {"images": PAGE, "total": N}}

        tagged: list[int] = []
        monkeypatch.setattr(store, "set_tags", lambda tagger, tags: tagged.append(len(tags)) or original(tagger, tags))
        report = tag_collection(store, model, "colours", progress=False)
        assert report.resumed == PAGE and report.images == N and sum(tagged) == N - PAGE  # only the rest
        assert unfinished_tagging(store) == {}
        assert _all_tags(store) == expected

        tag_collection(store, _tagger(48, seed=1), "colours", progress=False)  # another tagger: a full pass
        assert unfinished_tagging(store) == {} and sum(tagged) == 2 * N - PAGE


def test_info_says_a_tagging_pass_is_incomplete(tmp_path: Path, make_records: Callable[..., Any]) -> None:
    from vistext.cli.info import info_lines
    from vistext.service import Service

    db = tmp_path / "catalogue.sqlite"
    with _catalogue(db, make_records) as store:
        store.set_meta(
            "collection_tagging", {"colours": {"complete": False, "images": PAGE, "total": N, "through_id": PAGE}}
        )
    with Service(db=db, progress=False) as service:
        info = service.info().to_dict()
    assert info["metadata"]["unfinished_tagging"] == {"colours": {"images": PAGE, "total": N}}
    assert any(line.startswith(f"tagging:   colours is incomplete: its pass stopped after {PAGE} of {N}")
               for line in info_lines(info))  # fmt: skip
