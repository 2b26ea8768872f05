"""The search syntax (service.query_syntax), the pixels' colour and light measures (images.attributes) and how a
composed query scores photos (service.composed_search), on hand-made values with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from vistext.errors import UsageError
from vistext.images.attributes import ATTRIBUTE_SPACE, COLOURS, MEASURES, measure_index, pixel_measures
from vistext.service.composed_search import UNMEASURED, WEIGHTS, attribute_chance, composed_scores
from vistext.service.query_syntax import parse_query


@pytest.mark.parametrize(
    ("typed", "wanted", "attributes", "excluded"),
    [
        ("beach -people", "beach", (), ["people"]),
        ("beach without people", "beach", (), ["people"]),
        ("beach with no people", "beach", (), ["people"]),
        ('beach -"a man" -dogs', "beach", (), ["a man", "dogs"]),
        ("a park without dogs or bikes", "a park", (), ["dogs", "bikes"]),
        ("a man with no shirt", "a man", ("person",), ["shirt"]),
        ("a red bus", "a red bus", ("red",), []),
        ("a gray cat", "a gray cat", ("grey",), []),
        ("a street at night", "a street at night", ("night",), []),
        ("mountains at dusk", "mountains at dusk", ("dusk",), []),
        ("a street during the day", "a street during the day", ("day",), []),
        ("a black and white photo of a dog", "a black and white photo of a dog", ("monochrome",), []),
        ("a dog in black and white", "a dog in black and white", ("monochrome",), []),
        ("a black and white dog", "a black and white dog", ("black", "white"), []),
        ("a black and brown dog -water", "a black and brown dog", ("black", "brown"), ["water"]),
        ("a red bus at night without people", "a red bus at night", ("night", "red"), ["people"]),
    ],
)
def test_the_syntax_reads_exclusions_and_attributes(
    typed: str, wanted: str, attributes: tuple[str, ...], excluded: list[str]
) -> None:
    parsed = parse_query(typed)
    assert (parsed.wanted, parsed.attributes, parsed.excluded) == (wanted, attributes, tuple(excluded))
    assert not parsed.plain


@pytest.mark.parametrize(
    "typed",
    [
        "a dog",
        "a dog and a ball",  # two things: the whole text is scored (the model reads "and")
        "salt and pepper",
        "rock and roll",
        "an orange",  # a colour word ending the text is a thing
        "a glass of red wine",  # a colour compound
        '"a man with no shirt"',  # quoted: no operators
        '"a red bus"',
        "  a  dog  on the grass ",
    ],
)
def test_phrases_that_are_not_operators_are_plain(typed: str) -> None:
    parsed = parse_query(typed)
    assert parsed.plain and not parsed.attributes and not parsed.excluded
    quoted = typed.strip().startswith('"')
    assert parsed.wanted == (typed.strip()[1:-1] if quoted else typed)  # a plain query is searched as typed


@pytest.mark.parametrize("typed", ["-people", "-dog -cat", '-"a red car"', "without people", "with no dogs"])
def test_exclusions_alone_are_refused_with_what_to_do(typed: str) -> None:
    # searching their words would put first the very photos they exclude ("-dog" found dogs)
    with pytest.raises(UsageError, match="only says what to leave out: add what to look for"):
        parse_query(typed)
    assert parse_query(f'"{typed}"').plain  # quoted: the words as they are, no operators


@pytest.mark.parametrize(
    ("rgb", "colour"),
    [
        ((10, 10, 10), "black"), ((245, 245, 245), "white"), ((128, 128, 128), "grey"), ((210, 30, 30), "red"),
        ((240, 140, 20), "orange"), ((235, 220, 40), "yellow"), ((40, 160, 60), "green"), ((30, 60, 200), "blue"),
        ((130, 40, 180), "purple"), ((240, 150, 170), "pink"), ((110, 70, 30), "brown"),
    ],
)  # fmt: skip
def test_each_basic_colour_term_is_measured(rgb: tuple[int, int, int], colour: str) -> None:
    pixels = np.zeros((224, 224, 3), np.uint8) + np.array(rgb, np.uint8)
    measures = pixel_measures(pixels)
    assert measures.shape == (len(MEASURES),) and measures.dtype == np.float32
    fractions = measures[: len(COLOURS)]
    assert COLOURS[int(np.argmax(fractions))] == colour and fractions.sum() == pytest.approx(1.0, abs=1e-5)


def test_colour_is_weighted_to_the_centre_and_light_is_measured() -> None:
    pixels = np.zeros((224, 224, 3), np.uint8) + np.array((30, 60, 200), np.uint8)  # blue all round
    pixels[72:152, 72:152] = (210, 30, 30)  # a red square in the middle: an eighth of the area
    measures = pixel_measures(pixels[None])[0]
    assert measures[measure_index("red")] > measures[measure_index("blue")]  # the subject, not the background
    dark = pixel_measures(np.full((1, 224, 224, 3), 12, np.uint8))
    bright = pixel_measures(np.full((1, 224, 224, 3), 200, np.uint8))
    assert attribute_chance("night", dark)[0] > 0.3 > 0.01 > attribute_chance("night", bright)[0]
    assert attribute_chance("day", bright)[0] > 0.99
    rng = np.random.default_rng(0)
    grey = np.repeat(rng.integers(0, 256, (1, 224, 224, 1), dtype=np.uint8), 3, axis=3)
    colourful = rng.integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
    assert attribute_chance("monochrome", pixel_measures(grey))[0] > 0.99
    assert attribute_chance("monochrome", pixel_measures(colourful))[0] < 0.01


def test_a_composed_score_is_relevance_times_chances_times_what_is_not_excluded() -> None:
    parsed = parse_query("a red bus -people")
    red = pixel_measures(np.full((224, 224, 3), (210, 30, 30), np.uint8))
    blue = pixel_measures(np.full((224, 224, 3), (30, 60, 200), np.uint8))
    measures = np.stack([red, blue, np.full(len(MEASURES), np.nan)])  # the third photo was never measured
    relevance = np.array([[0.8, 0.9, 0.6], [0.0, 0.5, 0.0]])  # the wanted text, then "people"
    scores = composed_scores(parsed, relevance, measures)
    chance = attribute_chance("red", measures)
    assert chance[0] > 0.5 > 0.1 > chance[1] and chance[2] == UNMEASURED
    weighted = chance ** WEIGHTS["colour"]
    assert scores == pytest.approx([0.8 * weighted[0], 0.9 * weighted[1] * 0.5, 0.6 * weighted[2]])
    assert scores[0] > scores[2] > scores[1]  # the red bus first, though the blue one matched the words better
    assert ATTRIBUTE_SPACE.startswith("attributes:")


@pytest.mark.parametrize(
    ("typed", "only"),
    [
        ("a black and white photo", True), ("monochrome", True), ("b&w", True), ("photos taken at night", True),
        ("pictures in black and white", True), ("during the day", True),
        ("a dog at night", False), ("a black and white photo of a cat", False), ("a black and white dog", False),
        ("a red photo", False), ("people at night", False),
    ],
)  # fmt: skip
def test_a_light_or_black_and_white_alone_is_read_as_the_pixels_chance(typed: str, only: bool) -> None:
    assert parse_query(typed).only_light is only


def test_alone_the_pixels_chance_is_the_score_whatever_the_words_say() -> None:
    parsed = parse_query("a black and white photo -people")
    grey = pixel_measures(np.full((224, 224, 3), 128, np.uint8))
    red = pixel_measures(np.full((224, 224, 3), (210, 30, 30), np.uint8))
    measures = np.stack([grey, red, np.full(len(MEASURES), np.nan)])
    relevance = np.array([[0.05, 0.9, 0.5], [0.0, 0.0, 0.5]])  # the words, then "people"
    scores = composed_scores(parsed, relevance, measures)
    assert scores[0] > 0.99 and scores[1] < 0.01  # not 0.05 x chance ** 4: the words name no thing
    assert scores[2] == pytest.approx(UNMEASURED * 0.5)  # never measured: as likely as not, then people excluded
