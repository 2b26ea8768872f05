"""The person head (``models.presence``) and the search words it answers ("people", "-people", "without anyone"):
the shipped head, its card, how composed search reads it, and real photos end to end."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from vistext.errors import ModelError
from vistext.models.default_tags import load_default_tags
from vistext.models.presence import PresenceModel, load_presence, save_presence, shipped_presence
from vistext.service import Service
from vistext.service.composed_search import composed_hits
from vistext.service.default_tags import STATE_KEY, fill_default_tags
from vistext.service.person_chances import PresenceMemo, stored_presence
from vistext.service.query_syntax import names_people, parse_query
from vistext.store import Store
from vistext.store.records import ImageFilter, VectorHit
from vistext.training.presence import fit_presence, person_label


def test_the_shipped_head_reads_the_bundled_encoders_features() -> None:
    head = shipped_presence()
    assert head.encoder == "efficientnet-lite0" and head.fits(1280) and not head.fits(512)
    chance = head.probability(np.zeros((3, 1280), np.float32))
    assert chance.shape == (3,) and ((chance > 0) & (chance < 1)).all()
    with pytest.raises(ModelError, match=r"expected \(n, 1280\)"):
        head.probability(np.zeros((2, 512), np.float32))


def test_a_saved_head_loads_back_and_a_broken_card_is_one_line(tmp_path: Path) -> None:
    head = PresenceModel(np.array([1.0, -2.0, 0.5], np.float32), 0.25, "some-encoder", {"chosen_on": "here"})
    save_presence(tmp_path / "head", head)
    again = load_presence(tmp_path / "head")
    assert again.encoder == "some-encoder" and again.bias == 0.25 and again.card["chosen_on"] == "here"
    np.testing.assert_array_equal(again.weights, head.weights)
    card = tmp_path / "head" / "config.json"
    card.write_text(card.read_text().replace('"bias"', '"no-bias"'))
    with pytest.raises(ModelError, match="lacks its weights, bias or encoder"):
        load_presence(tmp_path / "head")


def test_labels_come_from_how_many_captions_name_a_person() -> None:
    assert person_label(["a man runs", "a guy jogging", "a road"]) == 1
    assert person_label(["a dog runs", "a brown dog", "grass"]) == 0
    assert person_label(["a dog runs", "a girl and her dog", "grass"]) == -1  # left out: one caption only


def test_a_fit_separates_what_it_was_shown() -> None:
    rng = np.random.default_rng(0)
    people, nobody = rng.normal(1.0, 0.5, (60, 8)), rng.normal(-1.0, 0.5, (60, 8))
    labels = np.array([1] * 60 + [0] * 50 + [-1] * 10)
    head = fit_presence(np.concatenate([people, nobody]), labels, rng.normal(-1.0, 0.5, (20, 8)), c=1.0)
    assert head.probability(people).min() > 0.5 > head.probability(nobody).max()
    with pytest.raises(ValueError, match="both"):
        fit_presence(people, np.ones(60, int))


@pytest.mark.parametrize(
    ("typed", "people", "attributes", "excluded"),
    [
        ("people", True, (), []),
        ("A person.", True, (), []),
        ("a group of people", False, ("person",), []),
        ("someone", True, (), []),
        ("a man", False, ("person",), []),
        ("someone surfing", False, ("person",), []),
        ("people at night", False, ("night", "person"), []),
        ("a dog and his ball", False, (), []),
        ('"people"', False, (), []),
        ("a beach -people", False, (), ["people"]),
        ("a beach without anyone", False, (), ["anyone"]),
    ],
)
def test_the_syntax_knows_when_people_are_asked_for(
    typed: str, people: bool, attributes: tuple[str, ...], excluded: list[str]
) -> None:
    parsed = parse_query(typed)
    assert (parsed.people, parsed.attributes, parsed.excluded) == (people, attributes, tuple(excluded))
    assert parsed.plain is (not people and not attributes and not excluded)
    assert all(names_people(term) for term in parsed.excluded)


def _run(
    text: str, text_scores: dict[int, float], presence: dict[int, float], excluded: dict[int, float] | None = None
) -> list[tuple[int, float]]:
    """Composed hits of ``text`` where the words score ``text_scores`` (and an excluded thing ``excluded``, else
    the same) and the head says ``presence``."""
    parsed = parse_query(text)
    calls = iter([text_scores] + [excluded or text_scores] * len(parsed.excluded))

    def search(queries: list) -> list[list[VectorHit]]:
        return [[VectorHit(i, f"/p/{i}.jpg", s) for i, s in next(calls).items()] for _ in queries]

    def query_for(words: str, depth: int, restrict: object) -> str:
        return words

    hits = composed_hits(
        parsed,
        query_for,  # type: ignore[arg-type]
        10,
        None,
        search,
        lambda ids: np.full((len(ids), 16), np.nan),
        lambda ids: np.array([presence.get(i, np.nan) for i in ids]),
    )
    return [(hit.id, round(hit.score, 4)) for hit in hits]


def test_people_rank_by_the_head_and_its_sure_photos_keep_the_words_order() -> None:
    text = {1: 0.30, 2: 0.10, 3: 0.20, 4: 0.05}
    hits = _run("people", text, {1: 0.999, 2: 0.4, 3: 0.9999, 4: np.nan})
    # 1 and 3 are both as sure as the head gets (0.99): the words put 1 first; 4 is unknown, so its words count
    assert hits == [(1, 0.99), (3, 0.99), (2, 0.4), (4, 0.05)]


def test_an_excluded_person_sinks_by_the_heads_chance() -> None:
    hits = _run("a dog -people", {1: 0.9, 2: 0.8}, {1: 0.95, 2: 0.05})
    assert hits == [(2, round(0.8 * 0.95, 2)), (1, round(0.9 * 0.05, 2))]  # kept to a hundredth


def test_a_person_named_among_other_words_asks_the_head_gently() -> None:
    hits = _run("someone surfing", {1: 0.8, 2: 0.7, 3: 0.6}, {1: 0.02, 2: 0.9, 3: np.nan})
    # a glacier (1) that the words liked best sinks under the surfer (2); an unknown photo (3) keeps its words
    assert hits == [(2, round(0.7 * 0.9**0.5, 4)), (3, 0.6), (1, round(0.8 * 0.02**0.5, 4))]


def test_photos_scored_alike_keep_the_words_order() -> None:
    # both 0.99 x (1 - a sliver of "water"): equal to a hundredth, so the words for "people" order them
    hits = _run("people -water", {1: 0.1, 2: 0.3}, {1: 0.999, 2: 0.995}, excluded={1: 0.0001, 2: 0.003})
    assert hits == [(2, 0.99), (1, 0.99)]


def test_real_photos_people_and_without_people(tmp_path: Path, sample_photos: Path, store_location: Path | str) -> None:
    """In each backend: "people" finds the astronaut and no one else; excluding people sinks her."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("astronaut.png", "chelsea.png", "coffee.png", "flower.jpg", "grass.png"):
        shutil.copy(sample_photos / name, folder / name)
    with Service(db=store_location, progress=False) as service:
        assert service.index(folder).added == 5
        people = {Path(h.path).name: h.score for h in service.search("people", 5).results}
        assert next(iter(people)) == "astronaut.png" and people["astronaut.png"] > 0.9
        assert all(score < 0.5 for name, score in people.items() if name != "astronaut.png")
        plain = {Path(h.path).name: h.score for h in service.search('"a woman"', 5).results}
        without = {Path(h.path).name: h.score for h in service.search("a woman without people", 5).results}
        assert without["astronaut.png"] < 0.1 * plain["astronaut.png"]
        # a served collection reads each photo's chance once per catalogue version, and again after a write
        store, memo = service.store(), PresenceMemo()
        ids = [r.id for r in store.records()]
        first = memo.of(store, ids)
        np.testing.assert_array_equal(first, stored_presence(store, ids))
        reads = []
        original = store.vectors_of
        store.vectors_of = lambda space, wanted: reads.append(list(wanted)) or original(space, wanted)  # type: ignore[method-assign]
        np.testing.assert_array_equal(memo.of(store, ids[::-1]), first[::-1])
        assert reads == []
        (folder / "grass.png").unlink()
        service.index(folder)
        memo.of(store, ids[:2])
        assert reads == [ids[:2]]
        # a memo over its size starts again rather than growing with every photo a server ever pooled
        small, reads[:] = PresenceMemo(size=2), []
        small.of(store, ids[:3])
        small.of(store, ids[:1])
        assert reads == [ids[:3], ids[:1]]


def test_people_is_a_tag_out_of_the_box_and_older_catalogues_gain_it(tmp_path: Path, sample_photos: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("astronaut.png", "coffee.png", "flower.jpg"):
        shutil.copy(sample_photos / name, folder / name)

    def tagged_people(store: Store) -> set[str]:
        return {Path(r.path).name for r in store.records(store.ids_matching(ImageFilter(tag="people")).tolist())}

    with Service(db=tmp_path / "db" / "catalogue.sqlite", progress=False) as service:
        service.index(folder)
        store = service.store()
        assert tagged_people(store) == {"astronaut.png"}
        # as a catalogue tagged before the head: the vocabulary alone made its tags, and "people" is not among them
        fill_default_tags(store, load_default_tags(), people=None)
        assert tagged_people(store) == set() and "+" not in store.get_meta(STATE_KEY)["fingerprint"]
        report = service.index(folder)  # no photo changed, but the head is new to this catalogue: a whole pass
        assert report.default_tags is not None and report.default_tags["scored"] == 3
        assert tagged_people(store) == {"astronaut.png"}


def test_tag_vocab_reads_people_as_search_does(sample_photos: Path) -> None:
    with Service(progress=False) as service:
        found = service.tag([sample_photos / "astronaut.png", sample_photos / "coffee.png"], vocab=["people", "a cup"])
    scores = [{tag.tag: tag.score for tag in photo.tags} for photo in found]
    assert scores[0]["people"] > 0.9 > scores[1]["people"] and scores[1]["people"] < 0.5 < scores[1]["a cup"]


def test_people_do_not_compete_with_the_other_words(sample_photos: Path) -> None:
    # "people" goes with anything: adding it to a vocabulary leaves the other words' scores as they were
    with Service(progress=False) as service:
        alone = service.tag([sample_photos / "astronaut.png"], vocab=["a rocket", "a flag"])[0].tags
        beside = service.tag([sample_photos / "astronaut.png"], vocab=["people", "a rocket", "a flag"])[0].tags
    expected = {"people": pytest.approx(0.957, abs=0.01), **{t.tag: t.score for t in alone}}
    assert {t.tag: t.score for t in beside} == expected
